"""The checks that compare content with what is known bad: fuzzy hashes of reported
messages (store) and the antivirus (clamd), each when the config turns it on."""

from __future__ import annotations

from pyspamd.checks.base import Check
from pyspamd.config import Config


def content_checks(config: Config) -> list[Check]:
    checks: list[Check] = []
    if config.fuzzy.enabled and config.fuzzy.flags:
        from pyspamd.checks.fuzzy import FuzzyCheck

        checks.append(FuzzyCheck(config))
    if config.antivirus.enabled:
        from pyspamd.checks.antivirus import AntivirusCheck

        checks.append(AntivirusCheck(config))
    return checks
