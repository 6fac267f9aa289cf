"""Storage for everything that keeps state; `open_storage` picks the configured backend from
the table in backends.py. Light to import (no numpy, no backend): the interfaces are in
base.py, the backends' modules load when opened."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyspamd.storage.backends import (
    BACKENDS,
    DATA_DIR_ENV,
    SYSTEM_DIR,
    backend_names,
    default_sqlite_path,
)
from pyspamd.storage.errors import StorageError, StorageMissing

if TYPE_CHECKING:
    from pyspamd.storage.base import Storage
    from pyspamd.storage.settings import StorageConfig

def open_storage(config: StorageConfig, create: bool = True) -> Storage:
    """`create=False` (scanning) never makes a SQLite file; the first learn does. A daemon
    process opens its store through pyspamd.services.Services, once."""
    backend = BACKENDS.get(config.backend)
    if backend is None:
        raise StorageError(f"unknown storage backend {config.backend!r}; use "
                           f"{backend_names()}")
    return backend.make(backend.load(), config, create)


def __getattr__(name: str) -> Any:
    # `from pyspamd.storage import Storage` without loading numpy for everyone else.
    if name == "Storage":
        from pyspamd.storage.base import Storage

        return Storage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DATA_DIR_ENV", "SYSTEM_DIR", "Storage", "StorageError", "StorageMissing",
           "default_sqlite_path", "open_storage"]
