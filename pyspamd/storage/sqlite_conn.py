"""SQLite backend, shared part: the file's schema, and connection handling (one connection
per thread and per process, reused across milter sessions; transactions with savepoints
inside). The Bayes, state and fuzzy parts (sqlite_bayes.py, sqlite_state.py,
sqlite_fuzzy.py) run their SQL through it; sqlite_store.SqliteStorage joins them.
WAL journal, so many scanning processes read while one learner writes."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pyspamd.storage.base import Handle
from pyspamd.storage.errors import StorageError, StorageMissing

# 2: learned messages keep their tokens; the logistic model. 3: those tokens carry their
# class and learn order, so only the newest [bayes] max_fit_messages of a class are kept.
SCHEMA_VERSION = "3"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- token: the tokenizer's unsigned 64-bit hash stored as a signed 64-bit integer (same bits)
CREATE TABLE IF NOT EXISTS bayes_tokens (
    token INTEGER PRIMARY KEY, spam INTEGER NOT NULL, ham INTEGER NOT NULL,
    day INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS bayes_learned (
    digest BLOB PRIMARY KEY, label TEXT NOT NULL, day INTEGER NOT NULL) WITHOUT ROWID;
-- A learned message's tokens (big-endian u64s), to fit the logistic model from, with its
-- class and its place in that class's learn order (seq): the oldest are dropped past
-- max_fit_messages, while bayes_learned keeps every digest. A rowid table of its own:
-- blobs of a few KiB fill WITHOUT ROWID pages badly (45% more space). The (label, seq)
-- index is made in _upgrade, after a schema 2 table has gained those columns.
CREATE TABLE IF NOT EXISTS bayes_messages (
    digest BLOB PRIMARY KEY, tokens BLOB NOT NULL, label TEXT, seq INTEGER);
CREATE TABLE IF NOT EXISTS bayes_model (token INTEGER PRIMARY KEY, weight REAL NOT NULL);
CREATE TABLE IF NOT EXISTS bayes_totals (label TEXT PRIMARY KEY, messages INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY, value BLOB NOT NULL, expires REAL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS lists (
    key TEXT NOT NULL, seq INTEGER NOT NULL, value BLOB NOT NULL,
    PRIMARY KEY (key, seq)) WITHOUT ROWID;
"""
MMAP_BYTES = 1 << 30
CACHE_KIB = 32768


_STORES: weakref.WeakSet[SqliteConnection] = weakref.WeakSet()
_IDLE_MAX = 8  # connections a store keeps for the next session; more are closed


def release_thread_connections() -> None:
    """Hand this thread's connections back to their stores, for the next session to use.

    pymilter runs each milter connection's callbacks under a Python thread state of its own
    (not one per OS thread) and deletes it when the MTA disconnects, so a connection kept
    in threading.local was dropped with it, and closed only when the garbage collector got
    round to it: a worker had ~50 SQLite connections open at a time, each with its files
    and its own page cache (issue 18: open files 12 -> 90-150, RSS 52 -> 120 MB). The milter
    session calls this when it closes.
    """
    for store in list(_STORES):
        store.release_thread()


