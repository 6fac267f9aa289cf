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
    if not errors:
        errors.extend(check_threshold_order(config, loc))
    if "%s" not in config.subject_template:
        errors.append(f"{loc.where(('actions', 'subject_template'))}: subject_template "
                      "needs %s where the original subject goes")
    return errors


# (weaker, stronger): when both are set, the weaker's threshold must be the lower one, or
# the weaker action can never happen (reject = 3 below add_header = 6 rejects all the mail
# that was to be marked).
_ORDER = (("greylist", "add_header"), ("greylist", "rewrite_subject"), ("greylist", "reject"),
          ("add_header", "reject"), ("rewrite_subject", "reject"), ("soft_reject", "reject"),
          ("greylist", "quarantine"), ("add_header", "quarantine"),
          ("rewrite_subject", "quarantine"), ("quarantine", "reject"))


def _number(value: float | bool) -> float | None:
    return None if isinstance(value, bool) else float(value)


def check_threshold_order(config: ActionsConfig, loc: Locator) -> list[str]:
    errors = []
    for weaker, stronger in _ORDER:
        low, high = _number(getattr(config, weaker)), _number(getattr(config, stronger))
        if low is None or high is None or low < high:
            continue
        at = loc.where_any(("actions", stronger), ("actions", weaker))
        errors.append(f"{at}: actions.{stronger} ({high:g}) must be above actions.{weaker} "
                      f"({low:g}), or {weaker.replace('_', ' ')} never happens; set them in "
                      "order (greylist < add_header < rewrite_subject < quarantine < reject) "
                      "or set one to false")
    return errors


def greylist_without_greylisting(config: ActionsConfig, greylisting: bool,
                                 loc: Locator) -> str | None:
    """The warning for a greylist threshold while greylisting is off: with nothing to
    remember the first attempt, every message from that score on is deferred every time."""
    threshold = _number(config.greylist)
    if greylisting or threshold is None:
        return None
    at = loc.where_any(("actions", "greylist"), ("greylist", "enabled"))
    return (f"{at}: actions.greylist = {threshold:g} while [greylist] enabled = false: "
            f"every message scoring from {threshold:g} is deferred (451) on every attempt; "
            "set actions.greylist = false, or enable greylisting")


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
