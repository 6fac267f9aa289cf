"""`[ratelimit]`: messages per key and period, who is exempt, and the checks of those values
(the limit syntax is parsed by pyspamd.policy.ratelimit, a leaf)."""

from __future__ import annotations

from dataclasses import dataclass, field

from pyspamd.config_schema import Locator, bad_networks
from pyspamd.policy.ratelimit import RateError, parse_limit


@dataclass
class RatelimitConfig:
    # key type (ip, user, sender, sender_domain, rcpt) -> "COUNT / PERIOD"; none: off
    limits: dict[str, str] = field(default_factory=dict)
    exempt_networks: list[str] = field(default_factory=list)


def check_ratelimit(r: RatelimitConfig, loc: Locator) -> list[str]:
    errors = []
    for key_type, text in r.limits.items():
        try:
            parse_limit(key_type, text)
        except RateError as exc:
            errors.append(f"{loc.where(('ratelimit', 'limits', key_type))}: ratelimit.limits."
                          f"{key_type}: {exc}")
    for net in bad_networks(r.exempt_networks):
        errors.append(f"{loc.where(('ratelimit', 'exempt_networks'))}: ratelimit."
                      f"exempt_networks has {net!r}, which is not an address or network")
    return errors