class SqliteConnection(Handle):
    backend = "sqlite3"

    def __init__(self, path: str | Path, create: bool = True, busy_timeout: float = 10.0) -> None:
        self.path = Path(path)
        self.create = create
        self.busy_timeout = busy_timeout
        # One connection per thread: pymilter serves each SMTP session in a thread of its
        # own, and two sessions sharing a connection would nest each other's transactions.
        self._local = threading.local()
        # Connections released by finished sessions (release_thread), this process's only.
        self._idle: list[sqlite3.Connection] = []
        self._idle_pid = os.getpid()
        self._idle_lock = threading.Lock()
        _STORES.add(self)

    # --- connection: per thread (and per process, after a fork) ---
    @property
    def _conn(self) -> sqlite3.Connection | None:
        return getattr(self._local, "conn", None)

    @_conn.setter
    def _conn(self, value: sqlite3.Connection | None) -> None:
        self._local.conn = value

    @property
    def _pid(self) -> int:
        return getattr(self._local, "pid", 0)

    @_pid.setter
    def _pid(self, value: int) -> None:
        self._local.pid = value

    @property
    def _depth(self) -> int:
        """Nesting of this thread's transactions (savepoints inside)."""
        return getattr(self._local, "depth", 0)

    @_depth.setter
    def _depth(self, value: int) -> None:
        self._local.depth = value

    def _error(self, exc: Exception, doing: str) -> StorageError:
        text = str(exc)
        if "locked" in text or "busy" in text:
            hint = "another process holds a write lock; try again, or find the process"
        elif "not a database" in text or "malformed" in text:
            hint = "the file is corrupt; move it away and learn again"
        elif "readonly" in text or "unable to open" in text:
            hint = "check the file's and its directory's permissions"
        else:
            hint = "see the SQLite message"
        return StorageError(f"SQLite store {self.path}: {doing}: {text} ({hint})")

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        # A connection must not cross fork(): a worker forked from the master opens its own.
        reused = self._take_idle()
        if reused is not None:
            self._conn, self._pid, self._depth = reused, os.getpid(), 0
            return reused
        if not self.create and not self.path.exists():
            raise StorageMissing(f"SQLite store {self.path}: no such file (nothing learned yet; "
                               "run pyspamc learn_spam / learn_ham)")
        try:
            if self.create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._open_with_retry()
        except OSError as exc:
            raise StorageError(f"SQLite store {self.path}: cannot create: {exc}") from exc
        except sqlite3.Error as exc:
            raise self._error(exc, "cannot open") from exc
        self._conn, self._pid, self._depth = conn, os.getpid(), 0
        return conn

    def _take_idle(self) -> sqlite3.Connection | None:
        with self._idle_lock:
            if self._idle_pid != os.getpid():
                # Inherited over fork: the parent's. Never closed here (closing would drop
                # the parent's POSIX locks on the file); forgotten.
                self._idle, self._idle_pid = [], os.getpid()
            return self._idle.pop() if self._idle else None

    def release_thread(self) -> None:
        """Give this thread's connection back for another thread (none inside a transaction)."""
        conn = self._conn
        if conn is None or self._pid != os.getpid() or self._depth:
            return
        self._conn = None
        with self._idle_lock:
            if self._idle_pid == os.getpid() and len(self._idle) < _IDLE_MAX:
                self._idle.append(conn)
                return
        conn.close()

    def _open_with_retry(self) -> sqlite3.Connection:
        """Connect and set up, retrying while another process holds the lock.

        Switching a new file to WAL and creating the schema take locks for which SQLite may
        answer "database is locked" at once instead of waiting busy_timeout, so workers that
        start together would otherwise fail on a fresh store (seen in the 4-process test).
        """
        deadline = time.monotonic() + self.busy_timeout
        pause = 0.01
        while True:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None,
                                   check_same_thread=False)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints
                # Token look-ups hit random pages: read them through a memory map (shared by
                # all worker processes via the page cache) instead of a read() per page.
                conn.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
                conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
                conn.executescript(_SCHEMA)
                self._upgrade(conn)
                return conn
            except sqlite3.OperationalError as exc:
                conn.close()
                locked = "locked" in str(exc) or "busy" in str(exc)
                if not locked or time.monotonic() + pause > deadline:
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 0.2)

    @staticmethod
    def _upgrade(conn: sqlite3.Connection) -> None:
        """Bring an older file to this schema, in one transaction so that processes opening
        it together do it once. A schema 1 file has just gained the newer tables."""
        schema = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchall()
        if schema and schema[0][0] == SCHEMA_VERSION:
            return  # the usual case: no write lock at every worker's start
        conn.execute("BEGIN IMMEDIATE")  # "locked" here: _open_with_retry tries again
        try:
            columns = {row[1] for row in conn.execute("PRAGMA table_info(bayes_messages)")}
            if "seq" not in columns:  # schema 2: learn order as stored (rowid order)
                conn.execute("ALTER TABLE bayes_messages ADD COLUMN label TEXT")
                conn.execute("ALTER TABLE bayes_messages ADD COLUMN seq INTEGER")
                conn.execute("UPDATE bayes_messages SET seq = rowid, label = (SELECT l.label "
                             "FROM bayes_learned l WHERE l.digest = bayes_messages.digest)")
            conn.execute("CREATE INDEX IF NOT EXISTS bayes_messages_order "
                         "ON bayes_messages (label, seq)")
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            conn.execute("UPDATE meta SET value = ?1 WHERE key = 'schema' AND value < ?1",
                         (SCHEMA_VERSION,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self.conn
        name = f"sp{self._depth}"
        try:
            conn.execute("BEGIN IMMEDIATE" if self._depth == 0 else f"SAVEPOINT {name}")
        except sqlite3.Error as exc:
            raise self._error(exc, "cannot start a write") from exc
        self._depth += 1
        try:
            yield conn
        except BaseException as exc:
            self._depth -= 1
            try:
                if self._depth == 0:
                    conn.execute("ROLLBACK")
                else:
                    conn.execute(f"ROLLBACK TO {name}")
                    conn.execute(f"RELEASE {name}")
            except sqlite3.Error:
                pass
            if isinstance(exc, sqlite3.Error):
                raise self._error(exc, "write failed, nothing changed") from exc
            raise
        else:
            self._depth -= 1
            try:
                conn.execute("COMMIT" if self._depth == 0 else f"RELEASE {name}")
            except sqlite3.Error as exc:
                if self._depth == 0:
                    conn.execute("ROLLBACK")
                raise self._error(exc, "commit failed, nothing changed") from exc

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One read transaction, so what is read inside comes from one snapshot even while a
        learner commits (WAL readers never wait for it); inside a write, that write's view."""
        conn = self.conn
        own = self._depth == 0
        try:
            if own:
                conn.execute("BEGIN")
            yield conn
            if own:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if own and conn.in_transaction:
                conn.execute("ROLLBACK")
            raise self._error(exc, "read failed") from exc

    def _query(self, sql: str, params: tuple | list = ()) -> list[tuple]:
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self._error(exc, "read failed") from exc

    def close(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None
        with self._idle_lock:
            idle = self._idle if self._idle_pid == os.getpid() else []
            self._idle = []
        for conn in idle:
            conn.close()
