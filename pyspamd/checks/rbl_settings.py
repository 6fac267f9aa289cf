"""`[rbl]`: the DNS blocklists, what each is looked up with, and their checks. The RBL check
(pyspamd/checks/rbl.py) reads the lookup targets from here."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from pyspamd.config_schema import SYMBOL, Locator

# What a list of each type is looked up with (`match`).
RBL_MATCHES: dict[str, tuple[str, ...]] = {
    "ip": ("client_ip", "received"),
    "domain": ("urls", "helo", "from", "envelope_from"),
}


def _default_rbl_lists() -> list[RblListConfig]:
    spamhaus_errors = ["127.255.255.252", "127.255.255.254", "127.255.255.255"]
    return [
        RblListConfig(
            name="spamhaus_zen", zone="zen.spamhaus.org", symbol="RBL_SPAMHAUS",
            returncodes={"RBL_SPAMHAUS_SBL": ["127.0.0.2", "127.0.0.3", "127.0.0.9"],
                         "RBL_SPAMHAUS_XBL": ["127.0.0.4", "127.0.0.5", "127.0.0.6",
                                              "127.0.0.7"],
                         "RBL_SPAMHAUS_PBL": ["127.0.0.10", "127.0.0.11"]},
            skip_authenticated=["RBL_SPAMHAUS_PBL"], error_codes=spamhaus_errors),
        RblListConfig(name="spamcop", zone="bl.spamcop.net", symbol="RBL_SPAMCOP"),
        RblListConfig(
            name="spamhaus_dbl", zone="dbl.spamhaus.org", type="domain", match=["urls"],
            symbol="DBL_SPAMHAUS",
            returncodes={"DBL_SPAMHAUS_SPAM": ["127.0.1.2"],
                         "DBL_SPAMHAUS_PHISH": ["127.0.1.4"],
                         "DBL_SPAMHAUS_MALWARE": ["127.0.1.5", "127.0.1.6"],
                         "DBL_SPAMHAUS_ABUSED": ["127.0.1.102", "127.0.1.103",
                                                 "127.0.1.104", "127.0.1.105",
                                                 "127.0.1.106"]},
            error_codes=spamhaus_errors),
    ]


@dataclass
class RblListConfig:
    """One `[[rbl.lists]]` table: a DNS blocklist and the symbols its answers give."""

    name: str = ""
    zone: str = ""
    type: str = "ip"  # ip: reversed address (IPv6 in nibbles); domain: the name itself
    match: list[str] = field(default_factory=lambda: ["client_ip"])
    symbol: str = ""  # a listing whose code no returncodes entry names
    returncodes: dict[str, list[str]] = field(default_factory=dict)
    skip_authenticated: list[str] = field(default_factory=list)
    error_codes: list[str] = field(default_factory=list)
    ipv6: bool = True


@dataclass
class RblConfig:
    lists: list[RblListConfig] = field(default_factory=_default_rbl_lists)
    max_domains: int = 20  # URL domains looked up per message and list
    max_received: int = 3  # Received hops (after the client) looked up, for match "received"


def check_rbl(rbl_config: RblConfig, loc: Locator) -> list[str]:
    errors: list[str] = []
    for index, rbl in enumerate(rbl_config.lists):
        at = ("rbl", "lists", str(index))
        label = rbl.name or f"#{index + 1}"

        def bad(key: str, what: str, at: tuple[str, ...] = at, label: str = label) -> None:
            errors.append(f"{loc.where((*at, key))}: rbl list {label}: {what}")

        if not rbl.zone or " " in rbl.zone:
            bad("zone", "needs the list's DNS zone, e.g. zone = \"zen.spamhaus.org\"")
        if rbl.type not in RBL_MATCHES:
            bad("type", f"type must be \"ip\" or \"domain\", got {rbl.type!r}")
            continue
        for match in rbl.match:
            if match not in RBL_MATCHES[rbl.type]:
                bad("match", f"a list of type {rbl.type!r} matches "
                    f"{', '.join(RBL_MATCHES[rbl.type])}, not {match!r}")
        for symbol in [rbl.symbol, *rbl.returncodes, *rbl.skip_authenticated]:
            if symbol and not SYMBOL.match(symbol):
                bad("symbol", f"{symbol!r} is not a symbol name (letters, digits, _)")
        if not rbl.symbol and not rbl.returncodes:
            bad("symbol", "needs symbol = \"NAME\" or returncodes, or a listing adds nothing")
        for code in [c for codes in rbl.returncodes.values() for c in codes] + rbl.error_codes:
            try:
                ipaddress.ip_address(code)
            except ValueError:
                bad("returncodes", f"{code!r} is not an IP address")
    if rbl_config.max_domains < 0 or rbl_config.max_received < 0:
        errors.append(f"{loc.where(('rbl', 'max_domains'))}: rbl.max_domains and "
                      "max_received must be >= 0")
    return errors
