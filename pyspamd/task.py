"""The task: one message and its envelope, parsed once, read by every check.

The milter, the HTTP API and the CLI all build a Task and hand it to the same Scanner.
Each view (headers, parts, text, URLs, Received chain) is computed on first use and kept,
so a check that needs nothing from the body never pays for decoding it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from email.utils import getaddresses
from functools import cached_property
from typing import TYPE_CHECKING

from pyspamd.htmltext import HtmlContent, html_to_text
from pyspamd.mime import MimePart, parse_message, payload_bytes, walk_parts
from pyspamd.received import ReceivedChain
from pyspamd.textdecode import decode_bytes, decode_header_value, surrogates_to_text, unfold
from pyspamd.urls import Url, find_urls

if TYPE_CHECKING:
    from pyspamd.policy.rcpt_policy import AppliedSettings


@dataclass(slots=True)
class Envelope:
    client_ip: str | None = None
    client_hostname: str | None = None
    helo: str | None = None
    mail_from: str | None = None  # without <>; "" is the null sender
    rcpts: tuple[str, ...] = ()
    user: str | None = None  # SASL login name
    queue_id: str | None = None

    def __post_init__(self) -> None:
        self.rcpts = tuple(self.rcpts)
        if self.mail_from is not None:
            self.mail_from = self.mail_from.strip().strip("<>")


@dataclass(slots=True)
class ParseLimits:
    """Bounds on the work one message can cause. Defaults and reasons: pyspamd.toml.example.
    The config's [scan] section (pyspamd.config.ScanConfig) is one of these."""

    max_parts: int = 1000
    max_depth: int = 20
    max_part_text_bytes: int = 1 << 20
    max_body_text_bytes: int = 2 << 20
    max_full_bytes: int = 1 << 20
    max_urls: int = 500
    max_headers: int = 1000
    max_html_depth: int = 512


@dataclass(slots=True)
class TextPart:
    part: MimePart
    text: str  # what the reader sees (HTML turned to text)
    markup: str  # after transfer and charset decoding, HTML kept as markup
    is_html: bool
    links: list[str] = field(default_factory=list)
    html: HtmlContent | None = None  # what the HTML parse saw (anchors, hidden text, forms)


class HeaderView:
    """Headers by lower-case name, raw and decoded, in message order."""

    def __init__(self, items: list[tuple[str, str]], anomalies: dict[str, list[str]],
                 charset: Callable[[], str | None] | None = None) -> None:
        self.items = items
        self._anomalies = anomalies
        # The message's declared charset, asked for only when an 8-bit header is not UTF-8.
        self._charset = charset
        self._by_name: dict[str, list[str]] = {}
        for name, value in items:
            self._by_name.setdefault(name.lower(), []).append(value)
        self._decoded: dict[str, list[str]] = {}
        # Rules read the same header many ways (decoded, addr, name, the "all" view): each
        # distinct value is decoded once, and each header's address list is parsed once.
        self._decode_memo: dict[str, tuple[str, list[str]]] = {}
        self._addresses: dict[str, list[tuple[str, str]]] = {}
        self._all_lines: str | None = None

    def _decode(self, value: str) -> tuple[str, list[str]]:
        memo = self._decode_memo.get(value)
        if memo is None:
            memo = self._decode_memo[value] = decode_header_value(value, self._charset)
        return memo

    def __contains__(self, name: str) -> bool:
        return name.lower() in self._by_name

    def count(self, name: str) -> int:
        return len(self._by_name.get(name.lower(), ()))

    def raw(self, name: str) -> list[str]:
        return [unfold(surrogates_to_text(v, self._charset)[0])
                for v in self._by_name.get(name.lower(), ())]

    def decoded(self, name: str) -> list[str]:
        key = name.lower()
        cached = self._decoded.get(key)
        if cached is not None:
            return cached
        out: list[str] = []
        for value in self._by_name.get(key, ()):
            text, problems = self._decode(value)
            for problem in problems:
                if problem == "8bit":
                    self._anomalies.setdefault("header_8bit", []).append(name)
                elif problem == "too_many_encoded_words":
                    self._anomalies.setdefault(problem, []).append(name)
                else:
                    self._anomalies.setdefault("bad_charset", []).append(problem)
            out.append(text)
        self._decoded[key] = out
        return out

    def first(self, name: str, default: str = "") -> str:
        values = self.decoded(name)
        return values[0] if values else default

    def addresses(self, name: str) -> list[tuple[str, str]]:
        """(display name, lower-case address) pairs; names decoded, addresses as written."""
        key = name.lower()
        cached = self._addresses.get(key)
        if cached is not None:
            return cached
        raw = [surrogates_to_text(v, self._charset)[0] for v in self._by_name.get(key, ())]
        pairs: list[tuple[str, str]] = []
        if raw:
            try:
                pairs = getaddresses(raw)
            except Exception:  # stricter in newer Pythons; never fail a scan on it
                pairs = []
        out = [(self._decode(n)[0], a.lower()) for n, a in pairs if n or a]
        self._addresses[key] = out
        return out

    def all_lines(self) -> str:
        if self._all_lines is None:
            self._all_lines = "\n".join(f"{n}: {self._decode(v)[0]}" for n, v in self.items)
        return self._all_lines


