"""Controller passwords: scrypt hashes in the config, checked in constant time.

`pyspamc pw` prints "$scrypt$n=16384,r=8,p=1$SALT$HASH" (base64) to paste in the config, as
`rspamadm pw` does for rspamd. A hash costs ~50 ms and 16 MiB to check, which makes guessing
slow; a password once verified is remembered by its SHA-256, so a page or `pyspamc -n 8`
sending it with every request pays that once, not per request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import threading
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
        self._known: bytes | None = None  # SHA-256 of the password, once it matched
        self._lock = threading.Lock()

    def matches(self, password: str) -> bool:
        quick = hashlib.sha256(password.encode()).digest()
        known = self._known
        if known is not None:
            return hmac.compare_digest(quick, known)
        h = self.hash
        digest = hashlib.scrypt(password.encode(), salt=h.salt, n=h.n, r=h.r, p=h.p,
                                dklen=len(h.digest), maxmem=_MAXMEM)
        if not hmac.compare_digest(digest, h.digest):
            return False
        with self._lock:
            self._known = quick
        return True


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
