"""pyspamc eval: train Bayes on one part of a labelled corpus, test it on the rest.

The classifier under test is the production one (tokenizer, SQLite store, the configured
classifier: the logistic model or chi-square), trained into a throw-away store as
`pyspamc learn_*` trains it, so the figures are what a site would see.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path

import numpy as np

from pyspamd.checks.bayes import verdict_symbol
from pyspamd.classifiers.bayes import Bayes, Verdict
from pyspamd.classifiers.logistic import LogisticParams
from pyspamd.classifiers.tokenizer import TokenizerLimits, Tokens, tokenize
from pyspamd.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, load_config_or_exit
from pyspamd.config import BayesConfig
from pyspamd.sources import iter_messages
from pyspamd.storage.base import HAM, SPAM
from pyspamd.storage.sqlite_store import SqliteStorage
from pyspamd.task import Task


def add_command(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("eval", add_help=False,
                            help="train on part of a labelled corpus, test on the rest")
    p.add_argument("--help", action="help", help="show this help and exit")
    p.add_argument("--spam", nargs="+", required=True, metavar="PATH", help="spam messages")
    p.add_argument("--ham", nargs="+", required=True, metavar="PATH", help="ham messages")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--split", type=float, default=0.8, metavar="FRACTION",
                     help="stratified random split: this share trains (default 0.8)")
    how.add_argument("--by-mtime", action="store_true",
                     help="train on the older files (by mtime), test on the newer")
    how.add_argument("--by-date", action="store_true",
                     help="as --by-mtime, but by the Date header (for corpora copied in bulk)")
    p.add_argument("--train-share", type=float, default=0.8, metavar="FRACTION",
                   help="share of each class that trains in a by-time split (default 0.8)")
    p.add_argument("--seed", type=int, default=0, help="random split seed (default 0)")


@dataclass(slots=True)
class Sample:
    tokens: Tokens
    spam: bool
    when: float


def _message_time(task: Task, mtime: float | None) -> float:
    try:
        return parsedate_to_datetime(task.headers.first("date")).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return mtime or 0.0


def load_samples(paths: list[str], spam: bool, limits: TokenizerLimits, by_date: bool,
                 errors: list[str]) -> list[Sample]:
    out: list[Sample] = []
    for source in iter_messages(paths):
        if source.data is None:
            errors.append(f"{source.label}: {source.error}")
            continue
        task = Task(source.data)
        when = _message_time(task, source.mtime) if by_date else (source.mtime or 0.0)
        out.append(Sample(tokenize(task, limits), spam, when))
    return out


def split_indices(samples: list[Sample], args: argparse.Namespace) -> tuple[np.ndarray,
                                                                             np.ndarray]:
    labels = np.array([s.spam for s in samples])
    if args.by_mtime or args.by_date:
        train: list[int] = []
        test: list[int] = []
        for cls in (True, False):
            idx = np.flatnonzero(labels == cls)
            idx = idx[np.argsort([samples[i].when for i in idx], kind="stable")]
            cut = round(len(idx) * args.train_share)
            train.extend(idx[:cut])
            test.extend(idx[cut:])
        return np.array(train), np.array(test)
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(np.arange(len(samples)), train_size=args.split,
                                   stratify=labels, random_state=args.seed)
    return np.asarray(train), np.asarray(test)


@dataclass(frozen=True, slots=True)
class Report:
    rows: list[tuple[str, str]]
    probabilities: np.ndarray
    labels: np.ndarray


def evaluate(samples: list[Sample], train: np.ndarray, test: np.ndarray,
             config: BayesConfig) -> Report:
    from sklearn.metrics import accuracy_score, roc_auc_score

    with tempfile.TemporaryDirectory(prefix="pyspamd-eval-") as tmp:
        storage = SqliteStorage(Path(tmp) / "eval.sqlite")
        # The configured fit limit too, so eval shows what a limit costs in accuracy.
        bayes = Bayes(storage, min_learns=0, classifier=config.classifier,
                      logistic_params=LogisticParams(c=config.model_c),
                      max_fit_messages=config.max_fit_messages)
        start = time.perf_counter()
        with storage.batch():
            for i in train:
                s = samples[i]
                bayes.learn_tokens(s.tokens, SPAM if s.spam else HAM)
        bayes.fit_model()  # as `pyspamc learn_*` does at the end of a run
        learn_time = time.perf_counter() - start
        verdicts: list[Verdict] = []
        times: list[float] = []
        for i in test:
            t0 = time.perf_counter()
            verdicts.append(bayes.classify_tokens(samples[i].tokens))
            times.append(time.perf_counter() - t0)
        storage.close()
    truth = np.array([samples[i].spam for i in test])
    probs = np.array([v.probability for v in verdicts])
    # A message is classed by the symbol it gets; none (unsure) counts as a miss.
    symbols = [verdict_symbol(v, config) for v in verdicts]
    said_spam = np.array([s is not None and s[0] == "BAYES_SPAM" for s in symbols])
    said_ham = np.array([s is not None and s[0] == "BAYES_HAM" for s in symbols])
    predicted = np.where(said_spam, 1, np.where(said_ham, 0, -1))
    hams = int((~truth).sum())
    spams = int(truth.sum())
    rows = [
        ("classifier", config.classifier),
        ("train / test messages", f"{len(train)} / {len(test)} ({spams} spam, {hams} ham)"),
        ("thresholds (spam >=, ham <=)", f"{config.spam_threshold} / {config.ham_threshold}"),
        ("tokens per message, median", f"{np.median([len(samples[i].tokens) for i in test]):.0f}"),
        ("accuracy (unsure = wrong)", f"{100 * accuracy_score(truth, predicted):.2f}%"),
        ("spam recall", f"{100 * said_spam[truth].sum() / max(spams, 1):.2f}%"),
        ("ham false positives", f"{100 * said_spam[~truth].sum() / max(hams, 1):.2f}% "
                                f"({int(said_spam[~truth].sum())})"),
        ("spam false negatives", f"{int(said_ham[truth].sum())}"),
        ("unsure", f"{100 * (predicted == -1).mean():.2f}% ({int((predicted == -1).sum())})"),
        ("accuracy at p = 0.5, no unsure", f"{100 * ((probs >= 0.5) == truth).mean():.2f}%"),
        ("1 - ROC AUC", f"{100 * (1 - roc_auc_score(truth, probs)):.3f}%"
         if 0 < spams < len(truth) else "n/a"),
        ("learn", f"{len(train) / max(learn_time, 1e-9):.0f} msgs/s (tokens given)"),
        ("classify p50 / p99", f"{1000 * np.percentile(times, 50):.3f} / "
                               f"{1000 * np.percentile(times, 99):.3f} ms (tokens given)"),
    ]
    return Report(rows, probs, truth)


def cmd_eval(args: argparse.Namespace) -> int:
    config = load_config_or_exit(args.config)
    if not 0.0 < args.split < 1.0 or not 0.0 < args.train_share < 1.0:
        print("pyspamc eval: --split and --train-share must be between 0 and 1",
              file=sys.stderr)
        return EXIT_USAGE
    limits = TokenizerLimits(max_words=config.bayes.max_words,
                             max_tokens=config.bayes.max_tokens,
                             osb_window=config.bayes.osb_window)
    errors: list[str] = []
    samples = (load_samples(args.spam, True, limits, args.by_date, errors)
               + load_samples(args.ham, False, limits, args.by_date, errors))
    for error in errors:
        print(f"skipped: {error}", file=sys.stderr)
    counts = sum(s.spam for s in samples), sum(not s.spam for s in samples)
    if min(counts) < 2:
        print(f"pyspamc eval: need at least 2 messages of each class, got {counts[0]} spam "
              f"and {counts[1]} ham", file=sys.stderr)
        return EXIT_FAILED
    train, test = split_indices(samples, args)
    how = ("by mtime" if args.by_mtime else "by Date header" if args.by_date
           else f"stratified random, seed {args.seed}")
    report = evaluate(samples, train, test, config.bayes)
    print(f"| measure ({how}) | value |\n|---|---|")
    for name, value in report.rows:
        print(f"| {name} | {value} |")
    return EXIT_OK
