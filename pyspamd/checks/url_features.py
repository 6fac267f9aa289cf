"""What a regular expression over one URL cannot see: a link whose text shows one domain
while it goes to another, host names that mix scripts or imitate Latin letters with
look-alikes, the recipient's own address carried inside a link, and how many
organisations a message links to."""

from __future__ import annotations

import base64
import contextlib
import re
import unicodedata
from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar
from urllib.parse import unquote, urlsplit

from pyspamd.brands import brand_domains, org_domain
from pyspamd.checks.base import Check
from pyspamd.dns.domains import load_public_suffixes
from pyspamd.lookalikes import is_lookalike, latin_lookalikes
from pyspamd.symbols import Hits, SymbolDef
from pyspamd.task import Task

if TYPE_CHECKING:
    from pyspamd.config import Config
    from pyspamd.services import Services

_G = "url"
# A link text that is nothing but a URL or a bare domain ("www.paypal.com/signin").
_SHOWN_HOST = re.compile(
    r"^\s*(?:https?://)?(?:[^\s/@]+@)?((?:[a-z0-9-]+\.)+[a-z]{2,24})\.?(?::\d+)?(?:[/?#]\S*)?\s*$",
    re.I,
)
_MANY_DOMAINS = 15


def _script(char: str) -> str:
    """A coarse script name for a letter: the first word of its Unicode name."""
    try:
        return unicodedata.name(char).split(" ", 1)[0]
    except ValueError:
        return ""


def _unicode_host(host: str) -> str:
    if "xn--" not in host:
        return host
    labels = []
    for label in host.split("."):
        if label.startswith("xn--"):
            with contextlib.suppress(UnicodeError):
                label = label[4:].encode("ascii").decode("punycode")
        labels.append(label)
    return ".".join(labels)


class UrlFeatures(Check):
    name = "url_features"
    symbols: ClassVar[Mapping[str, SymbolDef]] = {
        "URL_TEXT_HOST_MISMATCH": SymbolDef(
            0.0, "Link text shows one domain, the link goes to another", _G),
        "URL_TEXT_BRAND_MISMATCH": SymbolDef(
            0.0, "Link text shows a brand's domain, the link goes elsewhere", _G),
        "URL_HOST_MIXED_SCRIPT": SymbolDef(
            0.0, "Link host mixes Latin letters with another script (homograph)", _G),
        "URL_HOST_LOOKALIKE": SymbolDef(
            0.0, "Link host spells Latin-looking words with letters of another script", _G),
        "URL_HOST_NON_ASCII": SymbolDef(0.0, "Link host is an internationalised name", _G),
        "URL_RCPT_IN_FRAGMENT": SymbolDef(
            0.0, "Link carries the recipient's address after '#' (phishing kits prefill)", _G),
        "URL_RCPT_BASE64": SymbolDef(
            0.0, "Link carries the recipient's address base64-encoded", _G),
        "URL_MANY_DOMAINS": SymbolDef(
            0.0, f"Links into {_MANY_DOMAINS} or more different domains", _G),
        "URL_HTTP_IP_TEXT_HOST": SymbolDef(
            0.0, "Link text shows a host name, the link goes to a bare IP address", _G),
    }


    @classmethod
    def build(cls, config: Config, services: Services) -> UrlFeatures | None:
        if not services.symbols_only:
            load_public_suffixes()
            latin_lookalikes()  # read in the master, shared by the workers it forks
        return cls()

    def run(self, task: Task, hits: Hits) -> None:
        urls = task.urls
        if not urls:
            return
        self._anchors(task, hits)
        orgs: set[str] = set()
        for url in urls:
            host = url.host
            if not host or url.scheme not in ("http", "https"):
                continue
            if not url.is_ip:
                orgs.add(org_domain(host) or host)
            if "xn--" in host or not host.isascii():
                self._idn(url.host, hits)
        if len(orgs) >= _MANY_DOMAINS:
            hits.add("URL_MANY_DOMAINS", str(len(orgs)))
        self._recipient(task, hits)

    def _anchors(self, task: Task, hits: Hits) -> None:
        for part in task.text_parts:
            if part.html is None:
                continue
            for href, text in part.html.anchors:
                if not text or "." not in text:
                    continue
                shown = _SHOWN_HOST.match(text)
                if shown is None:
                    continue
                try:
                    target = urlsplit(href.strip())
                    real = (target.hostname or "").rstrip(".").lower()
                except ValueError:
                    continue
                if target.scheme.lower() not in ("http", "https") or not real:
                    continue
                shown_host = shown.group(1).lower()
                shown_org = org_domain(shown_host)
                if not shown_org:
                    continue  # "file.txt", "e.g": no registrable domain shown
                if real.replace(".", "").isdigit():
                    hits.add("URL_HTTP_IP_TEXT_HOST", real)
                if shown_org != (org_domain(real) or real):
                    hits.add("URL_TEXT_HOST_MISMATCH", f"{shown_host} > {real}")
                    if brand_domains(shown_org.partition(".")[0]) is not None:
                        hits.add("URL_TEXT_BRAND_MISMATCH", f"{shown_host} > {real}")

    def _idn(self, host: str, hits: Hits) -> None:
        shown = _unicode_host(host)
        if shown.isascii():
            return
        hits.add("URL_HOST_NON_ASCII", shown)
        for label in shown.split("."):
            scripts = {_script(c) for c in label if c.isalpha()}
            if "LATIN" in scripts and len(scripts) > 1:
                hits.add("URL_HOST_MIXED_SCRIPT", shown)
            foreign = [c for c in label if c.isalpha() and not c.isascii()]
            if foreign and all(is_lookalike(c) for c in foreign):
                hits.add("URL_HOST_LOOKALIKE", shown)

    def _recipient(self, task: Task, hits: Hits) -> None:
        rcpts = [r.lower() for r in task.envelope.rcpts] or [
            a for _, a in task.headers.addresses("to")[:3] if "@" in a]
        if not rcpts:
            return
        encoded = {base64.b64encode(r.encode()).decode().rstrip("=")[:-2]: r
                   for r in rcpts if len(r) > 5}
        for url in task.urls:
            if url.scheme not in ("http", "https"):
                continue
            text = url.url
            fragment = text.partition("#")[2]
            if fragment:
                fragment = unquote(fragment).lower()
                if any(r in fragment for r in rcpts):
                    hits.add("URL_RCPT_IN_FRAGMENT", url.host)
            if any(e and e in text for e in encoded):
                hits.add("URL_RCPT_BASE64", url.host)
