"""What a map entry tells pyspamd to do: Postfix's access(5) and header_checks(5) verbs
turned into pyspamd actions.

An entry is `KEY [VERB [text]]`. Without a verb the map's own configured action applies
(an rspamd-style list). Postfix verbs that change a message in ways a milter verdict
cannot (PREPEND, REDIRECT, FILTER, ...) are reported and their line is skipped, so a
shared Postfix file still loads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pyspamd import actions

# Verb -> pyspamd action (None: a symbol only, the message goes on).
_ACTIONS: dict[str, str | None] = {
    "REJECT": actions.REJECT,
    "DEFER": actions.SOFT_REJECT,
    "DEFER_IF_PERMIT": actions.SOFT_REJECT,
    "DEFER_IF_REJECT": actions.SOFT_REJECT,
    "DISCARD": actions.DISCARD,
    "HOLD": actions.QUARANTINE,
    "WARN": None,
    "INFO": None,
    "OK": actions.NO_ACTION,
    "PERMIT": actions.NO_ACTION,
}
# Verbs Postfix knows that a milter cannot carry out; their lines are skipped with a warning.
UNSUPPORTED = frozenset({
    "IGNORE", "PREPEND", "REPLACE", "REDIRECT", "FILTER", "BCC", "PASS", "STRIP",
    "TRANSPORT", "SKIP",
})
_NUMERIC = re.compile(r"^([245])\d\d\Z")
_DSN = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}\s+")  # pyspamd's reply sets its own status
_RESTRICTION = re.compile(r"^(?:permit|reject|check|defer|warn_if)_[a-z_]+\Z")


class VerbError(ValueError):
    pass


class VerbUnsupported(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Entry:
    """One map line's result. `verb` is "" for a plain list entry."""

    verb: str
    action: str | None  # forced action; None: symbol only
    text: str  # reply text for reject/defer, or the note of WARN/INFO
    where: str  # "FILE:LINE" or "values[N]"
    stop: bool = False  # DUNNO (and OK in header_checks): the line counts as no match

    def describe(self) -> str:
        verb = self.verb or "(listed)"
        return f"{verb} {self.text}".strip() + f" ({self.where})"


def parse_result(result: str, where: str, header_checks: bool) -> Entry:
    """`result` is what follows the key/pattern. `header_checks`: OK means DUNNO there, as
    header_checks(5) says; in access tables OK means permit (accept without scoring)."""
    result = result.strip()
    if not result:
        return Entry("", None, "", where)
    word, _, text = result.partition(" ")
    text = text.strip()
    verb = word.upper()
    if verb == "DUNNO" or (verb == "OK" and header_checks):
        return Entry(verb, None, "", where, stop=True)
    if verb in _ACTIONS:
        return Entry(verb, _ACTIONS[verb], text, where)
    numeric = _NUMERIC.match(word)
    if numeric:
        kind = numeric.group(1)
        if kind == "2":  # an all-numerical access result is treated as OK by Postfix
            return Entry(word, actions.NO_ACTION, text, where)
        return Entry(word, actions.REJECT if kind == "5" else actions.SOFT_REJECT,
                     _DSN.sub("", text), where)
    if verb in UNSUPPORTED or _RESTRICTION.match(word.lower()):
        raise VerbUnsupported(f"{word} is a Postfix action pyspamd cannot carry out; line "
                              "skipped (keep it in Postfix's own checks)")
    raise VerbError(f"unknown action {word!r}; use REJECT, DEFER, DISCARD, HOLD, WARN, INFO, "
                    "OK, DUNNO or a 4NN/5NN reply code, or nothing for a plain list entry")
