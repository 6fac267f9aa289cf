"""Train the content model from labelled mail and write it with its figures.

The shipped model is built by::

    python -m pyspamd.model.train --plan models/pyspamd-content.plan.toml

A plan names the training lists (label, group, list of files and the folder they are
relative to) and the held-out lists the figures are reported on; nothing from a held-out
list is used for the fit or for choosing the thresholds. The thresholds come from
out-of-fold predictions on the training mail (5 folds).

`pyspamc model-train --spam DIR --ham DIR -o FILE` trains one from an admin's own
folders (Maildir, mbox, directories) with the same code.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import sys
import tomllib
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import sparse

from pyspamd.classifiers.tokenizer import TOKENIZER_VERSION, TokenizerLimits, tokenize
from pyspamd.model.features import FEATURES_VERSION
from pyspamd.model.linear import LinearModel, ModelMeta, feature_index, save_model
from pyspamd.sources import iter_messages
from pyspamd.task import Task

SPAM_LABELS = ("spam", "phish")
LABELS = (*SPAM_LABELS, "ham")
DEFAULT_HASH_BITS = 20
DEFAULT_C = 0.5
FOLDS = 5
# Ham false-positive rates the thresholds are chosen for, on out-of-fold predictions: a
# message over `spam` gets MODEL_SPAM, its weight reaching 1 at `confident`.
SPAM_FP_TARGET = 0.004
CONFIDENT_FP_TARGET = 0.0005
HAM_MISS_TARGET = 0.02  # share of spam allowed under the MODEL_HAM threshold
# With `rules_offset`, the rule score enters the fit as one more column, scaled so that its
# weight is barely held back by the regularization; the shipped weights leave it out.
RULES_COLUMN_SCALE = 10.0


class TrainError(Exception):
    """Training cannot start: no mail, or only one class."""


@dataclass(slots=True)
class Example:
    label: str  # spam, phish or ham
    group: str  # where it comes from, for weights and per-group figures
    name: str
    data: bytes


@dataclass(slots=True)
class Dataset:
    rows: list[np.ndarray] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    raws: list[bytes] = field(default_factory=list)  # kept only when calibrating

    def matrix(self, hash_bits: int) -> sparse.csr_matrix:
        indptr = np.zeros(len(self.rows) + 1, dtype=np.int64)
        indptr[1:] = np.cumsum([len(r) for r in self.rows])
        indices = np.concatenate(self.rows) if self.rows else np.zeros(0, np.int64)
        data = np.ones(len(indices), dtype=np.float32)
        return sparse.csr_matrix((data, indices, indptr), shape=(len(self.rows), 1 << hash_bits))

    @property
    def y(self) -> np.ndarray:
        return np.array([label in SPAM_LABELS for label in self.labels], dtype=np.int8)


def features_of(raw: bytes, limits: TokenizerLimits, hash_bits: int) -> np.ndarray:
    """Weight indices of one message, exactly as LinearModel.feature_index computes them."""
    task = Task(raw)
    return feature_index(tokenize(task, limits), task, hash_bits).astype(np.int32)


def _features_batch(args: tuple[list[bytes], TokenizerLimits, int]) -> list[np.ndarray]:
    raws, limits, hash_bits = args
    out = []
    for raw in raws:
        try:
            out.append(features_of(raw, limits, hash_bits))
        except Exception:  # a message the parser cannot take teaches nothing
            out.append(np.zeros(0, dtype=np.int32))
    return out


def vectorize(examples: Iterable[Example], limits: TokenizerLimits, hash_bits: int,
              jobs: int, keep_raw: bool = False) -> Dataset:
    ds = Dataset()
    batch: list[Example] = []
    pending = []
    with ProcessPoolExecutor(max_workers=max(jobs, 1)) as pool:
        def flush() -> None:
            if batch:
                pending.append((list(batch), pool.submit(
                    _features_batch, ([e.data for e in batch], limits, hash_bits))))
                batch.clear()

        for example in examples:
            batch.append(example)
            if len(batch) >= 200:
                flush()
        flush()
        for chunk, future in pending:
            for example, row in zip(chunk, future.result(), strict=True):
                ds.rows.append(row)
                ds.labels.append(example.label)
                ds.groups.append(example.group)
                if keep_raw:
                    ds.raws.append(example.data)
    return ds


def group_weights(ds: Dataset, scale: dict[str, float] | None = None) -> np.ndarray:
    """Each (group, label) weighs in with the square root of its size: a big corpus counts
    for more than a small one, but not so much that a small recent one is drowned out.
    `scale` multiplies a "group:label" on top (the plan's `weight`)."""
    keys = [f"{g}:{lab}" for g, lab in zip(ds.groups, ds.labels, strict=True)]
    sizes = Counter(keys)
    scale = scale or {}
    w = np.array([math.sqrt(sizes[k]) / sizes[k] * scale.get(k, 1.0) for k in keys])
    return w * (len(w) / w.sum())


def fit(x: sparse.csr_matrix, y: np.ndarray, weights: np.ndarray, c: float) -> tuple[np.ndarray,
                                                                                     float]:
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=c, solver="liblinear", max_iter=200)
    clf.fit(x, y, sample_weight=weights)
    return clf.coef_[0].astype(np.float32), float(clf.intercept_[0])


