"""postgrey's whitelist files, read as postgrey reads them, so an admin keeps the
whitelist_clients and whitelist_recipients (and their .local) files they have.

Clients: `/regex/` (matched against the client's host name), an IPv4 address, network or
address with its last one or two numbers left off, an IPv6 address or network, or a host
name or domain (that name and the names below it). Recipients: `/regex/` (against the whole
address), `user@domain` and `user@` (with any +extension), or a domain (and its
subdomains). Perl's and Python's regular expressions agree on what these files use; a
pattern Python cannot compile is reported as FILE:LINE and skipped, as postgrey warns about
a line it cannot read.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

log = logging.getLogger("pyspamd.policy")

_IPV4 = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?:/\d{1,2})?\Z")
_IPV4_24 = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\Z")
_IPV4_16 = re.compile(r"\d{1,3}\.\d{1,3}\Z")
_IPV6 = re.compile(r".*:.*:.*(?:/\d{1,3})?\Z")
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _lines(path: str) -> list[tuple[int, str]]:
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        if not path.endswith(".local"):  # postgrey too is silent about a missing .local
            log.warning("%s: cannot read: %s", path, exc.strerror or exc)
        return []
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if line:
            out.append((number, line))
    return out


def _regex(path: str, number: int, pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        log.warning("%s:%d: /%s/ is not a regular expression: %s", path, number, pattern, exc)
        return None


def _slashed(line: str) -> bool:
    """A `/regex/` line (postgrey reads a line with a space as something else)."""
    return len(line) > 2 and line.startswith("/") and line.endswith("/") and " " not in line


class _ListFile:
    """What both files share: read every path given, each line by _add."""

    @classmethod
    def load(cls, paths: list[str]) -> Self:
        out = cls()
        for path in paths:
            for number, line in _lines(path):
                out._add(path, number, line)
        return out

    def _add(self, path: str, number: int, line: str) -> None:
        raise NotImplementedError


@dataclass
class ClientWhitelist(_ListFile):
    names: list[re.Pattern[str]] = field(default_factory=list)
    networks: list[_Network] = field(default_factory=list)

    def _add(self, path: str, number: int, line: str) -> None:
        if _slashed(line):
            pattern = _regex(path, number, line[1:-1])
            if pattern is not None:
                self.names.append(pattern)
            return
        spec = line
        if _IPV4_24.match(line):
            spec = f"{line}.0/24"
        elif _IPV4_16.match(line):
            spec = f"{line}.0.0/16"
        if _IPV4.match(spec) or _IPV6.match(spec):
            try:
                self.networks.append(ipaddress.ip_network(spec, strict=False))
            except ValueError:
                log.warning("%s:%d: %r is not an address or network", path, number, line)
            return
        if " " in line or "\t" in line:
            log.warning("%s:%d: %r doesn't look like a hostname", path, number, line)
            return
        self.names.append(re.compile(rf"(?:^|\.){re.escape(line)}\Z", re.IGNORECASE))

    def matches(self, ip: str, name: str) -> bool:
        if name and any(p.search(name) for p in self.names):
            return True
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in net for net in self.networks if net.version == address.version)

    def __len__(self) -> int:
        return len(self.names) + len(self.networks)


@dataclass
class RecipientWhitelist(_ListFile):
    patterns: list[re.Pattern[str]] = field(default_factory=list)

    def _add(self, path: str, number: int, line: str) -> None:
        if _slashed(line):
            pattern = _regex(path, number, line[1:-1])
            if pattern is not None:
                self.patterns.append(pattern)
            return
        if " " in line or "\t" in line:
            log.warning("%s:%d: %r doesn't look like an address", path, number, line)
            return
        user, at, domain = line.partition("@")
        if at and domain:
            rx = rf"^{re.escape(user)}(?:\+[^@]+)?@{re.escape(domain)}\Z"
        elif at:
            rx = rf"^{re.escape(user)}(?:\+[^@]+)?@"
        else:
            rx = rf"(?:@|\.){re.escape(user)}\Z"
        self.patterns.append(re.compile(rx, re.IGNORECASE))

    def matches(self, recipient: str) -> bool:
        return any(p.search(recipient) for p in self.patterns)

    def __len__(self) -> int:
        return len(self.patterns)