class Task:
    def __init__(
        self, raw: bytes, envelope: Envelope | None = None, limits: ParseLimits | None = None
    ) -> None:
        self.raw = raw
        self.envelope = envelope or Envelope()
        self.limits = limits or ParseLimits()
        # Problems found while parsing, by name, with details; mime_sanity scores them.
        self.anomalies: dict[str, list[str]] = {}
        if b"\x00" in raw:
            self.anomalies["nul"] = []
        # Headers checks ask the milter to add (Authentication-Results, Received-SPF).
        self.add_headers: list[tuple[str, str]] = []
        # What checks keep about this message between their calls, by check name; it goes
        # with the task, so a scan that dies leaves nothing behind.
        self.scratch: dict[str, object] = {}
        # time.monotonic() by which the scan must finish; None: no budget.
        self.deadline: float | None = None
        # The [[settings]] entry this message's recipients get, picked before the checks run
        # so that a check can follow it (banned-file exemptions); None: no entries.
        self.settings: AppliedSettings | None = None

    def time_left(self) -> float | None:
        """Seconds left of the scan's time budget (0.0 once spent), or None without one."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())

    @cached_property
    def message(self) -> Message:
        # compat32 parses about six times faster than the modern policy; headers are decoded
        # by HeaderView instead, with our own charset fall-backs.
        return parse_message(
            self.raw, self.limits.max_depth, self.limits.max_headers, self.anomalies
        )

    @cached_property
    def headers(self) -> HeaderView:
        return HeaderView(list(self.message.raw_items()), self.anomalies, self._declared_charset)

    def _declared_charset(self) -> str | None:
        """The first charset the message declares (top level, else its first text part)."""
        for part in self.message.walk():
            charset = part.get_param("charset")
            if isinstance(charset, str) and charset:
                return charset
        return None

    @cached_property
    def subject(self) -> str:
        return self.headers.first("subject")

    @cached_property
    def parts(self) -> list[MimePart]:
        return walk_parts(
            self.message, self.limits.max_parts, self.limits.max_depth, self.anomalies
        )

    @cached_property
    def attachments(self) -> list[MimePart]:
        return [p for p in self.parts if p.is_attachment]

    @cached_property
    def text_parts(self) -> list[TextPart]:
        out: list[TextPart] = []
        budget = self.limits.max_body_text_bytes
        for part in self.parts:
            if part.content_type not in ("text/plain", "text/html") or part.is_attachment:
                continue
            if budget <= 0:
                self.anomalies.setdefault("text_truncated", [])
                break
            limit = min(self.limits.max_part_text_bytes, budget)
            data, problem = payload_bytes(part, limit)
            budget -= len(data)
            if problem:
                self.anomalies.setdefault(problem, []).append(part.content_type)
            markup, charset_problem = decode_bytes(data, part.charset)
            if charset_problem:
                self.anomalies.setdefault("bad_charset", []).append(charset_problem)
            if "\r" in markup:
                markup = markup.replace("\r\n", "\n")
            if part.content_type == "text/html":
                html = html_to_text(markup, self.limits.max_html_depth)
                if html.too_deep:
                    self.anomalies.setdefault("html_too_deep", []).append(
                        str(self.limits.max_html_depth))
                out.append(TextPart(part, html.text, markup, True, html.links, html))
            else:
                out.append(TextPart(part, markup, markup, False))
        return out

    @cached_property
    def body_text(self) -> str:
        """Subject line, then the visible text of every text part: what `body` rules see."""
        return "\n".join([self.subject, *(p.text for p in self.text_parts)])

    @cached_property
    def rawbody_text(self) -> str:
        return "\n".join(p.markup for p in self.text_parts)

    @cached_property
    def full_bytes(self) -> bytes:
        return self.raw[: self.limits.max_full_bytes]

    @cached_property
    def urls(self) -> list[Url]:
        links = [link for p in self.text_parts for link in p.links]
        texts = [p.text for p in self.text_parts]
        urls, truncated = find_urls(texts, links, self.limits.max_urls)
        if truncated:
            self.anomalies.setdefault("too_many_urls", []).append(str(self.limits.max_urls))
        return urls

    @cached_property
    def received(self) -> ReceivedChain:
        return ReceivedChain(self.headers.raw("received"))

    @cached_property
    def from_address(self) -> str:
        pairs = self.headers.addresses("from")
        return pairs[0][1] if pairs else ""
