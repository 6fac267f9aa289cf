"""The Received chain: which hosts handed the message on, newest hop first.

MTAs write Received lines in many dialects; this reads the parts all of them share
(RFC 5321 4.4): `from HELO (rdns [ip])`, `by HOST`, `with PROTO`, `id ID`, `; DATE`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import NamedTuple, overload

_FROM = re.compile(r"^\s*from\s+(\S+)(?:\s+\(([^()]{0,300})\))?", re.IGNORECASE)
_BY = re.compile(r"\bby\s+([^\s;()]+)", re.IGNORECASE)
_WITH = re.compile(r"\bwith\s+([A-Za-z0-9_-]+)", re.IGNORECASE)
_IP = re.compile(r"\[(?:IPv6:)?([0-9A-Fa-f:.]{3,45})\]")
_RDNS = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9.-]*\.[A-Za-z]{2,})")
_MAX_LEN = 2000  # a Received line longer than this is junk; never feed it to regexes whole


class ReceivedHop(NamedTuple):
    """One hop. A tuple, not a frozen dataclass, whose checked set-up of each field cost a
    third of the parse: the tokenizer reads six hops of every message."""

    helo: str
    rdns: str
    ip: str
    by: str
    protocol: str
    date_text: str  # after the last ";", read into `date` only when asked

    @property
    def date(self) -> datetime | None:
        """The hop's date. Parsing it costs more than the rest of the line, and only the
        date check asks, for the newest hop that has one; the tokenizer reads six hops."""
        return _parse_date(self.date_text)


@lru_cache(maxsize=64)
def _parse_date(text: str) -> datetime | None:
    if not text.strip():
        return None
    try:
        return parsedate_to_datetime(text.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def parse_received(value: str) -> ReceivedHop:
    text = value[:_MAX_LEN]
    head, _, date_text = text.rpartition(";")
    if not head:
        head, date_text = text, ""
    helo = rdns = ip = ""
    m = _FROM.search(head)
    if m:
        helo = m.group(1).strip("[]").lower()
        comment = m.group(2) or ""
        if ip_match := _IP.search(comment):
            ip = ip_match.group(1)
        if rdns_match := _RDNS.search(comment):
            rdns = rdns_match.group(1).lower()
    if not ip and (ip_match := _IP.search(head)):
        ip = ip_match.group(1)
    by = m.group(1).lower() if (m := _BY.search(head)) else ""
    proto = m.group(1).upper() if (m := _WITH.search(head)) else ""
    return ReceivedHop(helo, rdns, ip, by, proto, date_text)


class ReceivedChain(Sequence[ReceivedHop]):
    """The hops, newest first, each parsed when first read: the date check wants the newest
    hop only and the Bayes tokenizer the first six, while a message carries seven on average
    (SpamAssassin corpus) and a hostile one hundreds."""

    def __init__(self, values: list[str]) -> None:
        self._values = values
        self._hops: list[ReceivedHop | None] = [None] * len(values)

    def __len__(self) -> int:
        return len(self._values)

    @overload
    def __getitem__(self, index: int) -> ReceivedHop: ...

    @overload
    def __getitem__(self, index: slice) -> list[ReceivedHop]: ...

    def __getitem__(self, index: int | slice) -> ReceivedHop | list[ReceivedHop]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self._values)))]
        hop = self._hops[index]
        if hop is None:
            hop = self._hops[index] = parse_received(self._values[index])
        return hop
