"""Closing one worker's gate for good when it drains: it stops accepting, the others do not.

All workers of a pool inherit one listening socket and take turns at it as pre-forking
servers do: libmilter's listener (in the worker's main thread) polls the socket and then
accept()s, and the kernel gives each new connection to one waiting listener. No worker ever
swaps its socket while accepting: an earlier version balanced load by swapping a busy worker's
listening descriptor for a decoy, and a poll() or accept() already waiting kept the socket it
started on. A listener polling the decoy then missed connections for libmilter's 5 s poll
timeout, and one whose poll saw a connection but whose accept() found the decoy blocked for
good: after bursts of short connections both workers of a pool sat there (issue 18).

Draining still has to stop this worker's listener, and libmilter's own stop would strand the
sessions still open (see server.py). So the gate puts a decoy socket under the listening
descriptor and then interrupts the listener thread with a signal: a poll() or accept() that
was waiting on the real socket returns EINTR, libmilter retries, and the retry looks the
descriptor up again and finds the decoy. A call that starts after the swap finds the decoy
directly, so the listener cannot take another connection whatever it was doing.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

KICK_SIGNAL = signal.SIGUSR2


def install_kick_handler() -> None:
    """In the worker's main thread, before libmilter starts: a handler (doing nothing) makes
    KICK_SIGNAL interrupt the listener's system call instead of killing the process."""
    signal.signal(KICK_SIGNAL, lambda signum, frame: None)
    signal.siginterrupt(KICK_SIGNAL, True)


class Gate:
    """One worker's listening descriptors and the thread that accepts on them."""

    def __init__(self, listen_fds: list[int], listener_thread: int) -> None:
        self.listen_fds = listen_fds
        self.listener_thread = listener_thread
        self._decoy: socket.socket | None = None
        self._lock = threading.Lock()

    @property
    def closed(self) -> bool:
        return self._decoy is not None

    def close(self) -> None:
        with self._lock:
            if self._decoy is not None:
                return
            decoy = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            # Abstract and unique: nobody can connect to it.
            decoy.bind(f"\0pyspamd-decoy-{os.getpid()}-{time.monotonic_ns()}")
            decoy.listen(1)
            for fd in self.listen_fds:
                os.dup2(decoy.fileno(), fd)
            self._decoy = decoy
            signal.pthread_kill(self.listener_thread, KICK_SIGNAL)
