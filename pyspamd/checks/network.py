"""The checks that need DNS, built when `[dns] enabled` is on: one resolver (and cache) for
all of them per worker."""

from __future__ import annotations

from pyspamd.checks.base import Check
from pyspamd.config import Config


def network_checks(config: Config) -> list[Check]:
    if not config.dns.enabled:
        return []
    from pyspamd.checks.email_auth import EmailAuth
    from pyspamd.checks.rbl import RblCheck
    from pyspamd.checks.sender_domain import SenderDomain
    from pyspamd.dns import Resolver

    resolver = Resolver(config.dns)
    checks: list[Check] = []
    if config.rbl.lists:
        checks.append(RblCheck(config, resolver))
    auth = config.auth
    if auth.spf or auth.dkim or auth.dmarc or auth.arc:
        checks.append(EmailAuth(config, resolver))
    if config.auth.sender_domain:
        checks.append(SenderDomain(resolver))
    return checks
