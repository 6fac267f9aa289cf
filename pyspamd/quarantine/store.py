"""The quarantine store: each held message's bytes in a file of its own, written and synced
before anyone is told it is held, and an SQLite index of what it is (envelope, score,
symbols, reason, times, size).

The index lives beside the files, not in [storage]: a Redis backend shared by several
hosts would otherwise list messages whose bytes are on another host's disk. Every call
opens its own connection (quarantining is rare; milter threads and workers share nothing).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyspamd.quarantine.settings import QuarantineConfig
from pyspamd.storage.backends import default_sqlite_path

_ID = re.compile(r"[0-9a-z-]{1,64}")
HELD = "held"
RELEASING = "releasing"  # taken by one release; back to held if the MTA refuses it
RELEASED = "released"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY, time REAL NOT NULL, expires REAL NOT NULL, sender TEXT NOT NULL,
    rcpts TEXT NOT NULL, score REAL NOT NULL, action TEXT NOT NULL, symbols TEXT NOT NULL,
    reason TEXT NOT NULL, size INTEGER NOT NULL, message_id TEXT NOT NULL,
    subject TEXT NOT NULL, queue_id TEXT NOT NULL, status TEXT NOT NULL,
    released_by TEXT NOT NULL DEFAULT '', released_at REAL);
CREATE INDEX IF NOT EXISTS messages_time ON messages (time);
"""
_COLUMNS = ("id", "time", "expires", "sender", "rcpts", "score", "action", "symbols",
            "reason", "size", "message_id", "subject", "queue_id", "status", "released_by",
            "released_at")


class QuarantineError(Exception):
    """The message could not be held (full, unwritable) or found; the text says which."""


@dataclass(slots=True)
class Entry:
    id: str
    time: float
    expires: float
    sender: str
    rcpts: list[str]
    score: float
    action: str
    symbols: dict[str, list[str]]
    reason: str
    size: int
    message_id: str = ""
    subject: str = ""
    queue_id: str = ""
    status: str = HELD
    released_by: str = ""
    released_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _COLUMNS}


@dataclass(slots=True)
class Held:
    """What the milter knows of a message it holds."""

    sender: str
    rcpts: list[str]
    score: float
    action: str
    reason: str
    symbols: dict[str, list[str]] = field(default_factory=dict)
    message_id: str = ""
    subject: str = ""
    queue_id: str = ""


def quarantine_dir(config: QuarantineConfig) -> Path:
    return Path(config.dir) if config.dir else default_sqlite_path().parent / "quarantine"


