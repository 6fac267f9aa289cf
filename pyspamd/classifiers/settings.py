"""`[bayes]`: the classifier learned from the site's own mail, its autolearning, and the
checks of their options."""

from __future__ import annotations

from dataclasses import dataclass, field

from pyspamd.config_schema import Locator

CLASSIFIERS = ("logistic", "chi2")


@dataclass
class AutolearnConfig:
    enabled: bool = False
    spam_score: float = 12.0
    ham_score: float = -2.0
    max_ratio: float = 3.0


@dataclass
class BayesConfig:
    enabled: bool = True
    min_learns: int = 200
    classifier: str = "logistic"  # or "chi2"
    model_c: float = 1.0
    spam_threshold: float = 0.9
    ham_threshold: float = 0.5  # 0.1 suits classifier = "chi2"
    osb_window: int = 1
    max_words: int = 1500
    max_tokens: int = 8000
    expire_days: int = 60
    # Newest messages per class whose tokens are kept for the logistic model's fit; 0: all.
    max_fit_messages: int = 10000
    # Each learned message's symbol vector is kept too (as many), for `pyspamc rescore
    # --from-store` (docs/scores.md).
    symbol_vectors: bool = True
    autolearn: AutolearnConfig = field(default_factory=AutolearnConfig)


def check_bayes(bayes: BayesConfig, loc: Locator) -> list[str]:
    errors = []

    def bad(keys: tuple[str, ...], text: str) -> None:
        errors.append(f"{loc.where(('bayes', *keys))}: {text}")

    if bayes.classifier not in CLASSIFIERS:
        bad(("classifier",), f"bayes.classifier must be \"logistic\" or \"chi2\", got "
                             f"{bayes.classifier!r}")
    if not bayes.model_c > 0.0:
        bad(("model_c",), "bayes.model_c must be above 0")
    if not 0.5 <= bayes.spam_threshold <= 1.0:
        bad(("spam_threshold",), "bayes.spam_threshold must be between 0.5 and 1.0")
    if not 0.0 <= bayes.ham_threshold <= 0.5:
        bad(("ham_threshold",), "bayes.ham_threshold must be between 0.0 and 0.5")
    if not 1 <= bayes.osb_window <= 5:
        bad(("osb_window",), "bayes.osb_window must be 1 (single words) to 5")
    for name in ("min_learns", "max_words", "max_tokens", "expire_days", "max_fit_messages"):
        if getattr(bayes, name) < 0:
            bad((name,), f"bayes.{name} must be >= 0")
    if bayes.autolearn.spam_score <= bayes.autolearn.ham_score:
        bad(("autolearn", "spam_score"),
            "autolearn.spam_score must be above autolearn.ham_score")
    if bayes.autolearn.max_ratio < 1.0:
        bad(("autolearn", "max_ratio"), "autolearn.max_ratio must be at least 1.0")
    return errors
