"""SQLite backend, fuzzy part: hashes of reported messages and their LSH bucket keys, in
tables made on first use."""

from __future__ import annotations

import sqlite3
import time

from pyspamd.storage.base import FuzzyEntry, FuzzyStore, FuzzyStored
from pyspamd.storage.sqlite_conn import SqliteConnection

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



class SqliteFuzzy(SqliteConnection, FuzzyStore):
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

