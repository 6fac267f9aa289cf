"""The milter protocol (Sendmail's, version 6, as Postfix speaks it) on asyncio.

Why not libmilter: Debian's libmilter is built with its session pool, and under load single
sessions waited 1-16 s between two packets while their scans took milliseconds (measured in
docs/performance.md, with pyspamd and with a trivial C milter alike). Here one event loop per
worker reads every connection as its bytes arrive; the only work that leaves the loop is end
of message (the scan), which runs in a thread so that checks with their own event loop (DNS)
can wait without holding the other sessions.

The sessions are the same pymilter `Milter.Base` objects libmilter drives: this module gives
them a context with libmilter's calls (getsymval, setreply, addheader, chgheader, quarantine,
progress ...) and calls their callbacks with pymilter's arguments and return codes, so a
session class works on either transport. Modifications made at end of message are written
with the verdict in one write.

Wire format: every packet is a 4-byte big-endian length, a command byte, and the payload.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import struct
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import Milter
import milter

log = logging.getLogger("pyspamd.milter")

VERSION = 6
# A body chunk is at most 1 MiB (SMFIP_MDS_1M), a header at most the MTA's header limit
# (Postfix: 100 kB); a longer packet closes the connection and the MTA applies its default
# action, as libmilter does past its (by default 64 KiB) limit.
MAX_PACKET = (1 << 20) + (64 << 10)
_MAX_BUFFER = 4 << 20  # unread bytes kept while a scan runs before reading pauses

# Commands, MTA -> milter
SMFIC_ABORT = ord("A")
SMFIC_BODY = ord("B")
SMFIC_CONNECT = ord("C")
SMFIC_MACRO = ord("D")
SMFIC_BODYEOB = ord("E")
SMFIC_HELO = ord("H")
SMFIC_QUIT_NC = ord("K")
SMFIC_HEADER = ord("L")
SMFIC_MAIL = ord("M")
SMFIC_EOH = ord("N")
SMFIC_OPTNEG = ord("O")
SMFIC_QUIT = ord("Q")
SMFIC_RCPT = ord("R")
SMFIC_DATA = ord("T")
SMFIC_UNKNOWN = ord("U")

# Replies and actions, milter -> MTA
SMFIR_ADDRCPT = b"+"
SMFIR_DELRCPT = b"-"
SMFIR_ADDRCPT_PAR = b"2"
SMFIR_ACCEPT = b"a"
SMFIR_REPLBODY = b"b"
SMFIR_CONTINUE = b"c"
SMFIR_DISCARD = b"d"
SMFIR_CHGFROM = b"e"
SMFIR_ADDHEADER = b"h"
SMFIR_INSHEADER = b"i"
SMFIR_CHGHEADER = b"m"
SMFIR_PROGRESS = b"p"
SMFIR_QUARANTINE = b"q"
SMFIR_REJECT = b"r"
SMFIR_SKIP = b"s"
SMFIR_TEMPFAIL = b"t"
SMFIR_REPLYCODE = b"y"

# Address families in SMFIC_CONNECT
_FAMILIES = {ord("4"): socket.AF_INET, ord("6"): socket.AF_INET6, ord("L"): socket.AF_UNIX}

# libmilter keeps macros per stage and looks them up in this order (smfi_getsymval).
_MACRO_STAGES = (SMFIC_CONNECT, SMFIC_HELO, SMFIC_MAIL, SMFIC_RCPT, SMFIC_DATA, SMFIC_BODYEOB,
                 SMFIC_EOH)
_MESSAGE_STAGES = (SMFIC_MAIL, SMFIC_RCPT, SMFIC_DATA, SMFIC_BODYEOB, SMFIC_EOH)

_SIMPLE_REPLIES = {
    Milter.CONTINUE: SMFIR_CONTINUE, Milter.ACCEPT: SMFIR_ACCEPT, Milter.DISCARD: SMFIR_DISCARD,
    Milter.REJECT: SMFIR_REJECT, Milter.TEMPFAIL: SMFIR_TEMPFAIL, Milter.SKIP: SMFIR_SKIP,
}
_MAX_REPLY_LINES = 32  # libmilter's limit for smfi_setmlreply
_ENHANCED = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")

_LENGTH = struct.Struct("!I")
_OPTNEG = struct.Struct("!III")


class ProtocolError(Exception):
    """The MTA sent something this side cannot read; the connection is closed."""


def packet(command: bytes, payload: bytes = b"") -> bytes:
    return _LENGTH.pack(len(payload) + 1) + command + payload


def _z(value: str | bytes) -> bytes:
    """A NUL-terminated string as the protocol carries them."""
    raw = value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")
    if b"\0" in raw:
        raise milter.error("a milter string cannot hold a NUL byte")
    return raw + b"\0"


def split_strings(payload: bytes) -> list[bytes]:
    """NUL-terminated strings one after the other (the last NUL may be missing)."""
    if payload.endswith(b"\0"):
        payload = payload[:-1]
    return payload.split(b"\0") if payload else []


def reply_text(rcode: str, xcode: str | None, msg: str | None, *more: str) -> str:
    """The SMTP reply an MTA is told to send, checked and built as libmilter's
    smfi_setreply and smfi_setmlreply do: `550 5.7.1 text`, or for more lines
    `550-5.7.1 first` ... `550 5.7.1 last`."""
    if len(rcode) != 3 or not rcode.isdigit() or rcode[0] not in "45":
        raise milter.error(f"reply code must be 4XX or 5XX, got {rcode!r}")
    if xcode and not _ENHANCED.fullmatch(xcode):
        raise milter.error(f"extended status code {xcode!r} is not like 5.7.1")
    lines = [msg or "", *more]
    if len(lines) > _MAX_REPLY_LINES:
        raise milter.error(f"at most {_MAX_REPLY_LINES} reply lines")
    if any("\r" in line or "\n" in line for line in lines):
        raise milter.error("a reply line cannot hold CR or LF")
    out = []
    for number, line in enumerate(lines):
        mark = " " if number == len(lines) - 1 else "-"
        out.append(mark.join((rcode, " ".join(p for p in (xcode, line) if p))))
    return "\r\n".join(out)


class Context:
    """What libmilter's context (pymilter's milterContext) offers a session: macros, the
    reply, and the modifications at end of message, here queued to go out with the verdict."""

    def __init__(self, connection: MilterConnection) -> None:
        self._connection = connection
        self._priv: Any = None
        self.macros: dict[int, dict[str, str]] = {}
        self.reply: str | None = None
        self.pending: list[bytes] = []  # modification packets for the verdict's write
        self.symlists: list[tuple[int, bytes]] = []

    # pymilter's milterContext
    def setpriv(self, priv: Any) -> None:
        self._priv = priv

    def getpriv(self) -> Any:
        return self._priv

    def getsymval(self, name: str) -> str | None:
        bare = name[1:-1] if name.startswith("{") and name.endswith("}") else name
        keys = {name, bare, "{" + bare + "}"}
        for stage in _MACRO_STAGES:
            values = self.macros.get(stage)
            if values:
                for key in keys:
                    if key in values:
                        return values[key]
        return None

    def setreply(self, rcode: str, xcode: str | None = None, msg: str | None = None,
                 *more: str) -> None:
        self.reply = reply_text(rcode, xcode, msg, *more)

    def setsymlist(self, stage: int, macros: bytes | str) -> None:
        text = macros if isinstance(macros, bytes) else macros.encode()
        self.symlists.append((stage, text))

    def addheader(self, name: str, value: str, index: int = -1) -> None:
        if index < 0:
            self.pending.append(packet(SMFIR_ADDHEADER, _z(name) + _z(value)))
        else:
            self.pending.append(packet(SMFIR_INSHEADER,
                                       _LENGTH.pack(index) + _z(name) + _z(value)))

    def chgheader(self, name: str, index: int, value: str) -> None:
        self.pending.append(packet(SMFIR_CHGHEADER, _LENGTH.pack(index) + _z(name) + _z(value)))

    def addrcpt(self, rcpt: str, params: str | None = None) -> None:
        if params:
            self.pending.append(packet(SMFIR_ADDRCPT_PAR, _z(rcpt) + _z(params)))
        else:
            self.pending.append(packet(SMFIR_ADDRCPT, _z(rcpt)))

    def delrcpt(self, rcpt: str) -> None:
        self.pending.append(packet(SMFIR_DELRCPT, _z(rcpt)))

    def replacebody(self, body: bytes | str) -> None:
        data = body if isinstance(body, bytes) else body.encode("utf-8", "surrogateescape")
        self.pending.append(packet(SMFIR_REPLBODY, data))

    def chgfrom(self, sender: str, params: str | None = None) -> None:
        self.pending.append(packet(SMFIR_CHGFROM, _z(sender) + (_z(params) if params else b"")))

    def quarantine(self, reason: str) -> None:
        self.pending.append(packet(SMFIR_QUARANTINE, _z(reason)))

    def progress(self) -> None:
        """Tell the MTA we are still at it (it restarts its timeout): sent at once."""
        self._connection.send_soon(packet(SMFIR_PROGRESS))


def reply_packets(ctx: Context, code: int) -> bytes:
    """The final answer to a stage: queued modifications (end of message), then the reply;
    a REJECT or TEMPFAIL with a matching setreply() goes as the SMTP reply text."""
    out = b"".join(ctx.pending)
    ctx.pending.clear()
    reply, ctx.reply = ctx.reply, None
    if code in (Milter.REJECT, Milter.TEMPFAIL) and reply is not None \
            and reply[0] == ("5" if code == Milter.REJECT else "4"):
        return out + packet(SMFIR_REPLYCODE, _z(reply))
    try:
        return out + packet(_SIMPLE_REPLIES[code])
    except KeyError:
        raise ValueError(f"callback returned {code!r}, not a milter reply code") from None


class MilterServer:
    """Accepts on a listening socket shared with the other workers and runs its sessions.

    `factory` builds a session (a Milter.Base), `fail_code` is the reply for a session
    whose callback raised (the configured fail action), `executor` runs end of message."""

    def __init__(self, loop: asyncio.AbstractEventLoop, listen_fds: list[int],
                 factory: Callable[[], Any], executor: Executor, timeout: float,
                 fail_code: Callable[[], int]) -> None:
        self.loop = loop
        self.factory = factory
        self.executor = executor
        self.timeout = timeout
        self.fail_code = fail_code
        self.sockets = [socket.socket(fileno=fd) for fd in listen_fds]
        for sock in self.sockets:
            sock.setblocking(False)
        self.connections: set[MilterConnection] = set()
        self.accepting = False
        self._sweeper: asyncio.TimerHandle | None = None

    def set_accepting(self, accept: bool) -> None:
        """Take new connections or leave them to the other workers (in the loop's thread)."""
        if accept == self.accepting:
            return
        self.accepting = accept
        for sock in self.sockets:
            if accept:
                self.loop.add_reader(sock.fileno(), self._accept, sock)
            else:
                self.loop.remove_reader(sock.fileno())

    def start(self) -> None:
        self.set_accepting(True)
        self._sweeper = self.loop.call_later(1.0, self._sweep)

    def _accept(self, listener: socket.socket) -> None:
        # The other workers poll the same socket: whoever is first takes the connection.
        try:
            conn, _ = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # out of descriptors, ...: the connection waits for the next
            log.warning("accept failed: %s", exc)
            return
        conn.setblocking(False)
        protocol = MilterConnection(self)
        self.connections.add(protocol)
        self.loop.create_task(self.loop.connect_accepted_socket(lambda: protocol, conn))

    def _sweep(self) -> None:
        """Close connections the MTA has left silent for longer than the timeout, as
        libmilter does (the MTA's own timeouts are shorter)."""
        now = time.monotonic()
        for connection in list(self.connections):
            if not connection.busy and now - connection.last_read > self.timeout:
                log.info("milter connection idle for %.0f s: closed", self.timeout)
                connection.shut()
        self._sweeper = self.loop.call_later(1.0, self._sweep)


class MilterConnection(asyncio.Protocol):
    """One MTA connection: reads packets, calls the session, writes replies, in order."""

    def __init__(self, server: MilterServer) -> None:
        self.server = server
        self.ctx = Context(self)
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.busy = False  # a callback runs in the executor: the next packets wait
        self.closed = False
        self.failed = False  # a callback raised: the message gets the fail action
        self.session_failed = False  # ... before MAIL: every message of the session does
        self.in_message = False
        self.offered = (0, 0)  # the MTA's actions and protocol steps
        self.last_read = time.monotonic()

    # --- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.last_read = time.monotonic()
        self.buffer += data
        self._run()
        if self.busy and len(self.buffer) > _MAX_BUFFER and self.transport is not None:
            self.transport.pause_reading()  # the MTA should wait for our verdict anyway

    def eof_received(self) -> bool:
        return False  # closes the transport; connection_lost ends the session

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        if not self.busy:
            self._end_session()

    # --- the session ------------------------------------------------------------------

    def send_soon(self, data: bytes) -> None:
        """Write from any thread (progress from a scan)."""
        self.server.loop.call_soon_threadsafe(self._write, data)

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def shut(self) -> None:
        self.buffer.clear()  # nothing after QUIT or a bad packet is read
        if self.transport is not None:
            self.transport.close()

    def _run(self) -> None:
        """Handle every whole packet in the buffer, unless a callback is still running."""
        while not self.busy and not self.closed:
            if len(self.buffer) < 5:
                return
            (length,) = _LENGTH.unpack_from(self.buffer)
            if length < 1 or length > MAX_PACKET:
                log.warning("milter: bad packet length %d from the MTA; connection closed",
                            length)
                self.shut()
                return
            if len(self.buffer) < 4 + length:
                return
            command = self.buffer[4]
            payload = bytes(self.buffer[5 : 4 + length])
            del self.buffer[: 4 + length]
            try:
                self._handle(command, payload)
            except ProtocolError as exc:
                log.warning("milter: %s; connection closed", exc)
                self.shut()
                return

    def _handle(self, command: int, payload: bytes) -> None:
        if command == SMFIC_MACRO:
            self._macros(payload)
        elif command == SMFIC_OPTNEG:
            self._negotiate(payload)
        elif command == SMFIC_BODY:
            self._call(SMFIC_BODY, "body", payload)
        elif command == SMFIC_HEADER:
            parts = split_strings(payload)
            if len(parts) != 2:
                raise ProtocolError("header packet without name and value")
            self._call(SMFIC_HEADER, "header_bytes", parts[0].decode("latin-1"), parts[1])
        elif command == SMFIC_EOH:
            self._call(SMFIC_EOH, "eoh")
        elif command == SMFIC_CONNECT:
            self._connect(payload)
        elif command == SMFIC_HELO:
            parts = split_strings(payload)
            helo = parts[0].decode("utf-8", "surrogateescape") if parts else ""
            self._call(SMFIC_HELO, "hello", helo)
        elif command == SMFIC_MAIL:
            self.in_message, self.failed = True, self.session_failed
            self._call(SMFIC_MAIL, "envfrom_bytes", *split_strings(payload))
        elif command == SMFIC_RCPT:
            self._call(SMFIC_RCPT, "envrcpt_bytes", *split_strings(payload))
        elif command == SMFIC_DATA:
            self._call(SMFIC_DATA, "data")
        elif command == SMFIC_BODYEOB:
            self._end_of_message(payload)
        elif command == SMFIC_ABORT:
            self._abort()
        elif command == SMFIC_UNKNOWN:
            parts = split_strings(payload)
            self._call(SMFIC_UNKNOWN, "unknown", parts[0] if parts else b"")
        elif command == SMFIC_QUIT:
            self.shut()
        elif command == SMFIC_QUIT_NC:
            self._end_session()  # a new SMTP session follows on this connection
            self.failed = self.session_failed = False
        else:
            raise ProtocolError(f"unknown command {chr(command)!r}")

    def _macros(self, payload: bytes) -> None:
        if not payload:
            raise ProtocolError("empty macro packet")
        strings = split_strings(payload[1:])
        values = {}
        for i in range(0, len(strings) - 1, 2):
            values[strings[i].decode("utf-8", "surrogateescape")] = \
                strings[i + 1].decode("utf-8", "surrogateescape")
        self.ctx.macros[payload[0]] = values

    def _negotiate(self, payload: bytes) -> None:
        if len(payload) < _OPTNEG.size:
            raise ProtocolError("short OPTNEG packet")
        version, actions, steps = _OPTNEG.unpack_from(payload)
        if version < 2:
            raise ProtocolError(f"MTA speaks milter protocol version {version}")
        self.offered = (actions, steps)
        opts = [actions, steps, 0, 0]
        try:
            session = self.server.factory()  # as pymilter's negotiate_callback does
            session._setctx(self.ctx)
            code = session.negotiate(opts)
        except Exception as exc:
            log.error("milter: session set-up failed: %s: %s", type(exc).__name__, exc)
            self.shut()
            return
        if code == Milter.ALL_OPTS:
            opts = [actions, steps, 0, 0]
        wire = _OPTNEG.pack(VERSION, opts[0] & actions, opts[1] & steps)
        for stage, macros in self.ctx.symlists:
            wire += _LENGTH.pack(stage) + macros + b"\0"
        self._write(packet(b"O", wire))

    def _session(self) -> Any:
        """The session; a new one after QUIT_NC (or an MTA that skipped OPTNEG), with the
        protocol steps negotiated at the start of the connection."""
        session = self.ctx.getpriv()
        if session is None:
            session = self.server.factory()
            session._setctx(self.ctx)
            actions, steps = self.offered
            if actions or steps:
                session.negotiate([actions, steps, 0, 0])
        return session

    def _connect(self, payload: bytes) -> None:
        host, _, rest = payload.partition(b"\0")
        hostname = host.decode("utf-8", "surrogateescape")
        family = _FAMILIES.get(rest[0], 0) if rest else 0
        hostaddr: Any = None
        if family in (socket.AF_INET, socket.AF_INET6) and len(rest) >= 3:
            (port,) = struct.unpack_from("!H", rest, 1)
            address = rest[3:].split(b"\0", 1)[0].decode("ascii", "replace")
            if address.startswith("IPv6:"):
                address = address[5:]
            hostaddr = (address, port) if family == socket.AF_INET else (address, port, 0, 0)
        elif family == socket.AF_UNIX:
            hostaddr = rest[3:].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        self._session()
        self._call(SMFIC_CONNECT, "connect", hostname, family, hostaddr)

    def _end_of_message(self, payload: bytes) -> None:
        if payload:  # libmilter hands a last chunk riding on end of message to body()
            self._call(SMFIC_BODY, "body", payload, reply=False)
        if self.failed:
            self._reply(SMFIC_BODYEOB, self.server.fail_code())
            return
        self.busy = True
        session = self._session()
        future = self.server.loop.run_in_executor(self.server.executor, session.eom)
        future.add_done_callback(self._eom_done)

    def _eom_done(self, future: asyncio.Future[Any]) -> None:
        self.busy = False
        exc = future.exception()
        if exc is not None:
            log.error("milter: end of message failed: %s: %s; fail action applied",
                      type(exc).__name__, exc)
            self.ctx.pending.clear()
            self.ctx.reply = None
            code = self.server.fail_code()
        else:
            code = future.result()
        if self.closed:
            self._end_session()
            return
        self._reply(SMFIC_BODYEOB, code)
        if self.transport is not None and not self.transport.is_reading():
            self.transport.resume_reading()
        self._run()

    def _reply(self, stage: int, code: int) -> None:
        if stage == SMFIC_BODYEOB:
            self._message_done()
        if code == Milter.NOREPLY:
            return
        try:
            wire = reply_packets(self.ctx, code)
        except ValueError as exc:
            log.error("milter: %s; fail action applied", exc)
            wire = reply_packets(self.ctx, self.server.fail_code())
        self._write(wire)

    def _message_done(self) -> None:
        self.in_message = False
        for stage in _MESSAGE_STAGES:
            self.ctx.macros.pop(stage, None)

    def _abort(self) -> None:
        session = self.ctx.getpriv()
        if session is not None:
            try:
                session.abort()
            except Exception as exc:
                log.error("milter: abort callback failed: %s: %s", type(exc).__name__, exc)
        self.failed = self.session_failed
        self.ctx.pending.clear()
        self.ctx.reply = None
        self._message_done()

    def _call(self, stage: int, name: str, *args: Any, reply: bool = True) -> None:
        """A callback run here, in the loop: they only collect what the MTA sends."""
        if self.failed:
            code = Milter.CONTINUE
        else:
            try:
                code = getattr(self._session(), name)(*args)
            except Exception as exc:
                log.error("milter: %s callback failed: %s: %s; fail action applied",
                          name, type(exc).__name__, exc)
                self.failed = True
                self.session_failed = self.session_failed or not self.in_message
                code = self.server.fail_code()
        if code is None:
            code = Milter.CONTINUE
        if not reply:
            return
        if self.failed and self._no_reply(stage):
            return  # the MTA does not wait here; end of message answers with the fail code
        if code == Milter.CONTINUE and self._no_reply(stage):
            return
        self._reply(stage, code)

    def _no_reply(self, stage: int) -> bool:
        session = self.ctx.getpriv()
        negotiated = getattr(session, "_protocol", 0)
        return bool(negotiated & _NO_REPLY_FLAG.get(stage, 0))

    def _end_session(self) -> None:
        session = self.ctx.getpriv()
        if session is None:
            return
        with contextlib.suppress(Exception):
            if self.in_message:
                session.abort()
        self.in_message = False
        try:
            Milter.close_callback(self.ctx)
        except Exception as exc:
            log.error("milter: close callback failed: %s: %s", type(exc).__name__, exc)
        self.ctx.setpriv(None)
        self.ctx.macros.clear()


_NO_REPLY_FLAG = {
    SMFIC_CONNECT: Milter.P_NR_CONN, SMFIC_HELO: Milter.P_NR_HELO, SMFIC_MAIL: Milter.P_NR_MAIL,
    SMFIC_RCPT: Milter.P_NR_RCPT, SMFIC_DATA: Milter.P_NR_DATA, SMFIC_HEADER: Milter.P_NR_HDR,
    SMFIC_EOH: Milter.P_NR_EOH, SMFIC_BODY: Milter.P_NR_BODY, SMFIC_UNKNOWN: Milter.P_NR_UNKN,
}
