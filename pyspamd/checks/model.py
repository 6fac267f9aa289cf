"""The content model check: MODEL_SPAM / MODEL_HAM from the shipped (or the site's own)
linear model, with a weight that grows with the model's confidence.

It needs no learning, so it votes from a new install's first message on. The model file is
read once per worker (and again only when the file changes, on a reload); a file that
cannot be used is logged once and the check stays silent, so mail still flows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

import numpy as np

from pyspamd.checks.base import Check
from pyspamd.config import Config
from pyspamd.model.linear import LinearModel, ModelError, load_model
from pyspamd.model.settings import ModelConfig
from pyspamd.services import Services
from pyspamd.symbols import Hits, SymbolDef
from pyspamd.task import Task

log = logging.getLogger("pyspamd.model")

# A confident MODEL_SPAM alone reaches `add header` (6) beside the small negative rules:
# at 6.0, MIME_GOOD (-0.12, every plain-text message) put a sure vote on body-only spam in
# the greylist band. 7.0 still leaves 6.71 with MIME_GOOD and MAILLIST (-0.17) both; only
# THREADED_REPLY (-1.0, a reply to mail the sender really got) pulls it under.
# `pyspamc rescore` refits both.
MODEL_SPAM_SCORE = 7.0
MODEL_HAM_SCORE = -2.0
MIN_WEIGHT = 0.5  # share of the score right at a threshold when the model does not say

_loaded: dict[tuple[str, int, int], LinearModel] = {}


def open_model(settings: ModelConfig) -> LinearModel:
    """The configured model, read once per process and file version (mtime, size); raises
    ModelError saying why it cannot be used."""
    path = settings.path
    try:
        stat = Path(path).stat()
    except OSError as exc:
        raise ModelError(f"{path}: cannot read model: {exc.strerror or exc}") from exc
    key = (path, stat.st_mtime_ns, stat.st_size)
    model = _loaded.get(key)
    if model is None:
        model = load_model(path)
        _loaded.clear()  # one model per worker: drop the one a reload replaced
        _loaded[key] = model
    return model


@dataclass(frozen=True, slots=True)
class Thresholds:
    spam: float
    confident: float
    ham: float
    min_weight: float = MIN_WEIGHT

    @classmethod
    def of(cls, model: LinearModel, settings: ModelConfig) -> Thresholds:
        own = model.meta.extra.get("thresholds") or {}
        spam = settings.spam_threshold or float(own.get("spam", 0.9))
        confident = settings.confident or float(own.get("confident", 0.99))
        ham = settings.ham_threshold or float(own.get("ham", 0.1))
        min_weight = float(own.get("min_weight", MIN_WEIGHT))
        return cls(spam, max(confident, spam), min(ham, spam), min_weight)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-9, 1 - 1e-9)
    return np.log(p / (1 - p))


@lru_cache(maxsize=8)
def _threshold_logits(t: Thresholds) -> tuple[float, float, float, float]:
    """Log-odds of the spam, confident, ham and 1 - confident thresholds: the same for every
    message, and five of weights_for's six logits."""
    spam, confident, ham, not_confident = (
        float(_logit(np.array(x))) for x in (t.spam, t.confident, t.ham, 1 - t.confident))
    return spam, confident, ham, not_confident


def weights_for(p: np.ndarray, t: Thresholds) -> tuple[np.ndarray, np.ndarray]:
    """(MODEL_SPAM weight, MODEL_HAM weight) per probability of spam, 0 where the symbol is
    not given. A weight goes from min_weight at its threshold to 1 at `confident` (for ham:
    as far under the ham threshold as `confident` is over 1/2), linearly in log-odds."""
    p = np.asarray(p, dtype=np.float64)
    lp = _logit(p)
    spam_logit, confident_logit, ham_logit, not_confident_logit = _threshold_logits(t)
    spam_span = confident_logit - spam_logit
    ham_span = ham_logit - not_confident_logit
    x_spam = np.ones_like(p) if spam_span <= 0 else (lp - spam_logit) / spam_span
    x_ham = np.ones_like(p) if ham_span <= 0 else (ham_logit - lp) / ham_span
    ramp = 1 - t.min_weight
    spam_w = np.where(p >= t.spam, t.min_weight + ramp * np.minimum(x_spam, 1.0), 0.0)
    ham_w = np.where((p <= t.ham) & (p < t.spam), t.min_weight + ramp * np.minimum(x_ham, 1.0),
                     0.0)
    return spam_w, ham_w


def verdict_symbol(p: float, t: Thresholds) -> tuple[str, float] | None:
    """(symbol, weight) for one probability of spam, or None in the unsure middle: what
    weights_for gives for [p], in Python floats (the same IEEE operations) rather than a
    dozen numpy calls on one-element arrays, which cost a scan 0.05 ms."""
    if t.ham < p < t.spam:
        return None
    spam_logit, confident_logit, ham_logit, not_confident_logit = _threshold_logits(t)
    clipped = min(max(p, 1e-9), 1 - 1e-9)
    lp = float(np.log(clipped / (1 - clipped)))  # numpy's log, as weights_for takes it
    ramp = 1 - t.min_weight
    if p >= t.spam:
        span = confident_logit - spam_logit
        weight = t.min_weight + ramp * min(1.0 if span <= 0 else (lp - spam_logit) / span, 1.0)
        if weight > 0:
            return "MODEL_SPAM", weight
    if p <= t.ham and p < t.spam:
        span = ham_logit - not_confident_logit
        weight = t.min_weight + ramp * min(1.0 if span <= 0 else (ham_logit - lp) / span, 1.0)
        if weight > 0:
            return "MODEL_HAM", weight
    return None


class ModelCheck(Check):
    name = "model"
    symbols: ClassVar = {
        "MODEL_SPAM": SymbolDef(MODEL_SPAM_SCORE,
                                "Content model: spam (score scaled by confidence)"),
        "MODEL_HAM": SymbolDef(MODEL_HAM_SCORE,
                               "Content model: ham (score scaled by confidence)"),
    }

    @classmethod
    def build(cls, config: Config, services: Services) -> ModelCheck | None:
        if not config.model.enabled:
            return None
        return cls(config, load=not services.symbols_only)

    def __init__(self, config: Config, load: bool = True) -> None:
        self.settings = config.model
        self.model: LinearModel | None = None
        self.thresholds: Thresholds | None = None
        if not load:  # only its symbols are wanted (configtest)
            return
        try:
            self.model = open_model(self.settings)
        except ModelError as exc:
            log.error("content model off: %s", exc)
            return
        self.thresholds = Thresholds.of(self.model, self.settings)

    def run(self, task: Task, hits: Hits) -> None:
        if self.model is None or self.thresholds is None:
            return
        p = self.model.probability(self.model.tokens(task), task)
        chosen = verdict_symbol(p, self.thresholds)
        if chosen is not None:
            symbol, weight = chosen
            hits.add(symbol, f"{p * 100:.2f}%", weight=round(weight, 2))

