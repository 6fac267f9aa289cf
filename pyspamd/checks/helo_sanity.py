"""SMTP dialogue sanity from the admin notes: a HELO that is not a host name at all, a
client that says HELO with our own name or address ("you are not me"), and an envelope
sender whose domain is a single word. The shipped rules already cover bare-IP, single-word
and localhost HELOs; a sender domain without MX/A needs the DNS layer (issue 5)."""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import TYPE_CHECKING, ClassVar

from pyspamd.checks.base import Check
from pyspamd.config import Config
from pyspamd.policy.trusted import TrustedNetworks
from pyspamd.symbols import Hits, SymbolDef
from pyspamd.task import Task

if TYPE_CHECKING:
    from pyspamd.services import Services

_G = "envelope"
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_LITERAL = re.compile(r"^\[(?:IPv6:)?([0-9A-Fa-f:.]+)\]$")


def _as_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    m = _LITERAL.match(text)
    try:
        return ipaddress.ip_address(m.group(1) if m else text)
    except ValueError:
        return None


def is_hostname(name: str) -> bool:
    name = name.rstrip(".")
    return 0 < len(name) <= 253 and all(_LABEL.match(label) for label in name.split("."))


class HeloSanity(Check):
    name = "helo_sanity"
    symbols: ClassVar = {
        "HELO_INVALID": SymbolDef(1.5, "HELO is neither a host name nor an address literal", _G),
        "HELO_IS_US": SymbolDef(4.0, "A remote client says HELO with our own name or address",
                                _G),
        "SENDER_NOT_FQDN": SymbolDef(1.0, "Envelope sender domain is not a fully qualified "
                                          "domain", _G),
    }

    @classmethod
    def build(cls, config: Config, services: Services) -> HeloSanity:
        return cls(config)

    def __init__(self, config: Config) -> None:
        names = config.helo.our_names or [socket.getfqdn()]
        # A machine without a proper name reports "localhost" or a single word; a remote
        # HELO with those is already HELO_LOCALHOST_REMOTE / HELO_NOT_FQDN, not "us".
        self.our_names = {n.lower().rstrip(".") for n in names
                          if "." in n and not n.lower().startswith("localhost")}
        self.our_addresses = {ipaddress.ip_address(a) for a in config.helo.our_addresses}
        self.trusted = TrustedNetworks(config.milter.trusted_networks)

    def _local_client(self, ip: str | None) -> bool:
        address = _as_address(ip or "")
        if address is None:
            return True  # no client (a file scan): nothing to judge
        return address.is_loopback or address in self.our_addresses or ip in self.trusted

    def run(self, task: Task, hits: Hits) -> None:
        env = task.envelope
        if self._local_client(env.client_ip):
            return
        helo = (env.helo or "").strip()
        if helo:
            address = _as_address(helo)
            if address is not None:
                if address in self.our_addresses:
                    hits.add("HELO_IS_US", helo)
            elif not is_hostname(helo):
                hits.add("HELO_INVALID", helo)
            elif helo.lower().rstrip(".") in self.our_names:
                hits.add("HELO_IS_US", helo)
        sender = env.mail_from
        if sender:  # the null sender has no domain to judge
            domain = sender.rpartition("@")[2] if "@" in sender else ""
            if "." not in domain.strip("[]") or not (is_hostname(domain)
                                                     or _as_address(domain) is not None):
                hits.add("SENDER_NOT_FQDN", sender)
