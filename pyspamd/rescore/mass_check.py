"""Mass check: train a throw-away Bayes store on labelled messages as `pyspamc learn_*` does,
scan other labelled messages through the real Scanner as `pyspamc symbols` does, and keep
each message's action, score and symbol vector. `pyspamc eval` reports from it and
`pyspamc rescore` fits scores from its cross-validated vectors."""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path

import numpy as np

from pyspamd.checks.bayes import bayes_from_config
from pyspamd.classifiers.bayes import Bayes, today
from pyspamd.classifiers.tokenizer import Tokens
from pyspamd.config import Config, StorageConfig
from pyspamd.rescore.vectors import SymbolVector, factors_of
from pyspamd.scanner import Scanner
from pyspamd.sources import iter_messages, not_a_message
from pyspamd.storage.base import HAM, SPAM
from pyspamd.symbols import SymbolDef
from pyspamd.task import Task


@dataclass(slots=True)
class Message:
    label: str
    data: bytes
    spam: bool
    when: float  # Date header (or mtime), for a time-ordered split
    mtime: float  # the file's, for --by-mtime
    tokens: Tokens | None = None  # the Bayes tokens, made once per run


@dataclass(slots=True)
class Scanned:
    label: str
    spam: bool
    action: str
    score: float
    factors: dict[str, float]
    error: str = ""

    def vector(self) -> SymbolVector:
        return SymbolVector(self.spam, self.factors, self.label)


def message_time(task: Task, mtime: float | None) -> float:
    try:
        return parsedate_to_datetime(task.headers.first("date")).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return mtime or 0.0


def load_messages(paths: Sequence[str], spam: bool, errors: list[str]) -> list[Message]:
    out: list[Message] = []
    for source in iter_messages(list(paths)):
        if source.data is None:
            errors.append(f"{source.label}: {source.error}")
            continue
        reason = not_a_message(source.data)  # learn_* would refuse it too
        if reason is not None:
            errors.append(f"{source.label}: {reason}")
            continue
        when = message_time(Task(source.data), source.mtime)
        out.append(Message(source.label, source.data, spam, when, source.mtime or 0.0))
    return out


def read_list(path: Path) -> list[str]:
    """A split list: one path a line, relative to the list folder's parent or to a folder in
    it (the shared corpus' split-42/ lists name spamassassin/'s files as spam/cur/...)."""
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    parent = path.parent.parent
    bases = [parent, *sorted(p for p in parent.iterdir() if p.is_dir())]
    base = next((b for b in bases if names and (b / names[0]).exists()), parent)
    return [str(base / name) for name in names]


def scan_config(config: Config, store: Path, scores: dict[str, float] | None = None) -> Config:
    """The config with a private SQLite store, autolearn off (testing must not teach the
    store), and fitted `scores` under the admin's [scores] (which win, as they do in the
    rules' precedence)."""
    out = copy.deepcopy(config)
    out.storage = StorageConfig(backend="sqlite", path=str(store))
    out.bayes.autolearn.enabled = False
    if scores:
        out.scores = {**scores, **config.scores}
    return out


def learn(config: Config, messages: Sequence[Message]) -> Bayes:
    """Learn every message into the config's store and fit the model, as a learn run does."""
    bayes = bayes_from_config(config, create=True)
    day = today()
    with bayes.storage.batch():
        for m in messages:
            if m.tokens is None:
                m.tokens = bayes.tokens(Task(m.data))
            bayes.learn_tokens(m.tokens, SPAM if m.spam else HAM, day, name=m.label)
    if messages:
        bayes.fit_model()
    return bayes


def scan_all(scanner: Scanner, messages: Sequence[Message]) -> list[Scanned]:
    out: list[Scanned] = []
    for m in messages:
        try:
            result = scanner.scan_task(scanner.task(m.data))
        except Exception as exc:  # counted and reported, as `pyspamc symbols` does
            out.append(Scanned(m.label, m.spam, "", 0.0, {}, f"{type(exc).__name__}: {exc}"))
            continue
        out.append(Scanned(m.label, m.spam, result.action, result.score, factors_of(result)))
    return out


def train_and_scan(config: Config, train: Sequence[Message], test: Sequence[Message],
                   scores: dict[str, float] | None = None,
                   also: Callable[[Bayes], None] | None = None
                   ) -> tuple[list[Scanned], dict[str, SymbolDef]]:
    """Learn `train` into a new store, scan `test` with it; returns the scans and the
    scanner's symbol table (the scores in force). `also` gets the trained Bayes (the
    Bayes-only figures are measured on the same store)."""
    with tempfile.TemporaryDirectory(prefix="pyspamd-eval-") as tmp:
        cfg = scan_config(config, Path(tmp) / "eval.sqlite", scores)
        bayes = learn(cfg, train)
        try:
            if also is not None:
                also(bayes)
            scanner = Scanner.from_config(cfg)
            return scan_all(scanner, test), scanner.defs
        finally:
            bayes.storage.close()


def cross_validated(config: Config, messages: Sequence[Message], folds: int, seed: int,
                    progress: Callable[[str], None] | None = None) -> list[Scanned]:
    """Each message scanned by a store trained on the other folds (stratified), so no
    vector comes from a Bayes that learned its own message."""
    from sklearn.model_selection import StratifiedKFold

    labels = np.array([m.spam for m in messages])
    out: list[Scanned | None] = [None] * len(messages)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for number, (train, test) in enumerate(splitter.split(np.zeros(len(labels)), labels), 1):
        if progress is not None:
            progress(f"fold {number}/{folds}: learning {len(train)}, scanning {len(test)}")
        scanned, _ = train_and_scan(config, [messages[i] for i in train],
                                    [messages[i] for i in test])
        for i, s in zip(test, scanned, strict=True):
            out[i] = s
    return [s for s in out if s is not None]
