"""Scanning processes read while a learner writes: every read sees whole learns only."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
import pytest
from support.redis_server import RedisCluster, RedisServer

from pyspamd.storage.base import HAM, SPAM, Storage
from pyspamd.storage.redis_store import RedisStorage
from pyspamd.storage.sqlite_store import SqliteStorage

TOKENS = np.arange(1, 400, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
LEARNS = 120


def _reader(store: Storage, stop: multiprocessing.synchronize.Event,  # type: ignore[name-defined]
            out: multiprocessing.Queue) -> None:
    reads = bad = 0
    last = -1
    try:
        while not stop.is_set():
            counts = store.token_counts(TOKENS)
            # Every learned message holds every token, so a whole-learns-only view has
            # each token's count equal to the messages learned, and never going back.
            total = counts.nspam + counts.nham
            if not (np.all(counts.spam == counts.nspam) and np.all(counts.ham == counts.nham)
                    and total >= last):
                bad += 1
            last = total
            reads += 1
        out.put((reads, bad, None))
    except Exception as exc:
        out.put((reads, bad, repr(exc)))


def _run(store: Storage) -> None:
    ctx = multiprocessing.get_context("fork")  # what the milter's pre-forked workers do
    store.token_counts(TOKENS)  # the parent's connection exists before the fork
    stop = ctx.Event()
    out: multiprocessing.Queue = ctx.Queue()
    readers = [ctx.Process(target=_reader, args=(store, stop, out)) for _ in range(2)]
    for proc in readers:
        proc.start()
    try:
        for n in range(LEARNS):
            if n % 40 == 20:
                with store.batch():
                    for k in range(5):
                        store.learn(f"b{n}-{k}".encode().ljust(16, b"."), TOKENS, SPAM, 1)
            store.learn(f"m{n}".encode().ljust(16, b"."), TOKENS, HAM if n % 2 else SPAM, 1)
    finally:
        stop.set()
        results = [out.get(timeout=60) for _ in readers]
        for proc in readers:
            proc.join(timeout=30)
    for reads, bad, error in results:
        assert error is None
        assert reads > 0 and bad == 0
    final = store.token_counts(TOKENS)
    assert final.nspam + final.nham == LEARNS + 5 * 3


def test_sqlite_readers_while_learning(tmp_path: Path) -> None:
    _run(SqliteStorage(tmp_path / "c.sqlite"))


def test_redis_readers_while_learning(redis_proc: RedisServer) -> None:
    _run(RedisStorage(redis_proc.url, prefix="concurrency"))


@pytest.mark.parametrize("backend", ["sqlite"])
def test_store_object_reopens_after_fork(tmp_path: Path, backend: str) -> None:
    store = SqliteStorage(tmp_path / "f.sqlite")
    store.learn(b"x" * 16, TOKENS[:3], SPAM, 1)
    parent_conn = store.conn
    ctx = multiprocessing.get_context("fork")
    out: multiprocessing.Queue = ctx.Queue()

    def child() -> None:
        out.put((store.conn is not parent_conn, int(store.token_counts(TOKENS[:3]).nspam)))

    proc = ctx.Process(target=child)
    proc.start()
    proc.join(timeout=30)
    assert out.get(timeout=10) == (True, 1)


def test_redis_cluster_readers_while_learning(redis_cluster_proc: RedisCluster) -> None:
    _run(RedisStorage(redis_cluster_proc.url, prefix="concurrency", cluster=True))
