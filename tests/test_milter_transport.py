"""pyspamd's own milter protocol (pyspamd/milter/protocol.py), driven by an MTA-side client.

The MTA side is miltertest's codec (packets built and read by an independent implementation);
the milter side is a MilterServer with a small pymilter session class whose end of message
does what each test asks, so every reply and modification can be checked on the wire. The
daemon with the real session runs over this transport in test_milter_protocol.py,
test_postfix_e2e.py and the other milter tests.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import Milter
import milter
import miltertest
import pytest
from miltertest import codec
from miltertest import constants as C
from support.messages import make_message
from support.mta import Daemon, MtaSession
from support.paths import CORPUS

from pyspamd.milter.protocol import MilterServer, reply_text

GTUBE = (CORPUS / "malformed" / "gtube.eml").read_bytes()
_VERDICTS = (C.SMFIR_ACCEPT, C.SMFIR_REJECT, C.SMFIR_TEMPFAIL, C.SMFIR_DISCARD,
             C.SMFIR_REPLYCODE, C.SMFIR_CONTINUE)


@dataclass
class Record:
    sessions: int = 0
    closed: int = 0
    aborted: int = 0
    seen: list[tuple[str, Any]] = field(default_factory=list)
    eom: Callable[[Milter.Base], int] = lambda s: Milter.ACCEPT


class Recording(Milter.Base):
    """A session that notes its callbacks; end of message runs the test's function."""

    record: Record

    def __init__(self) -> None:
        self.record.sessions += 1

    @Milter.noreply
    def connect(self, hostname: str, family: int, hostaddr: Any) -> int:
        self.record.seen.append(("connect", (hostname, family, hostaddr)))
        return Milter.CONTINUE

    @Milter.noreply
    def envfrom(self, mailfrom: str, *esmtp: str) -> int:
        self.record.seen.append(("mail", (mailfrom, *esmtp)))
        return Milter.CONTINUE

    def envrcpt(self, to: str, *esmtp: str) -> int:  # answered: a recipient can be refused
        if to == "<full@example.net>":
            self.setreply("452", "4.2.2", "Mailbox full")
            return Milter.TEMPFAIL
        self.record.seen.append(("rcpt", to))
        return Milter.CONTINUE

    @Milter.noreply
    @Milter.decode("bytes")
    def header(self, name: Any, value: Any) -> int:
        if name == "X-Break":
            raise ValueError("cannot read this header")
        self.record.seen.append(("header", (name, value)))
        return Milter.CONTINUE

    @Milter.noreply
    def body(self, chunk: bytes) -> int:
        self.record.seen.append(("body", chunk))
        return Milter.CONTINUE

    def eom(self) -> int:
        self.record.seen.append(("macros", (self.getsymval("i"), self.getsymval("{mail_addr}"),
                                            self.getsymval("j"))))
        return self.record.eom(self)

    def abort(self) -> int:
        self.record.aborted += 1
        return Milter.CONTINUE

    def close(self) -> int:
        self.record.closed += 1
        return Milter.CONTINUE


@dataclass
class Running:
    port: int
    record: Record
    server: MilterServer


@pytest.fixture
def running() -> Iterator[Running]:
    record = Record()
    factory = type("Bound", (Recording,), {"record": record})
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    loop = asyncio.new_event_loop()
    executor = ThreadPoolExecutor(2)
    server = MilterServer(loop, [listener.detach()], factory, executor, 2.0,
                          lambda: Milter.TEMPFAIL)
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    loop.call_soon(server.start)
    thread.start()
    try:
        yield Running(port, record, server)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        for sock in server.sockets:
            sock.close()
        executor.shutdown()
        loop.close()


class Mta:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.conn = miltertest.MilterConnection(self.sock)
        self.actions, self.protocol = self.conn.optneg_mta()

    def send(self, cmd: str, **kw: Any) -> None:
        self.sock.sendall(codec.encode_msg(cmd, **kw))

    def macro(self, stage: str, **values: str) -> None:
        self.send(C.SMFIC_MACRO, cmdcode=stage,
                  nameval=[x for item in values.items() for x in item])

    def message(self, rcpt: str = "<bob@example.net>", queue_id: str = "4QAB") -> None:
        """One message up to end of message; the stages negotiated as no-reply unanswered."""
        self.macro(C.SMFIC_MAIL, **{"{mail_addr}": "alice@example.org"})
        self.send(C.SMFIC_MAIL, args=["<alice@example.org>", "SIZE=100"])
        self.macro(C.SMFIC_RCPT, i=queue_id)
        assert self.conn.send_get(C.SMFIC_RCPT, args=[rcpt])[0] == C.SMFIR_CONTINUE
        assert self.conn.send_get(C.SMFIC_DATA)[0] == C.SMFIR_CONTINUE
        self.send(C.SMFIC_HEADER, name="Subject", value="hello\n\tthere")
        self.send(C.SMFIC_BODY, buf="line one\r\n")
        self.macro(C.SMFIC_BODYEOB, i=queue_id)
        self.send(C.SMFIC_BODYEOB)

    def replies(self) -> list[tuple[str, dict[str, Any]]]:
        out = []
        while True:
            reply = self.conn.recv()
            out.append(reply)
            if reply[0] in _VERDICTS:  # miltertest's list also ends at a quarantine
                return out

    def connect(self) -> None:
        self.macro(C.SMFIC_CONNECT, j="mx.example.net")
        self.send(C.SMFIC_CONNECT, hostname="client.example.org", family=C.SMFIA_INET,
                  port=40000, address="192.0.2.7")


