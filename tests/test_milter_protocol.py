"""The milter daemon over the real milter protocol, playing the MTA's side (no Postfix here;
tests/test_postfix_e2e.py has the real one)."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from miltertest import constants as C
from support.messages import make_message
from support.mta import Daemon, MtaSession, running_daemon
from support.paths import CORPUS

GTUBE = (CORPUS / "malformed" / "gtube.eml").read_bytes()
TEST_RULES = """
body GREY_ME /greylist-me-please/
score GREY_ME 4.5
body SOFT_ME /soft-reject-me-please/
score SOFT_ME 12
body SUBJ_ME /rewrite-my-subject/
score SUBJ_ME 9
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    workdir = tmp_path_factory.mktemp("milter")
    rules = workdir / "rules"
    rules.mkdir()
    (rules / "test.rules").write_text(TEST_RULES)
    shipped = Path(__file__).resolve().parent.parent / "rules"
    # The actions are reached by the test rules' exact scores: no content model vote.
    config = (f'[rules]\ndirs = ["{shipped}", "{rules}"]\n[model]\nenabled = false\n'
              "[actions]\nsoft_reject = 11.0\nrewrite_subject = 8.0\n"
              'subject_template = "[SPAM] %s"\n')
    with running_daemon(workdir, config) as d:
        yield d


def _send(daemon: Daemon, raw: bytes, **kw: object) -> object:
    session = MtaSession(daemon.port)
    try:
        return session.send(raw, **kw)  # type: ignore[arg-type]
    finally:
        session.close()


def test_ham_is_accepted_with_result_headers(daemon: Daemon) -> None:
    result = _send(daemon, make_message(), queue_id="4QHAM1")
    assert result.disposition == C.SMFIR_ACCEPT  # type: ignore[attr-defined]
    added = result.added  # type: ignore[attr-defined]
    assert added["X-Spamd-Result"].startswith("default: False [")
    # MIME_GOOD's score is fitted (rules/95_fitted_scores.rules): small and negative.
    assert re.search(r"\n\tMIME_GOOD\(-0\.\d\d\)\[text/plain\]", added["X-Spamd-Result"])
    assert added["X-Spam-Flag"] == "NO"
    assert added["X-Spam-Status"].startswith("No, score=")
    assert added["X-Pyspamd-Queue-Id"] == "4QHAM1"
    assert added["X-Pyspamd-Server"]
    assert "qid: 4QHAM1, ip: 192.0.2.1, from: <alice@example.org>" in daemon.log()


def test_gtube_is_rejected_with_a_reason(daemon: Daemon) -> None:
    result = _send(daemon, GTUBE)
    assert result.disposition == C.SMFIR_REPLYCODE or "554" in result.reply  # type: ignore
    assert result.reply.startswith("554 5.7.1 Message rejected as spam")  # type: ignore
    assert "GTUBE" in result.reply  # type: ignore[attr-defined]


@pytest.mark.parametrize(("body", "reply"), [
    ("greylist-me-please\n", "451 4.7.1 Greylisted, please try again later"),
    ("soft-reject-me-please\n", "451 4.7.1 Try again later: message looks like spam (SOFT_ME"),
])
def test_tempfail_actions(daemon: Daemon, body: str, reply: str) -> None:
    result = _send(daemon, make_message(body=body))
    assert result.reply.startswith(reply)  # type: ignore[attr-defined]


def test_rewrite_subject(daemon: Daemon) -> None:
    raw = make_message({"Subject": "Cheap stuff"}, "rewrite-my-subject\n")
    result = _send(daemon, raw)
    assert ("Subject", 1, "[SPAM] Cheap stuff") in result.changed  # type: ignore[attr-defined]
    assert result.added["X-Spam-Flag"] == "YES"  # type: ignore[attr-defined]


def test_forged_verdict_headers_are_removed(daemon: Daemon) -> None:
    raw = make_message([("X-Spam-Flag", "NO"), ("X-Spamd-Result", "default: False [-99]"),
                        ("X-Spam-Flag", "NO")], "greylist? no. ok\n")
    result = _send(daemon, raw)
    changed = result.changed  # type: ignore[attr-defined]
    assert ("X-Spam-Flag", 2, "") in changed and ("X-Spam-Flag", 1, "") in changed
    assert ("X-Spamd-Result", 1, "") in changed
    assert changed.index(("X-Spam-Flag", 2, "")) < changed.index(("X-Spam-Flag", 1, ""))


def test_actions_the_mta_did_not_offer_are_left_out(daemon: Daemon) -> None:
    """An MTA that offers adding headers only: no header change is asked of it, and the
    verdict stands (pymilter would otherwise answer its own 451 for the change)."""
    session = MtaSession(daemon.port, actions=C.SMFIF_ADDHDRS)
    try:
        forged = b"X-Spam-Flag: NO\r\n" + GTUBE
        spam = session.send(forged, queue_id="4QNOCHG1")
        ham = session.send(make_message([("X-Spam-Flag", "NO")], "plain words\n"),
                           queue_id="4QNOCHG2")
    finally:
        session.close()
    assert spam.reply.startswith("554 5.7.1 "), spam.replies
    assert ham.disposition == C.SMFIR_ACCEPT and not ham.changed
    assert ham.added["X-Spam-Flag"] == "NO"
    assert "4QNOCHG1: the MTA did not offer these actions, left out: header changes " \
        "(no SMFIF_CHGHDRS): X-Spam-Flag" in daemon.log()


