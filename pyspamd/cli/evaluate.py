"""pyspamc eval: train on one part of a labelled corpus, test on the rest: the Bayes check's
own figures, and the verdict (the action each test message gets from the real Scanner).

The classifier under test is the production one (tokenizer, SQLite store, the configured
classifier), trained into a throw-away store as `pyspamc learn_*` trains it, and the test
messages are scanned as `pyspamc symbols` scans them, so the figures are what a site would
see. The per-symbol table is SpamAssassin's hit-frequencies of a mass-check.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pyspamd.actions import SPAM_ACTIONS, STRENGTH
from pyspamd.checks.bayes import verdict_symbol
from pyspamd.classifiers.bayes import Bayes, Verdict
from pyspamd.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, load_config_or_exit
from pyspamd.config import BayesConfig, Config
from pyspamd.rescore import mass_check
from pyspamd.rescore.mass_check import Message, Scanned
from pyspamd.rescore.vectors import write_jsonl
from pyspamd.symbols import SymbolDef
from pyspamd.task import Task

# The actions a user sees as "this is spam", in the order the verdict table lists them.
VERDICT_ACTIONS = ("add header", "rewrite subject", "reject")


def add_command(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("eval", add_help=False,
                            help="train on part of a labelled corpus, test the Bayes check "
                                 "and the verdict on the rest")
    p.add_argument("--help", action="help", help="show this help and exit")
    corpus_args(p)
    p.add_argument("--empty-bayes", action="store_true",
                   help="learn nothing: the verdict of a new install (Bayes cannot vote)")
    p.add_argument("--test-spam", nargs="+", default=[], metavar="PATH",
                   help="more spam, only scanned (mail of other sources or years)")
    p.add_argument("--test-ham", nargs="+", default=[], metavar="PATH",
                   help="more ham, only scanned")
    p.add_argument("--refit", type=int, default=0, metavar="FOLDS",
                   help="also fit scores (pyspamc rescore) from FOLDS-fold cross-validated "
                        "vectors of the train part and report the test part with them")
    p.add_argument("--bayes-only", action="store_true",
                   help="the Bayes figures alone (no scan)")
    p.add_argument("--save-vectors", type=Path, metavar="FILE",
                   help="write the test messages' symbol vectors (JSON lines)")


def corpus_args(p: argparse.ArgumentParser) -> None:
    """The labelled-corpus options that eval and rescore share."""
    p.add_argument("--spam", nargs="+", default=[], metavar="PATH", help="spam messages")
    p.add_argument("--ham", nargs="+", default=[], metavar="PATH", help="ham messages")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--split", type=float, default=0.8, metavar="FRACTION",
                     help="stratified random split: this share trains (default 0.8)")
    how.add_argument("--by-mtime", action="store_true",
                     help="train on the older files (by mtime), test on the newer")
    how.add_argument("--by-date", action="store_true",
                     help="as --by-mtime, but by the Date header (for corpora copied in bulk)")
    how.add_argument("--split-dir", type=Path, metavar="DIR",
                     help="a fixed split: DIR/train_spam.txt, train_ham.txt, test_spam.txt, "
                          "test_ham.txt list the files, relative to DIR's parent (instead "
                          "of --spam/--ham)")
    p.add_argument("--train-share", type=float, default=0.8, metavar="FRACTION",
                   help="share of each class that trains in a by-time split (default 0.8)")
    p.add_argument("--seed", type=int, default=0, help="random split seed (default 0)")


@dataclass(slots=True)
class Corpus:
    train: list[Message]
    test: list[Message]
    how: str
    errors: list[str] = field(default_factory=list)


def load_corpus(args: argparse.Namespace) -> Corpus | int:
    """The train and test messages the corpus options name, or an exit code (after saying
    why on stderr)."""
    if not 0.0 < args.split < 1.0 or not 0.0 < args.train_share < 1.0:
        print(f"pyspamc {args.command}: --split and --train-share must be between 0 and 1",
              file=sys.stderr)
        return EXIT_USAGE
    errors: list[str] = []
    if args.split_dir is not None:
        try:
            lists = {name: mass_check.read_list(args.split_dir / f"{name}.txt")
                     for name in ("train_spam", "train_ham", "test_spam", "test_ham")}
        except OSError as exc:
            print(f"pyspamc {args.command}: {exc}", file=sys.stderr)
            return EXIT_FAILED
        train = (mass_check.load_messages(lists["train_spam"], True, errors)
                 + mass_check.load_messages(lists["train_ham"], False, errors))
        test = (mass_check.load_messages(lists["test_spam"], True, errors)
                + mass_check.load_messages(lists["test_ham"], False, errors))
        return Corpus(train, test, f"fixed split {args.split_dir.name}", errors)
    if not args.spam or not args.ham:
        print(f"pyspamc {args.command}: give --spam and --ham, or --split-dir",
              file=sys.stderr)
        return EXIT_USAGE
    messages = (mass_check.load_messages(args.spam, True, errors)
                + mass_check.load_messages(args.ham, False, errors))
    counts = sum(m.spam for m in messages), sum(not m.spam for m in messages)
    if min(counts) < 2:
        print(f"pyspamc {args.command}: need at least 2 messages of each class, got "
              f"{counts[0]} spam and {counts[1]} ham", file=sys.stderr)
        return EXIT_FAILED
    train_idx, test_idx = split_indices(messages, args)
    how = ("by mtime" if args.by_mtime else "by Date header" if args.by_date
           else f"stratified random, seed {args.seed}")
    return Corpus([messages[i] for i in train_idx], [messages[i] for i in test_idx], how,
                  errors)


def split_indices(messages: list[Message], args: argparse.Namespace) -> tuple[np.ndarray,
                                                                               np.ndarray]:
    labels = np.array([m.spam for m in messages])
    if args.by_mtime or args.by_date:
        train: list[int] = []
        test: list[int] = []
        for cls in (True, False):
            idx = np.flatnonzero(labels == cls)
            times = [messages[i].mtime if args.by_mtime else messages[i].when for i in idx]
            idx = idx[np.argsort(times, kind="stable")]
            cut = round(len(idx) * args.train_share)
            train.extend(idx[:cut])
            test.extend(idx[cut:])
        return np.array(train), np.array(test)
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(np.arange(len(messages)), train_size=args.split,
                                   stratify=labels, random_state=args.seed)
    return np.asarray(train), np.asarray(test)


def bayes_rows(bayes: Bayes, train: Sequence[Message], test: Sequence[Message],
               config: BayesConfig, learn_time: float) -> list[tuple[str, str]]:
    """The Bayes check's own figures on the test part (the store is already trained)."""
    from sklearn.metrics import accuracy_score, roc_auc_score

    verdicts: list[Verdict] = []
    times: list[float] = []
    for m in test:
        if m.tokens is None:
            m.tokens = bayes.tokens(Task(m.data))
        t0 = time.perf_counter()
        verdicts.append(bayes.classify_tokens(m.tokens))
        times.append(time.perf_counter() - t0)
    truth = np.array([m.spam for m in test])
    probs = np.array([v.probability for v in verdicts])
    # A message is classed by the symbol it gets; none (unsure) counts as a miss.
    symbols = [verdict_symbol(v, config) for v in verdicts]
    said_spam = np.array([s is not None and s[0] == "BAYES_SPAM" for s in symbols])
    said_ham = np.array([s is not None and s[0] == "BAYES_HAM" for s in symbols])
    predicted = np.where(said_spam, 1, np.where(said_ham, 0, -1))
    hams = int((~truth).sum())
    spams = int(truth.sum())
    return [
        ("classifier", config.classifier),
        ("train / test messages", f"{len(train)} / {len(test)} ({spams} spam, {hams} ham)"),
        ("thresholds (spam >=, ham <=)", f"{config.spam_threshold} / {config.ham_threshold}"),
        ("tokens per message, median",
         f"{np.median([len(m.tokens) for m in test if m.tokens is not None]):.0f}"),
        ("accuracy (unsure = wrong)", f"{100 * accuracy_score(truth, predicted):.2f}%"),
        ("spam recall", f"{100 * said_spam[truth].sum() / max(spams, 1):.2f}%"),
        ("ham false positives", f"{100 * said_spam[~truth].sum() / max(hams, 1):.2f}% "
                                f"({int(said_spam[~truth].sum())})"),
        ("spam false negatives", f"{int(said_ham[truth].sum())}"),
        ("unsure", f"{100 * (predicted == -1).mean():.2f}% ({int((predicted == -1).sum())})"),
        ("accuracy at p = 0.5, no unsure", f"{100 * ((probs >= 0.5) == truth).mean():.2f}%"),
        ("1 - ROC AUC", f"{100 * (1 - roc_auc_score(truth, probs)):.3f}%"
         if 0 < spams < len(truth) else "n/a"),
        ("learn", f"{len(train) / max(learn_time, 1e-9):.0f} msgs/s (tokenizing, learning, fit)"),
        ("classify p50 / p99", f"{1000 * np.percentile(times, 50):.3f} / "
                               f"{1000 * np.percentile(times, 99):.3f} ms (tokens given)"),
    ]


