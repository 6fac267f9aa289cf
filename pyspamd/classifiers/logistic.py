"""The learned model: logistic regression on the same hashed tokens, one weight per token.

Fitted from every learned message (the store keeps each message's tokens) in one pass of
AdaGrad stochastic gradient descent, in an order fixed by a seed: the result does not
depend on the order in which messages were learned (a site learns a spam folder, then a
ham folder; an online model taught that way learns "everything is spam", then "everything
is ham"), and unlearning or moving a message is exact, since the next fit simply leaves it
out or counts it as the other class. AdaGrad gives each token its own step size, so a rare
token that only ever appears in one class (a sender's address, a list's header) earns a
strong weight from a few messages, where Bayes' Robinson smoothing caps it; the README's
table shows what that buys on the SpamAssassin corpus.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pyspamd.storage.base import SPAM


@dataclass(frozen=True, slots=True)
class LogisticParams:
    # AdaGrad's base step: 0.1 measured best of 0.03-1.0 (larger steps overfit the last
    # messages seen, smaller ones leave the model unsure); see README.
    learning_rate: float = 0.1
    # Starting value of each token's sum of squared gradients: bounds the first step.
    initial_accumulator: float = 1.0
    seed: int = 0  # order of the pass over the learned messages


def sigmoid(score: float) -> float:
    if score >= 0:
        return 1.0 / (1.0 + math.exp(-score))
    e = math.exp(score)  # no overflow for very negative scores
    return e / (1.0 + e)


def probability(weights: np.ndarray) -> float:
    """Spam probability of a message from its tokens' weights (0 for unknown tokens; the
    bias token every message has carries the intercept)."""
    return sigmoid(float(weights.sum()))


def fit(messages: list[tuple[bytes, str, np.ndarray]],
        params: LogisticParams) -> tuple[np.ndarray, np.ndarray]:
    """(tokens, weights) fitted from (digest, class, tokens) triples sorted by digest."""
    if not messages:
        return np.zeros(0, dtype=np.uint64), np.zeros(0)
    lengths = np.array([len(t) for _, _, t in messages])
    vocabulary, inverse = np.unique(np.concatenate([t for _, _, t in messages]),
                                    return_inverse=True)
    features = np.split(inverse, np.cumsum(lengths)[:-1])
    targets = [1.0 if label == SPAM else 0.0 for _, label, _ in messages]
    weights = np.zeros(len(vocabulary))
    squares = np.full(len(vocabulary), params.initial_accumulator)
    rate = params.learning_rate
    for i in np.random.default_rng(params.seed).permutation(len(messages)):
        f = features[i]  # distinct tokens: the in-place updates below hit each once
        gradient = targets[i] - sigmoid(float(weights[f].sum()))
        squares[f] += gradient * gradient
        weights[f] += rate * gradient / np.sqrt(squares[f])
    used = weights != 0.0
    return vocabulary[used], weights[used]