def training_rule_scores(ds: Dataset, jobs: int, config_path: str | None,
                         log) -> tuple[np.ndarray, float]:
    from pyspamd.model import calibrate

    log(f"scanning {len(ds.raws)} training messages with the model off (rules, empty Bayes)")
    return calibrate.rule_scores(ds.raws, jobs, config_path)


def with_rules_column(x: sparse.csr_matrix, rules: np.ndarray) -> sparse.csr_matrix:
    column = sparse.csr_matrix(rules.reshape(-1, 1) * RULES_COLUMN_SCALE)
    return sparse.hstack([x, column], format="csr")


def calibrated(p: np.ndarray, ds: Dataset, own: dict[str, float], rules: np.ndarray,
               spam_score: float, log) -> tuple[dict[str, float], dict[str, float]]:
    from pyspamd.model import calibrate

    cache = os.environ.get("PYSPAMD_CALIBRATION_CACHE")
    if cache:  # the inputs of the choice, to study it without training again
        np.savez(cache, p=p, rules=rules, spam=ds.y.astype(bool), groups=np.array(ds.groups),
                 spam_score=np.array([spam_score]))
    t, figures = calibrate.choose(p, rules, ds.y.astype(bool), np.array(ds.groups),
                                  spam_score, own["ham"])
    log(f"calibrated on the training verdict: mean spam recall {figures['mean_recall']:.1%}, "
        f"worst ham FP {figures['worst_ham_fp']:.2%}")
    return ({"spam": t.spam, "confident": t.confident, "ham": t.ham,
             "min_weight": t.min_weight}, figures)


def fold_of(n: int) -> np.ndarray:
    return np.arange(n) % FOLDS


def out_of_fold(x: sparse.csr_matrix, y: np.ndarray, w: np.ndarray, c: float,
                keep: int | None = None) -> np.ndarray:
    """Each message's probability from a model fitted without its fold, from the first
    `keep` columns' weights (all by default: the others are fit-only offsets)."""
    rng = np.random.default_rng(42)
    folds = fold_of(len(y))[rng.permutation(len(y))]
    keep = x.shape[1] if keep is None else keep
    p = np.zeros(len(y))
    for k in range(FOLDS):
        test = folds == k
        coef, bias = fit(x[~test], y[~test], w[~test], c)
        p[test] = _sigmoid(x[test][:, :keep] @ coef[:keep] + bias)
    return p


def _sigmoid(m: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(m, -40, 40)))


def choose_thresholds(p: np.ndarray, ds: Dataset) -> dict[str, float]:
    """Thresholds from out-of-fold predictions: the strictest ham group's false-positive rate
    sets the spam thresholds; the share of spam let through sets the ham one."""
    labels = np.array(ds.labels)
    groups = np.array(ds.groups)
    ham_groups = sorted({g for g, lab in zip(ds.groups, ds.labels, strict=True) if lab == "ham"})

    def worst_fp(t: float) -> float:
        return max(float(np.mean(p[(groups == g) & (labels == "ham")] >= t)) for g in ham_groups)

    def lowest(target: float) -> float:
        for t in np.concatenate([np.linspace(0.5, 0.99, 50), np.linspace(0.991, 0.9999, 90)]):
            if worst_fp(float(t)) <= target:
                return float(t)
        return 0.9999

    spam_p = p[np.isin(labels, SPAM_LABELS)]
    ham_t = float(np.quantile(spam_p, HAM_MISS_TARGET)) if len(spam_p) else 0.1
    spam_t = lowest(SPAM_FP_TARGET)
    confident = max(lowest(CONFIDENT_FP_TARGET), spam_t + 1e-4)
    return {"spam": round(spam_t, 4), "confident": round(confident, 4),
            "ham": round(min(ham_t, 0.5), 4)}


