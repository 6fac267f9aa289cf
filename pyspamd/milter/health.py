"""Is a pool answering? The master asks the way an MTA would: connect and negotiate.

A probe connects to the listener, sends the milter OPTNEG packet and waits for the worker's
OPTNEG reply, then says QUIT. It never blocks the master: `step()` is called once per master
tick and moves the probe on with non-blocking socket calls, so a pool that stopped accepting
costs the master nothing but a timed-out probe.
"""

from __future__ import annotations

import contextlib
import errno
import select
import socket
import struct
import time

_OPTNEG = b"O"
_QUIT = b"Q"
_VERSION = 6
_ALL_ACTIONS = 0x1FF  # what an MTA offers; the worker answers with what it wants
_ALL_STEPS = 0x1FFFFF


def _packet(command: bytes, payload: bytes = b"") -> bytes:
    return struct.pack("!I", len(payload) + 1) + command + payload


OPTNEG_PACKET = _packet(_OPTNEG, struct.pack("!III", _VERSION, _ALL_ACTIONS, _ALL_STEPS))
QUIT_PACKET = _packet(_QUIT)


def address(spec: str) -> tuple[int, str | tuple[str, int]]:
    """(family, address) to connect to for a libmilter listener spec such as
    inet:11332@127.0.0.1, inet6:11332@::1 or unix:/run/pyspamd.sock."""
    kind, _, rest = spec.partition(":")
    if kind in ("unix", "local"):
        return socket.AF_UNIX, rest
    port, _, host = rest.partition("@")
    if kind == "inet6":
        host = host or "::1"
        if host in ("::", "[::]"):
            host = "::1"
        return socket.AF_INET6, (host.strip("[]"), int(port))
    host = host or "127.0.0.1"
    if host in ("0.0.0.0", "*"):  # listening everywhere: loopback reaches it
        host = "127.0.0.1"
    return socket.AF_INET, (host, int(port))


class Probe:
    """One OPTNEG round trip; `step()` returns None while under way, then "" when the pool
    answered or the reason it did not."""

    request = OPTNEG_PACKET
    goodbye = QUIT_PACKET
    reply_name = "OPTNEG reply"

    def __init__(self, spec: str, timeout: float) -> None:
        family, self.target = address(spec)
        self.deadline = time.monotonic() + timeout
        self.started = time.monotonic()
        self.elapsed = 0.0
        self._reply = b""
        self._sent = False
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        code = self.sock.connect_ex(self.target)
        if code not in (0, errno.EINPROGRESS, errno.EAGAIN):
            self._error = f"connect: {errno.errorcode.get(code, code)}"
        else:
            self._error = ""

    def step(self) -> str | None:
        if self._error:
            return self._finish(self._error)
        if time.monotonic() > self.deadline:
            stage = self.reply_name if self._sent else "the connection to be accepted"
            return self._finish(f"no {stage} within the timeout")
        try:
            return self._advance()
        except OSError as exc:
            return self._finish(f"{type(exc).__name__}: {exc}")

    def _advance(self) -> str | None:
        readable, writable, _ = select.select([self.sock], [self.sock], [], 0)
        if not self._sent:
            if not writable:
                return None
            code = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                return self._finish(f"connect: {errno.errorcode.get(code, code)}")
            # A connection in the listen queue is writable before any worker accepted it;
            # only the reply proves a worker took it.
            self.sock.send(self.request)
            self._sent = True
            return None
        if not readable:
            return None
        data = self.sock.recv(4096)
        if not data:
            return self._finish(f"connection closed before the {self.reply_name}")
        self._reply += data
        verdict = self.judge_reply(self._reply)
        if verdict is None:
            return None
        if verdict:
            return self._finish(verdict)
        self.elapsed = time.monotonic() - self.started
        with contextlib.suppress(OSError):  # answered already: the goodbye is a courtesy
            self.sock.send(self.goodbye)
        return self._finish("")

    def judge_reply(self, reply: bytes) -> str | None:
        """None: not all of it yet; "": the answer expected; else what is wrong with it."""
        if len(reply) < 5:
            return None
        if reply[4:5] != _OPTNEG:
            return f"unexpected reply {reply[4:5]!r}"
        return ""

    def _finish(self, outcome: str) -> str:
        self.sock.close()
        return outcome
