"""Does the envelope sender's domain exist and take mail? (Postfix's
reject_unknown_sender_domain, as a score: the notes' sender sanity, with DNS.)

A domain with neither MX nor A/AAAA cannot receive bounces; a domain that does not exist at
all is made up. A null MX ("0 .", RFC 7505) says the domain sends no mail either.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine

from pyspamd.checks.base import Check
from pyspamd.checks.rbl import DNS_SYMBOLS
from pyspamd.config import Config
from pyspamd.dns import DnsServerFailure, DnsTimeout, MessageDns, Resolver, message_dns
from pyspamd.dns.domains import normalize_domain
from pyspamd.services import Services
from pyspamd.symbols import Hits, SymbolDef
from pyspamd.task import Task

SENDER_DOMAIN_SYMBOLS = {
    "SENDER_DOMAIN_NXDOMAIN": SymbolDef(3.0, "Envelope sender's domain does not exist"),
    "SENDER_DOMAIN_NO_MX": SymbolDef(2.0, "Envelope sender's domain has no MX and no "
                                          "address: bounces cannot reach it"),
    "SENDER_DOMAIN_NULL_MX": SymbolDef(2.0, "Envelope sender's domain says it takes no "
                                            "mail (null MX)"),
    **DNS_SYMBOLS,
}


class SenderDomain(Check):
    name = "sender_domain"
    is_async = True
    symbols = SENDER_DOMAIN_SYMBOLS

    @classmethod
    def build(cls, config: Config, services: Services) -> SenderDomain | None:
        if config.dns.enabled and config.auth.sender_domain:
            return cls(services.resolver)
        return None

    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver

    def run(self, task: Task, hits: Hits) -> Coroutine[None, None, None] | None:
        env = task.envelope
        if not env.mail_from or env.user:  # bounces have no domain; our own users are fine
            return None
        domain = normalize_domain(env.mail_from.rpartition("@")[2])
        if "." not in domain:
            return None  # not a domain name: SENDER_NOT_FQDN (helo_sanity) says so
        return self._run(domain, message_dns(task, self.resolver), hits)

    async def _run(self, domain: str, lookups: MessageDns, hits: Hits) -> None:
        try:
            mx = await lookups.query(domain, "MX")
            if not mx.exists:
                hits.add("SENDER_DOMAIN_NXDOMAIN", domain)
                return
            if mx.records:
                if all(r.split(" ", 1)[1] == "." for r in mx.records):
                    hits.add("SENDER_DOMAIN_NULL_MX", domain)
                return
            a, aaaa = await asyncio.gather(lookups.query(domain, "A"),
                                           lookups.query(domain, "AAAA"))
            if not a.records and not aaaa.records:
                hits.add("SENDER_DOMAIN_NO_MX", domain)
        except DnsTimeout:
            hits.add("DNS_TIMEOUT", self.name)
        except DnsServerFailure:
            hits.add("DNS_FAIL", self.name)