def verdict_report(scanned: Sequence[Scanned], defs: dict[str, SymbolDef]) -> dict[str, Any]:
    """Share of each class per action, verdict recall and ham false positives, and the
    per-symbol hit table with the score each symbol has in `defs` (the scanner's)."""
    ok = [s for s in scanned if not s.error]
    spam = [s for s in ok if s.spam]
    ham = [s for s in ok if not s.spam]

    def share(items: list[Scanned], test: Any) -> float:
        return 100.0 * sum(1 for s in items if test(s)) / max(len(items), 1)

    actions = {a: {"spam": round(share(spam, lambda s, a=a: s.action == a), 2),
                   "ham": round(share(ham, lambda s, a=a: s.action == a), 2),
                   "ham_count": sum(1 for s in ham if s.action == a)}
               for a in STRENGTH if any(s.action == a for s in ok)}
    hits: dict[str, list[int]] = {}
    for s in ok:
        for name in s.factors:
            hits.setdefault(name, [0, 0])[0 if s.spam else 1] += 1
    table: list[dict[str, Any]] = []
    for name, (on_spam, on_ham) in hits.items():
        spam_pct = 100.0 * on_spam / max(len(spam), 1)
        ham_pct = 100.0 * on_ham / max(len(ham), 1)
        d = defs.get(name)
        table.append({"symbol": name, "spam": round(spam_pct, 3), "ham": round(ham_pct, 3),
                      "spam_hits": on_spam, "ham_hits": on_ham,
                      "s_o": round(spam_pct / (spam_pct + ham_pct), 3),
                      "score": round(d.score, 2) if d is not None else 0.0})
    table.sort(key=lambda r: (-(r["spam"] + r["ham"]), r["symbol"]))
    return {
        "spam": len(spam), "ham": len(ham), "scan_errors": len(scanned) - len(ok),
        "verdict_recall": round(share(spam, lambda s: s.action in SPAM_ACTIONS), 2),
        "ham_false_positives": round(share(ham, lambda s: s.action in SPAM_ACTIONS), 3),
        "ham_false_positive_count": sum(1 for s in ham if s.action in SPAM_ACTIONS),
        "actions": actions,
        "symbols": table,
    }


