"""Every check, in the order the scanner runs them: adding a check is a module with a Check
subclass (and its `build`) plus one line here. The scanner, configtest, the controller and
pyspamc all build their checks with `build_checks`."""

from __future__ import annotations

from pyspamd.checks.base import Check
from pyspamd.checks.bayes import BayesCheck
from pyspamd.checks.display_name import DisplayNameSpoof
from pyspamd.checks.email_auth import EmailAuth
from pyspamd.checks.greylist import Greylist
from pyspamd.checks.header_sanity import DateCheck, EnvelopeFrom, ReceivedCount
from pyspamd.checks.helo_sanity import HeloSanity
from pyspamd.checks.mime_sanity import MimeSanity
from pyspamd.checks.multimap import MultiMap
from pyspamd.checks.ratelimit import RateLimit
from pyspamd.checks.rbl import RblCheck
from pyspamd.checks.sender_domain import SenderDomain
from pyspamd.config import Config
from pyspamd.services import Services

# The order is the order of `run`; where two checks force actions of the same priority the
# first one's text is shown, so keep policy checks ahead of the others.
CHECKS: tuple[type[Check], ...] = (
    MimeSanity,
    ReceivedCount,
    DateCheck,
    EnvelopeFrom,
    DisplayNameSpoof,
    HeloSanity,
    MultiMap,
    RateLimit,
    Greylist,
    RblCheck,
    EmailAuth,
    SenderDomain,
    BayesCheck,
)


def build_checks(config: Config, services: Services) -> list[Check]:
    """The checks this config turns on, built with the process's shared services."""
    return [check for cls in CHECKS if (check := cls.build(config, services)) is not None]
