"""The symbol vectors a learn run keeps: the messages are scanned as the milter would scan
them in a pass before any is learned, so every vector sees the store as it was before the
run (SQLite shows a run's learns at its end and Redis as they go: scanning during the run
would give each backend other vectors), and the vectors of the messages that were learned
go to the store at the end of the run, in one write per class.

The first pass runs in one process a core, and keeps each message's Bayes tokens (by label
and a hash of its bytes), so the learn pass does not parse and tokenize it a second time. A
message the store holds learned as the run's class already is not scanned: the learn pass
keeps no vector for it (a daily run over a whole folder finds most of it learned)."""

from __future__ import annotations

import copy
import gc
import itertools
import logging
import multiprocessing
import os
from collections.abc import Iterable

import xxhash

from pyspamd.checks.bayes import BayesCheck
from pyspamd.classifiers.bayes import Bayes
from pyspamd.classifiers.tokenizer import Tokens
from pyspamd.config import Config
from pyspamd.rescore.vectors import factors_of, push_vectors, store_item
from pyspamd.scanner import Scanner
from pyspamd.sources import MessageSource, not_a_message
from pyspamd.storage.base import HAM, SPAM, StateStore
from pyspamd.task import Task

log = logging.getLogger("pyspamd.rescore")
# Tokens kept from the first pass for the learn pass (about 4 KiB a message); a bigger run
# tokenizes the rest again.
KEEP_TOKENS = 20_000


_BATCH = 2000  # messages handed to the scanning processes at a time (held in memory)
_Scanned = tuple[str, "tuple[bytes, Tokens, dict[str, float] | None] | str"]
# The run's scanner, Bayes and class, set before the scanning processes fork.
_SCANNING: tuple[Scanner, Bayes, str] | None = None


def _scan_one(item: tuple[str, bytes]) -> _Scanned:
    """One message's tokens and symbol vector (in a scanning process or inline); no vector
    for a message learned as the run's class already."""
    label, data = item
    assert _SCANNING is not None
    scanner, bayes, klass = _SCANNING
    try:
        task = Task(data)
        tokens = bayes.tokens(task)
        factors = None
        if _learned_as(scanner, tokens.digest()) != klass:
            factors = factors_of(scanner.scan_task(task))
    except Exception as exc:
        return label, f"{type(exc).__name__}: {exc}"
    return label, (xxhash.xxh3_64_digest(data), tokens, factors)


def _learned_as(scanner: Scanner, digest: bytes) -> str | None:
    """The class the store holds the message learned as, through the scanner's own store
    handle (a scanning process must not use one opened before the fork)."""
    for check in scanner.checks:
        if isinstance(check, BayesCheck):
            bayes = check.classifier()
            return bayes.storage.learned_as(digest) if bayes is not None else None
    return None


def scan_config(config: Config) -> Config:
    scan = copy.deepcopy(config)
    scan.bayes.autolearn.enabled = False  # the run learns; the scan must not
    return scan


class LearnedVectors:
    def __init__(self, config: Config, scanner: Scanner | None = None) -> None:
        """`scanner`: one built from scan_config(config), if the caller has it already."""
        self.scanner = scanner or Scanner.from_config(scan_config(config))
        self.keep = config.bayes.max_fit_messages
        self.items: dict[str, list[bytes]] = {SPAM: [], HAM: []}
        self.scanned: dict[bytes, dict[str, float]] = {}
        self.tokens: dict[str, tuple[bytes, Tokens]] = {}
        self.jobs = len(os.sched_getaffinity(0))

    def scan(self, bayes: Bayes, sources: Iterable[MessageSource],
             cutoff: float | None, label: str) -> None:
        """The first pass: a vector for each message the learn pass may learn as `label`,
        by digest.
        With more than one core the messages are scanned by forked processes, one a core
        (the scanner opens its store on first use, so each process has its own)."""
        global _SCANNING
        items = ((source.label, source.data) for source in sources
                 if source.data is not None and not_a_message(source.data) is None
                 and (cutoff is None or source.mtime is None or source.mtime >= cutoff))
        _SCANNING = (self.scanner, bayes, label)
        try:
            if self.jobs <= 1:
                self._collect(map(_scan_one, items))
                return
            # Objects made before the fork move out of the collector's sight, so that its
            # passes in the scanning processes do not write to (and copy) the pages they
            # share with this one: a third fewer page faults, about 5% less CPU there.
            gc.freeze()
            try:
                with multiprocessing.get_context("fork").Pool(self.jobs) as pool:
                    while batch := list(itertools.islice(items, _BATCH)):
                        self._collect(pool.imap(_scan_one, batch, chunksize=8))
            finally:
                gc.unfreeze()
        finally:
            _SCANNING = None

    def _collect(self, results: Iterable[_Scanned]) -> None:
        for label, outcome in results:
            if isinstance(outcome, str):  # the learn pass reports the message; no vector
                log.warning("no symbol vector for %s: %s", label, outcome)
                continue
            data_hash, tokens, factors = outcome
            if factors is not None:
                self.scanned[tokens.digest()] = factors
            if len(self.tokens) < KEEP_TOKENS:
                self.tokens[label] = (data_hash, tokens)

    def known_tokens(self, source: MessageSource) -> Tokens | None:
        """The tokens the first pass found for this message, if its bytes are the same."""
        kept = self.tokens.pop(source.label, None)
        if kept is None or source.data is None or \
                kept[0] != xxhash.xxh3_64_digest(source.data):
            return None
        return kept[1]

    def take(self, label: str, digest: bytes) -> None:
        """The learn pass learned this message as `label`: its vector goes to the store."""
        factors = self.scanned.pop(digest, None)
        if factors is not None:
            self.items[label].append(store_item(digest, factors))

    def push(self, storage: StateStore) -> int:
        for label, items in self.items.items():
            push_vectors(storage, label, items, self.keep)
        return sum(len(items) for items in self.items.values())

    def close(self) -> None:
        for check in self.scanner.checks:
            bayes = getattr(check, "_bayes", None)
            if bayes is not None:
                bayes.storage.close()
