"""pyspamc learn_spam / learn_ham / unlearn / stat / expire: training the Bayes classifier."""

from __future__ import annotations

import argparse
import io
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, NoReturn

from pyspamd.checks.bayes import bayes_on
from pyspamd.classifiers.bayes import Bayes, today
from pyspamd.cli.common import EXIT_FAILED, EXIT_OK, load_config_or_exit
from pyspamd.fuzzy.store import learned_spam_hook
from pyspamd.sources import MessageSource, count_files, folders_named, iter_messages, not_a_message
from pyspamd.stats import keys
from pyspamd.stats.render import size_text
from pyspamd.storage import open_storage
from pyspamd.storage.base import HAM, SPAM, BatchError, LearnOutcome, StateStore, StorageError
from pyspamd.task import Task

if TYPE_CHECKING:
    from tqdm import tqdm

    from pyspamd.rescore.learned import LearnedVectors

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
# The outcomes a learn run reports, in the order of its summary line.
LEARN_ORDER = (LearnOutcome.LEARNED, LearnOutcome.ALREADY, LearnOutcome.MOVED)
# Folder names that mean the other class: learning a tree as ham that holds one of these
# (or as spam one of those) is refused without --force.
OTHER_CLASS_FOLDERS = {
    HAM: frozenset({"spam", "junk", "junk e-mail", "junk email", "bulk mail"}),
    SPAM: frozenset({"ham", "not spam", "notspam", "not-spam", "inbox", "good"}),
}


def parse_duration(text: str) -> float:
    m = _DURATION.match(text)
    if not m:
        raise argparse.ArgumentTypeError(
            f"bad duration {text!r}; write a number with s, m, h, d or w, e.g. 1d or 12h")
    return float(m.group(1)) * _UNITS[m.group(2)]




def add_commands(commands: argparse._SubParsersAction) -> None:
    for name, what in (("learn_spam", "spam"), ("learn_ham", "ham (good mail)")):
        p = commands.add_parser(name, add_help=False, help=f"learn messages as {what}")
        _paths_args(p)
        p.add_argument("--newer-than", type=parse_duration, metavar="AGE",
                       help="only files changed within AGE (e.g. 1d, 12h), for a daily cron job")
        p.add_argument("--force", action="store_true",
                       help="learn folders named like the other class (spam/, ham/) found "
                            "inside the PATHs too")
        p.add_argument("--rescore", type=Path, metavar="FILE",
                       help="at the end, fit the scores from the store's symbol vectors "
                            "(pyspamc rescore --from-store) and write them to FILE")
        if name == "learn_spam":
            p.add_argument("--report", action="store_true",
                           help="also report each message learned to the [pyzor] servers "
                                "(always with [pyzor] learn_spam = true)")
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


