"""Which worker accepts the next connection: least connections first, and none when draining.

All workers of a pool inherit one listening socket, and libmilter's C listener thread keeps
accepting even while its process's Python is saturated, so left alone one worker can take
every connection while the others idle. Each worker therefore publishes its open-session
count in a shared page and stops accepting while it has more sessions than the least loaded
worker. "Stop accepting" swaps the worker's own copy of the listening descriptor for a socket
nobody connects to (dup2); the pool and the other workers keep the real one, and swapping it
back resumes. A swap can race with a poll already in progress, so one extra connection may
still land: the balance is soft, which is all it needs to be.
"""

from __future__ import annotations

import mmap
import os
import socket
import struct
import threading
import time

_SLOT = struct.Struct("i")
_FREE = -1
CHECK_INTERVAL = 0.02  # seconds between balance checks in a worker


class SessionBoard:
    """A page shared by a pool and its workers (anonymous shared memory survives fork)."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._mem = mmap.mmap(-1, _SLOT.size * slots)
        for slot in range(slots):
            self.set(slot, _FREE)

    def set(self, slot: int, value: int) -> None:
        _SLOT.pack_into(self._mem, slot * _SLOT.size, value)

    def get(self, slot: int) -> int:
        return int(_SLOT.unpack_from(self._mem, slot * _SLOT.size)[0])

    def free_slot(self) -> int:
        for slot in range(self.slots):
            if self.get(slot) == _FREE:
                return slot
        raise RuntimeError("no free worker slot")

    def least_others(self, slot: int) -> int | None:
        values = [self.get(s) for s in range(self.slots) if s != slot]
        live = [v for v in values if v != _FREE]
        return min(live) if live else None


class Gate:
    """One worker's side: publish the session count, accept or not, drain for good."""

    def __init__(self, board: SessionBoard, slot: int, listen_fds: list[int]) -> None:
        self.board = board
        self.slot = slot
        self._saved = {fd: os.dup(fd) for fd in listen_fds}
        self._decoy = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._decoy.bind(f"\0pyspamd-decoy-{os.getpid()}-{time.monotonic_ns()}")
        self._decoy.listen(1)
        self._accepting = True
        self._draining = False
        self._lock = threading.Lock()
        board.set(slot, 0)

    def _swap(self, accept: bool) -> None:
        for fd, saved in self._saved.items():
            os.dup2(saved if accept else self._decoy.fileno(), fd)
        self._accepting = accept

    def update(self, active: int) -> None:
        """Publish `active` and decide whether this worker should take new connections."""
        with self._lock:
            if self._draining:
                return
            self.board.set(self.slot, active)
            least = self.board.least_others(self.slot)
            accept = least is None or active <= least
            if accept != self._accepting:
                self._swap(accept)

    def drain(self) -> None:
        with self._lock:
            self._draining = True
            self._swap(False)
            self.board.set(self.slot, _FREE)