def figures(p: np.ndarray, ds: Dataset, thresholds: dict[str, float]) -> list[dict[str, object]]:
    """Per group and label: how many, and the share at or over each threshold (for ham the
    share at or over is the false-positive rate)."""
    out = []
    labels = np.array(ds.labels)
    groups = np.array(ds.groups)
    for key in sorted({(g, lab) for g, lab in zip(ds.groups, ds.labels, strict=True)}):
        sel = (groups == key[0]) & (labels == key[1])
        ps = p[sel]
        out.append({
            "group": key[0], "label": key[1], "n": int(sel.sum()),
            "over_spam": round(float(np.mean(ps >= thresholds["spam"])), 4),
            "over_confident": round(float(np.mean(ps >= thresholds["confident"])), 4),
            "under_ham": round(float(np.mean(ps <= thresholds["ham"])), 4),
        })
    return out


def read_list(list_path: Path, root: Path, label: str, group: str) -> Iterable[Example]:
    for line in list_path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        path = root / line
        try:
            yield Example(label, group, str(path), path.read_bytes())
        except OSError as exc:
            print(f"warning: {path}: {exc.strerror or exc}", file=sys.stderr)


def read_paths(paths: Sequence[str], label: str, group: str) -> Iterable[Example]:
    for source in iter_messages(list(paths)):
        if source.data is None:
            print(f"warning: {source.label}: {source.error}", file=sys.stderr)
            continue
        yield Example(label, group, source.label, source.data)


@dataclass(slots=True)
class Plan:
    version: str
    output: Path
    train: list[tuple[str, str, Path, Path]]  # label, group, list, root
    test: list[tuple[str, str, Path, Path]]
    hash_bits: int = DEFAULT_HASH_BITS
    c: float = DEFAULT_C
    calibrate: bool = False
    rules_offset: bool = False
    weights: dict[str, float] = field(default_factory=dict)  # "group:label" -> multiplier


def load_plan(path: Path, corpora: Path | None = None, shared: Path | None = None) -> Plan:
    """`{corpora}` and `{shared}` in a list or root stand for the gathered corpora and the
    SpamAssassin corpus: by default ../corpora and ../shared/corpus beside the repository
    the plan is in (its folder's parent), so a plan names no machine's paths."""
    data = tomllib.loads(path.read_text())
    base = path.parent
    repo = base.resolve().parent
    places = {"corpora": str(corpora or repo.parent / "corpora"),
              "shared": str(shared or repo.parent / "shared" / "corpus")}

    def place(text: str) -> Path:
        try:
            return Path(text.format_map(places))
        except (KeyError, ValueError) as exc:
            raise SystemExit(f"{path}: {text!r}: only {{corpora}} and {{shared}} may be "
                             f"used there ({exc})") from None

    def entries(key: str) -> list[tuple[str, str, Path, Path]]:
        out = []
        for i, item in enumerate(data.get(key, [])):
            label = item.get("label")
            if label not in LABELS:
                raise SystemExit(f"{path}: {key}[{i}]: label must be one of {', '.join(LABELS)}")
            out.append((label, str(item["group"]), place(item["list"]), place(item["root"])))
        return out

    weights = {f"{item['group']}:{item['label']}": float(item["weight"])
               for item in data.get("train", []) if "weight" in item}
    plan = Plan(version=str(data["version"]), output=base / data["output"],
                train=entries("train"), test=entries("test"),
                hash_bits=int(data.get("hash_bits", DEFAULT_HASH_BITS)),
                c=float(data.get("c", DEFAULT_C)),
                calibrate=bool(data.get("calibrate", False)),
                rules_offset=bool(data.get("rules_offset", False)), weights=weights)
    if plan.rules_offset and not plan.calibrate:
        raise SystemExit(f"{path}: rules_offset needs calibrate = true")
    return plan


