"""Choose where MODEL_SPAM starts and how fast its weight grows, from training mail only.

The content model's probability turns into a score (checks/model.py): nothing under the
spam threshold, half of MODEL_SPAM's score at it and the full score at `confident`
(`min_weight` sets the half). Where those points go decides the verdict together with the
rules, so they are chosen on the verdict: every training message is scanned once with the
model off (rules and built-in checks, an empty Bayes store, as on a new install), its
out-of-fold model probability is added the way the check would add it, and the grid point
that catches the most spam (mean over the groups) while no ham group's false positives go
over the target wins. Held-out mail plays no part.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from pyspamd.checks.model import MODEL_HAM_SCORE, MODEL_SPAM_SCORE, Thresholds, weights_for

FP_TARGET = 0.0005  # per ham group, on the training mail's out-of-fold predictions
_scanner = None


def _init(config_path: str | None, store: str) -> None:
    global _scanner
    from pyspamd.config import load_config
    from pyspamd.scanner import Scanner

    config = load_config(config_path)
    config.storage.backend = "sqlite"
    config.storage.path = store
    config.model.enabled = False
    _scanner = Scanner.from_config(config)


def _scores(raws: list[bytes]) -> list[float]:
    assert _scanner is not None
    out = []
    for raw in raws:
        try:
            out.append(_scanner.scan(raw).score)
        except Exception:  # scored as nothing rather than stop the build
            out.append(0.0)
    return out


def rule_scores(raws: Sequence[bytes], jobs: int,
                config_path: str | None = None) -> tuple[np.ndarray, float]:
    """Each message's score with the model off and an empty Bayes store; and the config's
    `add header` threshold."""
    from pyspamd.actions import Thresholds as ActionThresholds
    from pyspamd.config import load_config

    spam_score = ActionThresholds.from_config(load_config(config_path).actions).spam_score
    with tempfile.TemporaryDirectory() as tmp:
        store = str(Path(tmp) / "empty.sqlite")
        chunks = [list(raws[i:i + 200]) for i in range(0, len(raws), 200)]
        with ProcessPoolExecutor(max(jobs, 1), initializer=_init,
                                 initargs=(config_path, store)) as pool:
            scores = [s for chunk in pool.map(_scores, chunks) for s in chunk]
    return np.array(scores), spam_score


def model_score(p: np.ndarray, t: Thresholds) -> np.ndarray:
    spam_w, ham_w = weights_for(p, t)
    return MODEL_SPAM_SCORE * spam_w + MODEL_HAM_SCORE * ham_w


def choose(p: np.ndarray, rules: np.ndarray, spam: np.ndarray, groups: np.ndarray,
           spam_score: float, ham_t: float) -> tuple[Thresholds, dict[str, float]]:
    """The grid point with the best mean spam recall whose ham FP stays under FP_TARGET in
    every ham group; returns it and the recall and worst FP it reaches on training mail."""
    ham_groups = [g for g in np.unique(groups[~spam])]
    spam_groups = [g for g in np.unique(groups[spam])]
    spam_ts = [0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99, 0.995]
    confidents = [0.95, 0.97, 0.98, 0.99, 0.995, 0.998, 0.999, 0.9995, 0.9998, 0.9999]
    best: tuple[float, Thresholds, float] | None = None
    for spam_t in spam_ts:
        for confident in confidents:
            if confident <= spam_t:
                continue
            for min_w in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7):
                t = Thresholds(spam_t, confident, min(ham_t, spam_t), min_w)
                caught = rules + model_score(p, t) >= spam_score
                worst_fp = max(float(caught[(groups == g) & ~spam].mean()) for g in ham_groups)
                if worst_fp > FP_TARGET:
                    continue
                recall = float(np.mean([caught[(groups == g) & spam].mean()
                                        for g in spam_groups]))
                if best is None or recall > best[0]:
                    best = (recall, t, worst_fp)
    if best is None:  # nothing meets the target: the most careful point
        t = Thresholds(spam_ts[-1], confidents[-1], min(ham_t, spam_ts[-1]), 0.2)
        caught = rules + model_score(p, t) >= spam_score
        worst = max(float(caught[(groups == g) & ~spam].mean()) for g in ham_groups)
        recall = float(np.mean([caught[(groups == g) & spam].mean() for g in spam_groups]))
        return t, {"mean_recall": recall, "worst_ham_fp": worst}
    return best[1], {"mean_recall": best[0], "worst_ham_fp": best[2]}
