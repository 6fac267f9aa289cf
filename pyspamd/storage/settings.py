"""`[storage]`: where Bayes and the state (greylisting, rate limits, history) are kept, and
the checks of its options, which the backend table (backends.py) supplies."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pyspamd.config_schema import Locator, beside_config
from pyspamd.storage.backends import storage_errors


@dataclass
class StorageConfig:
    backend: str = "sqlite"
    path: str = ""  # empty: /var/lib/pyspamd/pyspamd.sqlite, else the user's data dir
    busy_timeout: float = 10.0
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "pyspamd"
    redis_timeout: float = 2.0
    redis_cluster: bool = False


def check_storage(storage: StorageConfig, config_path: Path | None, loc: Locator) -> list[str]:
    """Also resolves storage.path beside the config file."""
    if storage.path:
        storage.path = beside_config(storage.path, config_path)
    return storage_errors(storage, lambda name: loc.where(("storage", name)))
