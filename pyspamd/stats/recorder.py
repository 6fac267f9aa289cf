"""Recording scans: counters, graph buckets, the scan-time histogram and history entries.

The milter has a latency budget of a few tens of microseconds per message for this, so
`record()` only appends a reference to a list; a thread turns the list into one batched
write per `flush_interval` (one transaction on SQLite, one pipeline on Redis). What a crash
loses is at most that interval's statistics, never mail.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable

from pyspamd.faultlog import FaultLog
from pyspamd.result import ScanResult
from pyspamd.stats import keys
from pyspamd.storage.base import StateStore, StorageError
from pyspamd.task import Envelope

log = logging.getLogger("pyspamd.stats")
faults = FaultLog(log)

MAX_RCPTS_SHOWN = 20  # a history entry lists this many recipients and counts the rest
MAX_SUBJECT = 200
_WARN_EVERY = 60.0

_current: ScanRecorder | None = None
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def count_event(name: str, amount: int = 1) -> None:
    """Count an event (e.g. "dns_timeouts") in this process's recorder, if it has one.
    Any part may call it; without a recorder (pyspamc, tests) it does nothing."""
    recorder = _current
    if recorder is not None:
        recorder.event(name, amount)


# A history entry is stored as a JSON array in this field order (no key names: the writer
# serializes one per message, so the smaller form halves its cost); the reader turns it back
# into a dict with these names.
HISTORY_FIELDS = ("id", "time", "source", "queue_id", "ip", "helo", "user", "from", "rcpts",
                  "rcpt_count", "subject", "message_id", "action", "score", "required_score",
                  "is_spam", "symbols", "scan_time", "size", "errors", "forced_by")


def history_row(result: ScanResult, envelope: Envelope, size: int, when: float,
                source: str, number: int) -> list[object]:
    rcpts = envelope.rcpts
    return [
        f"{int(when * 1e6):x}-{os.getpid()}-{number:x}", round(when, 3), source,
        envelope.queue_id or result.queue_id or "", envelope.client_ip or "",
        envelope.helo or "", envelope.user or "", envelope.mail_from or "",
        list(rcpts[:MAX_RCPTS_SHOWN]), len(rcpts), result.subject[:MAX_SUBJECT],
        result.message_id, result.action, round(result.score, 2),
        result.required_score, result.is_spam,
        [[s.name, s.score, s.options] for s in result.sorted_symbols()],
        round(result.scan_time, 6), size, result.errors, result.forced_symbols,
    ]


def history_entry(raw: bytes) -> dict[str, object] | None:
    """A stored history item as a dict; None if it is damaged."""
    try:
        values = json.loads(raw)
    except ValueError:
        return None
    if isinstance(values, list) and len(values) == len(HISTORY_FIELDS) - 1:
        values.append([])  # written before forced_by was kept
    if not isinstance(values, list) or len(values) != len(HISTORY_FIELDS):
        return None
    return dict(zip(HISTORY_FIELDS, values, strict=True))


class ScanRecorder:
    def __init__(self, storage: StateStore, history_size: int = 1000,
                 flush_interval: float = 1.0, source: str = "milter",
                 clock: Callable[[], float] = time.time) -> None:
        self.storage = storage
        self.history_size = history_size
        self.flush_interval = flush_interval
        self.source = source
        self.clock = clock
        self._lock = threading.Lock()
        self._scans: list[tuple[float, ScanResult, Envelope, int]] = []
        self._events: Counter[str] = Counter()
        # What a failed flush could not write, kept for the next try (history bounded).
        self._unsaved: Counter[tuple[str, float | None]] = Counter()
        self._unsaved_history: list[bytes] = []
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned = 0.0
        self._number = 0  # makes history ids unique within this process

    # --- on the scanning path: cheap ---
    def record(self, result: ScanResult, envelope: Envelope, size: int) -> None:
        item = (self.clock(), result, envelope, size)
        with self._lock:
            self._scans.append(item)

    def event(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._events[name] += amount

    # --- in the background ---
    def start(self) -> ScanRecorder:
        global _current
        _current = self
        self._thread = threading.Thread(target=self._run, name="stats-flush", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.flush_interval):
            self.flush()

    def stop(self) -> None:
        """Stop the thread and write what is left (a worker that drains calls this)."""
        global _current
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self.flush()
        if _current is self:
            _current = None

    def flush(self) -> bool:
        """Write everything recorded so far; False if the store failed (kept for later)."""
        with self._flush_lock:
            with self._lock:
                scans, self._scans = self._scans, []
                events, self._events = self._events, Counter()
            changes = self._unsaved
            history = self._unsaved_history
            self._unsaved, self._unsaved_history = Counter(), []
            for name, amount in events.items():
                changes[(keys.EVENT + name, None)] += amount
            self._count(changes, scans)
            # Only what the bounded list will keep is worth serializing.
            for when, result, envelope, size in scans[-self.history_size:]:
                self._number += 1
                row = history_row(result, envelope, size, when, self.source, self._number)
                history.append(_ENCODE(row).encode())
            history = history[-self.history_size:]
            if not changes and not history:
                return True
            try:
                self.storage.incr_many([(k, n, ttl) for (k, ttl), n in changes.items()])
                changes = Counter()
                self.storage.list_push(keys.HISTORY, history, self.history_size)
            except StorageError as exc:
                self._unsaved.update(changes)
                self._unsaved_history = (history + self._unsaved_history)[-self.history_size:]
                now = time.monotonic()
                if now - self._warned >= _WARN_EVERY:
                    self._warned = now
                    log.warning("scan statistics not written (kept for the next try): %s", exc)
                return False
            except Exception as exc:  # statistics must never take a worker down
                faults.report("statistics", "scan statistics not written", exc)
                return False
            return True

    @staticmethod
    def _count(changes: Counter[tuple[str, float | None]],
               scans: list[tuple[float, ScanResult, Envelope, int]]) -> None:
        """Counted by plain values first, so each key string is built once per flush."""
        actions: Counter[str] = Counter()
        symbols: Counter[str] = Counter()
        times: Counter[int] = Counter()
        minutes: Counter[tuple[int, str]] = Counter()
        errors: Counter[str] = Counter()
        time_sum = 0.0
        for when, result, _, _ in scans:
            actions[result.action] += 1
            symbols.update(result.symbols.keys())
            times[bisect_left(keys.TIME_BOUNDS, result.scan_time)] += 1
            time_sum += result.scan_time
            minutes[(int(when // 60) * 60, result.action)] += 1
            for error in result.errors:
                errors["check_timeouts" if "timed out" in error else "check_errors"] += 1
        if not scans:
            return
        changes[(keys.SCANNED, None)] += len(scans)
        for action, n in actions.items():
            changes[(keys.ACTION + action, None)] += n
        for name, n in symbols.items():
            changes[(keys.SYMBOL + name, None)] += n
        for index, n in times.items():
            changes[(keys.TIME + str(index), None)] += n
        changes[(keys.TIME_SUM_US, None)] += int(time_sum * 1e6)
        for (minute, action), n in minutes.items():
            for step_name, step in keys.GRAPH_STEPS.items():
                start = minute // step.seconds * step.seconds
                changes[(keys.graph_key(step_name, start, action), step.ttl)] += n
        for kind, n in errors.items():
            changes[(keys.EVENT + kind, None)] += n
