"""Controller passwords: scrypt hashes in the config, checked in constant time.

`pyspamc pw` prints "$scrypt$n=16384,r=8,p=1$SALT$HASH" (base64) to paste in the config, as
`rspamadm pw` does for rspamd. A hash costs ~50 ms and 16 MiB to check, which makes guessing
slow. The password once verified is remembered (an HMAC under a key made at start), so a page
or `pyspamc -n 8` sending it with every request pays that once, not per request; any other
password still pays the full scrypt, so the memory never speeds up guessing (it did: wrong
passwords were compared with the remembered hash alone, ~400 guesses/s, issue 18). On top,
LoginThrottle makes a client that keeps failing wait before it may try again.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

_PREFIX = "$scrypt$"
N, R, P = 1 << 14, 8, 1
_DKLEN = 32
_MAXMEM = 64 << 20


class HashError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class PasswordHash:
    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def make_hash(password: str, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=N, r=R, p=P, dklen=_DKLEN,
                            maxmem=_MAXMEM)
    return f"{_PREFIX}n={N},r={R},p={P}${_b64(salt)}${_b64(digest)}"


def parse_hash(text: str) -> PasswordHash:
    if not text.startswith(_PREFIX):
        raise HashError("it does not start with $scrypt$")
    try:
        params, salt, digest = text[len(_PREFIX):].split("$")
        values = dict(item.split("=", 1) for item in params.split(","))
        n, r, p = int(values["n"]), int(values["r"]), int(values["p"])
        parsed = PasswordHash(n, r, p, _unb64(salt), _unb64(digest))
    except (ValueError, KeyError) as exc:
        raise HashError(f"it is damaged: {exc}") from exc
    if n < 2 or n & (n - 1) or n > 1 << 20 or not 1 <= r <= 32 or not 1 <= p <= 16:
        raise HashError("its n, r or p are out of range")
    if len(parsed.salt) < 8 or len(parsed.digest) < 16:
        raise HashError("its salt or hash is too short")
    return parsed


class PasswordCheck:
    """One configured hash; `matches` is safe to call from several threads."""

    def __init__(self, text: str) -> None:
        self.hash = parse_hash(text)
        self._key = os.urandom(32)  # the remembered password is useless outside this process
        self._known: bytes | None = None  # its HMAC, once it matched
        self._lock = threading.Lock()

    def matches(self, password: str) -> bool:
        quick = hmac.new(self._key, password.encode(), hashlib.sha256).digest()
        known = self._known
        if known is not None and hmac.compare_digest(quick, known):
            return True
        h = self.hash
        digest = hashlib.scrypt(password.encode(), salt=h.salt, n=h.n, r=h.r, p=h.p,
                                dklen=len(h.digest), maxmem=_MAXMEM)
        if not hmac.compare_digest(digest, h.digest):
            return False
        with self._lock:
            self._known = quick
        return True


FREE_FAILURES = 5  # wrong passwords a client may send before it has to wait
_FIRST_WAIT = 1.0  # seconds; doubles with each further failure
_MAX_WAIT = 300.0
_FORGET_AFTER = 3600.0  # a client quiet this long starts afresh
_MAX_CLIENTS = 10000  # clients remembered; the quietest are forgotten first


@dataclass(slots=True)
class _Failures:
    count: int = 0
    last: float = 0.0
    wait_until: float = 0.0
    checking: int = 0  # passwords being checked now, each already counted as a failure


class LoginThrottle:
    """Back-off per client after wrong passwords: after FREE_FAILURES, each failure makes
    the client wait twice as long (1 s, 2 s, ... up to 5 minutes) before its next password
    is even checked; a right password clears its record. IPv6 clients count per /64, since
    one host can have a whole /64."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._clients: OrderedDict[str, _Failures] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(ip: str | None) -> str:
        if not ip:
            return "-"
        try:
            address = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            return ip
        if address.version == 6 and address.ipv4_mapped is None:
            return str(ipaddress.ip_network(f"{address}/64", strict=False))
        return str(address.ipv4_mapped or address) if address.version == 6 else str(address)

    def wait(self, ip: str | None) -> float:
        """Seconds this client must still wait before a password is checked (0: none)."""
        with self._lock:
            record = self._clients.get(self.key(ip))
            if record is None:
                return 0.0
            return max(0.0, record.wait_until - self._clock())

    def failed(self, ip: str | None) -> float:
        """Count a wrong password; returns the wait it earned."""
        now = self._clock()
        with self._lock:
            return self._count(self.key(ip), now).wait_until - now

    def _count(self, key: str, now: float) -> _Failures:
        record = self._clients.pop(key, None)
        if record is None or now - record.last > _FORGET_AFTER:
            record = _Failures()
        self._clients[key] = record  # most recent last
        while len(self._clients) > _MAX_CLIENTS:
            self._clients.popitem(last=False)
        record.count += 1
        record.last = now
        over = record.count - FREE_FAILURES
        record.wait_until = now + (0.0 if over <= 0 else
                                   min(_MAX_WAIT, _FIRST_WAIT * 2 ** (over - 1)))
        return record

    def begin(self, ip: str | None) -> float | None:
        """Before a password is checked. It is counted as a failure here, before the check,
        so requests sent in parallel cannot all be checked before the first failure counts
        (16 connections got 21 guesses per lockout when failures were counted after).
        Returns 0.0: check it, then call end(); a wait in seconds: refuse it unchecked;
        None: passwords of this client are being checked and the wait is on them, so ask
        again shortly (a right one among them clears the wait)."""
        now = self._clock()
        with self._lock:
            key = self.key(ip)
            record = self._clients.get(key)
            if record is not None and record.wait_until > now:
                return None if record.checking else record.wait_until - now
            record = self._count(key, now)
            record.checking += 1
            return 0.0

    def end(self, ip: str | None, right: bool) -> float:
        """After the check begin() allowed; returns the wait a wrong password earned."""
        with self._lock:
            key = self.key(ip)
            record = self._clients.get(key)
            if right:
                self._clients.pop(key, None)
                return 0.0
            if record is None:
                return 0.0
            record.checking = max(0, record.checking - 1)
            return max(0.0, record.wait_until - self._clock())

    def succeeded(self, ip: str | None) -> None:
        with self._lock:
            self._clients.pop(self.key(ip), None)


class Access:
    """Who may read and who may write: secure_ip needs no password; otherwise the read-only
    password reads, the enable (write) password reads and writes. No password configured:
    only secure_ip gets in."""

    def __init__(self, password: str, enable_password: str, secure_ip: list[str]) -> None:
        self.read = PasswordCheck(password) if password else None
        self.write = PasswordCheck(enable_password) if enable_password else None
        self.secure = [ipaddress.ip_network(n, strict=False) for n in secure_ip]

    def is_secure(self, ip: str | None) -> bool:
        if not ip:
            return False
        try:
            address = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            return False
        if address.version == 6 and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in net for net in self.secure)

    def level(self, ip: str | None, password: str | None) -> str:
        """"write", "read" or "" (no access) for a client and the password it sent."""
        if self.is_secure(ip):
            return "write"
        if not password:
            return ""
        if self.write is not None and self.write.matches(password):
            return "write"
        if self.read is not None and self.read.matches(password):
            return "read"
        return ""