def test_several_messages_on_one_connection(daemon: Daemon) -> None:
    session = MtaSession(daemon.port)
    try:
        first = session.send(make_message(), queue_id="4QM1", rcpts=("one@example.net",))
        second = session.send(GTUBE, queue_id="4QM2", rcpts=("two@example.net",))
        third = session.send(make_message(), queue_id="4QM3", rcpts=("three@example.net",))
    finally:
        session.close()
    assert first.disposition == C.SMFIR_ACCEPT and third.disposition == C.SMFIR_ACCEPT
    assert second.reply.startswith("554")
    assert third.added["X-Pyspamd-Queue-Id"] == "4QM3"
    log = daemon.log()
    assert "qid: 4QM3, ip: 192.0.2.1, from: <alice@example.org>, rcpts: <three@example.net>," \
        in log  # per-message state was reset: no rcpts of earlier messages


def test_authenticated_sender_is_not_scanned(daemon: Daemon) -> None:
    result = _send(daemon, GTUBE, user="alice")
    assert result.disposition == C.SMFIR_ACCEPT  # type: ignore[attr-defined]
    assert result.added["X-Pyspamd-Scan"] == "skipped; authenticated sender"  # type: ignore


def test_oversized_message_is_accepted_unscanned(tmp_path: Path) -> None:
    with running_daemon(tmp_path, "max_size = 5000\n", workers=1) as daemon:
        raw = make_message(body="XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL"
                                "*C.34X\n" + "filler line\n" * 1000)
        result = _send(daemon, raw)
    assert result.disposition == C.SMFIR_ACCEPT  # type: ignore[attr-defined]
    assert result.added["X-Pyspamd-Scan"].startswith(  # type: ignore[attr-defined]
        "skipped; message size ")


def test_both_workers_serve(daemon: Daemon) -> None:
    assert len(daemon.worker_pids()) == 2
    # Held open at once: a worker with more open sessions than the other stops accepting.
    sessions = []
    try:
        for index in range(6):
            sessions.append(MtaSession(daemon.port))
            time.sleep(0.05)  # lets the balance check see the new session
            sessions[-1].send(make_message(), queue_id=f"4QW{index}")
    finally:
        for session in sessions:
            session.close()
    pids = {line.split("pyspamd[")[1].split("]")[0]
            for line in daemon.log().splitlines() if "qid: 4QW" in line}
    assert len(pids) == 2, pids


def test_killed_worker_is_replaced(daemon: Daemon) -> None:
    before = daemon.worker_pids()
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        now = daemon.worker_pids()
        if victim not in now and len(now) == 2:
            break
        time.sleep(0.1)
    assert victim not in now and len(now) == 2
    assert f"worker {victim} died (signal SIGKILL)" in daemon.log()
    assert _send(daemon, make_message()).disposition == C.SMFIR_ACCEPT  # type: ignore


def test_sighup_reload_good_and_bad(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "local.rules").write_text("body RELOADED /reload-marker/\nscore RELOADED 0.5\n")
    with running_daemon(tmp_path, f'[rules]\ndirs = ["{rules}"]\n', workers=1) as daemon:
        raw = make_message(body="reload-marker\n")
        assert "RELOADED(0.50)" in _send(daemon, raw).added["X-Spamd-Result"]  # type: ignore
        (rules / "local.rules").write_text("body RELOADED /reload-marker/\nscore RELOADED 2.5\n")
        assert daemon.proc is not None
        os.kill(daemon.proc.pid, signal.SIGHUP)
        _wait_for(lambda: "RELOADED(2.50)" in _send(daemon, raw).added["X-Spamd-Result"])
        (rules / "local.rules").write_text("body BROKEN /(/\n")
        os.kill(daemon.proc.pid, signal.SIGHUP)
        _wait_for(lambda: "new config refused" in daemon.log())
        assert "RELOADED(2.50)" in _send(daemon, raw).added["X-Spamd-Result"]  # type: ignore


def test_sigterm_stops_everything(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path, workers=2)
    daemon.start()
    workers = daemon.worker_pids()
    started = time.monotonic()
    code = daemon.stop(timeout=30)
    assert code == 0, daemon.log()
    assert time.monotonic() - started < 20
    assert all(not Path(f"/proc/{pid}").exists() for pid in workers)


def test_bad_rules_do_not_start_the_daemon(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "bad.rules").write_text("body OK /fine/\nbody BAD /(/\n")
    daemon = Daemon(tmp_path, f'[rules]\ndirs = ["{rules}"]\n')
    with pytest.raises(RuntimeError) as info:
        daemon.start()
    output = str(info.value)
    assert "exited with status 1" in output
    assert f"{rules / 'bad.rules'}:2: BAD: bad regex" in output
    assert "pyspamd not started" in output


def _wait_for(condition: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def test_unix_socket_listener_with_mode_and_group(tmp_path: Path) -> None:
    import grp
    import stat
    import subprocess
    import sys

    sock = tmp_path / "milter.sock"
    group = grp.getgrgid(os.getgid()).gr_name
    config = tmp_path / "pyspamd.toml"
    config.write_text(f'[milter]\nlisten = ["unix:{sock}"]\nworkers = 1\n'
                      f'socket_mode = "0660"\nsocket_group = "{group}"\n')
    proc = subprocess.Popen([sys.executable, "-m", "pyspamd.cli.pyspamd", "--config",
                             str(config)], start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
    try:
        _wait_for(sock.exists)
        mode = sock.stat()
        assert stat.S_IMODE(mode.st_mode) == 0o660 and mode.st_gid == os.getgid()
        time.sleep(0.3)
        session = MtaSession(0, unix_path=str(sock))
        try:
            result = session.send(make_message())
        finally:
            session.close()
        assert result.disposition == C.SMFIR_ACCEPT
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(30)
    assert not sock.exists()  # removed on shutdown
