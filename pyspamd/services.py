"""What the checks of one process share, built once and handed to each check's `build`:
the store handle, the DNS resolver and the clock. Checks never open these themselves."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from pyspamd.config import Config

if TYPE_CHECKING:
    from pyspamd.dns.resolver import Resolver
    from pyspamd.storage.base import Storage


class Services:
    def __init__(self, config: Config, clock: Callable[[], float] = time.time,
                 symbols_only: bool = False) -> None:
        self.config = config
        self.clock = clock
        # configtest builds the checks for their symbols alone: nothing is loaded (it reads
        # the map files itself, reporting each problem).
        self.symbols_only = symbols_only
        self._lock = threading.Lock()
        self._storage: Storage | None = None
        self._resolver: Resolver | None = None

    def storage_opener(self, writes: bool) -> Callable[[], Storage]:
        """The function that gives a check (or the recorder) the process's one store
        handle, opened on first use, so after a fork. Only a writer's use may make a new
        SQLite file: for a reader (Bayes) a store that does not exist yet raises
        StorageMissing, so scanning alone never leaves an empty store behind."""
        return self.storage if writes else self._existing_storage

    def storage(self) -> Storage:
        from pyspamd.storage import open_storage  # the backends load only when used

        with self._lock:
            if self._storage is None:
                self._storage = open_storage(self.config.storage, create=True)
            return self._storage

    def _existing_storage(self) -> Storage:
        from pyspamd.storage.base import StorageMissing
        from pyspamd.storage.sqlite_store import SqliteStorage

        storage = self.storage()
        if isinstance(storage, SqliteStorage) and not storage.path.exists():
            raise StorageMissing(f"SQLite store {storage.path}: no such file (nothing learned "
                                 "yet; run pyspamc learn_spam / learn_ham)")
        return storage

    @property
    def resolver(self) -> Resolver:
        """One resolver (and its cache) for all the checks that use DNS."""
        with self._lock:
            if self._resolver is None:
                from pyspamd.dns.resolver import Resolver

                self._resolver = Resolver(self.config.dns)
            return self._resolver

    def close(self) -> None:
        with self._lock:
            if self._storage is not None:
                self._storage.close()
                self._storage = None
