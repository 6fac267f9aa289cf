"""Rate limits: token buckets per key (client, SASL user, sender, sender domain, recipient)
in the storage backend, written `COUNT / PERIOD` ("100 / 1h": a burst of 100, refilled at
100 per hour)."""

from __future__ import annotations

import re
from dataclasses import dataclass

KEY_TYPES = ("ip", "user", "sender", "sender_domain", "rcpt")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*([smhd])\s*$")
# What the reply calls each key type ("from client 192.0.2.1").
NOUNS = {"ip": "from client", "user": "from user", "sender": "from sender",
         "sender_domain": "from sender domain", "rcpt": "to recipient"}


class RateError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Limit:
    key_type: str
    count: int
    period: float  # seconds
    text: str  # as written, normalised: "100 / 1h"

    @property
    def rate(self) -> float:
        return self.count / self.period


def parse_limit(key_type: str, text: str) -> Limit:
    if key_type not in KEY_TYPES:
        raise RateError(f"unknown key type {key_type!r}; use {', '.join(KEY_TYPES)}")
    m = _RATE.match(text)
    if not m:
        raise RateError(f"{text!r} is not a rate; write COUNT / PERIOD, e.g. \"100 / 1h\" "
                        "(units s, m, h, d)")
    count, amount, unit = int(m.group(1)), float(m.group(2) or 1), m.group(3)
    if count < 1 or amount <= 0:
        raise RateError(f"{text!r}: the count and the period must be positive")
    shown = f"{m.group(2) or ''}{unit}"
    return Limit(key_type, count, amount * _UNITS[unit], f"{count} / {shown}")