class QuarantineStore:
    def __init__(self, config: QuarantineConfig) -> None:
        self.dir = quarantine_dir(config)
        self.messages = self.dir / "messages"
        self.index = self.dir / "index.sqlite"
        self.max_size = config.max_size
        self.expire_seconds = config.expire_days * 86400.0

    @contextmanager
    def _db(self, create: bool = False) -> Iterator[sqlite3.Connection]:
        if not create and not self.index.exists():
            raise QuarantineError(f"no quarantine at {self.dir}")
        if create:
            self.messages.mkdir(parents=True, exist_ok=True, mode=0o750)
        db = sqlite3.connect(self.index, timeout=10.0, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            if create:
                db.executescript(_SCHEMA)
            yield db
        finally:
            db.close()

    def path_of(self, message_id: str) -> Path:
        if not _ID.fullmatch(message_id):
            raise QuarantineError(f"{message_id!r} is not a quarantine id")
        return self.messages / f"{message_id}.eml"

    def put(self, raw: bytes, held: Held) -> str:
        """Keeps the message; returns its id once the bytes and the index row are on disk.
        Raises QuarantineError when it is full or cannot be written."""
        now = time.time()
        new_id = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now)) + "-" + secrets.token_hex(5)
        try:
            with self._db(create=True) as db:
                # One writer at a time from the sum to the insert: workers in parallel
                # cannot each find room for the last free bytes.
                db.execute("BEGIN IMMEDIATE")
                try:
                    self._insert(db, new_id, now, raw, held)
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
        except (OSError, sqlite3.Error) as exc:
            raise QuarantineError(f"cannot write to the quarantine {self.dir}: {exc}") from exc
        return new_id

    def _insert(self, db: sqlite3.Connection, new_id: str, now: float, raw: bytes,
                held: Held) -> None:
        used = db.execute("SELECT COALESCE(SUM(size), 0) FROM messages WHERE status = ?",
                          (HELD,)).fetchone()[0]
        if used + len(raw) > self.max_size:
            raise QuarantineError(f"quarantine full ({used} of {self.max_size} bytes held, "
                                  f"the message has {len(raw)})")
        path = self.path_of(new_id)
        _write_synced(path, raw)
        try:
            db.execute(
                f"INSERT INTO messages ({', '.join(_COLUMNS[:14])}) VALUES "
                f"({', '.join('?' * 14)})",
                (new_id, now, now + self.expire_seconds, held.sender, json.dumps(held.rcpts),
                 held.score, held.action, json.dumps(held.symbols), held.reason, len(raw),
                 held.message_id, held.subject, held.queue_id, HELD))
        except sqlite3.Error:
            path.unlink(missing_ok=True)
            raise

    def list(self, limit: int = 100, include_released: bool = False) -> list[Entry]:
        where = "" if include_released else "WHERE status = 'held'"
        with self._db() as db:
            rows = db.execute(f"SELECT {', '.join(_COLUMNS)} FROM messages {where} "
                              "ORDER BY time DESC LIMIT ?", (limit,)).fetchall()
        return [_entry(row) for row in rows]

    def get(self, message_id: str) -> Entry:
        self.path_of(message_id)  # refuses what is not an id
        with self._db() as db:
            row = db.execute(f"SELECT {', '.join(_COLUMNS)} FROM messages WHERE id = ?",
                             (message_id,)).fetchone()
        if row is None:
            raise QuarantineError(f"no message {message_id} in the quarantine")
        return _entry(row)

    def read(self, message_id: str) -> bytes:
        try:
            return self.path_of(message_id).read_bytes()
        except OSError as exc:
            raise QuarantineError(f"message {message_id}: {exc.strerror or exc}") from exc

    def claim(self, message_id: str, by: str) -> bool:
        """Takes a held message for one release, so two admins releasing it at once
        deliver it once; False when it is not (or no longer) held."""
        with self._db() as db:
            taken = db.execute("UPDATE messages SET status = ?, released_by = ? "
                               "WHERE id = ? AND status = ?",
                               (RELEASING, by, message_id, HELD)).rowcount
        return taken == 1

    def unclaim(self, message_id: str) -> None:
        with self._db() as db:
            db.execute("UPDATE messages SET status = ?, released_by = '' WHERE id = ? AND "
                       "status = ?", (HELD, message_id, RELEASING))

    def mark_released(self, message_id: str, by: str) -> None:
        """The message was handed back to the MTA: its bytes go, its row stays as a record."""
        with self._db() as db:
            db.execute("UPDATE messages SET status = ?, released_by = ?, released_at = ? "
                       "WHERE id = ?", (RELEASED, by, time.time(), message_id))
        self.path_of(message_id).unlink(missing_ok=True)

    def delete(self, message_id: str) -> None:
        self.get(message_id)
        self.path_of(message_id).unlink(missing_ok=True)
        with self._db() as db:
            db.execute("DELETE FROM messages WHERE id = ?", (message_id,))

    def expire(self, now: float | None = None) -> int:
        """Deletes what is past its expiry (and the records of released messages as old)."""
        now = time.time() if now is None else now
        with self._db() as db:
            gone = [row[0] for row in db.execute(
                "SELECT id FROM messages WHERE expires <= ?", (now,))]
            for message_id in gone:
                self.path_of(message_id).unlink(missing_ok=True)
            db.execute("DELETE FROM messages WHERE expires <= ?", (now,))
        return len(gone)


def _write_synced(path: Path, data: bytes) -> None:
    """Written under a temporary name, synced, renamed, and the directory synced: after
    this returns the message survives a crash or a power cut."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _entry(row: tuple[Any, ...]) -> Entry:
    values = dict(zip(_COLUMNS, row, strict=True))
    values["rcpts"] = json.loads(values["rcpts"])
    values["symbols"] = json.loads(values["symbols"])
    return Entry(**values)
