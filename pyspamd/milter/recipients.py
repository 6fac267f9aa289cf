"""Recipients of one message with different policies: whom the milter takes at RCPT.

A message is scanned once and gets one verdict, so recipients whose [[settings]] differ (or
whom a recipient map accepts unscanned while others are scanned) must not share it. With
`[milter] mixed_settings = "defer"` a recipient unlike the first accepted one is answered
452 4.5.3, which a sending MTA takes as "too many recipients": it delivers the message to
the others and sends it to this one in a transaction of its own. With "strictest" all are
taken and the scanner applies the strictest of their settings.

Kept apart from any milter transport: a session asks `admit` at each RCPT.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspamd.checks.multimap import MultiMap
from pyspamd.scanner import Scanner

DEFER_CODE = ("452", "4.5.3", "Too many recipients for this policy, try again")


@dataclass(frozen=True, slots=True)
class RecipientPolicy:
    settings: str  # the [[settings]] entry's name, "" for the defaults
    welcomed: bool  # a recipient map accepts mail for it unscanned

    def describe(self) -> str:
        return f"settings {self.settings or '(defaults)'}" + (
            ", accepted by a recipient map" if self.welcomed else "")


class RecipientGate:
    def __init__(self, scanner: Scanner) -> None:
        self.settings = scanner.settings
        self.maps = [c for c in scanner.checks if isinstance(c, MultiMap)
                     and any(m.match == "rcpt" for m in c.configs.values())]
        self.defer = scanner.config.milter.mixed_settings == "defer"
        # Nothing can tell two recipients apart: RCPT needs no answer (pymilter's @noreply).
        self.active = self.defer and (bool(self.settings) or bool(self.maps))

    def policy(self, client_ip: str | None, mail_from: str | None, user: str | None,
               rcpt: str) -> RecipientPolicy:
        applied = self.settings.for_recipient(client_ip, mail_from, user, rcpt)
        welcomed = any(m.welcomes_recipient(rcpt) for m in self.maps)
        return RecipientPolicy(applied.name, welcomed)

    def admit(self, first: RecipientPolicy | None, client_ip: str | None,
              mail_from: str | None, user: str | None,
              rcpt: str) -> tuple[RecipientPolicy | None, bool]:
        """(the transaction's policy from now on, whether to take this recipient)."""
        if not self.active:
            return first, True
        mine = self.policy(client_ip, mail_from, user, rcpt)
        if first is None:
            return mine, True
        return first, mine == first
