"""Header sanity: Received count, Date plausibility, From versus envelope sender."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import ClassVar

from pyspamd.checks.base import Check
from pyspamd.symbols import Hits, SymbolDef
from pyspamd.task import Task

_G = "headers"

# (minimum count, symbol) largest first; rspamd's names, so admins' metas carry over.
_RCVD_STEPS = ((12, "RCVD_COUNT_TWELVE"), (7, "RCVD_COUNT_SEVEN"), (5, "RCVD_COUNT_FIVE"),
               (3, "RCVD_COUNT_THREE"), (2, "RCVD_COUNT_TWO"), (1, "RCVD_COUNT_ONE"),
               (0, "RCVD_COUNT_ZERO"))


class ReceivedCount(Check):
    name = "received_count"
    symbols: ClassVar[Mapping[str, SymbolDef]] = {
        name: SymbolDef(0.0, f"Message has {n}+ Received headers", _G) for n, name in _RCVD_STEPS
    }

    def run(self, task: Task, hits: Hits) -> None:
        count = task.headers.count("received")
        for minimum, symbol in _RCVD_STEPS:
            if count >= minimum:
                hits.add(symbol, str(count))
                return


class DateCheck(Check):
    """Date header versus the time the message was received.

    "Received" time is the date of the newest Received header when there is one (the
    receiving MTA's own clock), else now: so re-scanning old mail does not call it stale.
    """

    name = "date"
    future = timedelta(hours=2)
    past = timedelta(days=1)
    symbols: ClassVar[Mapping[str, SymbolDef]] = {
        "INVALID_DATE": SymbolDef(1.5, "Date header is not an RFC 5322 date", _G),
        "DATE_IN_FUTURE": SymbolDef(4.0, "Date more than 2 hours after receipt", _G),
        "DATE_IN_PAST": SymbolDef(1.0, "Date more than 1 day before receipt", _G),
    }

    def run(self, task: Task, hits: Hits) -> None:
        values = task.headers.decoded("date")
        if not values:
            return  # MISSING_DATE is a rule
        try:
            date = parsedate_to_datetime(values[0])
        except (TypeError, ValueError, IndexError, OverflowError):
            hits.add("INVALID_DATE", values[0])
            return
        if date.tzinfo is None:
            date = date.replace(tzinfo=UTC)
        received = next((h.date for h in task.received if h.date is not None), None)
        if received is None or received.tzinfo is None:
            received = datetime.now(UTC)
        if date - received > self.future:
            hits.add("DATE_IN_FUTURE", _hours(date - received))
        elif received - date > self.past:
            hits.add("DATE_IN_PAST", _hours(received - date))


def _hours(delta: timedelta) -> str:
    return f"{delta.total_seconds() / 3600:.0f}h"


class EnvelopeFrom(Check):
    name = "envelope_from"
    symbols: ClassVar[Mapping[str, SymbolDef]] = {
        "FROM_NEQ_ENVFROM": SymbolDef(0.0, "From header differs from the envelope sender", _G),
        "FROM_EQ_ENVFROM": SymbolDef(0.0, "From header equals the envelope sender", _G),
    }

    def run(self, task: Task, hits: Hits) -> None:
        env_from = (task.envelope.mail_from or "").lower()
        header_from = task.from_address
        if not env_from or not header_from:
            return
        if env_from == header_from:
            hits.add("FROM_EQ_ENVFROM")
        else:
            hits.add("FROM_NEQ_ENVFROM", header_from, env_from)
