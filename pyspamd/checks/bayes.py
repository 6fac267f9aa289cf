"""The Bayes check: BAYES_SPAM / BAYES_HAM from the learned token counts, and autolearn."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import ClassVar

from pyspamd.checks.base import Check
from pyspamd.classifiers.bayes import Bayes, Verdict
from pyspamd.classifiers.chi2 import Chi2Params
from pyspamd.classifiers.logistic import LogisticParams
from pyspamd.classifiers.tokenizer import TokenizerLimits
from pyspamd.config import BayesConfig, Config
from pyspamd.rescore.vectors import keep_vector
from pyspamd.result import ScanResult
from pyspamd.services import Services
from pyspamd.storage import StorageMissing, open_storage
from pyspamd.storage.base import HAM, NO_TOKENS, SPAM, BayesStore, LearnOutcome, StateStore
from pyspamd.symbols import Hits, SymbolDef
from pyspamd.task import Task

log = logging.getLogger("pyspamd.bayes")

MISSING_RETRY = 60.0  # seconds before looking again for a store that does not exist yet
MIN_WEIGHT = 0.1  # share of the score right at the threshold; 1.0 at certainty


def bayes_from_config(config: Config, create: bool) -> Bayes:
    """A classifier on a store handle of its own (learning from the command line)."""
    return bayes_on(config, open_storage(config.storage, create=create))


def bayes_on(config: Config, storage: BayesStore) -> Bayes:
    bayes = config.bayes
    return Bayes(
        storage,
        min_learns=bayes.min_learns,
        params=Chi2Params(),
        limits=TokenizerLimits(max_words=bayes.max_words, max_tokens=bayes.max_tokens,
                               osb_window=bayes.osb_window),
        classifier=bayes.classifier,
        logistic_params=LogisticParams(c=bayes.model_c),
        max_fit_messages=bayes.max_fit_messages,
    )


def verdict_symbol(verdict: Verdict, config: BayesConfig) -> tuple[str, float] | None:
    """(symbol, weight) for a verdict, or None in the unsure middle or before min_learns."""
    if not verdict.ready:
        return None
    p = verdict.probability
    if p >= config.spam_threshold:
        span = max(1.0 - config.spam_threshold, 1e-9)
        return "BAYES_SPAM", MIN_WEIGHT + (1 - MIN_WEIGHT) * min((p - config.spam_threshold)
                                                                  / span, 1.0)
    if p <= config.ham_threshold:
        span = max(config.ham_threshold, 1e-9)
        return "BAYES_HAM", MIN_WEIGHT + (1 - MIN_WEIGHT) * min((config.ham_threshold - p)
                                                                 / span, 1.0)
    return None


class BayesCheck(Check):
    name = "bayes"
    symbols: ClassVar = {
        "BAYES_SPAM": SymbolDef(5.0, "Bayes classifier: spam (score scaled by the probability)"),
        "BAYES_HAM": SymbolDef(-3.0, "Bayes classifier: ham (score scaled by the probability)"),
    }

    @classmethod
    def build(cls, config: Config, services: Services) -> BayesCheck | None:
        if not config.bayes.enabled:
            return None
        opener = services.storage_opener(writes=False)
        return cls(config, opener, opener)

    def __init__(self, config: Config, storage: Callable[[], BayesStore],
                 vectors: Callable[[], StateStore]) -> None:
        self.config = config
        self.storage = storage
        self.vectors = vectors  # where autolearn keeps the symbol vectors (rescore)
        self._bayes: Bayes | None = None
        self._missing_until = 0.0
        self._ready = False  # min_learns of each class seen in the store once

    def classifier(self) -> Bayes | None:
        if self._bayes is not None:
            return self._bayes
        if time.monotonic() < self._missing_until:
            return None
        try:
            bayes = bayes_on(self.config, self.storage())
            bayes.storage.token_counts(NO_TOKENS)
        except StorageMissing as exc:
            log.info("Bayes off until something is learned: %s", exc)
            self._missing_until = time.monotonic() + MISSING_RETRY
            return None
        self._bayes = bayes
        return bayes

    def run(self, task: Task, hits: Hits) -> None:
        bayes = self.classifier()
        if bayes is None:
            return
        if not self._ready:
            # Bayes cannot vote before min_learns of each class. A new install's store exists
            # long before that (the statistics live in it too); reading its totals, one
            # query, instead of tokenizing and looking up every token saves about 1 ms per
            # message until then.
            totals = bayes.storage.token_counts(NO_TOKENS)
            if min(totals.nspam, totals.nham) < bayes.min_learns:
                if self.config.bayes.autolearn.enabled:
                    task.scratch[self.name] = (
                        Verdict(0.5, 0, 0, totals.nspam, totals.nham, False), None)
                return
            self._ready = True
        verdict = bayes.classify(task)
        chosen = verdict_symbol(verdict, self.config.bayes)
        if chosen is not None:
            symbol, weight = chosen
            hits.add(symbol, f"{verdict.probability * 100:.2f}%", weight=round(weight, 2))
        if self.config.bayes.autolearn.enabled:
            task.scratch[self.name] = (verdict, chosen[0] if chosen else None)

    def after_scan(self, task: Task, result: ScanResult) -> None:
        if self.config.bayes.autolearn.enabled:
            self.autolearn(task, result)

    def autolearn(self, task: Task, result: ScanResult) -> str | None:
        """Learn a clear case after scoring; returns the class learned, if any.

        The Bayes symbol's own score is left out of the decision, so Bayes cannot teach
        itself; a message Bayes already put in the right class is not learned again (it
        would only reinforce what is known); and a class that already has `max_ratio`
        times the other's messages is not learned more, so one class cannot run away."""
        entry = task.scratch.pop(self.name, None)
        if not isinstance(entry, tuple) or self._bayes is None:
            return None
        verdict, symbol = entry
        settings = self.config.bayes.autolearn
        bayes_score = sum(s.score for s in result.symbols.values()
                          if s.name in ("BAYES_SPAM", "BAYES_HAM"))
        score = result.score - bayes_score
        if score >= settings.spam_score and symbol != "BAYES_SPAM":
            label = SPAM
        elif score <= settings.ham_score and symbol != "BAYES_HAM":
            label = HAM
        else:
            return None
        mine = verdict.nspam if label == SPAM else verdict.nham
        other = verdict.nham if label == SPAM else verdict.nspam
        if mine >= self.config.bayes.min_learns and mine > settings.max_ratio * max(other, 1):
            return None
        tokens = self._bayes.tokens(task)
        outcome = self._bayes.learn_tokens(tokens, label)
        if self.config.bayes.symbol_vectors and outcome in (LearnOutcome.LEARNED,
                                                             LearnOutcome.MOVED):
            keep_vector(self.vectors(), label, tokens.digest(), result,
                        self.config.bayes.max_fit_messages)
        return label
