"""SPF results the policy service found at RCPT time, kept a few minutes in the store, so the
milter takes the same result at end of message instead of asking DNS a second time.

Keyed by what SPF depends on: client address, HELO name and envelope sender. The policy
service writes the entry only for a real evaluation (not a skipped or whitelisted client),
and says whether it prepended Received-SPF itself, so the milter adds no second one.
"""

from __future__ import annotations

import json
import logging

from pyspamd.auth.spf import SpfResult
from pyspamd.storage.base import StateStore

log = logging.getLogger("pyspamd.spf")

TTL = 600.0  # a message's RCPT and its end of DATA are seconds apart; a retry is a new check
_PREFIX = "spf:rcpt:"


def _key(ip: str, helo: str | None, sender: str | None) -> str:
    return f"{_PREFIX}{ip.strip('[]').lower()}|{(helo or '').lower()}|{(sender or '').lower()}"


def remember(storage: StateStore, ip: str, helo: str | None, sender: str | None,
             result: SpfResult, prepended: bool) -> None:
    value = {"result": result.result, "explanation": result.explanation,
             "identity": result.identity, "domain": result.domain, "sender": result.sender,
             "header": result.header, "prepended": prepended}
    storage.set(_key(ip, helo, sender), json.dumps(value).encode(), ttl=TTL)


def recall(storage: StateStore, ip: str, helo: str | None,
           sender: str | None) -> tuple[SpfResult, bool] | None:
    """(the result, whether Received-SPF is in the message already), or None."""
    raw = storage.get(_key(ip, helo, sender))
    if raw is None:
        return None
    try:
        value = json.loads(raw)
        result = SpfResult(str(value["result"]), str(value["explanation"]),
                           str(value["identity"]), str(value["domain"]), str(value["sender"]),
                           str(value["header"]))
        return result, bool(value["prepended"])
    except (ValueError, KeyError, TypeError):
        return None  # not ours or damaged: look it up again
