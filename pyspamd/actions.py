"""Actions and their score thresholds; `[actions]` and its checks.

A leaf module: pyspamd.config and the settings modules import the action names from here.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from pyspamd.config_schema import Locator

NO_ACTION = "no action"
GREYLIST = "greylist"
ADD_HEADER = "add header"
REWRITE_SUBJECT = "rewrite subject"
SOFT_REJECT = "soft reject"
REJECT = "reject"
# Only forced (admin maps, banned files, viruses), or [actions] quarantine for the latter.
DISCARD = "discard"
QUARANTINE = "quarantine"

# Strongest first: decides between actions with equal thresholds and between forced actions.
STRENGTH = (REJECT, DISCARD, QUARANTINE, SOFT_REJECT, REWRITE_SUBJECT, ADD_HEADER, GREYLIST,
            NO_ACTION)
ALL_ACTIONS = frozenset(STRENGTH)
# Actions that mean "this is spam" (X-Spam-Flag: YES, `Spam: true`).
SPAM_ACTIONS = frozenset((REJECT, DISCARD, QUARANTINE, REWRITE_SUBJECT, ADD_HEADER))
_CONFIG_KEYS = {REJECT: "reject", QUARANTINE: "quarantine", SOFT_REJECT: "soft_reject",
                REWRITE_SUBJECT: "rewrite_subject", ADD_HEADER: "add_header",
                GREYLIST: "greylist"}
# The threshold options of [actions] (and of a [[settings]] table's actions).
THRESHOLD_KEYS = tuple(_CONFIG_KEYS.values())
# What a map entry or [antivirus] virus_action may force, in the order errors list them;
# "accept" is the admin's word for no action there (ACCEPT_WORDS turns it into one).
ACCEPT = "accept"
FORCEABLE = (REJECT, SOFT_REJECT, DISCARD, QUARANTINE, REWRITE_SUBJECT, ADD_HEADER, GREYLIST,
             NO_ACTION, ACCEPT)
ACCEPT_WORDS = {ACCEPT: NO_ACTION}


@dataclass
class ActionsConfig:
    # A threshold of false turns the action off.
    reject: float | bool = 15.0
    # Held in pyspamd's quarantine ([quarantine]) from this score up to reject's.
    quarantine: float | bool = False
    add_header: float | bool = 6.0
    rewrite_subject: float | bool = False
    greylist: float | bool = 4.0
    soft_reject: float | bool = False
    subject_template: str = "***SPAM*** %s"


def check_actions(config: ActionsConfig, loc: Locator) -> list[str]:
    errors = []
    for name in [f.name for f in fields(config) if f.name != "subject_template"]:
        if getattr(config, name) is True:
            errors.append(f"{loc.where(('actions', name))}: actions.{name} must be a "
                          "score threshold (a number) or false to turn the action off")
    quarantine, reject = config.quarantine, config.reject
    if (not isinstance(quarantine, bool) and not isinstance(reject, bool)
            and quarantine >= reject):
        errors.append(f"{loc.where(('actions', 'quarantine'))}: actions.quarantine "
                      f"({quarantine:g}) must be below actions.reject ({reject:g}), or no "
                      "message is ever quarantined by its score")
    if "%s" not in config.subject_template:
        errors.append(f"{loc.where(('actions', 'subject_template'))}: subject_template "
                      "needs %s where the original subject goes")
    return errors


@dataclass(frozen=True, slots=True)
class Thresholds:
    by_action: dict[str, float]

    @classmethod
    def from_config(cls, config: ActionsConfig,
                    overrides: dict[str, float | bool] | None = None) -> Thresholds:
        """`overrides`: thresholds by option name over `config`'s ([[settings]] actions)."""
        out: dict[str, float] = {}
        for action, key in _CONFIG_KEYS.items():
            value = (overrides or {}).get(key, getattr(config, key))
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
