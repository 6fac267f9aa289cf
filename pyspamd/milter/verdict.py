"""What the milter tells the MTA at end of message, decided from a scan result.

Kept apart from the pymilter session so the decision can be tested without an MTA.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from pyspamd import actions
from pyspamd.config import Config
from pyspamd.result import ScanResult, header_changes

# Headers a sender could forge to fake a verdict; ours replace them.
VERDICT_HEADERS = ("x-spamd-result", "x-spam-flag", "x-spam-status", "x-spam-level",
                   "x-spam-bar", "x-pyspamd-queue-id", "x-pyspamd-server", "x-pyspamd-scan",
                   "x-pyspamd-antivirus", "x-pyspamd-quarantine")
_MAX_REPLY_TEXT = 400  # SMTP reply lines are limited to 512 octets with code and CRLF

# The milter protocol's action flags (SMFIF_*) an MTA offers at negotiation; a milter may
# use only those. Postfix offers all; other MTAs and test clients may not.
SMFIF_ADDHDRS = 0x01
SMFIF_CHGHDRS = 0x10
SMFIF_QUARANTINE = 0x20
ALL_ACTIONS = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_QUARANTINE


@dataclass(slots=True)
class Reply:
    """An SMTP reply for reject/tempfail outcomes."""

    code: str
    status: str
    text: str


@dataclass(slots=True)
class Verdict:
    disposition: str  # "accept", "reject", "tempfail", "discard"
    reply: Reply | None = None
    add_headers: list[tuple[str, str]] = field(default_factory=list)
    change_headers: list[tuple[str, int, str]] = field(default_factory=list)  # name, index, value
    # Inserted at the top, as a receiving MTA does (Authentication-Results, DKIM-Signature).
    insert_headers: list[tuple[str, str]] = field(default_factory=list)
    quarantine: str = ""


def fit_to_mta(verdict: Verdict, offered: int) -> list[str]:
    """Drop what the verdict asks of the MTA beyond the actions it `offered` (SMFIF_*
    flags); returns what was dropped, to log. The disposition and its reply stay: every MTA
    takes those, so a reject is never turned into a failure by a header it cannot add."""
    dropped = []
    if not offered & SMFIF_CHGHDRS and verdict.change_headers:
        dropped.append("header changes (no SMFIF_CHGHDRS): "
                       + ", ".join(sorted({name for name, _, _ in verdict.change_headers})))
        verdict.change_headers = []
    if not offered & SMFIF_ADDHDRS and (verdict.add_headers or verdict.insert_headers):
        dropped.append("added headers (no SMFIF_ADDHDRS)")
        verdict.add_headers, verdict.insert_headers = [], []
    if not offered & SMFIF_QUARANTINE and verdict.quarantine:
        dropped.append("quarantine (no SMFIF_QUARANTINE): accepted")
        verdict.quarantine = ""
    return dropped


def reply_text(text: str) -> str:
    """One line, printable, without a lone '%' (libmilter drops replies with one)."""
    clean = re.sub(r"[\x00-\x1f\x7f]+", " ", text).replace("%", " percent")
    return clean[:_MAX_REPLY_TEXT].strip() or "Message refused"


def top_symbols(result: ScanResult, count: int = 3) -> str:
    positive = [s for s in result.sorted_symbols() if s.score > 0][:count]
    return ", ".join(s.name for s in positive) or "no symbols"


def _fill(template: str, result: ScanResult) -> str:
    return template.format(score=result.score, required=result.required_score,
                           symbols=top_symbols(result), action=result.action,
                           queue_id=result.queue_id)


def decide(
    result: ScanResult,
    config: Config,
    queue_id: str,
    server_name: str,
    foreign: dict[str, list[str]],
    check_headers: Sequence[tuple[str, str]] = (),
) -> Verdict:
    """Turn the scan result into an SMTP outcome plus header changes; `check_headers` are
    those the checks asked for (Task.add_headers)."""
    m = config.milter
    verdict = Verdict("accept")
    for name, values in foreign.items():
        for index in range(len(values), 0, -1):
            if m.foreign_headers != "keep":
                verdict.change_headers.append((name, index, ""))
        if m.foreign_headers == "rename":
            verdict.add_headers.extend((f"X-Original-{name}", v) for v in values)
    action = result.action
    if action == actions.REJECT:
        text = result.message or _fill(m.reject_message, result)
        verdict.disposition = "reject"
        verdict.reply = Reply("554", "5.7.1", reply_text(text))
        return verdict
    if action in (actions.SOFT_REJECT, actions.GREYLIST):
        template = m.greylist_message if action == actions.GREYLIST else m.soft_reject_message
        text = result.message or _fill(template, result)
        verdict.disposition = "tempfail"
        verdict.reply = Reply("451", "4.7.1", reply_text(text))
        return verdict
    if action == actions.DISCARD:
        verdict.disposition = "discard"
        return verdict
    changes = header_changes(result, check_headers, config)
    verdict.insert_headers.extend(changes.insert)
    verdict.add_headers.extend(changes.add)
    if queue_id:
        verdict.add_headers.append(("X-Pyspamd-Queue-Id", queue_id))
    verdict.add_headers.append(("X-Pyspamd-Server", server_name))
    if changes.subject is not None:
        verdict.change_headers.append(("Subject", 1, changes.subject))
    if action == actions.QUARANTINE:
        verdict.quarantine = reply_text(result.message or _fill(m.quarantine_message, result))
        verdict.add_headers.append(("X-Pyspamd-Quarantine", verdict.quarantine))
    return verdict


def quarantine_fallback(verdict: Verdict, fallback: str) -> Verdict:
    """What a message pyspamd could not quarantine gets instead ([quarantine]
    fallback_action): Postfix's hold queue (`verdict` as it is), a refusal, or delivery."""
    if fallback == "reject":
        return Verdict("reject", Reply("554", "5.7.1", verdict.quarantine))
    if fallback == "tempfail":
        return Verdict("tempfail", Reply("451", "4.7.1", "Temporary local problem, please "
                                                         "try again later"))
    if fallback == "accept":
        verdict.quarantine = ""
    return verdict


# What a release from the quarantine overrides: all that would stop the delivery.
_HELD_BACK = (actions.REJECT, actions.DISCARD, actions.QUARANTINE, actions.SOFT_REJECT,
              actions.GREYLIST)


def released_action(result: ScanResult) -> None:
    """An admin released it: delivered, as spam by its headers if its score says so."""
    if result.action not in _HELD_BACK:
        return
    result.action = actions.ADD_HEADER if result.score >= result.spam_score else (
        actions.NO_ACTION)
    result.message = result.forced_by = ""


def unscanned(reason: str, server_name: str, queue_id: str) -> list[tuple[str, str]]:
    """Headers for a message accepted without a verdict (too big, trusted, scan failed)."""
    headers = [("X-Pyspamd-Scan", reason)]
    if queue_id:
        headers.append(("X-Pyspamd-Queue-Id", queue_id))
    headers.append(("X-Pyspamd-Server", server_name))
    return headers
