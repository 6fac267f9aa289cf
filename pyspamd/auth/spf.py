"""SPF (RFC 7208) with pyspf, its DNS routed through our resolver.

pyspf is synchronous and looks names up through its module-level DNSLookup. It runs in a
helper thread per message; our DNSLookup finds that thread's MessageDns and event loop in
a thread-local and runs each lookup on the loop, so SPF shares the message's cache, budget
and counters with the other checks, and the loop keeps serving them meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import spf

from pyspamd.dns import DnsError, DnsTimeout, MessageDns

_local = threading.local()
_pyspf_lookup = spf.DNSLookup


def _lookup(name: str, qtype: str, strict: Any = True, timeout: float = 20) -> list[Any]:
    bound: tuple[MessageDns, asyncio.AbstractEventLoop] | None = getattr(_local, "dns", None)
    if bound is None:  # pyspf used outside a scan (not by pyspamd): its own resolver
        return _pyspf_lookup(name, qtype, strict, timeout)
    lookups, loop = bound
    if qtype not in ("A", "AAAA", "TXT", "MX", "PTR"):
        return []  # the obsolete SPF type 99: RFC 7208 says TXT only
    try:
        answer = lookups.blocking_query(loop, name, qtype)
    except DnsTimeout as exc:
        _local.timed_out = True
        raise spf.TempError(f"DNS timeout: {exc}") from None
    except DnsError as exc:
        raise spf.TempError(f"DNS error: {exc}") from None
    out: list[Any] = []
    for record in answer.records:
        if qtype == "TXT":
            out.append(((name, qtype), [record.encode("utf-8", "surrogateescape")]))
        elif qtype == "MX":
            preference, _, exchange = record.partition(" ")
            out.append(((name, qtype), (int(preference), exchange)))
        else:
            out.append(((name, qtype), record))
    return out


spf.DNSLookup = _lookup

# pyspf's threads, kept for the worker's life: a thread started per message (asyncio's
# default executor lives only as long as the message's event loop) cost more than the SPF
# check itself. Rebuilt in a forked child, where the parent's threads do not exist.
_POOL_SIZE = 16
_pool: tuple[int, ThreadPoolExecutor] | None = None
_pool_lock = threading.Lock()


def executor() -> ThreadPoolExecutor:
    """The process's pyspf threads (the policy service runs spf-engine on them too)."""
    return _executor()


@contextlib.contextmanager
def bound_dns(lookups: MessageDns, loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """pyspf's lookups in this thread, while inside, go to `lookups` through `loop`."""
    _local.dns = (lookups, loop)
    _local.timed_out = False
    try:
        yield
    finally:
        _local.dns = None


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid():
            _pool = (os.getpid(), ThreadPoolExecutor(_POOL_SIZE, thread_name_prefix="spf"))
        return _pool[1]


@dataclass(frozen=True, slots=True)
class SpfResult:
    result: str  # pass, fail, softfail, neutral, none, temperror, permerror
    explanation: str
    identity: str  # "mailfrom" or "helo"
    domain: str  # the domain whose policy was evaluated
    sender: str  # the checked address (postmaster@HELO for the null sender)
    header: str = ""  # the Received-SPF value
    timed_out: bool = False


def _check(lookups: MessageDns, loop: asyncio.AbstractEventLoop, ip: str, sender: str,
           helo: str, receiver: str) -> SpfResult:
    _local.dns = (lookups, loop)
    _local.timed_out = False
    try:
        query = spf.query(i=ip, s=sender, h=helo, receiver=receiver,
                          querytime=max(0.1, lookups.remaining()))
        result, _code, explanation = query.check()
        header = query.get_header(result, receiver=receiver)
        identity = "helo" if query.ident == "helo" else "mailfrom"
        # The identity's domain, not pyspf's query.d (that ends on the last include).
        domain = query.s.rpartition("@")[2] if query.s else helo
        return SpfResult(result, explanation, identity, domain, query.s, header,
                         bool(_local.timed_out))
    finally:
        _local.dns = None


async def check_spf(lookups: MessageDns, ip: str, mail_from: str | None, helo: str | None,
                    receiver: str) -> SpfResult:
    """The SPF result for MAIL FROM (or the HELO name, for the null sender)."""
    loop = asyncio.get_running_loop()
    sender = mail_from or ""
    return await loop.run_in_executor(_executor(), _check, lookups, loop, ip, sender,
                                      helo or "", receiver)
