"""Test helpers that play the MTA: a milter-protocol client and a pyspamd daemon runner."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.policy import compat32
from pathlib import Path

import Milter
import miltertest
from Milter.testctx import TestCtx as MilterTestCtx
from miltertest import codec
from miltertest import constants as C

from support.paths import REPO

# Re-exported: most tests import them from here.
from support.ports import free_port as free_port
from support.ports import wait_for_port as wait_for_port


@dataclass
class EomResult:
    replies: list[tuple[str, dict[str, object]]]

    @property
    def disposition(self) -> str:
        return self.replies[-1][0]

    @property
    def added(self) -> dict[str, str]:
        return {str(r["name"]): str(r["value"]) for c, r in self.replies if c == C.SMFIR_ADDHEADER}

    @property
    def inserted(self) -> dict[str, str]:
        """Headers inserted at an index (Authentication-Results, DKIM-Signature)."""
        return {str(r["name"]): str(r["value"]) for c, r in self.replies
                if c == C.SMFIR_INSHEADER}

    @property
    def changed(self) -> list[tuple[str, int, str]]:
        return [(str(r["name"]), int(str(r["index"])), str(r["value"]))
                for c, r in self.replies if c == C.SMFIR_CHGHEADER]

    @property
    def reply(self) -> str:
        for c, r in self.replies:
            if c == C.SMFIR_REPLYCODE:
                return f"{r['smtpcode']} {r['text']}"
        return ""


_NO_REPLY = {
    C.SMFIC_CONNECT: C.SMFIP_NR_CONN, C.SMFIC_HELO: C.SMFIP_NR_HELO,
    C.SMFIC_MAIL: C.SMFIP_NR_MAIL, C.SMFIC_RCPT: C.SMFIP_NR_RCPT, C.SMFIC_DATA: C.SMFIP_NR_DATA,
    C.SMFIC_HEADER: C.SMFIP_NR_HDR, C.SMFIC_EOH: C.SMFIP_NR_EOH, C.SMFIC_BODY: C.SMFIP_NR_BODY,
}


@dataclass
class MtaSession:
    """One milter connection, driven the way Postfix drives it."""

    port: int
    client_ip: str = "192.0.2.1"
    unix_path: str = ""  # connect here instead of the TCP port
    actions: int = C.SMFI_V6_ACTS  # the actions this MTA offers the milter
    sock: socket.socket = field(init=False)
    conn: miltertest.MilterConnection = field(init=False)

    def __post_init__(self) -> None:
        self.protocol = 0
        if self.unix_path:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(30)
            self.sock.connect(self.unix_path)
        else:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
            # Postfix's milter client shows no Nagle stalls on loopback; without this our
            # client would, on the stages it sends without waiting for an answer.
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = miltertest.MilterConnection(self.sock)
        _, self.protocol = self.conn.optneg_mta(actions=self.actions)
        self._step(C.SMFIC_CONNECT, {"j": "mx.example.net", "{daemon_name}": "smtpd"},
                   hostname="client.example.org", family=C.SMFIA_INET, port=40000,
                   address=self.client_ip)
        self._step(C.SMFIC_HELO, helo="client.example.org")

    def _step(self, cmd: str, macros: dict[str, str] | None = None, **kw: object) -> None:
        # Macros and their command go out in one write, as Postfix's buffered stream does.
        wire = codec.encode_msg(cmd, **kw)
        if macros:
            pairs = [x for item in macros.items() for x in item]
            wire = codec.encode_msg(C.SMFIC_MACRO, cmdcode=cmd, nameval=pairs) + wire
        self.sock.sendall(wire)
        if self.protocol & _NO_REPLY.get(cmd, 0):
            return  # negotiated: the milter does not answer this stage
        reply = self.conn.recv()
        assert reply is not None and reply[0] == C.SMFIR_CONTINUE, reply

    def send(self, raw: bytes, mail_from: str = "alice@example.org",
             rcpts: tuple[str, ...] = ("bob@example.net",), queue_id: str = "4QTEST1",
             user: str | None = None) -> EomResult:
        self.send_until_eom(raw, mail_from, rcpts, queue_id, user)
        return self.send_reply()

    def send_reply(self) -> EomResult:
        """The milter's answers to end of message, up to its verdict."""
        replies = []
        while True:
            reply = self.conn.recv()
            replies.append(reply)
            if reply[0] in miltertest.DISPOSITION_REPLIES:
                return EomResult(replies)

    def send_until_eom(self, raw: bytes, mail_from: str = "alice@example.org",
                       rcpts: tuple[str, ...] = ("bob@example.net",),
                       queue_id: str = "4QTEST1", user: str | None = None) -> None:
        """Every stage of one message up to and including end of message, no reply read."""
        macros = {"{mail_addr}": mail_from}
        if user:
            macros["{auth_authen}"] = user
        self._step(C.SMFIC_MAIL, macros, args=[f"<{mail_from}>"])
        for rcpt in rcpts:
            self._step(C.SMFIC_RCPT, {"i": queue_id}, args=[f"<{rcpt}>"])
        self._step(C.SMFIC_DATA, {"i": queue_id})
        head, _, body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
        message = message_from_bytes(head + b"\n\n", policy=compat32)
        for name, value in message.raw_items():
            self._step(C.SMFIC_HEADER, name=name,
                       value=value.encode("utf-8", "surrogateescape").decode("latin-1"))
        self._step(C.SMFIC_EOH)
        wire = body.replace(b"\n", b"\r\n").decode("latin-1")
        for start in range(0, len(wire), C.MILTER_CHUNK_SIZE):
            self._step(C.SMFIC_BODY, buf=wire[start : start + C.MILTER_CHUNK_SIZE])
        eom = codec.encode_msg(C.SMFIC_MACRO, cmdcode=C.SMFIC_BODYEOB, nameval=["i", queue_id])
        self.sock.sendall(eom + codec.encode_msg(C.SMFIC_BODYEOB))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn._send(C.SMFIC_QUIT)
        self.sock.close()