def test_negotiation_takes_the_sessions_no_reply_steps(running: Running) -> None:
    mta = Mta(running.port)
    assert mta.actions == C.SMFI_V6_ACTS
    nr = Milter.P_NR_CONN | Milter.P_NR_MAIL | Milter.P_NR_HDR | Milter.P_NR_BODY
    assert mta.protocol & nr == nr
    assert not mta.protocol & Milter.P_NR_RCPT  # envrcpt answers
    assert mta.protocol & Milter.P_NOEOH  # no end-of-headers callback: not sent
    assert running.record.sessions == 1


def test_message_stages_macros_and_modifications(running: Running) -> None:
    def eom(session: Milter.Base) -> int:
        session.addheader("X-Spam", "yes")
        session.addheader("Authentication-Results", "mx; none", 0)
        session.chgheader("Subject", 1, "")
        session.quarantine("looks bad")
        return Milter.ACCEPT

    running.record.eom = eom
    mta = Mta(running.port)
    mta.connect()
    mta.message()
    replies = mta.replies()
    assert [r[0] for r in replies] == [C.SMFIR_ADDHEADER, C.SMFIR_INSHEADER,
                                       C.SMFIR_CHGHEADER, C.SMFIR_QUARANTINE, C.SMFIR_ACCEPT]
    assert replies[0][1] == {"name": "X-Spam", "value": "yes"}
    assert replies[1][1]["index"] == 0
    assert replies[2][1] == {"index": 1, "name": "Subject", "value": ""}
    seen = dict(running.record.seen)
    assert seen["connect"] == ("client.example.org", socket.AF_INET, ("192.0.2.7", 40000))
    assert seen["mail"] == ("<alice@example.org>", "SIZE=100")
    assert seen["header"] == ("Subject", b"hello\n\tthere")
    assert seen["body"] == b"line one\r\n"
    assert seen["macros"] == ("4QAB", "alice@example.org", "mx.example.net")


def test_a_refused_recipient_gets_its_own_reply(running: Running) -> None:
    mta = Mta(running.port)
    mta.connect()
    mta.macro(C.SMFIC_MAIL, **{"{mail_addr}": "alice@example.org"})
    mta.send(C.SMFIC_MAIL, args=["<alice@example.org>"])
    reply = mta.conn.send_get(C.SMFIC_RCPT, args=["<full@example.net>"])
    assert reply == (C.SMFIR_REPLYCODE, {"smtpcode": "452", "space": " ",
                                         "text": "4.2.2 Mailbox full"})
    assert mta.conn.send_get(C.SMFIC_RCPT, args=["<bob@example.net>"])[0] == C.SMFIR_CONTINUE


def test_multi_line_reject_and_the_next_message(running: Running) -> None:
    def eom(session: Milter.Base) -> int:
        session.setreply("550", "5.7.1", "Rejected as spam", "see https://example.net/why")
        return Milter.REJECT

    running.record.eom = eom
    mta = Mta(running.port)
    mta.connect()
    mta.message()
    [(cmd, fields)] = mta.replies()
    assert cmd == C.SMFIR_REPLYCODE
    assert fields["smtpcode"] + fields["space"] + fields["text"] == (
        "550-5.7.1 Rejected as spam\r\n550 5.7.1 see https://example.net/why")
    running.record.eom = lambda s: Milter.ACCEPT
    mta.message(queue_id="4QCD")
    assert [r[0] for r in mta.replies()] == [C.SMFIR_ACCEPT]
    assert running.record.seen[-1] == ("macros", ("4QCD", "alice@example.org",
                                                  "mx.example.net"))


def test_packets_split_anywhere_are_read_whole(running: Running) -> None:
    mta = Mta(running.port)
    wire = (codec.encode_msg(C.SMFIC_MACRO, cmdcode=C.SMFIC_CONNECT, nameval=["j", "mx"])
            + codec.encode_msg(C.SMFIC_CONNECT, hostname="h", family=C.SMFIA_INET6,
                               port=25, address="2001:db8::1")
            + codec.encode_msg(C.SMFIC_MAIL, args=["<a@b.example>"]))
    for byte in range(len(wire)):
        mta.sock.sendall(wire[byte : byte + 1])
        time.sleep(0.001)
    mta.macro(C.SMFIC_RCPT, i="Q1")
    assert mta.conn.send_get(C.SMFIC_RCPT, args=["<c@d.example>"])[0] == C.SMFIR_CONTINUE
    seen = dict(running.record.seen)
    assert seen["connect"] == ("h", socket.AF_INET6, ("2001:db8::1", 25, 0, 0))
    assert seen["mail"] == ("<a@b.example>",)


