"""pyspamc learn_spam / learn_ham / unlearn / stat / expire: training the Bayes classifier."""

from __future__ import annotations

import argparse
import re
import sys
import time
from dataclasses import dataclass, field

from pyspamd.checks.bayes import bayes_from_config
from pyspamd.classifiers.bayes import Bayes, today
from pyspamd.cli.common import EXIT_FAILED, EXIT_OK, load_config_or_exit
from pyspamd.sources import iter_messages
from pyspamd.stats import keys
from pyspamd.stats.render import size_text
from pyspamd.storage.base import HAM, SPAM, BatchError, LearnOutcome, StorageError
from pyspamd.task import Task

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# The outcomes a learn run reports, in the order of its summary line.
LEARN_ORDER = (LearnOutcome.LEARNED, LearnOutcome.ALREADY, LearnOutcome.MOVED)
# A message starts with a header line ("Name: value") or an mbox "From " line.
_HEADER_START = re.compile(rb"^(?:From |[!-9;-~]{1,100}:)")


def parse_duration(text: str) -> float:
    m = _DURATION.match(text)
    if not m:
        raise argparse.ArgumentTypeError(
            f"bad duration {text!r}; write a number with s, m, h, d or w, e.g. 1d or 12h")
    return float(m.group(1)) * _UNITS[m.group(2)]


def not_a_message(data: bytes) -> str | None:
    """Why `data` is not a mail message, or None. Learning junk would teach Bayes junk."""
    if not data.strip():
        return "empty file"
    head = data[:4096]
    controls = sum(1 for b in head if b < 9 or 13 < b < 32)
    if controls > len(head) // 10:
        return "binary data, not a mail message"
    if not _HEADER_START.match(data.lstrip(b"\r\n")):
        return "not a mail message (no header line at the start)"
    return None


def add_commands(commands: argparse._SubParsersAction) -> None:
    for name, what in (("learn_spam", "spam"), ("learn_ham", "ham (good mail)")):
        p = commands.add_parser(name, add_help=False, help=f"learn messages as {what}")
        _paths_args(p)
        p.add_argument("--newer-than", type=parse_duration, metavar="AGE",
                       help="only files changed within AGE (e.g. 1d, 12h), for a daily cron job")
    p = commands.add_parser("unlearn", add_help=False, help="forget learned messages")
    _paths_args(p)
    p = commands.add_parser("stat", add_help=False,
                            help="scans by action (all workers) and what the Bayes store holds")
    p.add_argument("--help", action="help", help="show this help and exit")
    p = commands.add_parser("expire", add_help=False,
                            help="drop rare tokens not learned for a while and fit the "
                                 "model again (for cron)")
    p.add_argument("--help", action="help", help="show this help and exit")
    p.add_argument("--days", type=int, metavar="N",
                   help="age limit in days (default: [bayes] expire_days)")


def _paths_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--help", action="help", help="show this help and exit")
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="Maildir, Maildir++ folder, directory, mbox, file, or - for stdin")


@dataclass
class Summary:
    counts: dict[str, int] = field(default_factory=dict)
    failed: list[tuple[str, str]] = field(default_factory=list)

    def add(self, outcome: LearnOutcome) -> None:
        self.counts[outcome.value] = self.counts.get(outcome.value, 0) + 1

    def fail(self, label: str, reason: str) -> None:
        self.failed.append((label, reason))

    def total(self) -> int:
        return sum(self.counts.values()) + len(self.failed)

    def line(self, order: tuple[LearnOutcome, ...]) -> str:
        parts = [f"{o.value}: {self.counts.get(o.value, 0)}" for o in order]
        return ", ".join([*parts, f"failed: {len(self.failed)}"])


class Progress:
    """A one-line bar on a terminal; a count every `every` messages otherwise (cron logs)."""

    def __init__(self, tty: bool, every: int = 1000) -> None:
        self.tty = tty
        self.every = every
        self.start = time.monotonic()
        self.drawn = 0.0

    def show(self, done: int, summary: Summary, order: tuple[LearnOutcome, ...]) -> None:
        if self.tty:
            now = time.monotonic()
            if now - self.drawn < 0.1 and done > 1:  # ten redraws a second are plenty
                return
            self.drawn = now
            rate = done / max(now - self.start, 1e-6)
            print(f"\r{done} messages, {rate:.0f}/s | {summary.line(order)}", end="",
                  file=sys.stderr, flush=True)
        elif done % self.every == 0:
            print(f"{done} messages: {summary.line(order)}", file=sys.stderr, flush=True)

    def end(self) -> None:
        if self.tty:
            print(file=sys.stderr)


