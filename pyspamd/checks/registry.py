"""Every check, in the order the scanner runs them: adding a check is a module with a Check
subclass (and its `build`) plus its one line in CHECKS. The scanner, configtest, the
controller and pyspamc all build their checks with `build_checks`."""

from __future__ import annotations

import importlib
from functools import cache

from pyspamd.checks.base import Check
from pyspamd.config import Config
from pyspamd.services import Services

# "module:Class" under pyspamd.checks. The order is the order of `run`; where two checks
# force actions of the same priority the first one's text is shown, so keep policy checks
# ahead of the others.
CHECKS: tuple[str, ...] = (
    "mime_sanity:MimeSanity",
    "header_sanity:ReceivedCount",
    "header_sanity:DateCheck",
    "header_sanity:EnvelopeFrom",
    # what phishing and today's spam show that one regex over one value cannot see
    "url_features:UrlFeatures",
    "html_features:HtmlFeatures",
    "era_lexicon:EraLexicon",
    "attachment_content:AttachmentContent",
    "banned_files:BannedFiles",
    "sender_identity:SenderIdentity",
    "helo_sanity:HeloSanity",
    "relay:RelayAnalysis",
    "multimap:MultiMap",
    "ratelimit:RateLimit",
    "greylist:Greylist",
    "rbl:RblCheck",
    "email_auth:EmailAuth",
    "sender_domain:SenderDomain",
    "fuzzy:FuzzyCheck",
    "pyzor_check:PyzorCheck",
    "antivirus:AntivirusCheck",
    "bayes:BayesCheck",
    "model:ModelCheck",
)


@cache
def check_classes() -> tuple[type[Check], ...]:
    """The classes CHECKS names, imported on first use."""
    classes = []
    for entry in CHECKS:
        module, name = entry.split(":")
        cls = getattr(importlib.import_module(f"pyspamd.checks.{module}"), name)
        if not (isinstance(cls, type) and issubclass(cls, Check)):
            raise TypeError(f"checks registry: {entry} is not a Check")
        classes.append(cls)
    return tuple(classes)


def build_checks(config: Config, services: Services) -> list[Check]:
    """The checks this config turns on, built with the process's shared services."""
    return [check for cls in check_classes()
            if (check := cls.build(config, services)) is not None]
