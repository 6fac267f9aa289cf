"""What the policy service answers one request: maps, DNSBL, SPF, rate limits and
greylisting, in that order; the first refusal wins, else the one header to prepend.

The store (greylisting, rate limits, the SPF result kept for the milter) is used from one
thread of its own, so a store that hangs holds up no other work of the event loop, and the
server's per-request timeout answers for it. Map lookups (LDAP among them) run there too.
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pyspamd import __version__, actions
from pyspamd.auth.spf import SpfResult
from pyspamd.auth.spf_cache import TTL as SPF_TTL
from pyspamd.auth.spf_cache import remember
from pyspamd.checks.ratelimit import bucket_keys
from pyspamd.checks.rbl import reversed_ip, worth_looking_up
from pyspamd.config import Config
from pyspamd.dns import DnsError, Resolver
from pyspamd.faultlog import FaultLog
from pyspamd.policy.greylist import GREYLISTED, Greylister, Timing, Triplet, client_network
from pyspamd.policy.keyed import DomainTable, LoadProblems, MapUnavailable, NetworkTable
from pyspamd.policy.maps import MapSource, load_maps
from pyspamd.policy.ratelimit import NOUNS, parse_limit
from pyspamd.policy.trusted import TrustedNetworks
from pyspamd.policy.verbs import Entry
from pyspamd.policy_service.postgrey_lists import ClientWhitelist, RecipientWhitelist
from pyspamd.policy_service.spf_policy import SpfAnswer, SpfPolicy, load_spf_config
from pyspamd.storage.base import Storage, StorageError
from pyspamd.task import Envelope

log = logging.getLogger("pyspamd.policy")

DUNNO = "DUNNO"
# The [[maps]] matches Postfix has in a policy request, and the attribute each reads.
RCPT_MATCHES = {"client_ip": "client_address", "envelope_from": "sender", "rcpt": "recipient",
                "helo": "helo_name", "hostname": "client_name", "user": "sasl_username"}
# A map's configured action as a Postfix access action; content actions are the milter's.
_MAP_ACTIONS = {actions.REJECT: "REJECT", actions.SOFT_REJECT: "DEFER_IF_PERMIT",
                actions.DISCARD: "DISCARD", actions.QUARANTINE: "HOLD",
                actions.NO_ACTION: "OK", actions.ACCEPT: "OK",
                actions.GREYLIST: "DEFER_IF_PERMIT"}
_MEMO = 1000  # per connection: messages remembered for "one header per message"


class StoreDown(Exception):
    """The store failed; the request gets [policy_service] store_down."""


@dataclass
class Connection:
    """What one Postfix connection's requests share: its messages (instances) seen."""

    spf_instances: dict[str, Any] = field(default_factory=dict)
    prepended: set[str] = field(default_factory=set)  # instances given X-Greylist
    counted: set[str] = field(default_factory=set)  # instances charged to rate limits

    def trim(self) -> None:
        for memo in (self.spf_instances, self.prepended, self.counted):
            if len(memo) > _MEMO:
                memo.clear()


@dataclass
class _Written:
    """SPF results written to the store lately: the same result for the same client, HELO
    and sender (a busy sender's every message) is written again only when half its time
    in the store is gone, not once per recipient request."""

    entries: dict[tuple[str, ...], float] = field(default_factory=dict)

    @staticmethod
    def key(attrs: dict[str, str], spf: SpfAnswer, prepended: bool) -> tuple[str, ...]:
        return (attrs.get("client_address", ""), attrs.get("helo_name", ""),
                attrs.get("sender", ""), spf.result, spf.header, str(prepended))

    def due(self, key: tuple[str, ...]) -> bool:
        return time.monotonic() - self.entries.get(key, -SPF_TTL) >= SPF_TTL / 2

    def done(self, key: tuple[str, ...]) -> None:
        if len(self.entries) > 10000:
            self.entries.clear()
        self.entries[key] = time.monotonic()


def _listed(table: NetworkTable | DomainTable, items: list[str], label: str) -> None:
    problems = LoadProblems()
    for index, item in enumerate(items):
        table.add(item, Entry("", None, "", f"{label}[{index}]"), problems)


