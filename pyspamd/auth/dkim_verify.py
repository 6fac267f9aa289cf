"""DKIM verification (RFC 6376) with dkimpy; key lookups go through our resolver, so they
share the message's cache and budget and run beside the other checks.

Each signature names its key (s= and d=), so the keys are looked up first, all at once,
and dkimpy's synchronous verifier reads them from that table. (dkimpy's own asyncio API
would need aiodns and its own resolver.)

dkimpy reports only True or False; the reason for a failure goes to its logger, so each
verification gets a small logger that keeps the last message for the header's reason.
"""

from __future__ import annotations

import asyncio
import binascii
import re
from dataclasses import dataclass

import dkim

from pyspamd.dns import DnsError, DnsTimeout, MessageDns

MAX_SIGNATURES = 5  # verified per message; more is a resource attack, not mail
_TAG = re.compile(rb"\s*([a-z]+)\s*=\s*([^;]*)")


@dataclass(frozen=True, slots=True)
class DkimResult:
    result: str  # pass, fail, permerror, temperror (RFC 8601 names)
    domain: str  # d=
    selector: str  # s=
    header_b: str  # the first 8 characters of b=, to tell signatures apart
    reason: str = ""
    timed_out: bool = False


class _ReasonLog:
    """The logger interface dkimpy calls; keeps what it said went wrong."""

    def __init__(self) -> None:
        self.reason = ""

    def debug(self, *args: object) -> None:
        return None

    info = debug

    def warning(self, message: object, *args: object) -> None:
        self.reason = str(message) % args if args else str(message)

    error = warning


def signature_tags(value: bytes) -> dict[bytes, bytes]:
    """The tag=value pairs of a DKIM-Signature or ARC header, whitespace removed."""
    tags: dict[bytes, bytes] = {}
    for item in value.split(b";"):
        m = _TAG.match(item)
        if m:
            tags[m.group(1)] = re.sub(rb"\s+", b"", m.group(2))
    return tags


def _text(value: bytes | None) -> str:
    return (value or b"").decode("ascii", "replace")


async def verify_dkim(raw: bytes, lookups: MessageDns, min_key_bits: int) -> list[DkimResult]:
    """One result per DKIM-Signature (up to MAX_SIGNATURES); [] for an unsigned message."""
    try:
        checker = dkim.DKIM(raw, minkey=min_key_bits)
    except dkim.DKIMException as exc:
        return [DkimResult("permerror", "", "", "", f"unparsable message: {exc}")]
    signatures = [value for name, value in checker.headers
                  if name.lower() == b"dkim-signature"][:MAX_SIGNATURES]
    keys = await asyncio.gather(*(_key(lookups, signature_tags(v)) for v in signatures),
                                return_exceptions=True)
    results = []
    for index, (value, key) in enumerate(zip(signatures, keys, strict=True)):
        tags = signature_tags(value)
        domain, selector = _text(tags.get(b"d")), _text(tags.get(b"s"))
        header_b = _text(tags.get(b"b"))[:8]
        if isinstance(key, DnsTimeout):
            results.append(DkimResult("temperror", domain, selector, header_b,
                                      f"key lookup timed out: {key}", timed_out=True))
            continue
        if isinstance(key, DnsError):
            results.append(DkimResult("temperror", domain, selector, header_b,
                                      f"key lookup failed: {key}"))
            continue
        if isinstance(key, BaseException):
            raise key

        def from_table(name: bytes, timeout: float = 5, key: bytes | None = key) -> bytes | None:
            return key

        reason = _ReasonLog()
        checker.logger = reason
        try:
            ok = checker.verify(idx=index, dnsfunc=from_table)
            result = "pass" if ok else ("fail" if _bad_signature(reason.reason) else
                                        "permerror")
            results.append(DkimResult(result, domain, selector, header_b,
                                      "" if ok else reason.reason or "signature did not verify"))
        except (dkim.DKIMException, ValueError, IndexError, TypeError, binascii.Error) as exc:
            # A broken b= (bad base64), a key too short, a malformed signature or key record.
            results.append(DkimResult("fail" if _bad_signature(str(exc)) else "permerror",
                                      domain, selector, header_b, str(exc) or type(exc).__name__))
    return results


async def _key(lookups: MessageDns, tags: dict[bytes, bytes]) -> bytes | None:
    selector, domain = _text(tags.get(b"s")), _text(tags.get(b"d"))
    if not selector or not domain:
        return None  # dkimpy reports the missing tag
    answer = await lookups.query(f"{selector}._domainkey.{domain}", "TXT")
    records = [r for r in answer.records if r.strip()]
    # Several records for one key name: RFC 6376 3.6.2.2 leaves it undefined; the first one
    # is used, as dkimpy would. No record: dkimpy reports the key missing.
    return records[0].encode("utf-8", "surrogateescape") if records else None


def _bad_signature(reason: str) -> bool:
    """dkimpy's words for "the key is fine and the signature does not match"."""
    low = reason.lower()
    return "body hash mismatch" in low or "signature verification failed" in low \
        or low.startswith("signature did not verify") or low == ""
