"""The fuzzy check: FUZZY_DENIED (and a symbol per [fuzzy.flags] flag) when a text part is
like one of a message reported with `pyspamc fuzzy_add`, or an attachment is the same."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from pyspamd.checks.base import Check
from pyspamd.config import Config
from pyspamd.fuzzy.store import find_matches, hashes_of
from pyspamd.services import Services
from pyspamd.storage import StorageError, StorageMissing
from pyspamd.storage.base import FuzzyStore
from pyspamd.symbols import Hits, SymbolDef
from pyspamd.task import Task

log = logging.getLogger("pyspamd.fuzzy")

EMPTY_RECHECK = 60.0  # seconds between looks at a store that holds no fuzzy hash
ERROR_LOG_INTERVAL = 60.0


class FuzzyCheck(Check):
    name = "fuzzy"

    @classmethod
    def build(cls, config: Config, services: Services) -> FuzzyCheck | None:
        if config.fuzzy.enabled and config.fuzzy.flags:
            return cls(config, services)
        return None

    def __init__(self, config: Config, services: Services) -> None:
        self.config = config
        self._open: Callable[[], FuzzyStore] = services.storage_opener(writes=False)
        self.settings = config.fuzzy
        # per instance: the config names the symbols
        self.symbols = {spec.symbol: SymbolDef(spec.score, spec.description)  # type: ignore[misc]
                        for spec in self.settings.flags.values()}
        self._by_flag = {int(flag): spec.symbol for flag, spec in self.settings.flags.items()}
        self._storage: FuzzyStore | None = None
        self._idle_until = 0.0  # no store, or an empty one, until then: skip the hashing
        self._logged = 0.0

    def _store(self) -> FuzzyStore | None:
        """The store, or None while it is missing or holds no fuzzy hash: then the
        hashing (most of this check's cost) is skipped, and the store looked at again
        after EMPTY_RECHECK seconds."""
        now = time.monotonic()
        if now < self._idle_until:
            return None
        try:
            if self._storage is None:
                self._storage = self._open()
            if self._idle_until >= 0.0 and self._storage.fuzzy_count() == 0:
                self._idle_until = now + EMPTY_RECHECK
                return None
        except StorageError as exc:
            self._idle_until = now + EMPTY_RECHECK
            if not isinstance(exc, StorageMissing):
                self._warn(exc)
            return None
        self._idle_until = -1.0  # it holds hashes: no more counting
        return self._storage

    def _warn(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._logged >= ERROR_LOG_INTERVAL:
            self._logged = now
            log.warning("fuzzy check skipped: %s", exc)

    def run(self, task: Task, hits: Hits) -> None:
        storage = self._store()
        if storage is None:
            return
        hashes = hashes_of(task, self.settings)
        if not hashes:
            return
        try:
            matches = find_matches(storage, hashes, self.settings.min_similarity)
        except StorageMissing:
            self._idle_until = time.monotonic() + EMPTY_RECHECK
            return
        except StorageError as exc:
            self._warn(exc)
            return
        for match in matches:
            symbol = self._by_flag.get(match.flag)
            if symbol is None:
                continue  # a flag this host does not score
            hits.add(symbol, f"{match.kind}:{match.similarity:.2f}",
                     weight=round(match.similarity, 2))
