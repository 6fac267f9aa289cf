"""Who the message claims to be from, against where it really comes from: display names
naming a brand, an address or the recipient's own domain that the From address does not
belong to, and Reply-To addresses that take the answer elsewhere."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

from pyspamd.brands import belongs_to, brand_domains, is_freemail, org_domain
from pyspamd.checks.base import Check
from pyspamd.dns.domains import load_public_suffixes
from pyspamd.symbols import Hits, SymbolDef
from pyspamd.task import Task

if TYPE_CHECKING:
    from pyspamd.config import Config
    from pyspamd.services import Services

_G = "sender"
_ADDR_IN_NAME = re.compile(r"[\w.+-]+@([a-z0-9-]+(?:\.[a-z0-9-]+)+)", re.I)
_SERVICE_WORDS = re.compile(
    r"\b(?:mail|e-?mail|webmail|admin\w*|it|support|server|help\s?desk|team|portal|security"
    r"|notification|service|system|account|hr|payroll|billing|share\s?point|one\s?drive)\b")
# "Alice via Example" names the person a list or service relays for, not the sender
_RELAYED = re.compile(r"\s(?:via|through|on behalf of)\s", re.I)


def _domain(address: str) -> str:
    return address.rpartition("@")[2].strip().rstrip(".").lower()


class SenderIdentity(Check):
    name = "sender_identity"
    symbols: ClassVar[Mapping[str, SymbolDef]] = {
        "FROM_NAME_BRAND_MISMATCH": SymbolDef(
            0.0, "From name names a brand the From address does not belong to", _G),
        "FROM_NAME_BRAND_FREEMAIL": SymbolDef(
            0.0, "From name names a brand, but the address is a free-mail mailbox", _G),
        "FROM_NAME_OTHER_ADDRESS": SymbolDef(
            0.0, "From name shows an e-mail address of another domain than the sender's", _G),
        "FROM_NAME_RCPT_DOMAIN": SymbolDef(
            0.0, "From name names the recipient's domain, the address is elsewhere", _G),
        "REPLYTO_FREEMAIL_DIFFERS": SymbolDef(
            0.0, "Reply-To is a free-mail mailbox other than the From address", _G),
        "REPLYTO_OTHER_DOMAIN": SymbolDef(
            0.0, "Reply-To is in another organisation's domain than From", _G),
        "FROM_EQ_TO": SymbolDef(0.0, "From and the only To address are the same", _G),
        "SUBJ_HAS_RCPT_ADDR": SymbolDef(0.0, "Subject names the recipient's address", _G),
    }


    @classmethod
    def build(cls, config: Config, services: Services) -> SenderIdentity | None:
        if not services.symbols_only:
            load_public_suffixes()
        return cls()

    def run(self, task: Task, hits: Hits) -> None:
        headers = task.headers
        senders = headers.addresses("from")
        if not senders:
            return
        name, address = senders[0]
        from_domain = _domain(address)
        if name and from_domain and not _RELAYED.search(name):
            self._display_name(task, name, address, from_domain, hits)
        replies = headers.addresses("reply-to")
        # Lists rewrite From ("Alice via List") and put the poster in Reply-To
        relayed = "list-id" in headers or bool(name and _RELAYED.search(name))
        if replies and from_domain and not relayed:
            reply = replies[0][1]
            reply_domain = _domain(reply)
            if reply and reply != address:
                if is_freemail(reply_domain):
                    hits.add("REPLYTO_FREEMAIL_DIFFERS", reply)
                if reply_domain and (org_domain(reply_domain) or reply_domain) != (
                        org_domain(from_domain) or from_domain):
                    hits.add("REPLYTO_OTHER_DOMAIN", reply_domain)
        to = headers.addresses("to")
        if len(to) == 1 and address and to[0][1] == address:
            hits.add("FROM_EQ_TO", address)
        subject = task.subject.lower()
        if "@" in subject:
            rcpts = [r.lower() for r in task.envelope.rcpts] or [a for _, a in to[:5]]
            if any(r and "@" in r and r in subject for r in rcpts):
                hits.add("SUBJ_HAS_RCPT_ADDR")

    def _display_name(self, task: Task, name: str, address: str, from_domain: str,
                      hits: Hits) -> None:
        brand = brand_domains(name)
        if brand is not None and not belongs_to(from_domain, brand):
            hits.add("FROM_NAME_BRAND_MISMATCH", name)
            if is_freemail(from_domain):
                hits.add("FROM_NAME_BRAND_FREEMAIL", name)
        shown = _ADDR_IN_NAME.search(name)
        if shown and (org_domain(shown.group(1).lower()) or shown.group(1).lower()) != (
                org_domain(from_domain) or from_domain):
            hits.add("FROM_NAME_OTHER_ADDRESS", shown.group(0))
        lowered = name.lower()
        for rcpt_domain in _recipient_domains(task):
            org = org_domain(rcpt_domain)
            label = org.partition(".")[0] if org else ""
            if len(label) < 4 or is_freemail(rcpt_domain):
                continue
            # the domain itself ("example.net"), or its name with a service word
            # ("Example IT Support"); a bare "Example" is often just a surname
            named = org in lowered or (re.search(rf"\b{re.escape(label)}\b", lowered)
                                       and _SERVICE_WORDS.search(lowered))
            if named and org_domain(from_domain) != org:
                hits.add("FROM_NAME_RCPT_DOMAIN", name)
                return


def _recipient_domains(task: Task) -> list[str]:
    found = [_domain(r) for r in task.envelope.rcpts]
    if not found:
        found = [_domain(a) for _, a in task.headers.addresses("to")[:5]]
    return list(dict.fromkeys(d for d in found if d))
