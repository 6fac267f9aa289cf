"""The headers that report authentication results to the recipient's software:
Authentication-Results (RFC 8601, built with the authres package) and Received-SPF
(RFC 7208 9.1, as policyd-spf writes it)."""

from __future__ import annotations

from collections.abc import Sequence

import authres
import authres.arc
import authres.dmarc

from pyspamd.auth.arc import ArcResult
from pyspamd.auth.dkim_verify import DkimResult
from pyspamd.auth.dmarc import DmarcResult
from pyspamd.auth.spf import SpfResult

_MAX_REASON = 80


def _reason(text: str) -> str | None:
    clean = " ".join(text.replace('"', "'").replace("\\", "/").split())
    return clean[:_MAX_REASON] or None


def authentication_results(authserv_id: str, spf: SpfResult | None,
                           dkim: Sequence[DkimResult] | None, dmarc: DmarcResult | None,
                           arc: ArcResult | None) -> str:
    """The value of an Authentication-Results header (without the name)."""
    results: list[authres.core.AuthenticationResult] = []
    if spf is not None:
        if spf.identity == "helo":
            results.append(authres.SPFAuthenticationResult(
                result=spf.result, smtp_helo=spf.domain, reason=None))
        else:
            results.append(authres.SPFAuthenticationResult(
                result=spf.result, smtp_mailfrom=spf.sender or spf.domain))
    if dkim is not None:
        if not dkim:
            results.append(authres.DKIMAuthenticationResult(result="none"))
        for sig in dkim:
            results.append(authres.DKIMAuthenticationResult(
                result=sig.result, header_d=sig.domain or None, header_s=sig.selector or None,
                reason=_reason(sig.reason) if sig.result != "pass" else None,
                properties=[authres.core.AuthenticationResultProperty("header", "b",
                                                                      sig.header_b)]
                if sig.header_b else None))
    if dmarc is not None:
        results.append(authres.dmarc.DMARCAuthenticationResult(
            result=dmarc.result, header_from=dmarc.from_domain or None,
            policy=dmarc.policy or None,
            reason=_reason(dmarc.reason) if dmarc.result not in ("pass", "none") else None))
    if arc is not None:
        results.append(authres.arc.ARCAuthenticationResult(
            result=arc.result,
            reason=_reason(arc.reason) if arc.result not in ("pass", "none") else None))
    if not results:
        return authres.AuthenticationResultsHeader(
            authserv_id=authserv_id, results=[]).header_value()
    header = authres.AuthenticationResultsHeader(authserv_id=authserv_id, results=results)
    return header.header_value()
