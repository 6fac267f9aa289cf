"""SQLite backend, state part: counters and values with a time to live (greylisting, rate
limits), token buckets, and bounded lists (scan history), in the kv and lists tables."""

from __future__ import annotations

import time

from pyspamd.storage.base import StateStore, bucket_after, bucket_ttl
from pyspamd.storage.sqlite_conn import SqliteConnection

# A counter whose time to live ran out starts again from the amount.
_INCR = ("INSERT INTO kv VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE SET "
         "value = CASE WHEN expires IS NOT NULL AND expires <= ?4 THEN excluded.value "
         "ELSE CAST(value AS INTEGER) + excluded.value END, "
         "expires = CASE WHEN expires IS NOT NULL AND expires <= ?4 THEN excluded.expires "
         "ELSE expires END RETURNING value")


class SqliteState(SqliteConnection, StateStore):
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

