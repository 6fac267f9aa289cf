"""The DNS layer on its own: the cache's TTLs and bound, failover between nameservers,
the per-message budget, and shared in-flight lookups, against the lab's resolver."""

from __future__ import annotations

import asyncio
import time

import pytest
from support.network_lab import SBL_IP, Lab

from pyspamd.config import DnsConfig
from pyspamd.dns import DnsServerFailure, DnsTimeout, Resolver
from pyspamd.dns.cache import TtlCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_cache_expires_entries_at_their_ttl() -> None:
    clock = Clock()
    cache: TtlCache[str, str] = TtlCache(10, clock)
    cache.put("a", "1", ttl=30)
    cache.put("b", "2", ttl=0)  # a TTL of 0 means "do not keep"
    clock.now += 29.9
    assert cache.get("a") == "1" and cache.get("b") is None
    clock.now += 0.2
    assert cache.get("a") is None and len(cache) == 0


def test_cache_is_bounded_least_recently_used_first() -> None:
    cache: TtlCache[int, int] = TtlCache(3)
    for key in range(3):
        cache.put(key, key, ttl=60)
    assert cache.get(0) == 0  # 0 is now the most recently used
    cache.put(3, 3, ttl=60)
    assert len(cache) == 3 and cache.get(1) is None
    assert [cache.get(k) for k in (0, 2, 3)] == [0, 2, 3]


def _resolver(*servers: str, timeout: float = 1.0, retries: int = 0) -> Resolver:
    return Resolver(DnsConfig(enabled=True, nameservers=list(servers), timeout=timeout,
                              retries=retries, budget=3.0))


def _zen(ip: str) -> str:
    return ".".join(reversed(ip.split("."))) + ".zen.spamhaus.org"


def test_answers_negative_answers_and_their_ttls(lab: Lab) -> None:
    resolver = _resolver(lab.server.nameserver)
    listed = asyncio.run(resolver.query(_zen(SBL_IP), "A"))
    assert listed.exists and listed.records == ("127.0.0.2",)
    missing = asyncio.run(resolver.query(_zen("192.0.2.200"), "A"))
    assert not missing.exists and not missing.found
    nodata = asyncio.run(resolver.query("example.test", "AAAA"))
    assert nodata.exists and not nodata.found
    txt = asyncio.run(resolver.query("sel._domainkey.example.test", "TXT"))
    assert txt.records[0].startswith("v=DKIM1; k=rsa; p=") and len(txt.records[0]) > 300
    mx = asyncio.run(resolver.query("nullmx.example.test", "MX"))
    assert mx.records == ("0 .",)
    sent = resolver.stats.queries
    for name, rdtype in ((_zen(SBL_IP), "A"), (_zen("192.0.2.200"), "A"),
                         ("example.test", "AAAA")):
        asyncio.run(resolver.query(name, rdtype))
    assert resolver.stats.queries == sent and resolver.stats.cache_hits == 3
    # the negative answer is kept no longer than the zone's SOA says (300 s in the lab)
    expires, _ = resolver.cache._items[(_zen("192.0.2.200"), "A")]
    assert 0 < expires - time.monotonic() <= 300


def test_failover_to_the_next_nameserver(lab: Lab) -> None:
    resolver = _resolver(lab.server.dead_nameserver, lab.server.nameserver, timeout=0.3)
    start = time.monotonic()
    answer = asyncio.run(resolver.query(_zen(SBL_IP), "A"))
    assert answer.records == ("127.0.0.2",)
    assert 0.3 <= time.monotonic() - start < 1.5
    assert resolver.stats.timeouts == 0  # it was answered in the end


def test_timeout_servfail_and_bad_names(lab: Lab) -> None:
    resolver = _resolver(lab.server.nameserver, timeout=0.3, retries=1)
    start = time.monotonic()
    with pytest.raises(DnsTimeout):
        asyncio.run(resolver.query("a.timeout.test", "A"))
    assert 0.6 <= time.monotonic() - start < 1.5  # two tries of 0.3 s
    with pytest.raises(DnsServerFailure, match="SERVFAIL"):
        asyncio.run(resolver.query("a.servfail.test", "A"))
    with pytest.raises(DnsServerFailure, match="not a valid DNS name"):
        asyncio.run(resolver.query("x" * 70 + ".example.test", "A"))
    # a name that cannot be asked is bad input, not a DNS failure: not counted
    assert resolver.stats.timeouts == 1 and resolver.stats.failures == 1


def test_message_budget_bounds_all_lookups_and_shares_them(lab: Lab) -> None:
    resolver = _resolver(lab.server.nameserver, timeout=5.0)

    async def one_message() -> tuple[float, list[object]]:
        lookups = resolver.for_message(budget=0.5)
        start = time.monotonic()
        results = await asyncio.gather(
            lookups.query("a.timeout.test", "A"), lookups.query("b.timeout.test", "TXT"),
            lookups.query(_zen(SBL_IP), "A"), lookups.query(_zen(SBL_IP), "A"),
            return_exceptions=True)
        return time.monotonic() - start, list(results)

    elapsed, results = asyncio.run(one_message())
    assert elapsed < 1.0  # the 5 s per-query timeout gave way to the 0.5 s budget
    assert isinstance(results[0], DnsTimeout) and isinstance(results[1], DnsTimeout)
    assert results[2] == results[3]
    assert resolver.stats.queries == 3  # the same name twice went out once