def test_a_failing_end_of_message_gets_the_fail_action(running: Running) -> None:
    def eom(session: Milter.Base) -> int:
        session.addheader("X-Half", "done")
        raise RuntimeError("boom")

    running.record.eom = eom
    mta = Mta(running.port)
    mta.connect()
    mta.message()
    assert [r[0] for r in mta.replies()] == [C.SMFIR_TEMPFAIL]  # no half-made changes


def test_a_failing_stage_without_reply_fails_its_message_only(running: Running) -> None:
    mta = Mta(running.port)
    mta.connect()
    mta.send(C.SMFIC_MAIL, args=["<alice@example.org>"])
    assert mta.conn.send_get(C.SMFIC_RCPT, args=["<bob@example.net>"])[0] == C.SMFIR_CONTINUE
    assert mta.conn.send_get(C.SMFIC_DATA)[0] == C.SMFIR_CONTINUE
    mta.send(C.SMFIC_HEADER, name="X-Break", value="x")  # no reply negotiated here
    mta.send(C.SMFIC_BODYEOB)
    assert [r[0] for r in mta.replies()] == [C.SMFIR_TEMPFAIL]
    mta.message()
    assert [r[0] for r in mta.replies()] == [C.SMFIR_ACCEPT]


def test_progress_goes_out_while_the_scan_runs(running: Running) -> None:
    def eom(session: Milter.Base) -> int:
        session.progress()
        time.sleep(0.3)
        return Milter.ACCEPT

    running.record.eom = eom
    mta = Mta(running.port)
    mta.connect()
    mta.message()
    first = mta.conn._recv()
    assert first[0] == C.SMFIR_PROGRESS
    assert mta.conn.recv()[0] == C.SMFIR_ACCEPT


def test_abort_quit_nc_and_a_new_session_on_the_same_connection(running: Running) -> None:
    mta = Mta(running.port)
    mta.connect()
    mta.macro(C.SMFIC_MAIL, **{"{mail_addr}": "x@example.org"})
    mta.send(C.SMFIC_MAIL, args=["<x@example.org>"])
    mta.send(C.SMFIC_ABORT)
    mta.send(C.SMFIC_QUIT_NC)
    mta.connect()
    mta.message()
    assert mta.replies()[-1][0] == C.SMFIR_ACCEPT
    assert running.record.aborted == 1
    assert running.record.sessions == 2 and running.record.closed == 1
    mta.send(C.SMFIC_QUIT)
    assert mta.sock.recv(1) == b""
    deadline = time.monotonic() + 5
    while running.record.closed < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert running.record.closed == 2


def test_a_dropped_connection_aborts_and_closes_the_session(running: Running) -> None:
    mta = Mta(running.port)
    mta.connect()
    mta.send(C.SMFIC_MAIL, args=["<x@example.org>"])
    mta.sock.close()
    deadline = time.monotonic() + 5
    while running.record.closed < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (running.record.aborted, running.record.closed) == (1, 1)


def test_an_idle_connection_is_closed_after_the_timeout(running: Running) -> None:
    mta = Mta(running.port)
    started = time.monotonic()
    assert mta.sock.recv(1) == b""  # the server's 2 s timeout, checked once a second
    assert 1.5 < time.monotonic() - started < 5
    assert running.record.closed == 1


def test_a_bad_length_closes_the_connection(running: Running) -> None:
    mta = Mta(running.port)
    mta.sock.sendall(b"\xff\xff\xff\xffX")
    assert mta.sock.recv(1) == b""


def test_reply_text_is_checked_as_libmilter_does() -> None:
    assert reply_text("451", "4.7.1", "Try later") == "451 4.7.1 Try later"
    assert reply_text("550", None, "No") == "550 No"
    for bad in (("250", "2.0.0", "ok"), ("55", None, "x"), ("550", "5.7", "x"),
                ("550", "5.7.1", "two\r\nlines")):
        with pytest.raises(milter.error):
            reply_text(*bad)
    with pytest.raises(milter.error):
        reply_text("550", "5.7.1", "a", *["b"] * 32)


def test_libmilter_stays_selectable(tmp_path: Path) -> None:
    """`[milter] transport = "libmilter"`: the same sessions through Sendmail's library."""
    daemon = Daemon(tmp_path, "[model]\nenabled = false\n", workers=1,
                    milter_options='transport = "libmilter"')
    daemon.start()
    try:
        session = MtaSession(daemon.port)
        try:
            ham = session.send(make_message(), queue_id="4QLIB1")
            spam = session.send(GTUBE, queue_id="4QLIB2")
        finally:
            session.close()
    finally:
        daemon.stop()
    assert ham.disposition == C.SMFIR_ACCEPT
    assert ham.added["X-Pyspamd-Queue-Id"] == "4QLIB1"
    assert spam.reply.startswith("554 5.7.1 Message rejected as spam")
