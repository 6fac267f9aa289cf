"""Storage for everything that keeps state; `open_storage` picks the configured backend."""

from __future__ import annotations

import os
from pathlib import Path

from pyspamd.config import StorageConfig
from pyspamd.storage.base import Storage, StorageError, StorageMissing

SYSTEM_DIR = Path("/var/lib/pyspamd")
DATA_DIR_ENV = "PYSPAMD_DATA_DIR"


def default_sqlite_path() -> Path:
    """$PYSPAMD_DATA_DIR if set (packages, tests); else /var/lib/pyspamd when it exists or can
    be made (a system install); else the user's data dir, so `pyspamc learn_*` works for a
    non-root admin too."""
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        return Path(override) / "pyspamd.sqlite"
    if os.access(SYSTEM_DIR, os.W_OK) or (
        not SYSTEM_DIR.exists() and os.access(SYSTEM_DIR.parent, os.W_OK)
    ):
        return SYSTEM_DIR / "pyspamd.sqlite"
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "pyspamd" / "pyspamd.sqlite"


def open_storage(config: StorageConfig, create: bool = True) -> Storage:
    """`create=False` (scanning) never makes a SQLite file; the first learn does."""
    if config.backend == "sqlite":
        from pyspamd.storage.sqlite_store import SqliteStorage

        return SqliteStorage(config.path or default_sqlite_path(), create=create,
                             busy_timeout=config.busy_timeout)
    if config.backend == "redis":
        from pyspamd.storage.redis_store import RedisStorage

        return RedisStorage(config.redis_url, prefix=config.redis_prefix,
                            timeout=config.redis_timeout, cluster=config.redis_cluster)
    raise StorageError(f"unknown storage backend {config.backend!r}; use \"sqlite\" or "
                       "\"redis\"")


__all__ = ["Storage", "StorageError", "StorageMissing", "default_sqlite_path", "open_storage"]
