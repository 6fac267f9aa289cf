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
# The grid. A model fitted on top of the rules (train.py's rules_offset) is sure of body-only
# spam at lower probabilities than one fitted alone, hence the fine steps from 0.95 up;
# min_weight 1 is a step: the full score from the spam threshold on.
SPAM_TS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.96, 0.97, 0.975, 0.98, 0.985, 0.99,
           0.993, 0.995, 0.997, 0.998, 0.999)
CONFIDENTS = (0.95, 0.96, 0.97, 0.98, 0.985, 0.99, 0.993, 0.995, 0.997, 0.998, 0.999, 0.9995,
              0.9998, 0.9999)
MIN_WEIGHTS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
HAM_TS = (0.1, 0.03, 0.01)
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
    every ham group; returns it and the recall and worst FP it reaches on training mail.
    MODEL_HAM's threshold is `ham_t` or a lower one of HAM_TS: a model fitted on top of the
    rules gives spam the rules catch middling probabilities, which MODEL_HAM must spare."""
    ham_masks = [(groups == g) & ~spam for g in np.unique(groups[~spam])]
    spam_masks = [(groups == g) & spam for g in np.unique(groups[spam])]

    def measure(t: Thresholds) -> tuple[float, float]:
        caught = rules + model_score(p, t) >= spam_score
        worst_fp = max(float(caught[m].mean()) for m in ham_masks)
        return float(np.mean([caught[m].mean() for m in spam_masks])), worst_fp

    best: tuple[float, Thresholds, float] | None = None
    for ham in sorted({ham_t, *(h for h in HAM_TS if h < ham_t)}, reverse=True):
        for spam_t in SPAM_TS:
            for confident in (c for c in CONFIDENTS if c > spam_t):
                for min_w in MIN_WEIGHTS:
                    t = Thresholds(spam_t, confident, min(ham, spam_t), min_w)
                    recall, worst_fp = measure(t)
                    if worst_fp <= FP_TARGET and (best is None or recall > best[0]):
                        best = (recall, t, worst_fp)
    if best is None:  # nothing meets the target: the most careful point
        t = Thresholds(SPAM_TS[-1], CONFIDENTS[-1], min(ham_t, SPAM_TS[-1]), 0.2)
        recall, worst = measure(t)
        return t, {"mean_recall": recall, "worst_ham_fp": worst}
    return best[1], {"mean_recall": best[0], "worst_ham_fp": best[2]}
