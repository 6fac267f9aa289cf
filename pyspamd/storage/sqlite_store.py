"""SQLite backend: one file, WAL journal, so many scanning processes read while one learner
writes. Every learn is one transaction (or one savepoint inside a batch)."""

from __future__ import annotations

import itertools
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from pyspamd.storage.base import (
    HAM,
    MODEL,
    MODEL_GENERATION,
    SPAM,
    BatchError,
    BayesStats,
    FuzzyEntry,
    FuzzyStored,
    LearnOutcome,
    ModelSnapshot,
    Storage,
    StorageError,
    StorageMissing,
    TokenCounts,
    bucket_after,
    bucket_ttl,
    check_label,
    new_model_generation,
    other_class,
    pack_tokens,
    sorted_model,
    unpack_tokens,
)

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
_ADD = {
    SPAM: "INSERT INTO bayes_tokens (token, spam, ham, day) VALUES (?1, ?2, 0, ?3) "
          "ON CONFLICT(token) DO UPDATE SET spam = spam + ?2, day = max(day, ?3)",
    HAM: "INSERT INTO bayes_tokens (token, spam, ham, day) VALUES (?1, 0, ?2, ?3) "
         "ON CONFLICT(token) DO UPDATE SET ham = ham + ?2, day = max(day, ?3)",
}
# One row per token asked, with its place in the request (json_each's key), zeros for what
# is not stored. A LEFT JOIN keeps json_each as the outer loop, so rows come in request
# order; token_counts checks that rather than paying for an ORDER BY's sort.
_COUNTS_AND_MODEL = (
    "SELECT j.key, coalesce(t.spam, 0), coalesce(t.ham, 0), coalesce(m.weight, 0.0) "
    "FROM json_each(?) j LEFT JOIN bayes_tokens t ON t.token = j.value "
    "LEFT JOIN bayes_model m ON m.token = j.value")
_MODEL_ONLY = (
    "SELECT j.key, 0, 0, coalesce(m.weight, 0.0) FROM json_each(?) j "
    "LEFT JOIN bayes_model m ON m.token = j.value")
MMAP_BYTES = 1 << 30
CACHE_KIB = 32768
BATCH_SIZE = 500  # messages summed before a write; bounds memory and what one failure loses
# A counter whose time to live ran out starts again from the amount.
_INCR = ("INSERT INTO kv VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE SET "
         "value = CASE WHEN expires IS NOT NULL AND expires <= ?4 THEN excluded.value "
         "ELSE CAST(value AS INTEGER) + excluded.value END, "
         "expires = CASE WHEN expires IS NOT NULL AND expires <= ?4 THEN excluded.expires "
         "ELSE expires END RETURNING value")
# Drops the stored tokens of all but the newest ?2 messages of class ?1 (none when the
# class holds ?2 or fewer: the subquery is then NULL).
_TRIM = ("DELETE FROM bayes_messages WHERE label = ?1 AND seq <= (SELECT seq FROM "
         "bayes_messages WHERE label = ?1 ORDER BY seq DESC LIMIT 1 OFFSET ?2)")
_NEXT_SEQ = "SELECT coalesce(max(seq), 0) + 1 FROM bayes_messages WHERE label = ?"
_DECREMENT = {
    SPAM: "UPDATE bayes_tokens SET spam = max(spam - 1, 0) WHERE token = ?",
    HAM: "UPDATE bayes_tokens SET ham = max(ham - 1, 0) WHERE token = ?",
}


# Fuzzy hashes (pyspamd/fuzzy), made on first use so stores without them stay as they are.
# A hash's buckets: one row per LSH band key, for the look-up by key.
_FUZZY_SCHEMA = """
CREATE TABLE IF NOT EXISTS fuzzy_hashes (
    id INTEGER PRIMARY KEY, flag INTEGER NOT NULL, weight REAL NOT NULL,
    signature BLOB NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS fuzzy_buckets (
    bucket INTEGER NOT NULL, id INTEGER NOT NULL, PRIMARY KEY (bucket, id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS fuzzy_buckets_id ON fuzzy_buckets (id);
CREATE INDEX IF NOT EXISTS fuzzy_hashes_expires ON fuzzy_hashes (expires);
"""
_FUZZY_FIND = (
    "SELECT id, flag, weight, signature FROM fuzzy_hashes WHERE expires > ?1 AND (id IN "
    "(SELECT value FROM json_each(?2)) OR id IN (SELECT b.id FROM fuzzy_buckets b WHERE "
    "b.bucket IN (SELECT value FROM json_each(?3))))")
