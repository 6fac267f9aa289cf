"""The Bayes classifier: tokenizer + storage + the learned logistic model (or chi-square
combining), for the scan check, the training commands, autolearn and evaluation alike."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from pyspamd.classifiers import logistic
from pyspamd.classifiers.chi2 import Chi2Params, classify_counts
from pyspamd.classifiers.logistic import LogisticParams
from pyspamd.classifiers.tokenizer import TokenizerLimits, Tokens, tokenize
from pyspamd.storage.base import LearnOutcome, Storage
from pyspamd.task import Task


@dataclass(frozen=True, slots=True)
class Verdict:
    probability: float  # of spam, 0..1
    tokens: int  # distinct tokens in the message
    used: int  # tokens that voted
    nspam: int
    nham: int
    ready: bool  # enough of each class learned to vote


def today() -> int:
    return int(time.time() // 86400)


class Bayes:
    def __init__(
        self,
        storage: Storage,
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

    def tokens(self, task: Task) -> Tokens:
        return tokenize(task, self.limits)

    def classify_tokens(self, tokens: Tokens) -> Verdict:
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
        tokens, weights = logistic.fit(self.storage.learned_messages(), self.logistic_params)
        self.storage.set_model(tokens, weights)
        return len(tokens)

    def classify(self, task: Task) -> Verdict:
        return self.classify_tokens(self.tokens(task))

    def learn_tokens(self, tokens: Tokens, label: str, day: int | None = None,
                     name: str = "") -> LearnOutcome:
        return self.storage.learn(tokens.digest(), tokens.hashes, label,
                                  today() if day is None else day, name=name,
                                  keep=self.max_fit_messages)

    def learn(self, task: Task, label: str) -> LearnOutcome:
        return self.learn_tokens(self.tokens(task), label)

    def unlearn(self, task: Task) -> LearnOutcome:
        tokens = self.tokens(task)
        return self.storage.unlearn(tokens.digest(), tokens.hashes)
