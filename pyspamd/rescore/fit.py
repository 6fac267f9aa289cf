"""The score fit: a logistic regression over symbol vectors whose weights, divided by a
fixed scale, are the symbols' scores, so the scores stay additive and the action thresholds
keep their meaning.

With F the summed score of the symbols that are not fitted (pinned, too rare), T the
`add header` threshold and a the scale (logit units per score point), the model is

    logit P(spam) = sum_j w_j x_j + a (F - T),    score_j = w_j / a

so a message whose scores add up to T sits at the model's decision point (even odds, after
weighing a ham error `ham_cost` times a missed spam). The scale is not fitted: left free,
symbols that fire on nearly every ham (MIME_GOOD, BAYES_HAM) stand in for the intercept and
the scale collapses. It is set so that the reject threshold means odds of `reject_odds`
to 1: with 6 and 15 and 1000:1, a point is a factor of 2.15 in the odds, greylist (4) is
about 1:5 and a message with no symbol about 1:100. The problem is then convex in w;
L-BFGS-B bounds keep the signs (a rule written for spam, default score > 0, never goes
below 0, one written for ham never above) and each score within `max_score`; an L2
penalty keeps scores of rules that fire on few messages modest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from pyspamd.rescore.vectors import SymbolVector


@dataclass(frozen=True, slots=True)
class FitParams:
    threshold: float = 6.0  # the add-header threshold: even odds
    reject: float = 15.0  # the reject threshold: odds of reject_odds to 1
    reject_odds: float = 1000.0
    min_hits: int = 10  # messages a symbol must fire on to be fitted
    l2: float = 0.3  # penalty on the logistic weights (docs/scores.md: how chosen)
    ham_cost: float = 20.0  # weight of a ham message in the loss against a spam one
    max_score: float = 15.0  # no fitted score beyond +/- this
    # Each vector also counts once more without these symbols, at this weight: the scores
    # must serve a new install, whose Bayes cannot vote yet, as well as a trained one;
    # fitted with Bayes alone, rules that fire where Bayes does get nothing.
    untrained: frozenset[str] = frozenset(("BAYES_SPAM", "BAYES_HAM"))
    untrained_weight: float = 0.1


@dataclass(slots=True)
class FittedScore:
    name: str
    old: float
    new: float
    spam_hits: int
    ham_hits: int
    why: str  # "fitted", or why it kept its score: "pinned", "too few hits", "informational"


@dataclass(slots=True)
class FitResult:
    scores: list[FittedScore] = field(default_factory=list)
    scale: float = 0.0  # a: logit units per score point
    spam: int = 0
    ham: int = 0

    def changed(self) -> dict[str, float]:
        return {s.name: s.new for s in self.scores if s.why == "fitted"}


def _loss(w: np.ndarray, x: np.ndarray, z: np.ndarray, y: np.ndarray, cost: np.ndarray,
          l2: float, a: float) -> tuple[float, np.ndarray]:
    margin = x @ w + a * z
    signed = np.where(y, margin, -margin)
    # log(1 + exp(-m)) and its derivative, stable for large |m|
    loss = float(np.sum(cost * np.logaddexp(0.0, -signed)) + 0.5 * l2 * w @ w)
    d_signed = -cost / (1.0 + np.exp(np.clip(signed, -500, 500)))
    grad = x.T @ np.where(y, d_signed, -d_signed) + l2 * w
    return loss, grad


def fit_scores(vectors: Sequence[SymbolVector], defaults: Mapping[str, float],
               pinned: set[str], params: FitParams | None = None,
               ranges: Mapping[str, tuple[float, float]] | None = None) -> FitResult:
    """Fit the score of each symbol that fired in `vectors`. `defaults`: the scores in force
    (rules, checks, config); `pinned`: symbols whose score must stay; `ranges`: tighter
    (low, high) limits for some symbols than +/- max_score (the sign bound still applies).
    Deterministic: the symbols are taken in name order and the optimiser has no
    randomness."""
    p = params or FitParams()
    if p.untrained_weight > 0 and any(p.untrained & v.factors.keys() for v in vectors):
        stripped = [SymbolVector(v.spam, {n: f for n, f in v.factors.items()
                                          if n not in p.untrained}) for v in vectors]
        weights = np.concatenate([np.ones(len(vectors)),
                                  np.full(len(vectors), p.untrained_weight)])
        vectors = [*vectors, *stripped]
    else:
        weights = np.ones(len(vectors))
    y = np.array([v.spam for v in vectors], dtype=bool)
    names = sorted({n for v in vectors for n in v.factors})
    hits_spam = {n: 0 for n in names}
    hits_ham = {n: 0 for n in names}
    for v, weight in zip(vectors, weights, strict=True):
        for n, f in v.factors.items():
            if f and weight == 1.0:
                (hits_spam if v.spam else hits_ham)[n] += 1
    free: list[str] = []
    real = weights == 1.0
    result = FitResult(spam=int((y & real).sum()), ham=int((~y & real).sum()))
    for n in names:
        old = float(defaults.get(n, 0.0))
        why = ("pinned" if n in pinned else "informational" if old == 0.0
               else "too few hits" if hits_spam[n] + hits_ham[n] < p.min_hits else "fitted")
        result.scores.append(FittedScore(n, old, old, hits_spam[n], hits_ham[n], why))
        if why == "fitted":
            free.append(n)
    if not free or not y.any() or y.all():
        for s in result.scores:
            if s.why == "fitted":
                s.why = "no data of both classes"
        return result
    col = {n: j for j, n in enumerate(free)}
    x = np.zeros((len(vectors), len(free)))
    offset = np.zeros(len(vectors))
    for i, v in enumerate(vectors):
        for n, f in v.factors.items():
            if n in col:
                x[i, col[n]] = f
            else:
                offset[i] += float(defaults.get(n, 0.0)) * f
    z = offset - p.threshold
    cost = np.where(y, 1.0, p.ham_cost) * weights
    cost *= len(y) / cost.sum()  # the penalty means the same whatever the corpus size
    sign = np.array([np.sign(defaults[n]) for n in free])
    a = float(np.log(p.reject_odds) / max(p.reject - p.threshold, 1.0))
    bounds = []
    for n, s in zip(free, sign, strict=True):
        low, high = (ranges or {}).get(n, (-p.max_score, p.max_score))
        bounds.append((0.0, high * a) if s > 0 else (low * a, 0.0))
    # here, not at the top: pyspamc imports this to build its parser, and scipy.optimize
    # costs every other command's start 0.1 s
    from scipy.optimize import minimize

    fitted = minimize(_loss, np.zeros(len(free)), args=(x, z, y, cost, p.l2, a), jac=True,
                      method="L-BFGS-B", bounds=bounds)
    result.scale = a
    for s in result.scores:
        if s.name in col:
            s.new = round(float(fitted.x[col[s.name]]) / a, 2) + 0.0  # no -0.0
    return result