_FUZZY_DROP_EXPIRED = (
    "DELETE FROM fuzzy_buckets WHERE id IN (SELECT id FROM fuzzy_hashes WHERE expires <= ?1)",
    "DELETE FROM fuzzy_hashes WHERE expires <= ?1")


class _Pending:
    """Learns of a batch not yet written."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.tokens: dict[str, list[np.ndarray]] = {SPAM: [], HAM: []}
        self.digests: dict[bytes, str] = {}
        self.blobs: list[bytes] = []
        self.names: list[str] = []
        self.day = 0
        self.keep = 0  # max_fit_messages of the learns in this batch


    def add(self, digest: bytes, tokens: np.ndarray, label: str, day: int, name: str,
            keep: int) -> None:
        self.keep = keep
        self.tokens[label].append(tokens)
        self.digests[digest] = label
        self.blobs.append(pack_tokens(tokens))
        self.names.append(name)
        self.day = max(self.day, day)


def _signed(tokens: np.ndarray) -> list[int]:
    return tokens.astype(np.uint64, copy=False).view(np.int64).tolist()


_STORES: weakref.WeakSet[SqliteStorage] = weakref.WeakSet()
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


class SqliteStorage(Storage):
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
        self._pending: _Pending | None = None
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

    @contextmanager
    def batch(self) -> Iterator[SqliteStorage]:
        # Learns in a batch are summed in memory and written as one upsert per distinct
        # token in one transaction: common words occur in most messages, so this writes a
        # fraction of the rows and commits once, instead of once per message.
        if self._pending is not None:
            yield self
            return
        self._pending = _Pending()
        try:
            yield self
            self._flush()
        finally:
            self._pending = None

    def _flush(self) -> None:
        pending = self._pending
        if pending is None or not pending.digests:
            return
        try:
            with self._transaction() as conn:
                for label, chunks in pending.tokens.items():
                    if not chunks:
                        continue
                    tokens, counts = np.unique(np.concatenate(chunks), return_counts=True)
                    conn.executemany(_ADD[label], zip(_signed(tokens), counts.tolist(),
                                                      itertools.repeat(pending.day),
                                                      strict=False))
                    conn.execute("INSERT INTO bayes_totals VALUES (?, ?) ON CONFLICT(label) "
                                 "DO UPDATE SET messages = messages + excluded.messages",
                                 (label, len(chunks)))
                conn.executemany("INSERT INTO bayes_learned VALUES (?, ?, ?)",
                                 ((d, lab, pending.day) for d, lab in pending.digests.items()))
                # Each class's messages follow its newest stored one, in the order learned.
                seq = {label: conn.execute(_NEXT_SEQ, (label,)).fetchone()[0]
                       for label in pending.tokens}
                rows = []
                for (digest, label), blob in zip(pending.digests.items(), pending.blobs,
                                                 strict=True):
                    rows.append((digest, blob, label, seq[label]))
                    seq[label] += 1
                conn.executemany("INSERT OR REPLACE INTO bayes_messages VALUES (?, ?, ?, ?)",
                                 rows)
                if pending.keep:
                    for label, chunks in pending.tokens.items():
                        if chunks:
                            conn.execute(_TRIM, (label, pending.keep))
        except StorageError as exc:
            names = list(pending.names)
            pending.clear()
            raise BatchError(f"{exc}; {len(names)} message(s) of this batch were not stored",
                             names) from exc
        pending.clear()

    def _query(self, sql: str, params: tuple | list = ()) -> list[tuple]:
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self._error(exc, "read failed") from exc

    # --- Bayes ---
    def token_counts(self, tokens: np.ndarray, model_only: bool = False) -> TokenCounts:
        signed = tokens.astype(np.uint64, copy=False).view(np.int64)
        with self._read() as conn:  # the totals, the counts and the model from one snapshot
            totals = dict(conn.execute("SELECT label, messages FROM bayes_totals").fetchall())
            # json_each turns one text parameter into a table, so the SQL text (and the
            # prepared statement) is the same whatever the number of tokens.
            # Each table costs a B-tree search per token (~1.5 us), hence model_only.
            sql = _MODEL_ONLY if model_only and totals.get(MODEL) else _COUNTS_AND_MODEL
            rows = conn.execute(
                sql, ("[" + ",".join(map(str, signed.tolist())) + "]",),
            ).fetchall() if len(tokens) else []
        # Counts are below 2**53, so they survive the trip through float64 exactly.
        found = np.array(rows, dtype=np.float64).reshape(len(tokens), 4)
        if len(found) > 1 and np.any(np.diff(found[:, 0]) < 0):
            found = found[np.argsort(found[:, 0], kind="stable")]
        return TokenCounts(found[:, 1].astype(np.int64), found[:, 2].astype(np.int64),
                           int(totals.get(SPAM, 0)), int(totals.get(HAM, 0)),
                           found[:, 3].copy(), int(totals.get(MODEL, 0)))

    def model_snapshot(self, known: int) -> ModelSnapshot:
        tokens = weights = None
        with self._read() as conn:  # the totals and the model from one snapshot
            totals = dict(conn.execute("SELECT label, messages FROM bayes_totals").fetchall())
            generation = int(totals.get(MODEL_GENERATION, 0)) if totals.get(MODEL) else 0
            if generation and generation != known:
                rows = conn.execute("SELECT token, weight FROM bayes_model").fetchall()
                raw = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
                tokens, weights = sorted_model(
                    raw.view(np.uint64),
                    np.fromiter((r[1] for r in rows), dtype=np.float64, count=len(rows)))
        return ModelSnapshot(int(totals.get(SPAM, 0)), int(totals.get(HAM, 0)), generation,
                             tokens, weights)

    def learned_messages(self) -> list[tuple[bytes, str, np.ndarray]]:
        self._flush()
        # Messages learned by schema 1, or dropped past max_fit_messages, have no tokens
        # here: they count in chi2 and min_learns but are not fitted.
        rows = self._query("SELECT digest, label, tokens FROM bayes_messages "
                           "ORDER BY digest")
        return [(bytes(d), label, unpack_tokens(blob)) for d, label, blob in rows]

    def limit_fit_messages(self, keep: int) -> int:
        self._flush()
        with self._transaction() as conn:
            return sum(conn.execute(_TRIM, (label, keep)).rowcount for label in (SPAM, HAM))

    def set_model(self, tokens: np.ndarray, weights: np.ndarray) -> None:
        with self._transaction() as conn:
            conn.execute("DELETE FROM bayes_model")
            conn.executemany("INSERT INTO bayes_model VALUES (?, ?)",
                             zip(_signed(tokens), weights.tolist(), strict=True))
            conn.execute("INSERT INTO bayes_totals VALUES (?, ?) ON CONFLICT(label) "
                         "DO UPDATE SET messages = excluded.messages", (MODEL, len(tokens)))
            conn.execute("INSERT INTO bayes_totals VALUES (?, ?) ON CONFLICT(label) "
                         "DO UPDATE SET messages = excluded.messages",
                         (MODEL_GENERATION, new_model_generation()))

    def learned_as(self, digest: bytes) -> str | None:
        rows = self._query("SELECT label FROM bayes_learned WHERE digest = ?", (digest,))
        return rows[0][0] if rows else None

    def _remove(self, conn: sqlite3.Connection, digest: bytes, tokens: list[int],
                label: str) -> None:
        conn.executemany(_DECREMENT[label], ((t,) for t in tokens))
        conn.execute("DELETE FROM bayes_tokens WHERE spam = 0 AND ham = 0 AND token IN "
                     "(SELECT value FROM json_each(?))", ("[" + ",".join(map(str, tokens)) + "]",))
        conn.execute("UPDATE bayes_totals SET messages = max(messages - 1, 0) WHERE label = ?",
                     (label,))
        conn.execute("DELETE FROM bayes_learned WHERE digest = ?", (digest,))
        conn.execute("DELETE FROM bayes_messages WHERE digest = ?", (digest,))

    def learn(self, digest: bytes, tokens: np.ndarray, label: str, day: int,
              name: str = "", keep: int = 0) -> LearnOutcome:
        check_label(label)
        pending = self._pending
        if pending is not None:
            previous = pending.digests.get(digest) or self.learned_as(digest)
            if previous == label:
                return LearnOutcome.ALREADY
            if previous is None:
                pending.add(digest, tokens, label, day, name, keep)
                if len(pending.digests) >= BATCH_SIZE:
                    self._flush()
                return LearnOutcome.LEARNED
            self._flush()  # a move reads what the batch wrote
        return self._learn_now(digest, tokens, label, day, keep)

    def _learn_now(self, digest: bytes, tokens: np.ndarray, label: str,
                   day: int, keep: int) -> LearnOutcome:
        signed = _signed(tokens)
        with self._transaction() as conn:
            rows = conn.execute("SELECT label FROM bayes_learned WHERE digest = ?",
                                (digest,)).fetchall()
            previous = rows[0][0] if rows else None
            if previous == label:
                return LearnOutcome.ALREADY
            if previous is not None:
                self._remove(conn, digest, signed, other_class(label))
            conn.executemany(_ADD[label], ((t, 1, day) for t in signed))
            conn.execute("INSERT INTO bayes_totals VALUES (?, 1) ON CONFLICT(label) "
                         "DO UPDATE SET messages = messages + 1", (label,))
            conn.execute("INSERT INTO bayes_learned VALUES (?, ?, ?)", (digest, label, day))
            (seq,), = conn.execute(_NEXT_SEQ, (label,)).fetchall()
            conn.execute("INSERT OR REPLACE INTO bayes_messages VALUES (?, ?, ?, ?)",
                         (digest, pack_tokens(tokens), label, seq))
            if keep:
                conn.execute(_TRIM, (label, keep))
        return LearnOutcome.MOVED if previous is not None else LearnOutcome.LEARNED

    def unlearn(self, digest: bytes, tokens: np.ndarray) -> LearnOutcome:
        self._flush()
        with self._transaction() as conn:
            rows = conn.execute("SELECT label FROM bayes_learned WHERE digest = ?",
                                (digest,)).fetchall()
            if not rows:
                return LearnOutcome.NOT_LEARNED
            self._remove(conn, digest, _signed(tokens), rows[0][0])
        return LearnOutcome.UNLEARNED

    def bayes_stats(self) -> BayesStats:
        totals = dict(self._query("SELECT label, messages FROM bayes_totals"))
        (count,), = self._query("SELECT count(*) FROM bayes_tokens")
        fitted = dict(self._query("SELECT label, count(*) FROM bayes_messages "
                                  "GROUP BY label"))
        size = sum(p.stat().st_size for p in (self.path, Path(f"{self.path}-wal"))
                   if p.exists())
        return BayesStats(self.backend, str(self.path),
                          {SPAM: int(totals.get(SPAM, 0)), HAM: int(totals.get(HAM, 0))},
                          int(count), size,
                          {SPAM: int(fitted.get(SPAM, 0)), HAM: int(fitted.get(HAM, 0))})

    def expire_tokens(self, before_day: int, max_hits: int = 1) -> int:
        with self._transaction() as conn:
            cursor = conn.execute("DELETE FROM bayes_tokens WHERE day < ? AND spam + ham <= ?",
                                  (before_day, max_hits))
            conn.execute("DELETE FROM kv WHERE expires IS NOT NULL AND expires <= ?",
                         (time.time(),))
            return cursor.rowcount

    # --- generic keyed state ---
    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        now = time.time()
        expires = now + ttl if ttl is not None else None
        with self._transaction() as conn:
            (value,), = conn.execute(_INCR, (key, amount, expires, now)).fetchall()
        return int(value)

    def get(self, key: str) -> bytes | None:
        rows = self._query("SELECT value FROM kv WHERE key = ? AND (expires IS NULL OR "
                           "expires > ?)", (key, time.time()))
        if not rows:
            return None
        value = rows[0][0]
        return value if isinstance(value, bytes) else str(value).encode()

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        expires = time.time() + ttl if ttl is not None else None
        with self._transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO kv VALUES (?, ?, ?)", (key, value, expires))

    def delete(self, key: str) -> bool:
        with self._transaction() as conn:
            gone = conn.execute("DELETE FROM kv WHERE key = ? AND (expires IS NULL OR "
                                "expires > ?)", (key, time.time())).rowcount
            conn.execute("DELETE FROM kv WHERE key = ?", (key,))
        return gone > 0

    def scan_prefix(self, prefix: str, limit: int = 10000) -> list[tuple[str, bytes]]:
        # A key range instead of LIKE, so "_" and "%" in a prefix mean themselves.
        rows = self._query("SELECT key, value FROM kv WHERE key >= ? AND key < ? AND "
                           "(expires IS NULL OR expires > ?) ORDER BY key LIMIT ?",
                           (prefix, prefix + "\U0010ffff", time.time(), limit))
        return [(k, v if isinstance(v, bytes) else str(v).encode()) for k, v in rows]

    def take_token(self, key: str, capacity: float, rate: float, now: float) -> tuple[bool, float]:
        # BEGIN IMMEDIATE takes the write lock before the read, so no other process can
        # read the same bucket in between: read, refill, take and write are one step.
        with self._transaction() as conn:
            rows = conn.execute("SELECT value FROM kv WHERE key = ? AND (expires IS NULL OR "
                                "expires > ?)", (key, time.time())).fetchall()
            raw = rows[0][0] if rows else None
            if raw is not None and not isinstance(raw, bytes):
                raw = str(raw).encode()
            taken, tokens, last = bucket_after(raw, capacity, rate, now)
            conn.execute("INSERT OR REPLACE INTO kv VALUES (?, ?, ?)",
                         # %.17g, as the Redis script writes it: one format on both.
                         (key, f"{tokens:.17g}|{last:.17g}".encode(),
                          time.time() + bucket_ttl(capacity, rate)))
        return taken, tokens

    # --- batched counters and bounded lists ---
    def incr_many(self, changes: list[tuple[str, int, float | None]]) -> None:
        now = time.time()
        with self._transaction() as conn:
            for key, amount, ttl in changes:
                conn.execute(_INCR, (key, amount, now + ttl if ttl is not None else None,
                                     now)).fetchall()

    def list_push(self, key: str, items: list[bytes], keep: int) -> None:
        if not items:
            return
        with self._transaction() as conn:
            (top,), = conn.execute("SELECT coalesce(max(seq), 0) FROM lists WHERE key = ?",
                                   (key,)).fetchall()
            conn.executemany("INSERT INTO lists VALUES (?, ?, ?)",
                             ((key, top + n, item) for n, item in enumerate(items, 1)))
            conn.execute("DELETE FROM lists WHERE key = ? AND seq <= ?",
                         (key, top + len(items) - keep))

    def list_recent(self, key: str, count: int) -> list[bytes]:
        rows = self._query("SELECT value FROM lists WHERE key = ? ORDER BY seq DESC LIMIT ?",
                           (key, count))
        return [v if isinstance(v, bytes) else str(v).encode() for v, in rows]

    # --- fuzzy hashes ---
    def _fuzzy_ready(self) -> None:
        """The fuzzy tables, once per connection (a store made before them gains them)."""
        conn = self.conn
        if getattr(self._local, "fuzzy_conn", None) is conn:
            return
        try:
            exists = conn.execute("SELECT 1 FROM sqlite_master WHERE name = "
                                  "'fuzzy_buckets_id'").fetchall()
            if not exists:  # statement by statement: executescript would COMMIT a write
                for statement in filter(str.strip, _FUZZY_SCHEMA.split(";")):
                    conn.execute(statement)
        except sqlite3.Error as exc:
            raise self._error(exc, "cannot make the fuzzy tables") from exc
        self._local.fuzzy_conn = conn

    def fuzzy_add(self, entries: list[FuzzyEntry], ttl: float) -> int:
        self._fuzzy_ready()
        expires = time.time() + ttl
        added = 0
        with self._transaction() as conn:
            for e in entries:
                rows = conn.execute("SELECT flag FROM fuzzy_hashes WHERE id = ?",
                                    (e.id,)).fetchall()
                if not rows:
                    added += 1
                    conn.execute("INSERT INTO fuzzy_hashes VALUES (?, ?, ?, ?, ?)",
                                 (e.id, e.flag, e.weight, e.signature, expires))
                    conn.executemany("INSERT OR IGNORE INTO fuzzy_buckets VALUES (?, ?)",
                                     ((b, e.id) for b in e.buckets))
                elif rows[0][0] == e.flag:
                    conn.execute("UPDATE fuzzy_hashes SET weight = weight + ?, expires = ? "
                                 "WHERE id = ?", (e.weight, expires, e.id))
                else:
                    conn.execute("UPDATE fuzzy_hashes SET flag = ?, weight = ?, expires = ? "
                                 "WHERE id = ?", (e.flag, e.weight, expires, e.id))
        return added

    def fuzzy_delete(self, ids: list[int], flag: int) -> int:
        self._fuzzy_ready()
        with self._transaction() as conn:
            gone = [i for i in ids if conn.execute(
                "DELETE FROM fuzzy_hashes WHERE id = ? AND flag = ?", (i, flag)).rowcount]
            conn.executemany("DELETE FROM fuzzy_buckets WHERE id = ?", ((i,) for i in gone))
        return len(gone)

    def fuzzy_find(self, buckets: list[int], ids: list[int]) -> list[FuzzyStored]:
        if not buckets and not ids:
            return []
        self._fuzzy_ready()
        rows = self._query(_FUZZY_FIND, (time.time(), "[" + ",".join(map(str, ids)) + "]",
                                         "[" + ",".join(map(str, buckets)) + "]"))
        return [FuzzyStored(i, flag, weight, bytes(sig)) for i, flag, weight, sig in rows]

    def fuzzy_expire(self) -> int:
        self._fuzzy_ready()
        with self._transaction() as conn:
            now = time.time()
            conn.execute(_FUZZY_DROP_EXPIRED[0], (now,))
            return conn.execute(_FUZZY_DROP_EXPIRED[1], (now,)).rowcount

    def fuzzy_count(self) -> int:
        self._fuzzy_ready()
        (count,), = self._query("SELECT count(*) FROM fuzzy_hashes WHERE expires > ?",
                                (time.time(),))
        return int(count)

    def close(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None
        with self._idle_lock:
            idle = self._idle if self._idle_pid == os.getpid() else []
            self._idle = []
        for conn in idle:
            conn.close()

    # --- Bayes backup, restore and clear (records: pyspamd/storage/portable.py) ---
    def bayes_records(self) -> Iterator[tuple]:
        self._flush()
        with self._read() as conn:  # one snapshot, even while a learner commits
            for name, value in conn.execute("SELECT label, messages FROM bayes_totals"):
                yield ("totals", name, int(value))
            for token, spam, ham, day in conn.execute(
                    "SELECT token, spam, ham, day FROM bayes_tokens"):
                yield ("token", token & _U64, spam, ham, day)
            for digest, label, day in conn.execute(
                    "SELECT digest, label, day FROM bayes_learned"):
                yield ("learned", bytes(digest), label, day)
            for digest, label, seq, packed in conn.execute(
                    "SELECT digest, label, seq, tokens FROM bayes_messages"):
                yield ("message", bytes(digest), label, seq or 0, bytes(packed))
            for token, weight in conn.execute("SELECT token, weight FROM bayes_model"):
                yield ("model", token & _U64, weight)

    def bayes_replace(self, records: Iterable[tuple]) -> None:
        self._flush()
        inserts = {
            "totals": "INSERT OR REPLACE INTO bayes_totals VALUES (?, ?)",
            "token": "INSERT OR REPLACE INTO bayes_tokens VALUES (?, ?, ?, ?)",
            "learned": "INSERT OR REPLACE INTO bayes_learned VALUES (?, ?, ?)",
            "message": "INSERT OR REPLACE INTO bayes_messages (digest, label, seq, tokens) "
                       "VALUES (?, ?, ?, ?)",
            "model": "INSERT OR REPLACE INTO bayes_model VALUES (?, ?)",
        }
        with self._transaction() as conn:
            for table in ("bayes_totals", "bayes_tokens", "bayes_learned", "bayes_messages",
                          "bayes_model"):
                conn.execute(f"DELETE FROM {table}")
            for kind, group in itertools.groupby(records, key=lambda r: r[0]):
                rows = (_sqlite_row(r) for r in group)
                conn.executemany(inserts[kind], rows)

    def bayes_clear(self) -> None:
        self.bayes_replace(())


_U64 = (1 << 64) - 1


def _sqlite_row(record: tuple) -> tuple:
    """A record's fields as bayes_* columns: tokens as signed 64-bit integers."""
    kind, *fields = record
    if kind in ("token", "model"):
        token = fields[0]
        fields[0] = token - (1 << 64) if token >= 1 << 63 else token
    return tuple(fields)