def other_class_refusal(args: argparse.Namespace, label: str) -> str | None:
    """The one line that refuses a learn whose folders hold one named like the other class
    (a `spam/` inside the folder given to learn_ham), unless --force was given."""
    if getattr(args, "force", False):
        return None
    found = folders_named(args.paths, OTHER_CLASS_FOLDERS[label])
    if not found:
        return None
    other = SPAM if label == HAM else HAM
    where = ", ".join(f"{path} ({count} message{'' if count == 1 else 's'})"
                      for path, count in found)
    return (f"pyspamc: not learned: {where} would be learned as {label} though named like "
            f"{other}; name the folders to learn, or add --force")


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
    """Where a long learn run is: tqdm's bar on a terminal; in a log (cron), one line every
    `every` messages. Both count files (the total is known before reading any; an mbox file
    is one) and show the share done, the rate, the time left and the counts so far."""

    def __init__(self, tty: bool, total: int = 0, every: int = 500) -> None:
        self.total = total
        self.every = every
        self.start = time.monotonic()
        self.files = 0
        self.seen = 0  # messages read, learned or not
        self.bar: tqdm[NoReturn] | None = None
        if tty:
            from tqdm import tqdm

            self.bar = tqdm(total=total or None, unit="file", file=sys.stderr,
                            dynamic_ncols=True, mininterval=0.2, leave=True)

    def track(self, sources: Iterable[MessageSource], summary: Summary,
              order: tuple[LearnOutcome, ...]) -> Iterator[MessageSource]:
        """The sources, each shown once the caller is done with it (whatever path of the
        caller's loop it took)."""
        for source in sources:
            yield source
            self.show(source, summary, order)

    def show(self, source: MessageSource, summary: Summary,
             order: tuple[LearnOutcome, ...]) -> None:
        self.seen += 1
        if source.starts_file:
            self.files += 1
        if self.bar is not None:
            self.bar.set_postfix_str(summary.line(order), refresh=False)
            self.bar.update(self.files - self.bar.n)
            return
        if self.seen % self.every == 0:
            print(self.line(self.seen, summary, order), file=sys.stderr, flush=True)

    def line(self, done: int, summary: Summary, order: tuple[LearnOutcome, ...]) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-6)
        where = f"{done} messages, {self.files}/{self.total} files"
        if self.total and self.files:
            left = elapsed / self.files * max(self.total - self.files, 0)
            where += (f" ({100 * self.files / self.total:.0f}%, "
                      f"{done / elapsed:.0f} messages/s, {_clock(left)} left)")
        return f"{where}: {summary.line(order)}"

    def end(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def run_learn(bayes: Bayes, state: StateStore, paths: list[str], label: str | None,
              newer_than: float | None = None, tty: bool = False,
              vectors: LearnedVectors | None = None,
              on_learned: Callable[[Task], object] | None = None) -> Summary:
    """Learn (label = "spam"/"ham") or unlearn (label None) every message under `paths`;
    `on_learned` is called with each message learned or moved (the fuzzy_add of learned
    spam); `state` keeps the symbol vectors (the same store as Bayes'). Raises StorageError
    when the store itself fails (the run cannot go on)."""
    summary = Summary()
    order = (LEARN_ORDER if label
             else (LearnOutcome.UNLEARNED, LearnOutcome.NOT_LEARNED))
    progress = Progress(tty, count_files(paths))
    cutoff = time.time() - newer_than if newer_than is not None else None
    warning = bayes.tokenizer_warning()
    if warning:
        print(f"pyspamc: warning: {warning}", file=sys.stderr)
    try:
        stdin = None
        if vectors is not None and label is not None:
            if "-" in paths:  # read twice: once to scan, once to learn
                stdin = io.BytesIO(sys.stdin.buffer.read())
            vectors.scan(bayes, iter_messages(paths, stdin), cutoff, label)
            if stdin is not None:
                stdin.seek(0)
        _learn_all(bayes, paths, label, cutoff, summary, progress, order, vectors, stdin,
                   on_learned)
    except BatchError as exc:  # the commit at the end of the batch
        _batch_lost(summary, exc, counted=len(exc.labels))
    progress.end()
    if vectors is not None:
        vectors.push(state)
    changed = (LearnOutcome.LEARNED, LearnOutcome.MOVED, LearnOutcome.UNLEARNED)
    if any(summary.counts.get(outcome.value, 0) > 0 for outcome in changed):
        bayes.fit_model()  # the model reflects the learned messages as of now
    return summary


def _learn_all(bayes: Bayes, paths: list[str], label: str | None, cutoff: float | None,
               summary: Summary, progress: Progress, order: tuple[LearnOutcome, ...],
               vectors: LearnedVectors | None, stdin: BinaryIO | None = None,
               on_learned: Callable[[Task], object] | None = None) -> None:
    day = today()
    with bayes.storage.batch():
        for source in progress.track(iter_messages(paths, stdin), summary, order):
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
                task = Task(source.data)
                known = vectors.known_tokens(source) if vectors is not None else None
                tokens = known if known is not None else bayes.tokens(task)
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
            if vectors is not None and label is not None and outcome in (
                    LearnOutcome.LEARNED, LearnOutcome.MOVED):
                vectors.take(label, tokens.digest())
            if on_learned is not None and outcome in (LearnOutcome.LEARNED,
                                                      LearnOutcome.MOVED):
                on_learned(task)


def _batch_lost(summary: Summary, exc: BatchError, counted: int) -> None:
    """Messages reported learned whose batch then failed to commit become failures."""
    key = LearnOutcome.LEARNED.value
    summary.counts[key] = summary.counts.get(key, 0) - counted
    for name in exc.labels:
        summary.fail(name, str(exc))


def cmd_learn(args: argparse.Namespace) -> int:
    config = load_config_or_exit(args.config)
    label = {"learn_spam": SPAM, "learn_ham": HAM}.get(args.command)
    refusal = other_class_refusal(args, label) if label is not None else None
    if refusal is not None:
        print(refusal, file=sys.stderr)
        return EXIT_FAILED
    vectors = None
    if label is not None and config.bayes.symbol_vectors:
        from pyspamd.cli.common import scanner_or_exit
        from pyspamd.rescore.learned import LearnedVectors, scan_config

        # rule errors are told here, not as a traceback; the scanner is built once
        vectors = LearnedVectors(config, scanner_or_exit(scan_config(config)))
    storage = open_storage(config.storage, create=label is not None)
    bayes = bayes_on(config, storage)
    on_learned = learned_spam_hook(config, storage) if label == SPAM else None
    reporter = None
    if label == SPAM and (getattr(args, "report", False) or config.pyzor.learn_spam):
        reporter = PyzorReporter(config.pyzor.servers, config.pyzor.timeout, on_learned)
        on_learned = reporter
    try:
        summary = run_learn(bayes, storage, args.paths, label, getattr(args, "newer_than", None),
                            tty=sys.stderr.isatty(), vectors=vectors, on_learned=on_learned)
        if label is not None:
            _count_learns(storage, label, summary)
    except StorageError as exc:
        print(f"pyspamc: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        storage.close()
        if vectors is not None:
            vectors.close()
    order = (LEARN_ORDER if label
             else (LearnOutcome.UNLEARNED, LearnOutcome.NOT_LEARNED))
    print(summary.line(order))
    for name, reason in summary.failed:
        print(f"failed: {name}: {reason}")
    failed = bool(summary.failed)
    if reporter is not None:
        print(reporter.line())
        failed = failed or bool(reporter.errors)
    if getattr(args, "rescore", None) is not None:
        from pyspamd.cli.rescore import refit_from_store

        failed = refit_from_store(config, args.rescore) != EXIT_OK or failed
    return EXIT_FAILED if failed else EXIT_OK


class PyzorReporter:
    """learn_spam's hook that reports each learned message's digest to the Pyzor servers
    (then calls the hook it wraps, the fuzzy_add of [fuzzy] learn_spam)."""

    def __init__(self, servers: list[str], timeout: float,
                 then: Callable[[Task], object] | None) -> None:
        self.servers, self.timeout, self.then = servers, timeout, then
        self.reported = 0
        self.errors: list[str] = []

    def __call__(self, task: Task) -> None:
        from pyspamd.pyzor_client import digest_of, report

        digest = digest_of(task.message)
        if digest is not None:
            problems = report(digest, self.servers, self.timeout)
            self.errors.extend(problems)
            self.reported += len(self.servers) - len(problems)
        if self.then is not None:
            self.then(task)

    def line(self) -> str:
        text = f"reported to pyzor: {self.reported}"
        if self.errors:
            text += f"; failed: {len(self.errors)} ({self.errors[0]})"
        return text


def _count_learns(state: StateStore, label: str, summary: Summary) -> None:
    """The same counters the controller's learns add to (pyspamd_learns_total, stat)."""
    changes: list[tuple[str, int, float | None]] = [(f"{keys.LEARN}{label}:{outcome}", n, None)
               for outcome, n in summary.counts.items() if n > 0]
    if changes:
        state.incr_many(changes)


def cmd_stat(args: argparse.Namespace) -> int:
    from pyspamd.cli.statistics import print_stat

    return print_stat(load_config_or_exit(args.config))


def cmd_expire(args: argparse.Namespace) -> int:
    config = load_config_or_exit(args.config)
    days = config.bayes.expire_days if args.days is None else args.days
    storage = open_storage(config.storage, create=False)
    bayes = bayes_on(config, storage)
    try:
        dropped = storage.expire_tokens(today() - days)
        fuzzy_dropped, fuzzy_left = storage.fuzzy_expire(), storage.fuzzy_count()
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
          f"size: {size_text(stats.size_bytes)}; fuzzy hashes expired: {fuzzy_dropped}, "
          f"stored: {fuzzy_left}")
    return EXIT_OK