def train_model(train: Iterable[Example], test: Iterable[Example], version: str, output: Path,
                hash_bits: int = DEFAULT_HASH_BITS, c: float = DEFAULT_C, jobs: int = 2,
                folds: bool = True, calibrate: bool = False, config_path: str | None = None,
                log=print, rules_offset: bool = False,
                weight_scale: dict[str, float] | None = None) -> dict[str, object]:
    """Fit, choose thresholds, write the model and its figures (output with .json).

    With `calibrate`, the thresholds are chosen on the verdict of the training mail (rules
    of the config at `config_path`, or the built-in defaults, plus the model's out-of-fold
    vote; pyspamd.model.calibrate) instead of on the model's own false positives.

    With `rules_offset` (needs `calibrate`) the model is fitted on top of the rules: each
    message's rule score is one more column of the fit, left out of the shipped weights.
    The model then learns what the rules do not already say (it need not push up spam the
    rules catch, nor ham the rules already score high) and its vote adds to theirs, as it
    does in the verdict."""
    limits = TokenizerLimits()
    ds = vectorize(train, limits, hash_bits, jobs, keep_raw=calibrate)
    if not ds.rows:
        raise TrainError("no training messages")
    y = ds.y
    if y.min() == y.max():
        raise TrainError("training needs both spam and ham")
    x = ds.matrix(hash_bits)
    w = group_weights(ds, weight_scale)
    log(f"training on {len(y)} messages ({int(y.sum())} spam, {int(len(y) - y.sum())} ham)")
    rules = np.zeros(0)
    spam_score = 0.0
    if calibrate:
        rules, spam_score = training_rule_scores(ds, jobs, config_path, log)
    x_fit = with_rules_column(x, rules) if rules_offset else x
    keep = x.shape[1]
    calibration: dict[str, float] = {}
    if folds and min(int(y.sum()), int(len(y) - y.sum())) >= 5 * FOLDS:
        p_oof = out_of_fold(x_fit, y, w, c, keep)
        thresholds = choose_thresholds(p_oof, ds)
        if calibrate:
            thresholds, calibration = calibrated(p_oof, ds, thresholds, rules, spam_score, log)
    else:  # too little mail for folds: fixed thresholds
        p_oof = None
        thresholds = {"spam": 0.9, "confident": 0.99, "ham": 0.1}
    coef, bias = fit(x_fit, y, w, c)
    if rules_offset:
        log(f"rules column: {coef[keep] * RULES_COLUMN_SCALE:.3f} log-odds per rule point")
        coef = coef[:keep]
    counts: dict[str, dict[str, int]] = {}
    for g, lab in zip(ds.groups, ds.labels, strict=True):
        counts.setdefault(g, {}).setdefault(lab, 0)
        counts[g][lab] += 1
    meta = ModelMeta(version=version, hash_bits=hash_bits, tokenizer_version=TOKENIZER_VERSION,
                     features_version=FEATURES_VERSION,
                     created=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d"),
                     limits=limits, train_counts=counts,
                     extra={"thresholds": thresholds, "c": c, "rules_offset": rules_offset})
    model = LinearModel(coef, bias, meta)
    size = save_model(model, output)
    report: dict[str, object] = {
        "model": output.name, "version": version, "size_bytes": size, "hash_bits": hash_bits,
        "c": c, "rules_offset": rules_offset, "weights": weight_scale or {},
        "thresholds": thresholds, "train_counts": counts,
        "calibration": calibration,
        "train_in_sample": figures(_sigmoid(x @ coef + bias), ds, thresholds),
    }
    if p_oof is not None:
        report["train_out_of_fold"] = figures(p_oof, ds, thresholds)
    test_ds = vectorize(test, limits, hash_bits, jobs)
    if test_ds.rows:
        xt = test_ds.matrix(hash_bits)
        report["test"] = figures(_sigmoid(xt @ coef + bias), test_ds, thresholds)
    output.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
    log(f"wrote {output} ({size} bytes) and {output.with_suffix('.json')}")
    return report


def print_figures(report: dict[str, object]) -> None:
    t = report["thresholds"]
    print(f"thresholds: {t}")
    for part in ("train_out_of_fold", "test"):
        rows = report.get(part)
        if not rows:
            continue
        print(f"\n{part}: group, label, n, share >= spam, >= confident, <= ham")
        assert isinstance(rows, list)
        for r in rows:
            print(f"  {r['group']:<22} {r['label']:<6} {r['n']:>6} {r['over_spam']:>8.2%} "
                  f"{r['over_confident']:>8.2%} {r['under_ham']:>8.2%}")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pyspamd.model.train",
                                 description="Build the content model from a plan file.")
    ap.add_argument("--plan", type=Path, required=True)
    ap.add_argument("--corpora", type=Path, help="the gathered corpora (default: ../corpora "
                    "beside the repository)")
    ap.add_argument("--shared", type=Path, help="the SpamAssassin corpus with split-42/ "
                    "(default: ../shared/corpus beside the repository)")
    ap.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    args = ap.parse_args(argv)
    plan = load_plan(args.plan, args.corpora, args.shared)
    train = (e for label, group, lst, root in plan.train
             for e in read_list(lst, root, label, group))
    test = (e for label, group, lst, root in plan.test
            for e in read_list(lst, root, label, group))
    report = train_model(train, test, plan.version, plan.output, plan.hash_bits, plan.c,
                         jobs=args.jobs, calibrate=plan.calibrate,
                         rules_offset=plan.rules_offset, weight_scale=plan.weights)
    print_figures(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
