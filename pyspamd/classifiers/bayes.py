"""The Bayes classifier: tokenizer + storage + the learned logistic model (or chi-square
combining), for the scan check, the training commands, autolearn and evaluation alike."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from pyspamd.classifiers import logistic
from pyspamd.classifiers.chi2 import Chi2Params, classify_counts
from pyspamd.classifiers.logistic import LogisticParams
from pyspamd.classifiers.tokenizer import TOKENIZER_VERSION, TokenizerLimits, Tokens, task_tokens
from pyspamd.storage.base import NO_TOKENS, BayesStore, LearnOutcome
from pyspamd.task import Task


@dataclass(frozen=True, slots=True)
class Verdict:
    probability: float  # of spam, 0..1
    tokens: int  # distinct tokens in the message
    used: int  # tokens that voted
    nspam: int
    nham: int
    ready: bool  # enough of each class learned to vote


# The Bayes marker holding the tokenizer version the store was learned with.
TOKENIZER_KEY = "bayes:tokenizer"
# The Bayes marker holding the learned totals ("nspam:nham") the model was last fitted at.
FITTED_KEY = "bayes:fitted_totals"


def learned_tokenizer(storage: BayesStore) -> int | None:
    """Tokenizer version the store's messages were learned with: None for a store with
    nothing learned yet, 1 for one from before versions were recorded."""
    stored = storage.bayes_marker(TOKENIZER_KEY)
    if stored is not None:
        try:
            return int(stored)
        except ValueError:
            return 0  # not ours: unknown, so never taken for the current version
    totals = storage.token_counts(NO_TOKENS)
    return 1 if totals.nspam + totals.nham else None


def today() -> int:
    return int(time.time() // 86400)


class Bayes:
    def __init__(
        self,
        storage: BayesStore,
        min_learns: int = 200,
        params: Chi2Params | None = None,
        limits: TokenizerLimits | None = None,
        classifier: str = "logistic",
        logistic_params: LogisticParams | None = None,
        max_fit_messages: int = 0,
    ) -> None:
        self.storage = storage
        self.min_learns = min_learns
        self.params = params or Chi2Params()
        self.limits = limits or TokenizerLimits()
        self.classifier = classifier  # "logistic" or "chi2"
        self.logistic_params = logistic_params or LogisticParams()
        # Newest messages of each class the model is fitted from (0: all): what bounds the
        # stored tokens, the fit's time and its memory.
        self.max_fit_messages = max_fit_messages
        self._tokenizer_checked = False
        # The logistic model as last read from the store (sorted tokens, weights) and its
        # generation; -1 before the first read, so a store from before generations were
        # kept (0) is still read once.
        self._model_generation = -1
        self._model: tuple[np.ndarray, np.ndarray] | None = None

    def tokenizer_warning(self) -> str | None:
        """What to tell the admin when the store was learned by another tokenizer version;
        marks a store with nothing learned as this version's. Checked once per instance."""
        self._tokenizer_checked = True
        learned = learned_tokenizer(self.storage)
        if learned is None:
            self.storage.set_bayes_marker(TOKENIZER_KEY, str(TOKENIZER_VERSION).encode())
            return None
        if learned == TOKENIZER_VERSION:
            return None
        return (f"the Bayes store was learned with tokenizer version {learned} and this "
                f"pyspamd tokenizes as version {TOKENIZER_VERSION}: its messages are not "
                "recognised as already learned and the model mixes both; relearn into an "
                "empty store (README, Bayes: upgrading)")

    def tokens(self, task: Task) -> Tokens:
        return task_tokens(task, self.limits)

    def classify_tokens(self, tokens: Tokens) -> Verdict:
        if self.classifier == "logistic":
            snapshot = self.storage.model_snapshot(self._model_generation)
            if snapshot.tokens is not None and snapshot.weights is not None:
                self._model = (snapshot.tokens, snapshot.weights)
                self._model_generation = snapshot.generation
            if snapshot.generation and self._model is not None:
                weights = logistic.lookup(*self._model, tokens.hashes)
                ready = min(snapshot.nspam, snapshot.nham) >= self.min_learns
                return Verdict(logistic.probability(weights), len(tokens),
                               int(np.count_nonzero(weights)), snapshot.nspam,
                               snapshot.nham, ready)
        counts = self.storage.token_counts(tokens.hashes,
                                           model_only=self.classifier == "logistic")
        ready = counts.nspam >= self.min_learns and counts.nham >= self.min_learns
        if (self.classifier == "logistic" and counts.model_tokens
                and counts.weights is not None):
            probability = logistic.probability(counts.weights)
            used = int(np.count_nonzero(counts.weights))
        else:  # chi-square, also until a model has been fitted (a store from before)
            probability, used = classify_counts(counts.spam, counts.ham, tokens.weights,
                                                counts.nspam, counts.nham, self.params)
        return Verdict(probability, len(tokens), used, counts.nspam, counts.nham, ready)

    def fit_model(self) -> int:
        """Fit the logistic model again from every learned message and store it; returns
        the number of tokens in it. `pyspamc learn_*`, `unlearn` and `expire` call it."""
        if self.max_fit_messages:  # learn() keeps to it; this applies a lowered limit
            self.storage.limit_fit_messages(self.max_fit_messages)
        totals = self._totals()
        tokens, weights = logistic.fit(self.storage.learned_messages(), self.logistic_params)
        self.storage.set_model(tokens, weights)
        self.storage.set_bayes_marker(FITTED_KEY, totals)
        return len(tokens)

    def _totals(self) -> bytes:
        counts = self.storage.token_counts(NO_TOKENS)
        return f"{counts.nspam}:{counts.nham}".encode()

    def model_outdated(self) -> bool:
        """Messages learned or unlearned since the model was fitted (as far as the totals
        tell: a learn and an unlearn in between cancel out until the next fit)."""
        fitted = self.storage.bayes_marker(FITTED_KEY)
        return fitted is not None and fitted != self._totals()

    def classify(self, task: Task) -> Verdict:
        return self.classify_tokens(self.tokens(task))

    def learn_tokens(self, tokens: Tokens, label: str, day: int | None = None,
                     name: str = "") -> LearnOutcome:
        if not self._tokenizer_checked:  # autolearn into a new store marks it too
            self.tokenizer_warning()
        return self.storage.learn(tokens.digest(), tokens.hashes, label,
                                  today() if day is None else day, name=name,
                                  keep=self.max_fit_messages)

    def learn(self, task: Task, label: str) -> LearnOutcome:
        return self.learn_tokens(self.tokens(task), label)

    def unlearn(self, task: Task) -> LearnOutcome:
        tokens = self.tokens(task)
        return self.storage.unlearn(tokens.digest(), tokens.hashes)
