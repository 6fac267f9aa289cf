"""The storage backends: name -> the class that implements it and the [storage] options it
reads. Config validation reads this table (storage_errors) and open_storage picks from it.

A leaf module: it imports neither numpy nor a backend, so pyspamd.config can use it; a
backend's module is imported only when that backend is opened. To add a backend, write a
class that implements pyspamd.storage.base.Storage (docs/development.md says how), then add
it here with its options.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pyspamd.storage.base import Storage

SYSTEM_DIR = Path("/var/lib/pyspamd")
DATA_DIR_ENV = "PYSPAMD_DATA_DIR"


class StorageConfig(Protocol):
    """The [storage] section as pyspamd.storage.settings.StorageConfig holds it (named by shape, so
    that config.py can import this module without an import loop)."""

    backend: str
    path: str
    busy_timeout: float
    redis_url: str
    redis_prefix: str
    redis_timeout: float
    redis_cluster: bool


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


@dataclass(frozen=True, slots=True)
class Option:
    """One [storage] option: the problem with a value (None when it is good)."""

    name: str
    check: Callable[[Any], str | None]


@dataclass(frozen=True, slots=True)
class Backend:
    name: str
    cls: str  # "module:Class", imported when the backend is opened
    options: tuple[Option, ...]  # the [storage] options its constructor reads
    # (class, config, create) -> the open handle: how the options reach the constructor.
    make: Callable[[type, StorageConfig, bool], Storage]

    def load(self) -> type:
        module, _, name = self.cls.partition(":")
        cls: type = getattr(importlib.import_module(module), name)
        return cls


def _positive(value: Any) -> str | None:
    return None if isinstance(value, int | float) and value > 0 else "must be above 0"


def _redis_url(value: Any) -> str | None:
    if isinstance(value, str) and value.startswith(("redis://", "rediss://", "unix://")):
        return None
    return "must start with redis://, rediss:// or unix://"


def _any(value: Any) -> str | None:
    return None


def _make_sqlite(cls: type, config: StorageConfig, create: bool) -> Storage:
    store: Storage = cls(config.path or default_sqlite_path(), create=create,
                         busy_timeout=config.busy_timeout)
    return store


def _make_redis(cls: type, config: StorageConfig, create: bool) -> Storage:
    # Redis has nothing to create: keys appear with the first write.
    store: Storage = cls(config.redis_url, prefix=config.redis_prefix,
                         timeout=config.redis_timeout, cluster=config.redis_cluster)
    return store


BACKENDS: dict[str, Backend] = {
    backend.name: backend for backend in (
        Backend("sqlite", "pyspamd.storage.sqlite_store:SqliteStorage",
                (Option("path", _any), Option("busy_timeout", _positive)), _make_sqlite),
        Backend("redis", "pyspamd.storage.redis_store:RedisStorage",
                (Option("redis_url", _redis_url), Option("redis_prefix", _any),
                 Option("redis_timeout", _positive), Option("redis_cluster", _any)),
                _make_redis),
    )
}


def backend_names() -> str:
    """The backends as a message lists them: "sqlite" or "redis"."""
    names = [f'"{name}"' for name in BACKENDS]
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]


def storage_errors(config: StorageConfig, where: Callable[[str], str]) -> list[str]:
    """The problems of a [storage] section, one line each, `where(option)` giving the
    place ("file:line"). Every backend's options are checked, not only the chosen one's,
    so that switching backend later finds them valid."""
    errors = []
    if config.backend not in BACKENDS:
        errors.append(f"{where('backend')}: storage.backend must be {backend_names()}, got "
                      f"{config.backend!r}")
    for backend in BACKENDS.values():
        for option in backend.options:
            problem = option.check(getattr(config, option.name))
            if problem:
                errors.append(f"{where(option.name)}: storage.{option.name} {problem}")
    return errors
