"""DNS blocklists: the client address (and optionally Received hops) against IP lists such
as Spamhaus ZEN and SpamCop, URL domains, HELO and From domains against domain lists such
as Spamhaus DBL, SURBL or URIBL (`[[rbl.lists]]`).

A listing answers with an address in 127.0.0.0/8 whose value says why; each configured
return code has its symbol. Some answers are not listings at all: Spamhaus says
127.255.255.254 to queries that came through a public resolver and 127.255.255.255 when
over quota. Those give RBL_ERROR (no score) and a warning to the admin, never spam points.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Callable, Coroutine, Iterator

from pyspamd.checks.base import Check
from pyspamd.checks.rbl_settings import RblListConfig
from pyspamd.config import Config
from pyspamd.dns import DnsServerFailure, DnsTimeout, MessageDns, Resolver, message_dns
from pyspamd.dns.domains import normalize_domain, registrable_domain
from pyspamd.services import Services
from pyspamd.storage.base import StateStore
from pyspamd.symbols import Hits, SymbolDef
from pyspamd.task import Task

log = logging.getLogger("pyspamd.rbl")

# Scores of the default lists' symbols; other lists' symbols score 0 unless [scores] says.
DEFAULT_SCORES = {
    "RBL_SPAMHAUS": 2.0, "RBL_SPAMHAUS_SBL": 4.0, "RBL_SPAMHAUS_XBL": 4.0,
    "RBL_SPAMHAUS_PBL": 2.0, "RBL_SPAMCOP": 2.0, "DBL_SPAMHAUS": 2.0,
    "DBL_SPAMHAUS_SPAM": 5.0, "DBL_SPAMHAUS_PHISH": 6.0, "DBL_SPAMHAUS_MALWARE": 6.0,
    "DBL_SPAMHAUS_ABUSED": 2.5,
}
DNS_SYMBOLS = {
    "DNS_TIMEOUT": SymbolDef(0.0, "A DNS lookup got no answer within its time; not scored"),
    "DNS_FAIL": SymbolDef(0.0, "A DNS lookup failed (SERVFAIL, refused); not scored"),
}
# Addresses no public list knows: looking them up only leaks them.
_LOCAL_NETS = [ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")]
# A list's refusal answers are said once a day, by whichever worker (or host sharing the
# store) meets one first: every message from then on would only repeat it.
_WARN_INTERVAL = 86400.0
_WARNED_KEY = "rbl:refused:"


def reversed_ip(address: str) -> str | None:
    """4.3.2.1 for 1.2.3.4; 32 nibbles, lowest first, for IPv6; None if not an address."""
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return None
    if ip.version == 4:
        return ".".join(reversed(str(ip).split(".")))
    return ".".join(reversed(ip.exploded.replace(":", "")))


def worth_looking_up(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast:
        return False
    return not any(ip.version == net.version and ip in net for net in _LOCAL_NETS)


class RblCheck(Check):
    name = "rbl"
    is_async = True

    @classmethod
    def build(cls, config: Config, services: Services) -> RblCheck | None:
        if config.dns.enabled and config.rbl.lists:
            return cls(config, services.resolver, services.storage_opener(writes=True))
        return None

    def __init__(self, config: Config, resolver: Resolver,
                 storage: Callable[[], StateStore]) -> None:
        self.lists = config.rbl.lists
        self.max_domains = config.rbl.max_domains
        self.max_received = config.rbl.max_received
        self.resolver = resolver
        self.storage = storage  # the process's store: who warns first (_first_to_warn)
        symbols: dict[str, SymbolDef] = {
            "RBL_ERROR": SymbolDef(0.0, "A blocklist refused the query (public resolver or "
                                        "over quota): not a listing"),
            **DNS_SYMBOLS,
        }
        for rbl in self.lists:
            for symbol in [rbl.symbol, *rbl.returncodes]:
                if symbol:
                    symbols[symbol] = SymbolDef(DEFAULT_SCORES.get(symbol, 0.0),
                                                f"Listed in {rbl.zone}")
        self.symbols = symbols  # type: ignore[misc]  # per instance: the config names them
        self._codes = [{ipaddress.ip_address(code): symbol
                        for symbol, codes in rbl.returncodes.items() for code in codes}
                       for rbl in self.lists]
        self._errors = [{ipaddress.ip_address(c) for c in rbl.error_codes} for rbl in self.lists]
        self._warned: dict[str, float] = {}

    def run(self, task: Task, hits: Hits) -> Coroutine[None, None, None] | None:
        jobs = [(index, query, item) for index, rbl in enumerate(self.lists)
                for query, item in self._queries(rbl, task)]
        if not jobs:
            return None
        lookups = message_dns(task, self.resolver)
        return self._run(jobs, lookups, task, hits)

    async def _run(self, jobs: list[tuple[int, str, str]], lookups: MessageDns, task: Task,
                   hits: Hits) -> None:
        await asyncio.gather(*(self._one(i, query, item, lookups, task, hits)
                               for i, query, item in jobs))

    def _queries(self, rbl: RblListConfig, task: Task) -> Iterator[tuple[str, str]]:
        """(DNS name to ask, what it stands for) for one list and one message."""
        zone = rbl.zone.strip(".")
        seen: set[str] = set()
        for item in self._items(rbl, task):
            if item in seen:
                continue
            seen.add(item)
            if rbl.type == "ip":
                if not rbl.ipv6 and ":" in item:
                    continue
                reverse = reversed_ip(item)
                if reverse:
                    yield f"{reverse}.{zone}", item
            else:
                yield f"{item}.{zone}", item

    def _items(self, rbl: RblListConfig, task: Task) -> Iterator[str]:
        for match in rbl.match:
            yield from TARGETS[match](self, rbl, task)

    def _received(self, rbl: RblListConfig, task: Task) -> Iterator[str]:
        hops = [h.ip for h in task.received
                if h.ip and h.ip != task.envelope.client_ip and worth_looking_up(h.ip)]
        return iter(list(dict.fromkeys(hops))[: self.max_received])

    def _urls(self, rbl: RblListConfig, task: Task) -> Iterator[str]:
        domains = dict.fromkeys(d for url in task.urls if not url.is_ip
                                if (d := registrable_domain(url.host)))
        if len(domains) > self.max_domains:
            log.debug("rbl %s: %d URL domains, looking up the first %d", rbl.name,
                      len(domains), self.max_domains)
        return iter(list(domains)[: self.max_domains])

    async def _one(self, index: int, query: str, item: str, lookups: MessageDns, task: Task,
                   hits: Hits) -> None:
        rbl = self.lists[index]
        try:
            answer = await lookups.query(query, "A")
        except DnsTimeout:
            hits.add("DNS_TIMEOUT", rbl.name)
            return
        except DnsServerFailure:
            hits.add("DNS_FAIL", rbl.name)
            return
        for record in answer.records:
            try:
                code = ipaddress.ip_address(record)
            except ValueError:
                continue
            if code in self._errors[index]:
                hits.add("RBL_ERROR", rbl.name)
                self._warn(rbl, str(code))
                continue
            if code.version != 4 or not code.is_loopback:
                # Not a listing: a resolver that rewrites NXDOMAIN to an ad server does this.
                log.debug("rbl %s: ignoring answer %s for %s", rbl.name, code, query)
                continue
            symbol = self._codes[index].get(code) or rbl.symbol
            if not symbol:
                continue
            if task.envelope.user and symbol in rbl.skip_authenticated:
                continue
            hits.add(symbol, item)

    def _first_to_warn(self, key: str) -> bool:
        """True for the first process to meet this refusal today: a counter with a TTL in
        the shared store. Without a store every worker says it once."""
        try:
            return self.storage().incr(key, ttl=_WARN_INTERVAL) == 1
        except Exception:  # the warning must not cost the scan
            return True

    def _warn(self, rbl: RblListConfig, code: str) -> None:
        now = time.monotonic()
        if now - self._warned.get(rbl.name, -_WARN_INTERVAL) < _WARN_INTERVAL:
            return
        self._warned[rbl.name] = now
        if not self._first_to_warn(f"{_WARNED_KEY}{rbl.name}:{code}"):
            return
        log.warning(
            "rbl %s: %s answered %s, which is an error, not a listing: the list refuses "
            "queries that come through a public or shared resolver (or over its free quota). "
            "Run a local caching resolver (unbound, or bind9 with recursion) that queries the "
            "list's servers directly and set [dns] nameservers to it; until then %s gives no "
            "score.", rbl.name, rbl.zone, code, rbl.zone)


def _dotted(*domains: str | None) -> Iterator[str]:
    """Names worth asking a domain list about: normalised, with a dot in them."""
    for domain in domains:
        name = normalize_domain(domain or "")
        if "." in name:
            yield name


def _client_ip(check: RblCheck, rbl: RblListConfig, task: Task) -> Iterator[str]:
    ip = task.envelope.client_ip
    if ip and worth_looking_up(ip):
        yield ip


def _from(check: RblCheck, rbl: RblListConfig, task: Task) -> Iterator[str]:
    return _dotted(*(a.rpartition("@")[2] for _, a in task.headers.addresses("from")[:1]))


def _envelope_from(check: RblCheck, rbl: RblListConfig, task: Task) -> Iterator[str]:
    sender = task.envelope.mail_from
    return _dotted(sender.rpartition("@")[2]) if sender else iter(())


# What each `match` of a list (rbl_settings.RBL_MATCHES names them all) looks up.
TARGETS: dict[str, Callable[[RblCheck, RblListConfig, Task], Iterator[str]]] = {
    "client_ip": _client_ip,
    "received": RblCheck._received,
    "urls": RblCheck._urls,
    "helo": lambda check, rbl, task: _dotted(task.envelope.helo),
    "from": _from,
    "envelope_from": _envelope_from,
}
