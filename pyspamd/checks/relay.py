"""The first untrusted relay: the host that handed the message to our side.

Spam of the botnet years came straight from home computers: no reverse DNS, or a name the
provider generates from the address (`dsl-198-51-100-7.pool.example.net`), a HELO that is
a bare address or one word, and no smarthost in between. Which host that is depends on
where we stand:

* in the milter (or with a client address given), the SMTP client itself: its address,
  its verified name (`{client_name}`; Postfix says `unknown`, libmilter `[address]`, when
  there is none) and its HELO. A client in `milter.trusted_networks`, on loopback or
  logged in with SASL is our own user submitting mail: nothing here is judged;
* scanning a file, the newest Received hop written about a public address outside the
  trusted networks, skipping our internal hops (private, loopback, link-local and trusted
  addresses). A hop that says the client authenticated (`with ESMTPA`, `ESMTPSA`...) is a
  submission: the message was not relayed from outside and nothing is judged. Hops below
  the first untrusted relay are written by hosts we cannot trust and are not read.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from typing import TYPE_CHECKING, ClassVar, NamedTuple

from pyspamd.checks.base import Check
from pyspamd.config import Config
from pyspamd.policy.trusted import TrustedNetworks
from pyspamd.symbols import Hits, SymbolDef
from pyspamd.task import Task

if TYPE_CHECKING:
    from pyspamd.services import Services

_G = "envelope"

# Generic names carry the address (in either order, any separator, or as hex) or a word
# that access networks put in them. Words are matched as whole name tokens.
_DYNAMIC_WORDS = frozenset((
    "adsl", "dsl", "xdsl", "vdsl", "sdsl", "dial", "dialup", "dialin", "dyn", "dynamic",
    "dynip", "dhcp", "ppp", "pppoe", "pptp", "pool", "cable", "catv", "broadband",
    "resnet", "cpe", "modem", "ftth", "fttx", "bredband",
))
# A mail server of a provider keeps a generic-looking name but says what it is.
_MAIL_WORDS = frozenset(("mail", "smtp", "mx", "mta", "relay", "out", "outbound", "mailout",
                         "smtpout", "mailer", "mx1", "mx2", "smtp1", "smtp2", "mail1",
                         "mail2", "exchange", "postfix"))
_TOKEN = re.compile(r"[a-z]+|\d+")
# Authenticated submission protocols (RFC 3848): the client logged in.
_AUTH_PROTOCOLS = frozenset(("ESMTPA", "ESMTPSA", "LMTPA", "LMTPSA", "ASMTP", "ESMTPSA2"))

# How the common MTAs write the client: Postfix `from HELO (RDNS [IP])` with RDNS
# `unknown` when there is none, Sendmail `from HELO (RDNS [IP])` or `from HELO ([IP])`,
# Exim `from RDNS ([IP] helo=HELO)` or `from [IP] (helo=HELO)`, qmail
# `from RDNS (HELO name) (IP)`, ZMailer `from RDNS ([IP]:PORT "EHLO HELO" ...)`. A hop in
# another shape (Exchange's `from HELO (IP)`) gives the address and HELO but no verdict on
# reverse DNS.
_EXIM = re.compile(r"^\s*from\s+(\S+)\s+\(\[([0-9A-Fa-f:.]+)\](?::\d+)?"
                   r"(?:\s+helo=([^\s)]+))?\)", re.IGNORECASE)
_EXIM_NO_NAME = re.compile(r"^\s*from\s+\[([0-9A-Fa-f:.]+)\](?::\d+)?\s+\(helo=([^\s)]+)\)",
                           re.IGNORECASE)
_ZMAILER = re.compile(r"^\s*from\s+(\S+)\s+\(\[(?:IPv6:(?:::ffff:)?)?([0-9A-Fa-f:.]+)\](?::\d+)?"
                      r"\s+\"(?:EHLO|HELO)\s+([^\s\"]*)\"", re.IGNORECASE)
_QMAIL = re.compile(r"^\s*from\s+(\S+)\s+\(HELO\s+([^\s)]*)\)\s+\(\[?([0-9A-Fa-f:.]+)\]?\)",
                    re.IGNORECASE)
_POSTFIX = re.compile(r"^\s*from\s+(\S+)\s+\((?:([A-Za-z0-9_.-]+)\s+)?\[(?:IPv6:)?"
                      r"([0-9A-Fa-f:.]+)\][^)]*\)", re.IGNORECASE)
_BARE = re.compile(r"^\s*from\s+(\S+)\s+\((?:[^()]*?\s)?\[?(\d{1,3}(?:\.\d{1,3}){3})\]?\)",
                   re.IGNORECASE)
# Our side of the network: a hop from one of these is one of our own hosts handing the
# message on. Not Python's is_private, which also counts the documentation ranges.
_INTERNAL = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8",
    "169.254.0.0/16", "0.0.0.0/8", "::1/128", "fc00::/7", "fe80::/10", "::/128"))


class Relay(NamedTuple):
    ip: str
    rdns: str | None  # "" no reverse DNS; None: the hop does not say
    helo: str
    hops_below: int  # Received hops under it (written by it or before it)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip("[]").removeprefix("IPv6:"))
    except ValueError:
        return None


def looks_dynamic(name: str, ip: str) -> bool:
    """Whether a host name is one an access provider generates for a customer address."""
    name = name.lower().rstrip(".")
    labels = name.split(".")
    if len(labels) < 3:
        return False  # a registered domain itself is somebody's chosen name
    host_part = labels[:-2]
    tokens = [t for label in host_part for t in _TOKEN.findall(label)]
    if not tokens or tokens[0] in _MAIL_WORDS or labels[0] in _MAIL_WORDS:
        return False
    address = _address(ip)
    if isinstance(address, ipaddress.IPv4Address):
        octets = [str(b) for b in address.packed]
        numbers = [t for t in tokens if t.isdigit()]
        if sum(o in numbers for o in set(octets)) >= min(3, len(set(octets))):
            return True
        if address.packed.hex() in name.replace("-", "") or \
                f"{int(address):d}" in numbers:
            return True
    elif numbers_hint(tokens):
        return True
    return any(t in _DYNAMIC_WORDS for t in tokens) or _word_with_number(host_part)


def numbers_hint(tokens: list[str]) -> bool:
    """IPv6 or unknown address: four or more number tokens in the host part."""
    return sum(t.isdigit() for t in tokens) >= 4


_WORD_NUMBER = re.compile(r"^(?:adsl|dsl|dyn|dynamic|dhcp|ppp|pool|cable|dialup|dial|cpe|"
                          r"client|cust|user|host|ip|nat|res|dip)[-_]?\d", re.IGNORECASE)


def _word_with_number(labels: list[str]) -> bool:
    return any(_WORD_NUMBER.match(label) for label in labels)


def parse_hop(value: str) -> Relay | None:
    """The client of one Received line, or None when it names no address."""
    text = " ".join(value[:2000].split())
    rdns: str | None
    exim_marker = "exim" in text.lower()
    if m := _QMAIL.match(text):
        rdns = "" if m.group(1).lower() == "unknown" else m.group(1)
        return Relay(m.group(3), rdns.lower(), m.group(2).lower(), 0)
    if m := _ZMAILER.match(text):
        first = m.group(1)
        rdns = "" if first.startswith("[") or first.lower() == "unknown" else first
        return Relay(m.group(2), rdns.lower(), m.group(3).lower(), 0)
    if m := _EXIM_NO_NAME.match(text):
        return Relay(m.group(1), "", m.group(2).lower(), 0)
    if (m := _EXIM.match(text)) and (m.group(3) or exim_marker):
        first = m.group(1)
        rdns = "" if first.startswith("[") or first.lower() == "unknown" else first
        return Relay(m.group(2), rdns.lower(), (m.group(3) or first).lower(), 0)
    if m := _POSTFIX.match(text):
        helo, name = m.group(1), m.group(2)
        # Postfix writes `unknown` when there is no name; `from X ([IP])` is Sendmail's
        # either for no name or for a name equal to the HELO, so it says nothing certain.
        rdns = "" if name and name.lower() == "unknown" else (name.lower() if name else None)
        return Relay(m.group(3), rdns, helo.lower(), 0)
    if m := _BARE.match(text):
        return Relay(m.group(2), None, m.group(1).lower(), 0)
    return None


@functools.lru_cache(maxsize=4096)
def _internal_address(ip: str) -> bool:
    """Ours by its range (cached: a site sees the same few relays all day)."""
    address = _address(ip)
    if address is None:
        return True  # nothing to judge
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return any(address in net for net in _INTERNAL if net.version == address.version)


class RelayAnalysis(Check):
    name = "relay"
    symbols: ClassVar = {
        "RDNS_NONE": SymbolDef(1.0, "The relay that handed the message to us has no reverse "
                                    "DNS name", _G),
        "RDNS_DYNAMIC": SymbolDef(1.0, "The relay's reverse DNS name is a generic or dynamic "
                                       "(home) one", _G),
        "HELO_BARE_IP": SymbolDef(1.0, "The relay's HELO is a bare IP address instead of a "
                                       "host name", _G),
        "HELO_NOT_FQDN": SymbolDef(0.8, "The relay's HELO is a single word, not a fully "
                                        "qualified host name", _G),
        "HELO_DYNAMIC": SymbolDef(1.0, "The relay's HELO is a generic or dynamic (home) host "
                                       "name", _G),
        "DIRECT_FROM_DYNAMIC": SymbolDef(1.0, "A relay without a proper name sent straight to "
                                              "us: no earlier hop, or a bad HELO", _G),
    }

    @classmethod
    def build(cls, config: Config, services: Services) -> RelayAnalysis:
        return cls(config)

    def __init__(self, config: Config) -> None:
        self.trusted = TrustedNetworks(config.milter.trusted_networks)
        self.our_addresses = {str(ipaddress.ip_address(a)) for a in config.helo.our_addresses}

    def _internal(self, ip: str) -> bool:
        return (_internal_address(ip) or ip in self.our_addresses or ip in self.trusted)

    def relay(self, task: Task) -> Relay | None:
        env = task.envelope
        if env.client_ip:
            if env.user or self._internal(env.client_ip):
                return None
            name = (env.client_hostname or "").strip()
            if not name:
                rdns: str | None = None  # the caller did not say
            elif name.lower() == "unknown" or name.startswith("["):
                rdns = ""
            else:
                rdns = name.lower()
            below = task.headers.raw("Received")
            # the MTA's own Received line about this client, when it shows it to us
            mine = 1 if below and env.client_ip in below[0] else 0
            return Relay(env.client_ip, rdns, (env.helo or "").strip().lower(),
                         len(below) - mine)
        values = task.headers.raw("Received")
        chain = task.received  # parsed once per message; the Bayes tokenizer reads it too
        for index, value in enumerate(values[:20]):
            if chain[index].protocol in _AUTH_PROTOCOLS:
                return None
            hop = parse_hop(value)
            if hop is None or self._internal(hop.ip):
                continue
            return hop._replace(hops_below=len(values) - index - 1)
        return None

    def run(self, task: Task, hits: Hits) -> None:
        relay = self.relay(task)
        if relay is None:
            return
        bad_name = False
        if relay.rdns == "":
            hits.add("RDNS_NONE", relay.ip)
            bad_name = True
        elif relay.rdns and looks_dynamic(relay.rdns, relay.ip):
            hits.add("RDNS_DYNAMIC", relay.rdns)
            bad_name = True
        helo = relay.helo.rstrip(".")
        bad_helo = False
        if helo:
            if _address(helo) is not None:
                hits.add("HELO_BARE_IP", helo)
                bad_helo = True
            elif "." not in helo and not helo.startswith("localhost"):
                hits.add("HELO_NOT_FQDN", helo)
                bad_helo = True
            elif "." in helo and looks_dynamic(helo, relay.ip):
                hits.add("HELO_DYNAMIC", helo)
                bad_helo = True
        if bad_name and (bad_helo or relay.hops_below == 0):
            hits.add("DIRECT_FROM_DYNAMIC", relay.ip)
