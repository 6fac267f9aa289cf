"""Actions and their score thresholds."""

from __future__ import annotations

from dataclasses import dataclass

from pyspamd.config import ActionsConfig

NO_ACTION = "no action"
GREYLIST = "greylist"
ADD_HEADER = "add header"
REWRITE_SUBJECT = "rewrite subject"
SOFT_REJECT = "soft reject"
REJECT = "reject"
# Only admin maps force these two; no score leads to them.
DISCARD = "discard"
QUARANTINE = "quarantine"

# Strongest first: decides between actions with equal thresholds and between forced actions.
STRENGTH = (REJECT, DISCARD, QUARANTINE, SOFT_REJECT, REWRITE_SUBJECT, ADD_HEADER, GREYLIST,
            NO_ACTION)
ALL_ACTIONS = frozenset(STRENGTH)
# Actions that mean "this is spam" (X-Spam-Flag: YES, `Spam: true`).
SPAM_ACTIONS = frozenset((REJECT, DISCARD, QUARANTINE, REWRITE_SUBJECT, ADD_HEADER))
_CONFIG_KEYS = {REJECT: "reject", SOFT_REJECT: "soft_reject", REWRITE_SUBJECT: "rewrite_subject",
                ADD_HEADER: "add_header", GREYLIST: "greylist"}


@dataclass(frozen=True, slots=True)
class Thresholds:
    by_action: dict[str, float]

    @classmethod
    def from_config(cls, config: ActionsConfig) -> Thresholds:
        out: dict[str, float] = {}
        for action, key in _CONFIG_KEYS.items():
            value = getattr(config, key)
            if value is not False and value is not True:
                out[action] = float(value)
        return cls(out)

    def choose(self, score: float) -> str:
        best, best_threshold = NO_ACTION, float("-inf")
        for action in STRENGTH:
            threshold = self.by_action.get(action)
            if threshold is not None and score >= threshold and threshold > best_threshold:
                best, best_threshold = action, threshold
        return best

    @property
    def required_score(self) -> float:
        """The reject threshold, as rspamc shows it (`Score: 9.40 / 15.00`)."""
        return self.by_action.get(REJECT, max(self.by_action.values(), default=0.0))

    @property
    def spam_score(self) -> float:
        """The score from which a message is called spam (X-Spam-Status required=)."""
        for action in (ADD_HEADER, REWRITE_SUBJECT, REJECT):
            if action in self.by_action:
                return self.by_action[action]
        return self.required_score


def strongest(actions: list[str]) -> str:
    return min(actions, key=STRENGTH.index)
