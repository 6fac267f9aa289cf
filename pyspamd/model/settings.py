"""`[model]`: the content model the scan uses, and the checks of its options."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pyspamd.config_schema import Locator, beside_config, shipped_path

SHIPPED_MODEL = "pyspamd-content.npz"


@dataclass
class ModelConfig:
    """`[model]`: the content model shipped in models/ (or one trained with `pyspamc
    model-train`); it votes MODEL_SPAM / MODEL_HAM from the first message on."""

    enabled: bool = True
    path: str = field(default_factory=lambda: str(shipped_path("models") / SHIPPED_MODEL))
    # 0: the thresholds the model was trained with (its metadata). Else probabilities:
    # MODEL_SPAM from spam_threshold (half its score) to confident (its full score);
    # MODEL_HAM at or under ham_threshold.
    spam_threshold: float = 0.0
    confident: float = 0.0
    ham_threshold: float = 0.0


def check_model(model: ModelConfig, config_path: Path | None, loc: Locator) -> list[str]:
    """Also resolves model.path beside the config file."""
    errors: list[str] = []
    if model.path:
        model.path = beside_config(model.path, config_path)
    for name in ("spam_threshold", "confident", "ham_threshold"):
        value = getattr(model, name)
        if value != 0.0 and not 0.0 < value < 1.0:
            errors.append(f"{loc.where(('model', name))}: model.{name} must be 0 (the "
                          "model's own) or a probability between 0 and 1")
    if model.spam_threshold and model.confident and model.confident <= model.spam_threshold:
        errors.append(f"{loc.where(('model', 'confident'))}: model.confident must be "
                      "above model.spam_threshold")
    if model.spam_threshold and model.ham_threshold >= model.spam_threshold:
        errors.append(f"{loc.where(('model', 'ham_threshold'))}: model.ham_threshold "
                      "must be below model.spam_threshold")
    if model.enabled and not model.path:
        errors.append(f"{loc.where(('model', 'path'))}: model.path is empty; set it or "
                      "set model.enabled = false")
    return errors