class Decider:
    def __init__(self, config: Config, resolver: Resolver, open_store: Callable[[], Storage],
                 faults: FaultLog, clock: Callable[[], float]) -> None:
        p, g = config.policy_service, config.greylist
        self.config = config
        self.resolver = resolver
        self.faults = faults
        self.clock = clock
        self._open_store = open_store
        self._store: Storage | None = None
        # One thread: SQLite's connection is per thread, and a hung store blocks only it.
        self.store_thread = ThreadPoolExecutor(1, thread_name_prefix="policy-store")
        self.store_down = p.store_down
        self._spf_written = _Written()
        self.timing = Timing(g.delay, g.expire, g.whitelist_expire)
        self.trusted = TrustedNetworks(config.milter.trusted_networks)
        self.grey_networks = NetworkTable()
        _listed(self.grey_networks, g.whitelist_networks, "whitelist_networks")
        self.grey_hosts = DomainTable()
        _listed(self.grey_hosts, g.whitelist_hosts, "whitelist_hosts")
        self.grey_senders = DomainTable()
        _listed(self.grey_senders, g.whitelist_sender_domains, "whitelist_sender_domains")
        self.clients = ClientWhitelist.load(p.whitelist_clients)
        self.recipients = RecipientWhitelist.load(p.whitelist_recipients)
        self.host = config.milter.server_name or socket.gethostname()
        self.spf = SpfPolicy(load_spf_config(p.spf_config), resolver, p.request_timeout) \
            if p.spf and config.dns.enabled else None
        if (p.spf or p.rbl) and not config.dns.enabled:
            log.warning("policy service: [dns] is off, so no SPF and no DNSBL at RCPT time "
                        "(set [dns] nameservers to a local resolver, or enabled = true)")
        self.maps: dict[str, MapSource] = load_maps(
            [m for m in config.maps if m.match in RCPT_MATCHES]) if p.maps else {}
        self.limits = [parse_limit(k, v) for k, v in config.ratelimit.limits.items()] \
            if p.ratelimit else []
        self.limit_exempt = NetworkTable()
        _listed(self.limit_exempt, config.ratelimit.exempt_networks, "exempt_networks")
        self.rbls = [r for r in config.rbl.lists if r.type == "ip" and "client_ip" in r.match
                     ] if p.rbl and config.dns.enabled else []
        self._rbl_errors = [{ipaddress.ip_address(c) for c in r.error_codes}
                            for r in self.rbls]

    def close(self) -> None:
        # Work queued there still runs: a request under way when a reload came gets its
        # answer from the settings it started with.
        self.store_thread.shutdown(wait=False)

    # --- the store, from its thread only ---
    def store(self) -> Storage:
        if self._store is None:
            self._store = self._open_store()
        return self._store

    async def in_store_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self.store_thread, fn, *args)
        except StorageError as exc:
            raise StoreDown(str(exc)) from exc

    # --- the request ---
    async def decide(self, attrs: dict[str, str], conn: Connection) -> str:
        conn.trim()
        p = self.config.policy_service
        if self.maps:
            answer = await self.in_store_thread(self._maps, attrs)
            if answer != DUNNO:
                return answer
        if self.rbls:
            answer = await self._rbl(attrs)
            if answer != DUNNO:
                return answer
        spf: SpfAnswer | None = None
        if self.spf is not None and not self._own_client(attrs):
            spf = await self.spf.check(attrs, conn.spf_instances)
            if spf.action.split(" ", 1)[0].lower() not in ("dunno", "prepend"):
                return spf.action
        grey_answer = DUNNO
        try:
            if self.limits:
                answer = await self.in_store_thread(self._ratelimit, attrs, conn)
                if answer != DUNNO:
                    return answer
            if p.greylist and attrs.get("protocol_state", "RCPT").upper() == "RCPT":
                grey_answer = await self._greylist(attrs, conn)
                if not grey_answer.upper().startswith(("DUNNO", "PREPEND")):
                    return grey_answer
            if spf is not None and spf.result:
                prepended = spf.prepends and not grey_answer.upper().startswith("PREPEND")
                written = self._spf_written.key(attrs, spf, prepended)
                if self._spf_written.due(written):
                    await self.in_store_thread(self._remember_spf, attrs, spf, prepended)
                    self._spf_written.done(written)
        except StoreDown as exc:
            self.faults.report("policy store", "policy service: store unavailable, answering "
                               f"{self.store_down}", exc)
            if self.store_down.upper() != DUNNO:
                return self.store_down
        if grey_answer.upper().startswith("PREPEND"):
            return grey_answer
        if spf is not None:
            return spf.action  # policyd-spf's very words, "dunno" included
        return DUNNO

    def _own_client(self, attrs: dict[str, str]) -> bool:
        """SASL users and milter.trusted_networks: our own mail, judged by nobody here."""
        return bool(attrs.get("sasl_username")) or attrs.get("client_address") in self.trusted

    # --- greylisting ---
    def _grey_whitelisted(self, attrs: dict[str, str]) -> str:
        """Why this request is not greylisted, or ""."""
        ip, name = attrs.get("client_address", ""), attrs.get("client_name", "")
        if self._own_client(attrs):
            return "trusted client"
        if name == "unknown":
            name = ""
        if self.clients.matches(ip, name) or (ip and self.grey_networks.lookup(ip)) or \
                (name and self.grey_hosts.lookup(name)):
            return "client whitelist"
        if self.recipients.matches(attrs.get("recipient", "")):
            return "recipient whitelist"
        domain = attrs.get("sender", "").rpartition("@")[2]
        if domain and self.grey_senders.lookup(domain):
            return "sender whitelist"
        return ""

    async def _greylist(self, attrs: dict[str, str], conn: Connection) -> str:
        g = self.config.greylist
        recipient = attrs.get("recipient", "")
        network = client_network(attrs.get("client_address", ""), g.ipv4_mask, g.ipv6_mask)
        if network is None or not recipient:
            return DUNNO
        why = self._grey_whitelisted(attrs)
        if why:
            self._log("pass", why, attrs)
            return DUNNO
        triplet = Triplet.make(network, attrs.get("sender"), recipient)
        return str(await self.in_store_thread(self._judge, triplet, attrs, conn))

    def _judge(self, triplet: Triplet, attrs: dict[str, str], conn: Connection) -> str:
        greylister = Greylister(self.store(), self.timing, self.clock)
        ip = attrs.get("client_address", "").strip("[]")
        passes = self.config.policy_service.auto_whitelist_clients
        if greylister.auto_whitelisted(ip, passes):
            self._log("pass", "client AWL", attrs)
            return DUNNO
        judged = greylister.judge(triplet)
        if judged.state == GREYLISTED:
            self._log("greylist", "new" if judged.left >= self.timing.delay else
                      f"early-retry ({judged.left:.0f}s missing)", attrs)
            text = self.config.policy_service.greylist_text.format(
                domain=triplet.rcpt.rpartition("@")[2], sender=triplet.sender,
                recipient=triplet.rcpt, ip=ip, zone="", seconds=round(judged.left))
            return f"DEFER_IF_PERMIT {text}"
        if judged.waited is None:
            self._log("pass", "triplet found", attrs)
            return DUNNO
        if passes:
            greylister.count_pass(ip)
        instance = attrs.get("instance", "")
        self._log("pass", f"triplet found, delay={judged.waited:.0f}", attrs)
        if instance and instance in conn.prepended:
            return DUNNO
        conn.prepended.add(instance)
        date = email.utils.formatdate(localtime=True)
        return (f"PREPEND X-Greylist: delayed {judged.waited:.0f} seconds by "
                f"pyspamd-{__version__} at {self.host}; {date}")

    @staticmethod
    def _log(action: str, reason: str, attrs: dict[str, str]) -> None:
        # postgrey's line, which log summaries (pflogsumm, postgreyreport) look for.
        log.info("action=%s, reason=%s, client_name=%s, client_address=%s, sender=%s, "
                 "recipient=%s", action, reason, attrs.get("client_name", ""),
                 attrs.get("client_address", ""), attrs.get("sender", ""),
                 attrs.get("recipient", ""))

    # --- SPF for the milter ---
    def _remember_spf(self, attrs: dict[str, str], spf: SpfAnswer, prepended: bool) -> None:
        """The result for the milter (pyspamd.auth.spf_cache)."""
        sender = attrs.get("sender", "")
        helo = attrs.get("helo_name", "")
        domain = sender.rpartition("@")[2] if spf.identity == "mailfrom" else helo
        result = SpfResult(spf.result, spf.explanation, spf.identity or "mailfrom", domain,
                           sender or f"postmaster@{helo}", spf.header)
        remember(self.store(), attrs.get("client_address", ""), helo, sender, result,
                 prepended)

    # --- rate limits ---
    def _ratelimit(self, attrs: dict[str, str], conn: Connection) -> str:
        ip = attrs.get("client_address", "")
        if ip and self.limit_exempt.lookup(ip) is not None:
            return DUNNO
        instance = attrs.get("instance", "")
        first = instance not in conn.counted
        conn.counted.add(instance)
        env = Envelope(client_ip=ip or None, mail_from=attrs.get("sender"),
                       rcpts=(attrs.get("recipient", ""),) if attrs.get("recipient") else (),
                       user=attrs.get("sasl_username") or None)
        now = self.clock()
        for limit in self.limits:
            # One message counts once against the client, user and sender, however many
            # recipients it has: only its first RCPT request draws from those buckets.
            if limit.key_type != "rcpt" and not first:
                continue
            for key, shown in bucket_keys(limit, env):
                taken, _ = self.store().take_token(key, limit.count, limit.rate, now)
                if not taken:
                    period = limit.text.split("/", 1)[1].strip()
                    log.info("rate limit %s exceeded %s %s", limit.text,
                             NOUNS[limit.key_type], shown)
                    return (f"DEFER_IF_PERMIT 4.7.1 Rate limit exceeded: {limit.count} "
                            f"messages per {period} {NOUNS[limit.key_type]} {shown}")
        return DUNNO

    # --- maps ---
    def _maps(self, attrs: dict[str, str]) -> str:
        for name, source in self.maps.items():
            config = source.config
            value = attrs.get(RCPT_MATCHES[config.match], "")
            if not value:
                continue
            if config.type == "domain" and config.match in ("envelope_from", "rcpt"):
                value = value.rpartition("@")[2]
            table = source.table()
            try:
                found = table.lookup(value) if len(table) else None
            except MapUnavailable as exc:
                if config.ldap.fail_open:
                    self.faults.report(f"map {name}", f"map {name} skipped", exc,
                                       logging.WARNING)
                    continue
                return f"DEFER_IF_PERMIT 4.3.0 Temporary failure checking {name}"
            if found is None or found[1].stop:
                continue
            key, entry = found
            answer = self._map_answer(entry, config.action, entry.text or config.message)
            log.info("map %s: %s matched %s: %s -> %s", name, key, config.match,
                     entry.describe(), answer)
            if answer != DUNNO:
                return answer
        return DUNNO

    @staticmethod
    def _map_answer(entry: Entry, configured: str, text: str) -> str:
        if entry.verb:
            verb = "OK" if entry.verb == "PERMIT" else entry.verb
            return f"{verb} {text}".strip()
        action = _MAP_ACTIONS.get(configured)
        if action is None:
            return DUNNO  # scored, or a content action: the milter's to apply
        return action if action == "OK" else f"{action} {text}".strip()

    # --- DNSBL ---
    async def _rbl(self, attrs: dict[str, str]) -> str:
        ip = attrs.get("client_address", "")
        if not ip or attrs.get("sasl_username") or not worth_looking_up(ip) \
                or ip in self.trusted:
            return DUNNO
        reverse = reversed_ip(ip)
        if reverse is None:
            return DUNNO
        lookups = self.resolver.for_message(self.config.policy_service.request_timeout)
        asked = [(rbl, errors) for rbl, errors in zip(self.rbls, self._rbl_errors, strict=True)
                 if rbl.ipv6 or ":" not in ip]
        answers = await asyncio.gather(
            *(lookups.query(f"{reverse}.{rbl.zone.strip('.')}", "A") for rbl, _ in asked),
            return_exceptions=True)
        for (rbl, errors), answer in zip(asked, answers, strict=True):
            if isinstance(answer, DnsError):
                continue  # a list that does not answer lists no one
            if isinstance(answer, BaseException):
                raise answer
            for record in answer.records:
                try:
                    code = ipaddress.ip_address(record)
                except ValueError:
                    continue
                if code in errors or code.version != 4 or not code.is_loopback:
                    continue
                text = self.config.policy_service.rbl_reject_message.format(
                    ip=ip, zone=rbl.zone, domain="", sender="", recipient="", seconds=0)
                log.info("rbl %s: client %s listed (%s)", rbl.name, ip, code)
                return f"REJECT {text}"
        return DUNNO
