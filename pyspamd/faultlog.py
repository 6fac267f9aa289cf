"""Fault logging for the scan path: one line per fault, rate-limited, traceback at debug.

A fault that repeats on every message (Redis down, a DNS server gone) must not write a
traceback per scan: 700 tracebacks in 5 s bury the one line that says what is wrong. Each
kind of fault (its key: where it happened and the exception's type) is logged at most once
per interval, with the count of repeats left out since; at debug level every occurrence is
logged, with its traceback.
"""

from __future__ import annotations

import logging
import threading
import time

DEFAULT_INTERVAL = 60.0


class FaultLog:
    def __init__(self, logger: logging.Logger, interval: float = DEFAULT_INTERVAL) -> None:
        self.logger = logger
        self.interval = interval
        self._lock = threading.Lock()  # milter sessions run in threads
        self._last: dict[str, tuple[float, int]] = {}  # key -> (logged at, repeats since)

    def report(
        self,
        where: str,
        message: str,
        exc: BaseException | None = None,
        level: int = logging.ERROR,
    ) -> None:
        """Log `message` (plus the exception's type and text) unless the same fault was
        logged less than `interval` seconds ago; `where` names the place, e.g. "check bayes"."""
        text = f"{message}: {exc} ({type(exc).__name__})" if exc is not None else message
        if self.logger.isEnabledFor(logging.DEBUG):
            self.logger.log(level, "%s", text, exc_info=exc)
            return
        key = f"{where}:{type(exc).__name__}" if exc is not None else where
        now = time.monotonic()
        with self._lock:
            logged_at, repeats = self._last.get(key, (-self.interval, 0))
            if now - logged_at < self.interval:
                self._last[key] = (logged_at, repeats + 1)
                return
            self._last[key] = (now, 0)
        if repeats:
            text += f" ({repeats} more like it in the last {now - logged_at:.0f}s not logged)"
        self.logger.log(level, "%s", text)
