"""The shipped content model: a linear model over hashed tokens, stored as plain arrays.

A message's features are its Bayes tokens (64-bit hashes from the Bayes tokenizer) plus
the structure tokens of `features`; each hash picks one of 2**hash_bits weights (the
hashing trick, as scikit-learn's HashingVectorizer), a feature counts once, and the
probability of spam is the logistic of the summed weights plus the bias.

The file is a numpy `.npz` read with allow_pickle=False, so loading it never runs code:
`weights` (float32, 2**hash_bits), `bias` (float64, one value) and `meta` (a JSON text in a
unicode array) with the format, the model's version, the hash size, the tokenizer and
feature versions it was trained with, the date and the training counts.
"""

from __future__ import annotations

import json
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pyspamd.classifiers.tokenizer import (
    TOKENIZER_VERSION,
    TokenizerLimits,
    Tokens,
    distinct,
    hash_texts,
    receiving_side_tokens,
    task_tokens,
)
from pyspamd.model.features import FEATURES_VERSION, structure_tokens
from pyspamd.task import Task

FORMAT = "pyspamd-linear-model"
FORMAT_VERSION = 1
MAX_HASH_BITS = 24  # 16M weights, 64 MB: far over what any model here needs
MAX_FILE_BYTES = 64 << 20


class ModelError(Exception):
    """A model file that cannot be used; the message says which file and why."""


@dataclass(frozen=True, slots=True)
class ModelMeta:
    version: str
    hash_bits: int
    tokenizer_version: int
    features_version: int
    created: str
    limits: TokenizerLimits
    train_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({
            "format": FORMAT, "format_version": FORMAT_VERSION, "version": self.version,
            "hash_bits": self.hash_bits, "tokenizer_version": self.tokenizer_version,
            "features_version": self.features_version, "created": self.created,
            "tokenizer_limits": {"max_words": self.limits.max_words,
                                 "max_tokens": self.limits.max_tokens,
                                 "osb_window": self.limits.osb_window},
            "train_counts": self.train_counts, "extra": self.extra,
        }, sort_keys=True)


@dataclass(slots=True)
class LinearModel:
    weights: np.ndarray  # float32, 2**hash_bits
    bias: float
    meta: ModelMeta
    path: Path | None = None
    size_bytes: int = 0

    def feature_index(self, tokens: Tokens, task: Task) -> np.ndarray:
        return feature_index(tokens, task, self.meta.hash_bits)

    def margin(self, index: np.ndarray) -> float:
        return float(self.weights[index].sum(dtype=np.float64) + self.bias)

    def probability(self, tokens: Tokens, task: Task) -> float:
        return sigmoid(self.margin(self.feature_index(tokens, task)))

    def tokens(self, task: Task) -> Tokens:
        return task_tokens(task, self.meta.limits)


def feature_index(tokens: Tokens, task: Task, hash_bits: int) -> np.ndarray:
    """Distinct weight indices of a message: its Bayes tokens less the receiving side's
    (recipients, Received chain: the corpora's collectors, not the senders), plus the
    structure tokens."""
    hashes = tokens.hashes  # sorted and distinct (np.unique in tokenize)
    site = hash_texts(receiving_side_tokens(task))
    if len(site) and len(hashes):
        at = np.minimum(np.searchsorted(hashes, site), len(hashes) - 1)
        keep = np.ones(len(hashes), dtype=bool)
        keep[at[hashes[at] == site]] = False
        hashes = hashes[keep]
    hashes = np.concatenate([hashes, hash_texts(structure_tokens(task))])
    return distinct(hashes & np.uint64((1 << hash_bits) - 1)).astype(np.intp)


def sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def save_model(model: LinearModel, path: Path) -> int:
    """Write the model; returns the file's size in bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as handle:
        np.savez_compressed(
            handle,
            weights=model.weights.astype(np.float32),
            bias=np.array([model.bias], dtype=np.float64),
            meta=np.array(model.meta.to_json()),
        )
    tmp.replace(path)
    return path.stat().st_size


def load_model(path: str | Path) -> LinearModel:
    """Read and check a model file; raises ModelError saying what is wrong with it."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ModelError(f"{path}: cannot read model: {exc.strerror or exc}") from exc
    if size > MAX_FILE_BYTES:
        raise ModelError(f"{path}: model file is {size} bytes, over the {MAX_FILE_BYTES} limit")
    if not zipfile.is_zipfile(path):
        raise ModelError(f"{path}: not a pyspamd model (.npz archive of arrays); pickles and "
                         "other formats are refused because loading them can run code")
    try:
        with np.load(path, allow_pickle=False) as data:
            names = set(data.files)
            missing = {"weights", "bias", "meta"} - names
            if missing:
                raise ModelError(f"{path}: not a pyspamd model: missing "
                                 f"{', '.join(sorted(missing))}")
            weights = data["weights"]
            bias = data["bias"]
            meta_text = data["meta"]
    except ModelError:
        raise
    except ValueError as exc:  # object (pickled) arrays are refused by allow_pickle=False
        raise ModelError(f"{path}: refused: {exc} (a model holds plain arrays only)") from exc
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ModelError(f"{path}: damaged model file: {exc}") from exc
    meta = _parse_meta(path, meta_text)
    if weights.dtype != np.float32 or weights.ndim != 1:
        raise ModelError(f"{path}: weights must be a float32 vector, got {weights.dtype} "
                         f"{weights.shape}")
    if len(weights) != 1 << meta.hash_bits:
        raise ModelError(f"{path}: {len(weights)} weights for hash_bits {meta.hash_bits} "
                         f"(expected {1 << meta.hash_bits})")
    if bias.shape != (1,) or not np.issubdtype(bias.dtype, np.floating):
        raise ModelError(f"{path}: bias must be one floating-point value")
    if not (np.isfinite(weights).all() and np.isfinite(bias).all()):
        raise ModelError(f"{path}: model has non-finite weights")
    return LinearModel(weights, float(bias[0]), meta, path, size)


def _parse_meta(path: Path, meta_text: np.ndarray) -> ModelMeta:
    if meta_text.dtype.kind != "U" or meta_text.shape != ():
        raise ModelError(f"{path}: meta must be one text value")
    try:
        meta = json.loads(str(meta_text))
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}: meta is not JSON: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelError(f"{path}: not a pyspamd model (format {meta.get('format')!r})"
                         if isinstance(meta, dict) else f"{path}: meta must be a JSON object")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelError(f"{path}: model format version {meta.get('format_version')!r}; this "
                         f"pyspamd reads version {FORMAT_VERSION}")
    try:
        hash_bits = int(meta["hash_bits"])
        tokenizer_version = int(meta["tokenizer_version"])
        features_version = int(meta["features_version"])
        limits = meta["tokenizer_limits"]
        tok_limits = TokenizerLimits(max_words=int(limits["max_words"]),
                                     max_tokens=int(limits["max_tokens"]),
                                     osb_window=int(limits["osb_window"]))
        version = str(meta["version"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{path}: meta lacks or garbles {exc}") from exc
    if not 8 <= hash_bits <= MAX_HASH_BITS:
        raise ModelError(f"{path}: hash_bits {hash_bits} out of range 8..{MAX_HASH_BITS}")
    if tokenizer_version != TOKENIZER_VERSION or features_version != FEATURES_VERSION:
        raise ModelError(
            f"{path}: model {version} was trained with tokenizer version {tokenizer_version} "
            f"and features version {features_version}; this pyspamd has {TOKENIZER_VERSION} "
            f"and {FEATURES_VERSION}: train it again (pyspamc model-train) or set "
            "[model] enabled = false")
    return ModelMeta(version, hash_bits, tokenizer_version, features_version,
                     str(meta.get("created", "")), tok_limits,
                     meta.get("train_counts") or {}, meta.get("extra") or {})