def print_verdict(title: str, report: dict[str, Any]) -> None:
    print(f"\n{title}: {report['spam']} spam, {report['ham']} ham"
          + (f", {report['scan_errors']} scan errors" if report["scan_errors"] else ""))
    print("| action | share of spam | share of ham |\n|---|---:|---:|")
    for action, row in report["actions"].items():
        print(f"| {action} | {row['spam']:.2f}% | {row['ham']:.2f}% ({row['ham_count']}) |")
    print(f"| **verdict ({', '.join(VERDICT_ACTIONS)})** | **{report['verdict_recall']:.2f}%** "
          f"| **{report['ham_false_positives']:.2f}% ({report['ham_false_positive_count']})** |")
    print("\n| symbol | spam % | ham % | S/O | score |\n|---|---:|---:|---:|---:|")
    for row in report["symbols"]:
        print(f"| {row['symbol']} | {row['spam']:.2f} ({row['spam_hits']}) | "
              f"{row['ham']:.2f} ({row['ham_hits']}) | {row['s_o']:.3f} | {row['score']:.2f} |")


def cmd_eval(args: argparse.Namespace) -> int:
    config = load_config_or_exit(args.config)
    corpus = load_corpus(args)
    if isinstance(corpus, int):
        return corpus
    for error in corpus.errors:
        print(f"skipped: {error}", file=sys.stderr)
    extra_errors: list[str] = []
    extra = (mass_check.load_messages(args.test_spam, True, extra_errors)
             + mass_check.load_messages(args.test_ham, False, extra_errors))
    for error in extra_errors:
        print(f"skipped: {error}", file=sys.stderr)
    train = [] if args.empty_bayes else corpus.train
    out: dict[str, Any] = {"split": corpus.how, "empty_bayes": args.empty_bayes}
    rows: list[tuple[str, str]] = []

    start = time.perf_counter()

    def measure_bayes(bayes: Bayes) -> None:  # called right after learning
        if train:
            rows.extend(bayes_rows(bayes, train, corpus.test, config.bayes,
                                   time.perf_counter() - start))

    if args.bayes_only:
        with tempfile.TemporaryDirectory(prefix="pyspamd-eval-") as tmp:
            cfg = mass_check.scan_config(config, Path(tmp) / "eval.sqlite")
            bayes = mass_check.learn(cfg, train)
            measure_bayes(bayes)
            bayes.storage.close()
    else:
        scores = None
        if args.refit:
            scores = refit_scores(config, corpus.train, args.refit, args.seed)
            out["fitted_scores"] = scores
        scanned, defs = mass_check.train_and_scan(config, train, corpus.test + extra, scores,
                                                  also=measure_bayes)
        test_part, extra_part = scanned[:len(corpus.test)], scanned[len(corpus.test):]
        out["verdict"] = verdict_report(test_part, defs)
        if extra:
            out["test_only"] = verdict_report(extra_part, defs)
        if args.save_vectors:
            write_jsonl(args.save_vectors, (s.vector() for s in scanned if not s.error))
    out["bayes"] = dict(rows)
    if args.json:
        print(json.dumps(out, indent=1))
        return EXIT_OK
    how = corpus.how + (", empty Bayes store" if args.empty_bayes else "")
    if rows:
        print(f"| measure ({how}) | value |\n|---|---|")
        for name, value in rows:
            print(f"| {name} | {value} |")
    if "verdict" in out:
        print_verdict(f"Verdict on the test part ({how})", out["verdict"])
    if "test_only" in out:
        print_verdict("Verdict on the test-only folders", out["test_only"])
    return EXIT_OK


def refit_scores(config: Config, train: list[Message], folds: int, seed: int) -> dict[str, float]:
    """Scores fitted from cross-validated vectors of the train part alone (what `pyspamc
    rescore` does), so the test part's figures are of scores that never saw it."""
    from pyspamd.cli.rescore import fit_from_scanned

    scanned = mass_check.cross_validated(config, train, folds, seed)
    return fit_from_scanned(config, scanned).changed()
