"""Redis backend, shared part: the client (plain or Redis Cluster), error messages, and the
Lua scripts, which live as files in pyspamd/storage/lua/ (each with a header saying what it
does and its KEYS/ARGV) and are read once, when the first store is made. A missing or
unreadable script file is a StorageError that names it. The Bayes, state and fuzzy parts
(redis_bayes.py, redis_state.py, redis_fuzzy.py) build on it; redis_store.RedisStorage
joins them."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.cluster import RedisCluster

from pyspamd.storage.base import Handle
from pyspamd.storage.errors import StorageError

LUA_DIR = Path(__file__).with_name("lua")
# A script's "-- requires: a b" line names libraries (lua/lib/a.lua ...) put before it: Redis
# runs each script alone, so shared functions travel inside every script that calls them.
_REQUIRES = re.compile(r"^-- requires: (.+)$", re.MULTILINE)


def read_script(name: str, directory: Path = LUA_DIR) -> str:
    """The text Redis runs for script `name`: its libraries, then the script."""
    path = directory / f"{name}.lua"
    try:
        body = path.read_text(encoding="utf-8")
        match = _REQUIRES.search(body)
        libs = [(directory / "lib" / f"{lib}.lua").read_text(encoding="utf-8")
                for lib in (match.group(1).split() if match else [])]
    except OSError as exc:
        raise StorageError(f"Redis script {exc.filename or path}: cannot read it: "
                           f"{exc.strerror or exc} (the pyspamd installation is incomplete; "
                           "install the package again)") from exc
    return "".join(libs) + body


@functools.cache
def read_scripts(directory: Path = LUA_DIR) -> dict[str, str]:
    """Every script of `directory`, by name, read once per process."""
    return {name: read_script(name, directory) for name in SCRIPTS}


# The scripts the backend runs (lua/NAME.lua); all must be there for a store to open.
SCRIPTS = ("learn", "limit_fit", "expire", "read_tokens", "swap_model", "snapshot", "incr",
           "take_token", "fuzzy_add", "fuzzy_delete")


def id_bytes(value: int) -> bytes:
    return (value & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big")


def id_int(raw: bytes) -> int:
    return int.from_bytes(raw, "big", signed=True)


def redacted(url: str) -> str:
    """The URL without its password, for messages and `pyspamc stat`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


class RedisConnection(Handle):
    backend = "redis"

    def __init__(self, url: str, prefix: str = "pyspamd", timeout: float = 5.0,
                 cluster: bool = False) -> None:
        self.url = redacted(url)  # for messages; the client keeps the real one
        self.prefix = prefix
        self.cluster = cluster
        self._scripts = read_scripts()
        try:
            # redis-py reconnects after fork by itself (its pool checks the pid).
            client_class = RedisCluster if cluster else redis.Redis
            self.client = client_class.from_url(url, socket_timeout=timeout,
                                                socket_connect_timeout=timeout)
        except redis.RedisError as exc:
            raise StorageError(f"Redis store {self.url}: cannot reach the cluster: {exc}") \
                from exc
        except ValueError as exc:
            raise StorageError(f"Redis store {self.url!r}: bad redis_url: {exc} (use "
                               "redis://HOST:PORT/DB or unix:///path/to/redis.sock?db=0)"
                               ) from exc
        self._prepare()

    def _prepare(self) -> None:
        """Each part's keys and scripts; parts extend this (calling super()._prepare())."""

    def _script(self, name: str) -> Any:
        return self.client.register_script(self._scripts[name])

    def _call(self, doing: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except redis.ConnectionError as exc:
            raise StorageError(f"Redis store {self.url}: cannot connect while {doing}: {exc} "
                               "(is redis-server running, and is redis_url right?); "
                               "nothing was changed") from exc
        except redis.TimeoutError as exc:
            raise StorageError(f"Redis store {self.url}: timed out while {doing}: {exc}") \
                from exc
        except redis.RedisError as exc:
            raise StorageError(f"Redis store {self.url}: {doing} failed: {exc}") from exc

    def _run_scripts(self, doing: str, script: Any, calls: list[tuple[list, list]]) -> int:
        """Run `script` once per (keys, args), pipelined; one by one on Redis Cluster, whose
        client refuses scripts in pipelines. Returns the sum of their replies."""
        if not calls:
            return 0
        if self.cluster:
            return sum(int(self._call(doing, script, keys=keys, args=args))
                       for keys, args in calls)
        pipe = self.client.pipeline(transaction=False)
        for keys, args in calls:
            script(keys=keys, args=args, client=pipe)
        return sum(int(r) for r in self._call(doing, pipe.execute))

    def close(self) -> None:
        self.client.close()

