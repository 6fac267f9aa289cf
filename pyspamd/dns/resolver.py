"""The stub resolver every network check uses: dnspython's asyncio queries, our own cache.

One Resolver per worker process holds the nameservers, the cache and the counters. Each
message gets a MessageDns: its lookups share one deadline (`[dns] budget`), identical
lookups made at the same time by two checks go out once, and what timed out or failed is
recorded, so the checks can say so in a symbol instead of scoring a guess.

Queries are sent to the nameservers directly (not through dnspython's Resolver) so that
negative answers are cached for their SOA's negative TTL: most blocklist lookups are "not
listed", and those are the answers worth keeping.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from pyspamd.dns.cache import TtlCache
from pyspamd.dns.nameservers import parse_nameserver, system_nameservers
from pyspamd.dns_settings import DnsConfig
from pyspamd.stats.recorder import count_event

log = logging.getLogger("pyspamd.dns")

SUPPORTED_TYPES = ("A", "AAAA", "TXT", "MX", "PTR", "CNAME", "NS", "SOA")
# Queries in a row that no nameserver answered at all before the first nameserver is asked
# for localhost (pyspamd/dns/probe.py), which a live resolver answers at once, whatever its
# upstreams do. Silent to that too, it counts as down: lookups fail at once (DNS_TIMEOUT)
# instead of each message waiting out its budget, and one query every SILENT_RETRY seconds
# goes out to see whether it is back.
SILENT_AFTER = 3
SILENT_RETRY = 30.0


class DnsError(Exception):
    """A lookup that got no usable answer; never the same as "no such name"."""


class DnsTimeout(DnsError):
    pass


class DnsServerFailure(DnsError):
    """SERVFAIL, REFUSED or another error code from every nameserver, or a broken reply."""


@dataclass(frozen=True, slots=True)
class Answer:
    name: str
    rdtype: str
    exists: bool  # False: NXDOMAIN
    records: tuple[str, ...] = ()  # empty with exists: the name has no record of this type

    @property
    def found(self) -> bool:
        return bool(self.records)


@dataclass
class DnsStats:
    """Counters of one worker's resolver (bench/scan.py and the tests read them). Each count
    also goes to the process's scan statistics as event dns_<name>, which the controller sums
    over all workers for /stat and /metrics."""

    queries: int = 0  # sent to a nameserver (cache misses)
    cache_hits: int = 0
    timeouts: int = 0
    failures: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def count(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)
        count_event(f"dns_{name}")

    def snapshot(self) -> dict[str, int]:
        return {"queries": self.queries, "cache_hits": self.cache_hits,
                "timeouts": self.timeouts, "failures": self.failures}


def _record_text(rdtype: str, rdata: object) -> str:
    if rdtype == "TXT":
        # Character-strings of one record are one value (RFC 7208 3.3, RFC 6376 3.6.2.2).
        # surrogateescape keeps stray bytes as they were for the parsers that check them.
        return b"".join(rdata.strings).decode("utf-8", "surrogateescape")  # type: ignore[attr-defined]
    if rdtype == "MX":
        exchange = rdata.exchange.to_text()  # type: ignore[attr-defined]
        return f"{rdata.preference} {exchange.rstrip('.') or '.'}"  # type: ignore[attr-defined]
    if rdtype in ("PTR", "CNAME", "NS"):
        return rdata.target.to_text(omit_final_dot=True)  # type: ignore[attr-defined]
    return rdata.to_text()  # type: ignore[attr-defined]


class Resolver:
    def __init__(self, config: DnsConfig) -> None:
        self.servers = ([parse_nameserver(s) for s in config.nameservers]
                        or system_nameservers())
        self.timeout = config.timeout
        self.tries = config.retries + 1
        self.budget = config.budget
        self.max_ttl = config.max_ttl
        self.negative_ttl = config.negative_ttl
        self.cache: TtlCache[tuple[str, str], Answer] = TtlCache(config.cache_size)
        self.stats = DnsStats()
        self._unanswered = 0  # queries in a row that got no reply from any nameserver
        self._retry_at = 0.0  # while silent: when the next query may go out
        self._silence_lock = threading.Lock()

    def _skip_silent(self) -> bool:
        """True when the nameservers count as silent and this query is not the one that
        tries them again."""
        with self._silence_lock:
            if self._unanswered < SILENT_AFTER:
                return False
            now = time.monotonic()
            if now < self._retry_at:
                return True
            self._retry_at = now + SILENT_RETRY
            return False

    def _heard(self) -> None:
        with self._silence_lock:
            if self._unanswered >= SILENT_AFTER:
                log.info("DNS: %s answers again; lookups resume", self._where())
            self._unanswered = 0

    async def _missed(self) -> None:
        with self._silence_lock:
            self._unanswered += 1
            if self._unanswered != SILENT_AFTER:
                return
        from pyspamd.dns.probe import probe_async

        why = await probe_async(*self.servers[0])
        if why is None:  # it answers: those names were slow upstream, not the resolver
            with self._silence_lock:
                self._unanswered = 0
            return
        with self._silence_lock:
            self._retry_at = time.monotonic() + SILENT_RETRY
        log.warning("DNS: %s did not answer %d queries in a row, nor a query for localhost "
                    "(%s); lookups are skipped (DNS_TIMEOUT) and it is asked again every %gs",
                    self._where(), SILENT_AFTER, why, SILENT_RETRY)

    def _where(self) -> str:
        return ", ".join(f"{h}:{p}" for h, p in self.servers)

    def for_message(self, budget: float | None = None) -> MessageDns:
        return MessageDns(self, self.budget if budget is None else budget)

    async def query(self, name: str, rdtype: str, deadline: float | None = None) -> Answer:
        """Look `name` up; raises DnsTimeout or DnsServerFailure when no answer came."""
        if rdtype not in SUPPORTED_TYPES:
            raise ValueError(f"unsupported record type {rdtype}")
        key = (name.lower().rstrip("."), rdtype)
        cached = self.cache.get(key)
        if cached is not None:
            self.stats.count("cache_hits")
            return cached
        try:
            qname = dns.name.from_text(key[0])
        except dns.exception.DNSException as exc:  # too long, empty label, ...
            raise DnsServerFailure(f"{name!r} is not a valid DNS name: {exc}") from None
        if self._skip_silent():
            self.stats.count("timeouts")
            raise DnsTimeout(f"{key[0]}/{rdtype}: not asked, {self._where()} did not answer "
                             "the last queries")
        self.stats.count("queries")
        # EDNS with a 1232-octet payload: DKIM keys fit in UDP, no TCP retry (DNS flag day 2020)
        request = dns.message.make_query(qname, rdtype, use_edns=0, payload=1232)
        problems: list[str] = []
        timed_out = waited = False  # waited: a query went out and its wait ran out
        for attempt in range(self.tries * len(self.servers)):
            host, port = self.servers[attempt % len(self.servers)]
            wait = self.timeout
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
            if wait <= 0:
                timed_out = True
                break
            try:
                response = await dns.asyncquery.udp(request, host, timeout=wait, port=port,
                                                    ignore_unexpected=True)
                if response.flags & dns.flags.TC:
                    response = await dns.asyncquery.tcp(request, host, timeout=wait, port=port)
            except dns.exception.Timeout:
                timed_out = waited = True
                continue
            except (OSError, dns.exception.DNSException, ValueError) as exc:
                problems.append(f"{host}:{port}: {type(exc).__name__}: {exc}")
                continue
            self._heard()
            answer, ttl, problem = self._read(key[0], qname, rdtype, response)
            if answer is None:
                problems.append(f"{host}:{port}: {problem}")
                continue
            self.cache.put(key, answer, ttl)
            return answer
        if timed_out and not problems:
            if waited:
                await self._missed()
            self.stats.count("timeouts")
            raise DnsTimeout(f"{key[0]}/{rdtype}: no answer from "
                             f"{', '.join(f'{h}:{p}' for h, p in self.servers)}")
        self.stats.count("failures")
        raise DnsServerFailure(f"{key[0]}/{rdtype}: {'; '.join(problems) or 'timed out'}")

    def _read(self, key: str, qname: dns.name.Name, rdtype: str,
              response: dns.message.Message) -> tuple[Answer | None, float, str]:
        rcode = response.rcode()
        if rcode == dns.rcode.NXDOMAIN:
            return Answer(key, rdtype, False), self._negative_ttl(response), ""
        if rcode != dns.rcode.NOERROR:
            return None, 0, dns.rcode.to_text(rcode)
        wanted = dns.rdatatype.from_text(rdtype)
        current, ttl = qname, float(self.max_ttl)
        for _ in range(10):  # a CNAME chain longer than this is a loop
            rrset = response.get_rrset(response.answer, current, dns.rdataclass.IN, wanted)
            if rrset is not None:
                records = tuple(_record_text(rdtype, r) for r in rrset)
                return Answer(key, rdtype, True, records), min(ttl, rrset.ttl), ""
            alias = response.get_rrset(response.answer, current, dns.rdataclass.IN,
                                       dns.rdatatype.CNAME)
            if alias is None or wanted == dns.rdatatype.CNAME:
                break
            ttl = min(ttl, alias.ttl)
            current = alias[0].target
        return Answer(key, rdtype, True), min(ttl, self._negative_ttl(response)), ""

    def _negative_ttl(self, response: dns.message.Message) -> float:
        # RFC 2308 5: the SOA's own TTL or its MINIMUM, whichever is less. No SOA: not cached.
        for rrset in response.authority:
            if rrset.rdtype == dns.rdatatype.SOA:
                return float(min(rrset.ttl, rrset[0].minimum, self.negative_ttl))
        return 0.0


class MessageDns:
    """The lookups of one message: one deadline, shared in-flight queries, what went wrong."""

    def __init__(self, resolver: Resolver, budget: float) -> None:
        self.resolver = resolver
        self.deadline = time.monotonic() + budget
        self.budget = budget
        self.timeouts: list[str] = []
        self.failures: list[str] = []
        self._inflight: dict[tuple[str, str], asyncio.Task[Answer]] = {}

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    async def query(self, name: str, rdtype: str) -> Answer:
        key = (name.lower().rstrip("."), rdtype)
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self.resolver.query(name, rdtype, self.deadline))
            self._inflight[key] = task
        try:
            return await asyncio.shield(task)
        except DnsTimeout as exc:
            self.timeouts.append(str(exc))
            raise
        except DnsServerFailure as exc:
            self.failures.append(str(exc))
            raise

    def blocking_query(self, loop: asyncio.AbstractEventLoop, name: str,
                       rdtype: str) -> Answer:
        """From a helper thread (pyspf is synchronous): the same lookup, run on `loop`."""
        # A cached answer is read here: the cache is thread-safe, and a trip through the
        # loop and back costs more than the SPF evaluation it serves.
        cached = self.resolver.cache.get((name.lower().rstrip("."), rdtype))
        if cached is not None:
            self.resolver.stats.count("cache_hits")
            return cached
        lookup = self.query(name, rdtype)
        try:
            future = asyncio.run_coroutine_threadsafe(lookup, loop)
        except RuntimeError:  # the message's loop is gone: its scan ended without us
            lookup.close()
            raise DnsTimeout(f"{name}/{rdtype}: the message's scan has ended") from None
        try:
            return future.result(timeout=self.remaining() + 1.0)
        except TimeoutError:
            future.cancel()
            raise DnsTimeout(f"{name}/{rdtype}: the message's DNS budget of "
                             f"{self.budget:.1f}s ran out") from None
