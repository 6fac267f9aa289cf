"""Which worker accepts the next connection: least sessions first, and none when draining.

All workers of a pool inherit one listening socket. libmilter's listener (in each worker's
main thread, C code that needs no GIL) polls it and accept()s, and left alone one worker
takes a burst of connections while the others idle: 8 connections opened at once went 7+1
or 8+0 in 7 of 15 tries. So each worker publishes its open-session count in a shared page
and stops accepting while it has more sessions than the least loaded worker.

"Stop accepting" puts a decoy socket (that nobody connects to) under the worker's listening
descriptor with dup2, and "resume" puts the real one back. Either swap alone races with the
listener: a poll() or accept() already waiting keeps the socket it started on. That race
stalled pools (issue 18): listeners polling the decoy missed connections for libmilter's 5 s
poll timeout, and a listener whose poll saw a connection on the real socket but whose
accept() then found the decoy blocked for good; after bursts of short connections every
worker of a pool sat there. So every swap is followed by a signal to the listener thread:
the call it is waiting in returns EINTR, libmilter retries, and the retry looks the
descriptor up again. A call that starts after the swap finds the new socket directly, so
whatever the listener was doing, it waits on the socket the gate chose.

With pyspamd's own protocol (protocol.py) there is no such listener: the worker's event
loop stops or starts watching the socket, which `switch` does in the loop's thread.
"""

from __future__ import annotations

import mmap
import os
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable

_SLOT = struct.Struct("id")  # open sessions, time.monotonic() of the last update
FREE = -1
CHECK_INTERVAL = 0.02  # seconds between balance checks in a worker
# A worker that has not updated its count for this long is dead or frozen: the others do not
# defer to it (its count may be low, and it would take every connection).
STALE_AFTER = 1.0
KICK_SIGNAL = signal.SIGUSR2


def install_kick_handler() -> None:
    """In the worker's main thread, before libmilter starts: a handler (doing nothing) makes
    KICK_SIGNAL interrupt the listener's system call instead of killing the process."""
    signal.signal(KICK_SIGNAL, lambda signum, frame: None)
    signal.siginterrupt(KICK_SIGNAL, True)


class SessionBoard:
    """A page shared by a pool and its workers (anonymous shared memory survives fork)."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._mem = mmap.mmap(-1, _SLOT.size * slots)
        for slot in range(slots):
            self.set(slot, FREE)

    def set(self, slot: int, value: int) -> None:
        _SLOT.pack_into(self._mem, slot * _SLOT.size, value, time.monotonic())

    def get(self, slot: int) -> int:
        return int(_SLOT.unpack_from(self._mem, slot * _SLOT.size)[0])

    def _live(self, slot: int, now: float) -> int | None:
        value, updated = _SLOT.unpack_from(self._mem, slot * _SLOT.size)
        return None if value == FREE or now - updated > STALE_AFTER else int(value)

    def claim(self) -> int:
        """A free slot, marked taken (by the pool, before it forks the worker)."""
        for slot in range(self.slots):
            if self.get(slot) == FREE:
                self.set(slot, 0)
                return slot
        raise RuntimeError("no free worker slot")

    def least_others(self, slot: int) -> int | None:
        now = time.monotonic()
        live = [v for s in range(self.slots)
                if s != slot and (v := self._live(s, now)) is not None]
        return min(live) if live else None


class Gate:
    """One worker's side: publish the session count, accept or not, drain for good."""

    def __init__(self, board: SessionBoard, slot: int, listen_fds: list[int],
                 listener_thread: int) -> None:
        self.board = board
        self.slot = slot
        self.listener_thread = listener_thread
        self._saved = {fd: os.dup(fd) for fd in listen_fds}
        self._decoy = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # Abstract and unique: nobody can connect to it.
        self._decoy.bind(f"\0pyspamd-decoy-{os.getpid()}-{time.monotonic_ns()}")
        self._decoy.listen(1)
        self._accepting = True
        self._draining = False
        self._lock = threading.Lock()
        # Set by a worker whose event loop accepts (protocol.py): called instead of the swap.
        self.switch: Callable[[bool], None] | None = None
        board.set(slot, 0)

    def _swap(self, accept: bool) -> None:
        if self.switch is not None:
            self._accepting = accept
            self.switch(accept)
            return
        for fd, saved in self._saved.items():
            os.dup2(saved if accept else self._decoy.fileno(), fd)
        self._accepting = accept
        signal.pthread_kill(self.listener_thread, KICK_SIGNAL)

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
            self.board.set(self.slot, FREE)
            if self._accepting:
                self._swap(False)
