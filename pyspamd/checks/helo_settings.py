"""`[helo]`: the names and addresses that are this host's own, for the HELO checks."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from pyspamd.config_schema import Locator


@dataclass
class HeloConfig:
    our_names: list[str] = field(default_factory=list)  # empty: this host's FQDN
    our_addresses: list[str] = field(default_factory=list)


def check_helo(h: HeloConfig, loc: Locator) -> list[str]:
    errors = []
    for address in h.our_addresses:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            errors.append(f"{loc.where(('helo', 'our_addresses'))}: helo.our_addresses has "
                          f"{address!r}, which is not an IP address")
    return errors
