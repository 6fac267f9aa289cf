"""Child-process bookkeeping shared by the master (its pools and the controller) and the
pools (their workers): restart back-off, reaping, signalling."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass

_RESTART_MIN = 0.5  # seconds before restarting a crashed process; doubles while it keeps dying
_RESTART_MAX = 30.0
_STABLE_AFTER = 60.0  # a process that lived this long resets the back-off
TICK = 0.2  # the supervision loops' period


@dataclass
class Backoff:
    delay: float = 0.0
    not_before: float = 0.0

    def crashed(self, lived: float) -> None:
        if lived >= _STABLE_AFTER:
            self.delay = 0.0
        self.delay = min(_RESTART_MAX, max(_RESTART_MIN, self.delay * 2))
        self.not_before = time.monotonic() + self.delay


def exited_children() -> Iterator[tuple[int, int]]:
    """(pid, status) of each child that has exited, without waiting for the others."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:  # no children at all
            return
        if pid == 0:
            return
        yield pid, status


def kill_child(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit {os.WEXITSTATUS(status)}"
