"""Greylisting state: triplets (client network, envelope sender, recipient) in the storage
backend, so every worker and every host sharing the store agree.

A triplet seen for the first time is recorded and deferred. A retry at least `delay`
seconds later (and before `expire`) passes, and the triplet is remembered as good for
`whitelist_expire` seconds from its last pass (postgrey's default: 35 days), so regular
correspondents are deferred once. Each record holds its own time stamp and is judged by the
injected clock; the store's TTL only makes sure old records go away.
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pyspamd.storage.base import StateStore

GREYLISTED = "greylisted"
PASS = "pass"
WHITELISTED = "whitelisted"
AWL_PREFIX = "greylist:awl:"  # client address -> "passes,last counted pass"
_MAX_PART = 320  # longest address SMTP allows (RFC 5321: 64 + 1 + 255)


def client_network(ip: str, ipv4_mask: int, ipv6_mask: int) -> str | None:
    """The client's network as text (a /24 or /64 by default: big senders retry from the
    next address of the same pool); None when `ip` is not an address."""
    try:
        address = ipaddress.ip_address(ip.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    mask = ipv4_mask if address.version == 4 else ipv6_mask
    return str(ipaddress.ip_network(f"{address}/{mask}", strict=False))


_BATV_TAG = re.compile(r"[0-9a-z]{10}")
_NUMBER = re.compile(r"\b\d+\b")


def stable_sender(address: str) -> str:
    """The sender as postgrey keys it: a mailing list's or bounce system's address that
    changes with each message (BATV's prvs= tag, a +extension, VERP numbers) becomes one
    address, so its retry finds the triplet of its first attempt."""
    user, at, domain = address.partition("@")
    if not at:
        return address
    if user.startswith("prvs="):
        parts = user.split("=")
        if len(parts) == 3:
            # prvs=TAG=user is the standard; some write prvs=user=TAG.
            tag_last = _BATV_TAG.match(parts[2]) and not _BATV_TAG.match(parts[1])
            user = parts[1] if tag_last else parts[2]
    user = _NUMBER.sub("#", user.partition("+")[0])
    return f"{user}@{domain}"


@dataclass(frozen=True, slots=True)
class Triplet:
    network: str
    sender: str  # lower case; "<>" for the null sender
    rcpt: str

    @classmethod
    def make(cls, network: str, sender: str | None, rcpt: str) -> Triplet:
        sender = (sender or "").strip().strip("<>").lower()[:_MAX_PART] or "<>"
        return cls(network, stable_sender(sender),
                   rcpt.strip().strip("<>").lower()[:_MAX_PART])

    @property
    def key(self) -> str:
        return f"{self.network}|{self.sender}|{self.rcpt}"


@dataclass(frozen=True, slots=True)
class Judged:
    state: str  # GREYLISTED or PASS
    waited: float | None = None  # on the pass that ended the wait: seconds since first seen
    left: float = 0.0  # when GREYLISTED: seconds until a retry passes


@dataclass(frozen=True, slots=True)
class Timing:
    delay: float
    expire: float
    whitelist_expire: float


class Greylister:
    def __init__(self, storage: StateStore, timing: Timing,
                 clock: Callable[[], float] = time.time) -> None:
        self.storage = storage
        self.timing = timing
        self.clock = clock

    def _stamp(self, key: str) -> float | None:
        raw = self.storage.get(key)
        if raw is None:
            return None
        try:
            return float(raw)
        except ValueError:  # not ours, or damaged: treat as never seen
            return None

    def check_one(self, triplet: Triplet) -> str:
        """GREYLISTED or PASS for one triplet, recording what was seen."""
        return self.judge(triplet).state

    def judge(self, triplet: Triplet) -> Judged:
        """check_one with the seconds around it: how long the first pass waited, or how
        long a deferred triplet has still to wait."""
        now, t = self.clock(), self.timing
        good_key, seen_key = f"greylist:ok:{triplet.key}", f"greylist:seen:{triplet.key}"
        last_pass = self._stamp(good_key)
        if last_pass is not None and now - last_pass < t.whitelist_expire:
            self.storage.set(good_key, repr(now).encode(), ttl=t.whitelist_expire)
            return Judged(PASS)
        first = self._stamp(seen_key)
        if first is None or now - first >= t.expire or now < first:
            # New, or its retry came too late: this delivery attempt starts it over.
            self.storage.set(seen_key, repr(now).encode(), ttl=t.expire)
            return Judged(GREYLISTED, left=t.delay)
        if now - first < t.delay:
            return Judged(GREYLISTED, left=t.delay - (now - first))
        self.storage.set(good_key, repr(now).encode(), ttl=t.whitelist_expire)
        self.storage.delete(seen_key)
        return Judged(PASS, waited=now - first)

    def auto_whitelisted(self, ip: str, passes: int) -> bool:
        """postgrey's --auto-whitelist-clients: True once the client address passed
        greylisting `passes` times (one pass per hour counts)."""
        count, _ = self._awl(ip)
        return passes > 0 and count >= passes

    def count_pass(self, ip: str) -> int:
        """One more pass for the client's auto-whitelisting (at most one an hour)."""
        now = self.clock()
        count, last = self._awl(ip)
        if last is None or now >= last + 3600 or last > now:
            count += 1
            self.storage.set(f"{AWL_PREFIX}{ip}", f"{count},{now!r}".encode(),
                             ttl=self.timing.whitelist_expire)
        return count

    def _awl(self, ip: str) -> tuple[int, float | None]:
        raw = self.storage.get(f"{AWL_PREFIX}{ip}")
        if raw is None:
            return 0, None
        count, _, last = raw.decode(errors="replace").partition(",")
        try:
            return int(count), float(last)
        except ValueError:  # damaged: start again
            return 0, None

    def check(self, triplets: Iterable[Triplet]) -> str:
        """A message passes only when every recipient's triplet passes. All are checked, so
        each recipient's retry clock starts with the first attempt."""
        states = [self.check_one(t) for t in triplets]
        return PASS if states and all(s == PASS for s in states) else GREYLISTED

    def mark_passed(self, triplet: Triplet) -> None:
        """The admin's word that this triplet is good: it passes from now on."""
        self.storage.set(f"greylist:ok:{triplet.key}", repr(self.clock()).encode(),
                         ttl=self.timing.whitelist_expire)
        self.storage.delete(f"greylist:seen:{triplet.key}")

    def forget(self, triplet: Triplet) -> bool:
        gone_ok = self.storage.delete(f"greylist:ok:{triplet.key}")
        gone_seen = self.storage.delete(f"greylist:seen:{triplet.key}")
        return gone_ok or gone_seen


@dataclass(frozen=True, slots=True)
class Listed:
    key: str  # NET|SENDER|RCPT
    state: str  # "waiting" (seen, no retry yet), "passed", or "client" (auto-whitelisting)
    stamp: float  # first seen, or last pass
    passes: int = 0  # for a client: its passes counted for auto-whitelisting


def list_triplets(storage: StateStore, limit: int = 10000) -> list[Listed]:
    out = []
    for prefix, state in (("greylist:seen:", "waiting"), ("greylist:ok:", "passed"),
                          (AWL_PREFIX, "client")):
        for key, value in storage.scan_prefix(prefix, limit):
            try:
                stamp = float(value.rpartition(b",")[2])
            except ValueError:
                continue
            passes = int(value.partition(b",")[0]) if state == "client" else 0
            out.append(Listed(key[len(prefix) :], state, stamp, passes))
    return sorted(out, key=lambda item: (item.key, item.state))
