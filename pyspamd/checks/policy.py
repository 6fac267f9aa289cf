"""The policy checks the config turns on: HELO/sender sanity, maps, rate limits and greylisting."""

from __future__ import annotations

from pyspamd.checks.base import Check
from pyspamd.config import Config


def policy_checks(config: Config, load_maps: bool = True) -> list[Check]:
    from pyspamd.checks.greylist import Greylist
    from pyspamd.checks.helo_sanity import HeloSanity
    from pyspamd.checks.multimap import MultiMap
    from pyspamd.checks.ratelimit import RateLimit

    checks: list[Check] = [HeloSanity(config)]
    if config.maps:
        checks.append(MultiMap(config, load=load_maps))
    if config.ratelimit.limits:
        checks.append(RateLimit(config))
    if config.greylist.enabled:
        checks.append(Greylist(config))
    return checks
