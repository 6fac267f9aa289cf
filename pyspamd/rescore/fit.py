"""The score fit: a logistic regression over symbol vectors whose weights, divided by a
fitted scale, are the symbols' scores, so the scores stay additive and the action
thresholds keep their meaning.

With F the summed score of the symbols that are not fitted (pinned, too rare) and T the
`add header` threshold, the model is

    logit P(spam) = sum_j w_j x_j + a (F - T),    score_j = w_j / a

so a message whose scores add up to T sits at the model's decision point (shifted by the
cost of a ham error, `ham_cost`), the greylist and reject thresholds become lower and higher
odds of spam on the same scale, and the problem stays convex in (w, a). L-BFGS-B bounds
keep the signs: a rule written for spam (default score > 0) never goes below 0, one
written for ham never above. An L2 penalty on w keeps scores of rules that fire on few
messages modest. The fit runs twice: the second with the scale a of the first held, so
`max_score` bounds each score directly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize

from pyspamd.rescore.vectors import SymbolVector


@dataclass(frozen=True, slots=True)
class FitParams:
    threshold: float = 6.0  # the add-header threshold the scale is tied to
    min_hits: int = 10  # messages a symbol must fire on to be fitted
    l2: float = 1.0  # penalty on the logistic weights
    ham_cost: float = 5.0  # weight of a ham message in the loss against a spam one
    max_score: float = 15.0  # no fitted score beyond +/- this


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


def _loss(theta: np.ndarray, x: np.ndarray, z: np.ndarray, y: np.ndarray, cost: np.ndarray,
          l2: float, fixed_a: float | None) -> tuple[float, np.ndarray]:
    w = theta if fixed_a is not None else theta[:-1]
    a = fixed_a if fixed_a is not None else theta[-1]
    margin = x @ w + a * z
    signed = np.where(y, margin, -margin)
    # log(1 + exp(-m)) and its derivative, stable for large |m|
    loss = float(np.sum(cost * np.logaddexp(0.0, -signed)) + 0.5 * l2 * w @ w)
    d_margin = -cost * (1.0 / (1.0 + np.exp(np.clip(signed, -500, 500))))
    d_margin = np.where(y, d_margin, -d_margin)
    grad_w = x.T @ d_margin + l2 * w
    if fixed_a is not None:
        return loss, grad_w
    return loss, np.append(grad_w, d_margin @ z)


def fit_scores(vectors: Sequence[SymbolVector], defaults: Mapping[str, float],
               pinned: set[str], params: FitParams | None = None) -> FitResult:
    """Fit the score of each symbol that fired in `vectors`. `defaults`: the scores in force
    (rules, checks, config); `pinned`: symbols whose score must stay. Deterministic: the
    symbols are taken in name order and the optimiser has no randomness."""
    p = params or FitParams()
    y = np.array([v.spam for v in vectors], dtype=bool)
    names = sorted({n for v in vectors for n in v.factors})
    hits_spam = {n: 0 for n in names}
    hits_ham = {n: 0 for n in names}
    for v in vectors:
        for n, f in v.factors.items():
            if f:
                (hits_spam if v.spam else hits_ham)[n] += 1
    free: list[str] = []
    result = FitResult(spam=int(y.sum()), ham=int((~y).sum()))
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
    cost = np.where(y, 1.0, p.ham_cost)
    cost *= len(y) / cost.sum()  # the penalty means the same whatever the corpus size
    sign = np.array([np.sign(defaults[n]) for n in free])
    w_bounds = [(0.0, None) if s > 0 else (None, 0.0) for s in sign]
    theta0 = np.append(np.zeros(len(free)), 0.5)
    first = minimize(_loss, theta0, args=(x, z, y, cost, p.l2, None), jac=True,
                     method="L-BFGS-B", bounds=[*w_bounds, (1e-3, None)])
    a = float(first.x[-1])
    limit = p.max_score * a
    second = minimize(_loss, np.clip(first.x[:-1], -limit, limit),
                      args=(x, z, y, cost, p.l2, a), jac=True, method="L-BFGS-B",
                      bounds=[(0.0, limit) if s > 0 else (-limit, 0.0) for s in sign])
    result.scale = a
    for s in result.scores:
        if s.name in col:
            s.new = round(float(second.x[col[s.name]]) / a, 2) + 0.0  # no -0.0
    return result
