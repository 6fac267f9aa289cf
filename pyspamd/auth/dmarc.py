"""DMARC (RFC 7489): does SPF or DKIM pass for a domain aligned with the From header, and
what does the From domain's owner ask receivers to do when neither does?

The policy is the `_dmarc` TXT record of the From domain, else of its organizational
domain (the registrable domain per the Public Suffix List), where `sp=` applies.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from pyspamd.auth.dkim_verify import DkimResult
from pyspamd.auth.spf import SpfResult
from pyspamd.dns import DnsError, DnsTimeout, MessageDns
from pyspamd.dns.domains import normalize_domain, registrable_domain

POLICIES = ("none", "quarantine", "reject")


@dataclass(frozen=True, slots=True)
class DmarcRecord:
    policy: str
    subdomain_policy: str
    strict_dkim: bool
    strict_spf: bool
    percent: int


@dataclass(frozen=True, slots=True)
class DmarcResult:
    result: str  # pass, fail, none, temperror, permerror
    from_domain: str
    policy: str = ""  # the policy that applies to this message: none, quarantine, reject
    reason: str = ""
    timed_out: bool = False


def parse_record(text: str) -> DmarcRecord | None:
    """None when it is not a usable DMARC record (RFC 7489 6.6.3: then there is none)."""
    tags: dict[str, str] = {}
    for item in text.split(";"):
        key, sep, value = item.partition("=")
        if sep:
            tags.setdefault(key.strip().lower(), value.strip())
    if tags.get("v") != "DMARC1" or not text.lstrip().startswith("v"):
        return None
    policy = tags.get("p", "").lower()
    if policy not in POLICIES:
        return None
    subdomain = tags.get("sp", "").lower()
    try:
        percent = max(0, min(100, int(tags.get("pct", "100"))))
    except ValueError:
        percent = 100
    return DmarcRecord(policy, subdomain if subdomain in POLICIES else policy,
                       tags.get("adkim", "r").lower() == "s",
                       tags.get("aspf", "r").lower() == "s", percent)


def aligned(domain: str, from_domain: str, strict: bool) -> bool:
    domain = normalize_domain(domain)
    if not domain:
        return False
    if strict:
        return domain == from_domain
    return (registrable_domain(domain) or domain) == (registrable_domain(from_domain)
                                                      or from_domain)


async def _record(lookups: MessageDns, domain: str) -> tuple[DmarcRecord | None, str]:
    answer = await lookups.query(f"_dmarc.{domain}", "TXT")
    texts = [t for t in answer.records if t.lstrip().lower().startswith("v=dmarc1")]
    if len(texts) != 1:
        return None, "several DMARC records" if texts else ""
    record = parse_record(texts[0])
    return record, "" if record else f"unusable DMARC record {texts[0][:60]!r}"


async def check_dmarc(lookups: MessageDns, from_domain: str, spf: SpfResult | None,
                      dkim: Sequence[DkimResult]) -> DmarcResult:
    domain = normalize_domain(from_domain)
    if not domain:
        return DmarcResult("none", "", reason="no usable From domain")
    org = registrable_domain(domain) or domain
    try:
        record, problem = await _record(lookups, domain)
        subdomain = False
        if record is None and not problem and org != domain:
            record, problem = await _record(lookups, org)
            subdomain = True
    except DnsTimeout as exc:
        return DmarcResult("temperror", domain, reason=str(exc), timed_out=True)
    except DnsError as exc:
        return DmarcResult("temperror", domain, reason=str(exc))
    if record is None:
        return DmarcResult("permerror" if problem else "none", domain, reason=problem)
    policy = record.subdomain_policy if subdomain else record.policy
    spf_ok = spf is not None and spf.result == "pass" \
        and aligned(spf.domain, domain, record.strict_spf)
    dkim_ok = [d.domain for d in dkim
               if d.result == "pass" and aligned(d.domain, domain, record.strict_dkim)]
    if spf_ok or dkim_ok:
        how = "SPF" if spf_ok else f"DKIM d={dkim_ok[0]}"
        return DmarcResult("pass", domain, policy, f"aligned {how}")
    if record.percent < 100 and random.uniform(0, 100) >= record.percent:
        # Outside the sampled share (pct=): one step weaker (RFC 7489 6.6.4).
        policy = POLICIES[max(0, POLICIES.index(policy) - 1)]
    return DmarcResult("fail", domain, policy, "no aligned SPF or DKIM pass")
