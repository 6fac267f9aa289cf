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
from collections import Counter
from collections.abc import Callable

from pyspamd.result import ScanResult
from pyspamd.stats import keys
from pyspamd.storage.base import Storage, StorageError
from pyspamd.task import Envelope

log = logging.getLogger("pyspamd.stats")

MAX_RCPTS_SHOWN = 20  # a history entry lists this many recipients and counts the rest
MAX_SUBJECT = 200
_WARN_EVERY = 60.0

_current: ScanRecorder | None = None


def count_event(name: str, amount: int = 1) -> None:
    """Count an event (e.g. "dns_timeouts") in this process's recorder, if it has one.
    Any part may call it; without a recorder (pyspamc, tests) it does nothing."""
    recorder = _current
    if recorder is not None:
        recorder.event(name, amount)


def history_entry(result: ScanResult, envelope: Envelope, size: int, when: float,
                  source: str) -> dict[str, object]:
    rcpts = list(envelope.rcpts)
    return {
        "id": f"{int(when * 1e6):x}-{os.getpid()}-{id(result) & 0xFFFF:x}",
        "time": round(when, 3),
        "source": source,
        "queue_id": envelope.queue_id or result.queue_id or "",
        "ip": envelope.client_ip or "",
        "helo": envelope.helo or "",
        "user": envelope.user or "",
        "from": envelope.mail_from or "",
        "rcpts": rcpts[:MAX_RCPTS_SHOWN],
        "rcpt_count": len(rcpts),
        "subject": result.subject[:MAX_SUBJECT],
        "message_id": result.message_id,
        "action": result.action,
        "score": round(result.score, 2),
        "required_score": round(result.required_score, 2),
        "is_spam": result.is_spam,
        "symbols": [[s.name, round(s.score, 2), s.options] for s in result.sorted_symbols()],
        "scan_time": round(result.scan_time, 6),
        "size": size,
        "errors": result.errors,
    }


class ScanRecorder:
    def __init__(self, storage: Storage, history_size: int = 1000,
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
            for when, result, envelope, size in scans:
                self._count(changes, when, result)
                entry = history_entry(result, envelope, size, when, self.source)
                history.append(json.dumps(entry, ensure_ascii=False,
                                          separators=(",", ":")).encode())
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
            except Exception:  # statistics must never take a worker down
                log.exception("scan statistics not written")
                return False
            return True

    @staticmethod
    def _count(changes: Counter[tuple[str, float | None]], when: float,
               result: ScanResult) -> None:
        changes[(keys.SCANNED, None)] += 1
        changes[(keys.ACTION + result.action, None)] += 1
        for name in result.symbols:
            changes[(keys.SYMBOL + name, None)] += 1
        changes[(keys.TIME + str(keys.time_bucket(result.scan_time)), None)] += 1
        changes[(keys.TIME_SUM_US, None)] += int(result.scan_time * 1e6)
        for step_name, step in keys.GRAPH_STEPS.items():
            start = int(when // step.seconds) * step.seconds
            changes[(keys.graph_key(step_name, start, result.action), step.ttl)] += 1
        for error in result.errors:
            kind = "check_timeouts" if "timed out" in error else "check_errors"
            changes[(keys.EVENT + kind, None)] += 1
