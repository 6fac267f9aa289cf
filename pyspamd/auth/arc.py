"""ARC chain verification (RFC 8617) with dkimpy.

dkimpy's ARC verifier is synchronous and asks for keys as it goes. The keys it can need are
named by the s= and d= tags of the ARC-Seal and ARC-Message-Signature headers, so they are
looked up first, all at once on our resolver, and dkimpy is handed a function that reads
them from that table: no thread, no lookup outside the message's budget.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import dkim

from pyspamd.auth.dkim_verify import signature_tags
from pyspamd.dns import DnsError, DnsTimeout, MessageDns

MAX_ARC_SETS = 10  # RFC 8617 5.1.1.1: more instances than 50 is a failure; 10 is plenty


@dataclass(frozen=True, slots=True)
class ArcResult:
    result: str  # pass, fail, none, temperror
    reason: str = ""
    instances: int = 0
    timed_out: bool = False


async def verify_arc(raw: bytes, headers: list[tuple[str, str]], lookups: MessageDns,
                     min_key_bits: int) -> ArcResult:
    arc = [(n.lower(), v) for n, v in headers
           if n.lower() in ("arc-seal", "arc-message-signature")]
    if not arc:
        return ArcResult("none", "no ARC headers")
    names: set[str] = set()
    for _, value in arc[: MAX_ARC_SETS * 2]:
        tags = signature_tags(value.encode("utf-8", "surrogateescape"))
        selector, domain = tags.get(b"s", b""), tags.get(b"d", b"")
        if selector and domain:
            names.add(f"{selector.decode('ascii', 'replace').lower()}._domainkey."
                      f"{domain.decode('ascii', 'replace').lower()}")
    keys: dict[str, bytes | None] = {}

    async def fetch(name: str) -> None:
        answer = await lookups.query(name, "TXT")
        records = [r for r in answer.records if r.strip()]
        keys[name] = records[0].encode("utf-8", "surrogateescape") if records else None

    try:
        await asyncio.gather(*(fetch(n) for n in sorted(names)))
    except DnsTimeout as exc:
        return ArcResult("temperror", f"key lookup timed out: {exc}", timed_out=True)
    except DnsError as exc:
        return ArcResult("temperror", f"key lookup failed: {exc}")

    def from_table(name: bytes, timeout: float = 5) -> bytes | None:
        return keys.get(name.decode("ascii", "replace").rstrip(".").lower())

    try:
        verifier = dkim.ARC(raw, minkey=min_key_bits)
        cv, sets, reason = verifier.verify(dnsfunc=from_table)
    except (dkim.DKIMException, ValueError, IndexError) as exc:
        return ArcResult("fail", str(exc) or type(exc).__name__)
    result = {dkim.CV_Pass: "pass", dkim.CV_Fail: "fail", dkim.CV_None: "none"}.get(cv, "fail")
    return ArcResult(result, reason if isinstance(reason, str) else str(reason), len(sets))