@dataclass
class Daemon:
    """A pyspamd process on its own port and directory, stopped whatever happens."""

    workdir: Path
    config_text: str = ""
    workers: int = 2
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    milter_options: str = ""  # more lines for the [milter] section, which this class writes

    @property
    def log_path(self) -> Path:
        return self.workdir / "pyspamd.log"

    def start(self) -> None:
        config = self.workdir / "pyspamd.toml"
        # The controller's default port is one for the whole machine: only the tests that
        # configure a controller (on a free port) get one.
        controller = "" if "[controller]" in self.config_text else \
            "[controller]\nenabled = false\n"
        config.write_text(
            f'[milter]\nlisten = ["inet:{self.port}@127.0.0.1"]\nworkers = {self.workers}\n'
            f'shutdown_timeout = 10.0\n{self.milter_options}\n{self.config_text}\n{controller}'
            f'[logging]\ntarget = "{self.log_path}"\nlevel = "info"\n')
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pyspamd.cli.pyspamd", "--config", str(config)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        try:
            wait_for_port(self.port, proc=self.proc)
        except (TimeoutError, RuntimeError):
            self.stop()
            raise

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def worker_pids(self) -> set[int]:
        """Processes of this daemon's group other than the master and its pool."""
        assert self.proc is not None
        out = subprocess.run(["pgrep", "-g", str(self.proc.pid)], capture_output=True,
                             text=True, check=False).stdout.split()
        pids = {int(p) for p in out} - {self.proc.pid}
        parents = {pid: _ppid(pid) for pid in pids}
        return {pid for pid, ppid in parents.items() if ppid in pids}

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
            return None
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)  # workers left behind, if any


def _ppid(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[1])
    except (OSError, IndexError, ValueError):
        return -1


@contextlib.contextmanager
def running_daemon(workdir: Path, config_text: str = "", workers: int = 2) -> Iterator[Daemon]:
    daemon = Daemon(workdir, config_text, workers)
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


_NR_FLAGS = (Milter.P_NR_CONN | Milter.P_NR_HELO | Milter.P_NR_MAIL | Milter.P_NR_RCPT
             | Milter.P_NR_DATA | Milter.P_NR_UNKN | Milter.P_NR_EOH | Milter.P_NR_BODY
             | Milter.P_NR_HDR)


class AnsweringCtx(MilterTestCtx):
    """TestCtx as an MTA that cannot do no-reply stages, so every stage answers CONTINUE
    (TestCtx's feeder stops at the first other answer)."""

    def _negotiate(self) -> int:
        # TestCtx reads TestCtx.default_opts by name, so swap it for the negotiation only.
        offered = MilterTestCtx.default_opts
        MilterTestCtx.default_opts = [Milter.CURR_ACTS, 0x1FFFFF & ~_NR_FLAGS, 0, 0]
        try:
            return int(super()._negotiate())
        finally:
            MilterTestCtx.default_opts = offered
