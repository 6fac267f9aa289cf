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
        self._creates = False
        self._resolver: Resolver | None = None

    def storage_opener(self, writes: bool) -> Callable[[], Storage]:
        """Called when a check (or the recorder) is built: the function that gives it the
        process's one store handle. The handle opens on first use, so after a fork; it may
        make a new SQLite file only if something that writes asked for it, so a scanner that
        only reads (Bayes) never leaves an empty store behind."""
        with self._lock:
            if writes and not self._creates:
                self._creates = True
                self._storage = None  # opened read-only before: the next use reopens it
        return self.storage

    def storage(self) -> Storage:
        from pyspamd.storage import open_storage  # the backends load only when used

        with self._lock:
            if self._storage is None:
                self._storage = open_storage(self.config.storage, create=self._creates)
            return self._storage

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