def run_learn(bayes: Bayes, paths: list[str], label: str | None,
              newer_than: float | None = None, tty: bool = False) -> Summary:
    """Learn (label = "spam"/"ham") or unlearn (label None) every message under `paths`.
    Raises StorageError when the store itself fails (the run cannot go on)."""
    summary = Summary()
    order = (LEARN_ORDER if label
             else (LearnOutcome.UNLEARNED, LearnOutcome.NOT_LEARNED))
    progress = Progress(tty)
    cutoff = time.time() - newer_than if newer_than is not None else None
    warning = bayes.tokenizer_warning()
    if warning:
        print(f"pyspamc: warning: {warning}", file=sys.stderr)
    try:
        _learn_all(bayes, paths, label, cutoff, summary, progress, order)
    except BatchError as exc:  # the commit at the end of the batch
        _batch_lost(summary, exc, counted=len(exc.labels))
    progress.end()
    changed = (LearnOutcome.LEARNED, LearnOutcome.MOVED, LearnOutcome.UNLEARNED)
    if any(summary.counts.get(outcome.value, 0) > 0 for outcome in changed):
        bayes.fit_model()  # the model reflects the learned messages as of now
    return summary


def _learn_all(bayes: Bayes, paths: list[str], label: str | None, cutoff: float | None,
               summary: Summary, progress: Progress, order: tuple[LearnOutcome, ...]) -> None:
    day = today()
    with bayes.storage.batch():
        for source in iter_messages(paths):
            if source.error is not None or source.data is None:
                summary.fail(source.label, source.error or "unreadable")
                continue
            if cutoff is not None and source.mtime is not None and source.mtime < cutoff:
                continue
            reason = not_a_message(source.data)
            if reason is not None:
                summary.fail(source.label, reason)
                continue
            try:
                tokens = bayes.tokens(Task(source.data))
            except Exception as exc:  # one odd message must not stop a run of thousands
                summary.fail(source.label, f"cannot parse: {type(exc).__name__}: {exc}")
                continue
            try:
                if label is None:
                    outcome = bayes.storage.unlearn(tokens.digest(), tokens.hashes)
                else:
                    outcome = bayes.learn_tokens(tokens, label, day, name=source.label)
            except BatchError as exc:  # this learn filled the batch, and its commit failed
                _batch_lost(summary, exc, counted=len(exc.labels) - 1)
                continue
            summary.add(outcome)
            progress.show(summary.total(), summary, order)


def _batch_lost(summary: Summary, exc: BatchError, counted: int) -> None:
    """Messages reported learned whose batch then failed to commit become failures."""
    key = LearnOutcome.LEARNED.value
    summary.counts[key] = summary.counts.get(key, 0) - counted
    for name in exc.labels:
        summary.fail(name, str(exc))


def cmd_learn(args: argparse.Namespace) -> int:
    config = load_config_or_exit(args.config)
    label = {"learn_spam": SPAM, "learn_ham": HAM}.get(args.command)
    bayes = bayes_from_config(config, create=label is not None)
    try:
        summary = run_learn(bayes, args.paths, label, getattr(args, "newer_than", None),
                            tty=sys.stderr.isatty())
        if label is not None:
            _count_learns(bayes, label, summary)
    except StorageError as exc:
        print(f"pyspamc: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        bayes.storage.close()
    order = (LEARN_ORDER if label
             else (LearnOutcome.UNLEARNED, LearnOutcome.NOT_LEARNED))
    print(summary.line(order))
    for name, reason in summary.failed:
        print(f"failed: {name}: {reason}")
    return EXIT_FAILED if summary.failed else EXIT_OK


def _count_learns(bayes: Bayes, label: str, summary: Summary) -> None:
    """The same counters the controller's learns add to (pyspamd_learns_total, stat)."""
    changes = [(f"{keys.LEARN}{label}:{outcome}", n, None)
               for outcome, n in summary.counts.items() if n > 0]
    if changes:
        bayes.storage.incr_many(changes)


def cmd_stat(args: argparse.Namespace) -> int:
    from pyspamd.cli.statistics import print_stat

    return print_stat(load_config_or_exit(args.config))


def cmd_expire(args: argparse.Namespace) -> int:
    config = load_config_or_exit(args.config)
    days = config.bayes.expire_days if args.days is None else args.days
    bayes = bayes_from_config(config, create=False)
    storage = bayes.storage
    try:
        dropped = storage.expire_tokens(today() - days)
        # The daily cron job ends here: fitting again lets the messages autolearn added
        # since the last learn_* run count in the logistic model too.
        model_tokens = bayes.fit_model()
        stats = storage.bayes_stats()
    except StorageError as exc:
        print(f"pyspamc: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        storage.close()
    print(f"expired: {dropped} tokens seen once and not learned for {days} days; "
          f"tokens stored: {stats.tokens}; model fitted: {model_tokens} tokens from "
          f"{stats.fit_messages[SPAM]} spam, {stats.fit_messages[HAM]} ham messages; "
          f"size: {size_text(stats.size_bytes)}")
    return EXIT_OK
