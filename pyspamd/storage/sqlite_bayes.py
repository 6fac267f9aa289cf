"""SQLite backend, Bayes part: token counts, learned messages, the logistic model and the
portable backup records. Every learn is one transaction (or one savepoint inside a batch)."""

from __future__ import annotations

import itertools
import sqlite3
import time
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
    BayesStore,
    LearnOutcome,
    ModelSnapshot,
    StorageError,
    TokenCounts,
    check_label,
    new_model_generation,
    other_class,
    pack_tokens,
    sorted_model,
    unpack_tokens,
)
from pyspamd.storage.sqlite_conn import SqliteConnection

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
BATCH_SIZE = 500  # messages summed before a write; bounds memory and what one failure loses
# Drops the stored tokens of all but the newest ?2 messages of class ?1 (none when the
# class holds ?2 or fewer: the subquery is then NULL).
_TRIM = ("DELETE FROM bayes_messages WHERE label = ?1 AND seq <= (SELECT seq FROM "
         "bayes_messages WHERE label = ?1 ORDER BY seq DESC LIMIT 1 OFFSET ?2)")
_NEXT_SEQ = "SELECT coalesce(max(seq), 0) + 1 FROM bayes_messages WHERE label = ?"
_DECREMENT = {
    SPAM: "UPDATE bayes_tokens SET spam = max(spam - 1, 0) WHERE token = ?",
    HAM: "UPDATE bayes_tokens SET ham = max(ham - 1, 0) WHERE token = ?",
}



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



class SqliteBayes(SqliteConnection, BayesStore):
    _pending: _Pending | None = None  # the learns of a batch not yet written

    @contextmanager
    def batch(self) -> Iterator[SqliteBayes]:
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
