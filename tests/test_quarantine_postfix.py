"""Banned files and pyspamd's quarantine through a real Postfix and a real pyspamd daemon:
a banned attachment refused naming the file, a message of the quarantine score band held
(not delivered), listed and released by pyspamc, and delivered with its original envelope;
a forged release header frees nothing; a full quarantine falls back to Postfix's hold queue.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path

import pytest
from support.controller_proc import Reply, call, eventually
from support.messages import attachment_message, make_message
from support.mta import Daemon, running_daemon
from support.paths import REPO
from support.ports import free_port
from support.postfix import MAILBOX, Postfix, running_postfix

from pyspamd.controller.auth import make_hash

pytestmark = pytest.mark.postfix

MARKER_RULES = """
body HOLD_ME /quarantine-me-please/
score HOLD_ME 100
"""
# Tenfold thresholds, as in test_postfix_e2e: loopback SMTP's own symbols decide nothing.
CONFIG = """
[actions]
greylist = 40.0
add_header = 60.0
quarantine = 90.0
reject = 150.0
"""
MAX_SIZE = 40_000  # room for the small test messages, not for the big one
PASSWORD = "quarantine keeper"


@dataclass
class Stack:
    postfix: Postfix
    daemon: Daemon
    pyspamc_config: Path
    quarantine: Path
    controller_port: int

    def api(self, method: str, path: str, password: str | None = PASSWORD) -> Reply:
        return call(self.controller_port, method, path,
                    headers={"Password": password} if password else {})

    def pyspamc(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pyspamd.cli.pyspamc", "--config", str(self.pyspamc_config),
             *args], capture_output=True, text=True, timeout=60, check=False,
            env={**os.environ, "PYTHONPATH": str(REPO)})

    def held(self) -> list[dict[str, object]]:
        done = self.pyspamc("--json", "quarantine", "list")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("quarantine")
    rules = workdir / "rules"
    rules.mkdir()
    (rules / "markers.rules").write_text(MARKER_RULES)
    quarantine = workdir / "held"
    port = free_port()
    section = (f'[quarantine]\ndir = "{quarantine}"\nmax_size = {MAX_SIZE}\n'
               f'[controller]\nlisten = "127.0.0.1:{port}"\nsecure_ip = []\n'
               f'enable_password = "{make_hash(PASSWORD)}"\n'
               f'[storage]\npath = "{workdir / "store.sqlite"}"\n')
    config = f'[rules]\ndirs = ["{REPO / "rules"}", "{rules}"]\n' + CONFIG + section
    with running_daemon(workdir, config, workers=1) as daemon, \
            running_postfix(daemon.port) as postfix:
        # pyspamc reads the daemon's file, and local.d/ beside it: the SMTP port is known now.
        (workdir / "local.d").mkdir()
        (workdir / "local.d" / "release.toml").write_text(
            f'[quarantine]\nrelease_smtp = "127.0.0.1:{postfix.smtp_port}"\n')
        stack = Stack(postfix, daemon, workdir / "pyspamd.toml", quarantine, port)
        assert daemon.proc is not None
        os.kill(daemon.proc.pid, signal.SIGHUP)  # the controller reads local.d/ too

        def reloaded() -> bool:
            answer = stack.api("GET", "/config")
            return answer.status == 200 and answer.json()["quarantine"]["release_smtp"] \
                == f"127.0.0.1:{postfix.smtp_port}"

        assert eventually(reloaded, timeout=30)
        yield stack


def _message(body: str, extra: list[tuple[str, str]] | None = None) -> bytes:
    return make_message([("To", MAILBOX), ("Subject", "Quarterly numbers"),
                         ("Date", formatdate()), *(extra or [])], body)


def _delivered_after(postfix: Postfix, seconds: float) -> int:
    time.sleep(seconds)
    return len(postfix.delivered())


def test_banned_attachment_is_refused_naming_the_file(stack: Stack) -> None:
    raw = attachment_message("invoice.pdf.exe", b"MZ\x90\x00" + b"\0" * 400,
                             "application/pdf")
    code, reply = stack.postfix.send(raw)
    assert (code, reply) == (554, "5.7.1 banned attachment: invoice.pdf.exe")
    assert "milter-reject: END-OF-MESSAGE" in stack.postfix.log()


def test_quarantine_band_is_held_listed_released_and_delivered(stack: Stack) -> None:
    postfix = stack.postfix
    postfix.clear_mailbox()
    sender = "carol@example.org"
    code, _ = postfix.send(_message("quarantine-me-please\n"), sender=sender)
    assert code == 250  # accepted from the client, then discarded by the milter
    assert _delivered_after(postfix, 1.0) == 0
    (entry,) = [e for e in stack.held() if e["sender"] == sender]
    assert entry["rcpts"] == [MAILBOX]
    assert entry["action"] == "quarantine" and entry["score"] >= 90
    assert "HOLD_ME" in entry["symbols"]  # type: ignore[operator]
    assert entry["reason"].startswith("Quarantined as spam (score ")  # type: ignore[union-attr]
    message_file = stack.quarantine / "messages" / f"{entry['id']}.eml"
    assert b"quarantine-me-please" in message_file.read_bytes()
    assert f"quarantined as {entry['id']}" in stack.daemon.log()

    done = stack.pyspamc("quarantine", "release", "--learn-ham", str(entry["id"]))
    assert done.returncode == 0, done.stderr
    (message,) = postfix.wait_delivered(1)
    assert message["Return-Path"] == f"<{sender}>"  # the original envelope sender
    assert message["Delivered-To"] == MAILBOX
    assert message["X-Pyspamd-Release"].startswith(f"id={entry['id']}; ")
    assert message["X-Spam-Flag"] == "YES"  # its score is over add_header: said, not held
    assert message["X-Pyspamd-Quarantine"] is None
    assert not message_file.exists()
    assert f"{entry['id']} released by " in stack.daemon.log()  # pyspamc logs it there
    (released,) = [e for e in json.loads(stack.pyspamc("--json", "quarantine", "list",
                                                       "--all").stdout)
                   if e["id"] == entry["id"]]
    assert released["status"] == "released" and released["released_by"]
    again = stack.pyspamc("quarantine", "release", str(entry["id"]))
    assert again.returncode != 0 and "released already" in again.stderr
    assert "BAYES_HAM type: sqlite3; learned: 1;" in stack.pyspamc("stat").stdout
    assert f"{entry['id']} learned as ham: learned" in stack.daemon.log()


def test_forged_release_header_frees_nothing(stack: Stack) -> None:
    postfix = stack.postfix
    postfix.clear_mailbox()
    forged = ("id=20260101-000000-0123456789; t=" + str(int(time.time()))
              + "; by=root; sig=" + "0" * 64)
    code, _ = postfix.send(_message("quarantine-me-please\n",
                                    [("X-Pyspamd-Release", forged)]), sender="mallory@example.org")
    assert code == 250
    assert _delivered_after(postfix, 1.0) == 0
    assert [e for e in stack.held() if e["sender"] == "mallory@example.org"]


def test_full_quarantine_falls_back_to_the_hold_queue(stack: Stack) -> None:
    big = "quarantine-me-please\n" + "filler line of the big report\n" * 2000
    code, _ = stack.postfix.send(_message(big), sender="dave@example.org")
    assert code == 250
    assert not [e for e in stack.held() if e["sender"] == "dave@example.org"]
    log = stack.daemon.log()
    assert "not quarantined, fallback_action=hold: quarantine full" in log
    hold = stack.postfix.root / "queue" / "hold"
    deadline = time.monotonic() + 10
    while not any(hold.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "milter-hold: END-OF-MESSAGE" in stack.postfix.log()
    (held,) = list(hold.iterdir())
    assert b"dave@example.org" in held.read_bytes()


def test_controller_lists_releases_and_deletes(stack: Stack) -> None:
    postfix = stack.postfix
    postfix.clear_mailbox()
    for sender in ("erin@example.org", "frank@example.org"):
        assert postfix.send(_message("quarantine-me-please\n"), sender=sender)[0] == 250
    assert stack.api("GET", "/quarantine", password=None).status == 401
    listing = stack.api("GET", "/quarantine")
    assert listing.status == 200
    ids = {m["sender"]: m["id"] for m in listing.json()["messages"]}
    erin, frank = ids["erin@example.org"], ids["frank@example.org"]
    shown = stack.api("GET", f"/quarantine/{erin}?raw=1")
    assert shown.status == 200 and b"quarantine-me-please" in shown.body
    assert stack.api("POST", f"/quarantine/{erin}/release", password=None).status == 401
    released = stack.api("POST", f"/quarantine/{erin}/release")
    assert released.status == 200, released.body
    assert released.json()["released_by"] == "controller 127.0.0.1"
    (message,) = postfix.wait_delivered(1)
    assert message["Return-Path"] == "<erin@example.org>"
    assert stack.api("POST", f"/quarantine/{erin}/release").status == 409
    assert stack.api("POST", f"/quarantine/{frank}/delete").status == 200
    assert not (stack.quarantine / "messages" / f"{frank}.eml").exists()
    left = {m["id"] for m in stack.api("GET", "/quarantine").json()["messages"]}
    assert erin not in left and frank not in left
    assert stack.api("GET", "/quarantine/../../etc/passwd").status == 404
    assert f"{erin} released by controller 127.0.0.1" in stack.daemon.log()
    assert f"{frank} deleted by controller 127.0.0.1" in stack.daemon.log()


def test_controller_release_learns_as_ham_as_the_learn_endpoint_does(stack: Stack) -> None:
    """`?learn=ham` goes through the controller's one learn path: counted in /stat's learns
    (and so refitted and vector-kept) like POST /learnham, not learned on the side."""
    stack.postfix.clear_mailbox()
    sender = "grace@example.org"
    assert stack.postfix.send(_message("quarantine-me-please grace\n"), sender=sender)[0] == 250
    held = {m["sender"]: m["id"] for m in stack.api("GET", "/quarantine").json()["messages"]}

    def ham_learned() -> int:
        return int(stack.api("GET", "/stat").json()["learns"].get("ham:learned", 0))

    before = ham_learned()
    released = stack.api("POST", f"/quarantine/{held[sender]}/release?learn=ham")
    assert released.status == 200, released.body
    stack.postfix.wait_delivered(1)
    assert ham_learned() == before + 1
