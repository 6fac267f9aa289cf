"""SPF, DKIM, ARC and DMARC of inbound mail as one check: DMARC needs the SPF and DKIM
results, and the Authentication-Results header reports all four. SPF, DKIM and ARC run
concurrently; DMARC follows them."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable, Coroutine

from pyspamd import actions
from pyspamd.auth.arc import ArcResult, verify_arc
from pyspamd.auth.dkim_verify import DkimResult, verify_dkim
from pyspamd.auth.dmarc import DmarcResult, check_dmarc
from pyspamd.auth.headers import authentication_results
from pyspamd.auth.spf import SpfResult, check_spf
from pyspamd.auth.spf_cache import recall
from pyspamd.checks.base import Check
from pyspamd.checks.rbl import DNS_SYMBOLS
from pyspamd.config import Config
from pyspamd.dns import MessageDns, Resolver, message_dns
from pyspamd.services import Services
from pyspamd.storage.base import StateStore
from pyspamd.symbols import Hits, SymbolDef
from pyspamd.task import Task

log = logging.getLogger("pyspamd.spf")

SPF_SYMBOLS = {
    "pass": "R_SPF_ALLOW", "fail": "R_SPF_FAIL", "softfail": "R_SPF_SOFTFAIL",
    "neutral": "R_SPF_NEUTRAL", "none": "R_SPF_NA", "temperror": "R_SPF_DNSFAIL",
    "permerror": "R_SPF_PERMFAIL",
}
DKIM_SYMBOLS = {"pass": "R_DKIM_ALLOW", "fail": "R_DKIM_REJECT", "temperror": "R_DKIM_TEMPFAIL",
                "permerror": "R_DKIM_PERMFAIL"}
DMARC_POLICY_SYMBOLS = {"reject": "DMARC_POLICY_REJECT", "quarantine": "DMARC_POLICY_QUARANTINE",
                        "none": "DMARC_POLICY_SOFTFAIL"}
ARC_SYMBOLS = {"pass": "ARC_ALLOW", "fail": "ARC_REJECT", "none": "ARC_NA",
               "temperror": "ARC_DNSFAIL"}

AUTH_SYMBOLS = {
    "R_SPF_ALLOW": SymbolDef(-0.2, "SPF: the client may send for the sender's domain"),
    "R_SPF_FAIL": SymbolDef(1.0, "SPF: the sender's domain says this client may not send"),
    "R_SPF_SOFTFAIL": SymbolDef(0.5, "SPF: the sender's domain discourages this client (~all)"),
    "R_SPF_NEUTRAL": SymbolDef(0.0, "SPF: the sender's domain says nothing of this client"),
    "R_SPF_NA": SymbolDef(0.0, "SPF: the sender's domain has no SPF record"),
    "R_SPF_DNSFAIL": SymbolDef(0.0, "SPF: DNS error while evaluating (temperror)"),
    "R_SPF_PERMFAIL": SymbolDef(0.0, "SPF: the record is broken (permerror)"),
    "R_DKIM_ALLOW": SymbolDef(-0.2, "DKIM: a signature verifies"),
    "R_DKIM_REJECT": SymbolDef(1.0, "DKIM: a signature does not verify"),
    "R_DKIM_TEMPFAIL": SymbolDef(0.0, "DKIM: the key lookup failed (DNS)"),
    "R_DKIM_PERMFAIL": SymbolDef(0.5, "DKIM: broken signature or key (missing, malformed, "
                                      "too short)"),
    "R_DKIM_NA": SymbolDef(0.0, "DKIM: no signature"),
    "DMARC_POLICY_ALLOW": SymbolDef(-0.5, "DMARC: aligned SPF or DKIM passes"),
    "DMARC_POLICY_REJECT": SymbolDef(2.0, "DMARC fails and the domain asks to reject"),
    "DMARC_POLICY_QUARANTINE": SymbolDef(1.5, "DMARC fails and the domain asks to quarantine"),
    "DMARC_POLICY_SOFTFAIL": SymbolDef(0.1, "DMARC fails; the domain's policy is none"),
    "DMARC_NA": SymbolDef(0.0, "DMARC: no (usable) policy for the From domain"),
    "DMARC_DNSFAIL": SymbolDef(0.0, "DMARC: the policy lookup failed (DNS)"),
    "ARC_ALLOW": SymbolDef(-1.0, "ARC: the chain verifies"),
    "ARC_REJECT": SymbolDef(1.0, "ARC: the chain is broken"),
    "ARC_NA": SymbolDef(0.0, "ARC: no ARC headers"),
    "ARC_DNSFAIL": SymbolDef(0.0, "ARC: a key lookup failed (DNS)"),
    **DNS_SYMBOLS,
}


class EmailAuth(Check):
    name = "email_auth"
    is_async = True
    symbols = AUTH_SYMBOLS

    @classmethod
    def build(cls, config: Config, services: Services) -> EmailAuth | None:
        auth = config.auth
        if config.dns.enabled and (auth.spf or auth.dkim or auth.dmarc or auth.arc):
            return cls(config, services.resolver, services.storage_opener(writes=False)
                       if config.policy_service.listen and config.policy_service.spf else None)
        return None

    def __init__(self, config: Config, resolver: Resolver,
                 storage: Callable[[], StateStore] | None = None) -> None:
        self.auth = config.auth
        self.resolver = resolver
        # The policy service's SPF results, when it runs SPF at RCPT time.
        self.storage = storage
        self.authserv_id = (config.auth.authserv_id or config.milter.server_name
                            or socket.gethostname())

    def run(self, task: Task, hits: Hits) -> Coroutine[None, None, None] | None:
        return self._run(task, hits, message_dns(task, self.resolver))

    async def _run(self, task: Task, hits: Hits, lookups: MessageDns) -> None:
        env, auth = task.envelope, self.auth
        spf_job: Awaitable[SpfResult | None] | None = None
        recalled = None
        if auth.spf and env.client_ip and not env.user and env.mail_from is not None:
            # Mail from an authenticated user is ours: SPF would judge our own relay.
            recalled = self._recall_spf(env.client_ip, env.helo, env.mail_from)
            spf_job = _ready(recalled[0]) if recalled else check_spf(
                lookups, env.client_ip, env.mail_from, env.helo, self.authserv_id)
        dkim_job: Awaitable[list[DkimResult] | None]
        if not (auth.dkim or auth.dmarc):
            dkim_job = _nothing()
        elif "dkim-signature" in task.headers:
            dkim_job = verify_dkim(task.raw, lookups, auth.min_key_bits)
        else:  # unsigned: no need for dkimpy to parse the whole message to find that out
            dkim_job = _unsigned()
        jobs = await asyncio.gather(
            spf_job or _nothing(),
            dkim_job,
            verify_arc(task.raw, task.headers.items, lookups, auth.min_key_bits)
            if auth.arc else _nothing())
        spf: SpfResult | None = jobs[0]
        dkim: list[DkimResult] | None = jobs[1]
        arc: ArcResult | None = jobs[2]
        dmarc: DmarcResult | None = None
        if auth.dmarc and not env.user:
            # An authenticated user's mail is ours, unsigned until the milter signs it on
            # the way out: DMARC would fail it, and with dmarc_reject refuse it.
            from_domains = {a.rpartition("@")[2] for _, a in task.headers.addresses("from")}
            if len(from_domains) == 1:
                dmarc = await check_dmarc(lookups, from_domains.pop(), spf, dkim or [])
            else:  # none, or several authors: RFC 7489 6.6.1 leaves no one domain to ask
                dmarc = DmarcResult("none", "", reason="no single From domain")
        self._symbols(hits, spf, dkim if auth.dkim else None, arc, dmarc)
        if dmarc is not None and dmarc.result == "fail" and dmarc.policy == "reject" \
                and auth.dmarc_reject:
            hits.force_action(actions.REJECT, f"DMARC policy of {dmarc.from_domain} says "
                              "reject: no aligned SPF or DKIM pass", "DMARC_POLICY_REJECT")
        if auth.authentication_results:
            value = authentication_results(self.authserv_id, spf,
                                           dkim if auth.dkim else None, dmarc, arc)
            task.add_headers.append(("Authentication-Results", value.replace("; ", ";\n\t")))
        if spf is not None and auth.received_spf and spf.header and not (
                recalled and recalled[1]):  # the policy service prepended it already
            task.add_headers.append(("Received-SPF", spf.header))

    def _recall_spf(self, ip: str, helo: str | None,
                    sender: str) -> tuple[SpfResult, bool] | None:
        if self.storage is None:
            return None
        try:
            return recall(self.storage(), ip, helo, sender)
        except Exception as exc:  # no stored result: SPF is looked up as without the service
            log.debug("SPF result of the policy service not read: %s", exc)
            return None

    def _symbols(self, hits: Hits, spf: SpfResult | None, dkim: list[DkimResult] | None,
                 arc: ArcResult | None, dmarc: DmarcResult | None) -> None:
        timed_out = failed = False
        if spf is not None:
            hits.add(SPF_SYMBOLS.get(spf.result, "R_SPF_PERMFAIL"), spf.domain)
            timed_out |= spf.timed_out
            failed |= spf.result == "temperror" and not spf.timed_out
        if dkim is not None:
            if not dkim:
                hits.add("R_DKIM_NA")
            for sig in dkim:
                hits.add(DKIM_SYMBOLS[sig.result], sig.domain)
                timed_out |= sig.timed_out
                failed |= sig.result == "temperror" and not sig.timed_out
        if arc is not None:
            hits.add(ARC_SYMBOLS[arc.result])
            timed_out |= arc.timed_out
            failed |= arc.result == "temperror" and not arc.timed_out
        if dmarc is not None:
            if dmarc.result == "pass":
                hits.add("DMARC_POLICY_ALLOW", dmarc.from_domain)
            elif dmarc.result == "fail":
                hits.add(DMARC_POLICY_SYMBOLS[dmarc.policy], dmarc.from_domain)
            elif dmarc.result == "temperror":
                hits.add("DMARC_DNSFAIL", dmarc.from_domain)
            else:
                hits.add("DMARC_NA", *([dmarc.reason] if dmarc.reason else []))
            timed_out |= dmarc.timed_out
            failed |= dmarc.result == "temperror" and not dmarc.timed_out
        if timed_out:
            hits.add("DNS_TIMEOUT", "auth")
        if failed:
            hits.add("DNS_FAIL", "auth")


async def _nothing() -> None:
    return None


async def _ready(result: SpfResult) -> SpfResult:
    return result


async def _unsigned() -> list[DkimResult]:
    return []
