"""The policy checks the config turns on: maps and greylisting."""

from __future__ import annotations

from pyspamd.checks.base import Check
from pyspamd.config import Config


def policy_checks(config: Config) -> list[Check]:
    from pyspamd.checks.greylist import Greylist
    from pyspamd.checks.multimap import MultiMap

    checks: list[Check] = []
    if config.maps:
        checks.append(MultiMap(config))
    if config.greylist.enabled:
        checks.append(Greylist(config))
    return checks
