"""Robinson-Fisher chi-square combining, as in SpamBayes and rspamd, vectorised with numpy.

Each token gets Robinson's smoothed spam probability f(w) from its spam and ham counts;
the most significant ones are combined by Fisher's method twice, once for "spammy" and once
for "hammy" evidence, and the two are folded into one probability. A token's weight (from
the tokenizer: distant word pairs count less) scales both its log term and its share of
the degrees of freedom.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import gammaincc


@dataclass(frozen=True, slots=True)
class Chi2Params:
    # Robinson's s and x: how much a token seen n times is pulled toward x (unknown-word
    # probability). s = 1.0 (SpamBayes uses 0.45) measured best here, see README.
    strength: float = 1.0
    unknown_prob: float = 0.5
    min_distance: float = 0.1  # |f - 0.5| below this says nothing, leave it out
    max_tokens: int = 2000  # the most significant tokens combined (see README)
    min_hits: int = 1  # a token learned fewer times than this is ignored


def token_probabilities(
    spam: np.ndarray, ham: np.ndarray, nspam: int, nham: int, params: Chi2Params
) -> np.ndarray:
    """Robinson's f(w) per token; counts are per class, in messages."""
    spam_ratio = spam / max(nspam, 1)
    ham_ratio = ham / max(nham, 1)
    total = spam_ratio + ham_ratio
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(total > 0, spam_ratio / total, params.unknown_prob)
    n = spam + ham
    s = params.strength
    return (s * params.unknown_prob + n * p) / (s + n)


def chi2_combine(probs: np.ndarray, weights: np.ndarray) -> float:
    """Fisher's combination of f(w)s into one spam probability in [0, 1]."""
    if len(probs) == 0:
        return 0.5
    probs = np.clip(probs, 1e-9, 1.0 - 1e-9)
    dof = float(weights.sum())
    # chi2 survival function with 2*dof degrees of freedom is the regularised upper gamma
    # function Q(dof, x/2); scipy's takes non-integer dof, which the weights make.
    ham_evidence = 1.0 - gammaincc(dof, -float(np.dot(weights, np.log(probs))))
    spam_evidence = 1.0 - gammaincc(dof, -float(np.dot(weights, np.log1p(-probs))))
    return float((1.0 + spam_evidence - ham_evidence) / 2.0)


def classify_counts(
    spam: np.ndarray,
    ham: np.ndarray,
    weights: np.ndarray,
    nspam: int,
    nham: int,
    params: Chi2Params,
) -> tuple[float, int]:
    """(spam probability, number of tokens that voted)."""
    keep = (spam + ham) >= params.min_hits
    f = token_probabilities(spam[keep], ham[keep], nspam, nham, params)
    w = weights[keep]
    distance = np.abs(f - 0.5)
    strong = distance >= params.min_distance
    f, w, distance = f[strong], w[strong], distance[strong]
    if len(f) > params.max_tokens:
        top = np.argpartition(-distance, params.max_tokens - 1)[: params.max_tokens]
        f, w = f[top], w[top]
    return chi2_combine(f, w), len(f)
