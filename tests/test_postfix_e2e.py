"""End to end with a real Postfix (Debian's package) and a real pyspamd daemon, over SMTP.

Thresholds are raised tenfold here so that what loopback SMTP itself looks like (a bare-IP
HELO, no reverse DNS) cannot push a test message into another action: each test message
carries one marker rule that decides its action.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path

import aiosmtplib
import pytest
from support.messages import make_message
from support.mta import Daemon, running_daemon
from support.paths import CORPUS, REPO
from support.postfix import MAILBOX, Postfix, running_postfix

from pyspamd.sources import iter_messages

pytestmark = pytest.mark.postfix

MARKER_RULES = """
body GREY_ME /greylist-me-please/
score GREY_ME 45
body SUBJ_ME /rewrite-my-subject/
score SUBJ_ME 85
"""
CONFIG = """
[actions]
greylist = 40.0
add_header = 60.0
rewrite_subject = 80.0
reject = 150.0
subject_template = "***SPAM*** %s"
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Postfix, Daemon]]:
    workdir = tmp_path_factory.mktemp("e2e")
    rules = workdir / "rules"
    rules.mkdir()
    (rules / "markers.rules").write_text(MARKER_RULES)
    config = f'[rules]\ndirs = ["{REPO / "rules"}", "{rules}"]\n' + CONFIG
    with running_daemon(workdir, config, workers=2) as daemon, \
            running_postfix(daemon.port) as postfix:
        yield postfix, daemon


def _message(subject: str = "Lunch", body: str = "see you at noon\n",
             extra: list[tuple[str, str]] | None = None) -> bytes:
    return make_message([("To", MAILBOX), ("Subject", subject), ("Date", formatdate()),
                         *(extra or [])], body)




def test_ham_arrives_with_verdict_headers(stack: tuple[Postfix, Daemon]) -> None:
    postfix, _ = stack
    postfix.clear_mailbox()
    code, _ = postfix.send(_message(extra=[("X-Spam-Flag", "YES"),
                                             ("X-Spamd-Result", "forged")]))
    assert code == 250
    (message,) = postfix.wait_delivered(1)
    assert message["X-Spamd-Result"].startswith("default: False [")
    assert message.get_all("X-Spam-Flag") == ["NO"]  # the forged one is gone
    assert message.get_all("X-Spamd-Result") and len(message.get_all("X-Spamd-Result")) == 1
    # submitted over loopback (libmilter names the client "[127.0.0.1]"): our own user,
    # whose host name and HELO are not judged
    for symbol in ("RDNS_NONE", "RDNS_DYNAMIC", "HELO_BARE_IP", "DIRECT_FROM_DYNAMIC"):
        assert symbol not in message["X-Spamd-Result"]
    queue_id = message["X-Pyspamd-Queue-Id"]
    assert queue_id and f"{queue_id}: to=<{MAILBOX}>" in postfix.log()


def test_gtube_is_refused_at_end_of_data(stack: tuple[Postfix, Daemon]) -> None:
    postfix, _ = stack
    raw = (CORPUS / "malformed" / "gtube.eml").read_bytes()
    code, reply = postfix.send(raw)
    assert code == 554
    assert reply.startswith("5.7.1 Message rejected as spam") and "GTUBE" in reply
    assert "milter-reject: END-OF-MESSAGE" in postfix.log()


def test_greylist_score_gets_451(stack: tuple[Postfix, Daemon]) -> None:
    postfix, _ = stack
    code, reply = postfix.send(_message(body="greylist-me-please\n"))
    assert code == 451
    assert reply.startswith("4.7.1 Greylisted, please try again later")


def test_rewrite_subject(stack: tuple[Postfix, Daemon]) -> None:
    postfix, _ = stack
    postfix.clear_mailbox()
    code, _ = postfix.send(_message(subject="Cheap meds", body="rewrite-my-subject\n"))
    assert code == 250
    (message,) = postfix.wait_delivered(1)
    assert message["Subject"] == "***SPAM*** Cheap meds"
    assert message["X-Spam-Flag"] == "YES"


def test_two_messages_on_one_smtp_connection(stack: tuple[Postfix, Daemon]) -> None:
    postfix, _ = stack
    postfix.clear_mailbox()

    async def go() -> list[int]:
        codes = []
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=postfix.smtp_port) as smtp:
            for raw in (_message(subject="one"), (CORPUS / "malformed" / "gtube.eml")
                        .read_bytes(), _message(subject="three")):
                try:
                    await smtp.sendmail("alice@example.org", [MAILBOX], raw)
                    codes.append(250)
                except aiosmtplib.SMTPResponseException as exc:
                    codes.append(exc.code)
                    await smtp.rset()
        return codes

    assert asyncio.run(go()) == [250, 554, 250]
    subjects = sorted(m["Subject"] for m in postfix.wait_delivered(2))
    assert subjects == ["one", "three"]


def _load_messages(total: int) -> list[bytes]:
    """The repo corpus (ham and spam) cycled to `total`, each numbered in X-Load-Seq."""
    sources = [s.data for s in iter_messages([str(CORPUS / "ham"), str(CORPUS / "spam")])
               if s.data]
    out = []
    for seq in range(total):
        head, _, body = sources[seq % len(sources)].partition(b"\n\n")
        keep = [line for line in head.split(b"\n")
                if not line.lower().startswith((b"to:", b"cc:", b"date:", b"x-load-seq:"))]
        keep += [f"To: {MAILBOX}".encode(), f"Date: {formatdate()}".encode(),
                 f"X-Load-Seq: {seq}".encode()]
        out.append(b"\n".join(keep) + b"\n\n" + body)
    return out


def test_worker_killed_under_load_loses_nothing(stack: tuple[Postfix, Daemon]) -> None:
    # The test: SIGKILL workers during a load of 2,000 messages over 4 SMTP
    # connections. Every message must be delivered or refused with a code the sender saw.
    postfix, daemon = stack
    postfix.clear_mailbox()
    messages = _load_messages(2000)
    accepted: set[int] = set()
    refused: dict[int, int] = {}

    async def sender(index: int) -> None:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=postfix.smtp_port,
                                   timeout=120) as smtp:
            for seq in range(index, len(messages), 4):
                try:
                    await smtp.sendmail("alice@example.org", [MAILBOX], messages[seq])
                    accepted.add(seq)
                except aiosmtplib.SMTPResponseException as exc:
                    refused[seq] = exc.code
                    await smtp.rset()

    async def load() -> list[int]:
        senders = [asyncio.create_task(sender(i)) for i in range(4)]
        victims = []
        for share in (0.25, 0.6):  # the second kill hits a worker started after the first
            while len(accepted) + len(refused) < len(messages) * share:
                await asyncio.sleep(0.01)
            victim = max(daemon.worker_pids())
            os.kill(victim, signal.SIGKILL)
            victims.append(victim)
        await asyncio.gather(*senders)
        return victims

    victims = asyncio.run(load())
    assert len(accepted) + len(refused) == len(messages)
    assert all(400 <= code < 600 for code in refused.values())  # each refusal was seen
    delivered = postfix.wait_delivered(len(accepted), timeout=300)
    arrived = [int(m["X-Load-Seq"]) for m in delivered]
    assert sorted(arrived) == sorted(accepted)  # nothing accepted lost, nothing twice
    log = daemon.log()
    for victim in victims:
        assert f"worker {victim} died (signal SIGKILL)" in log


def test_milter_down_applies_postfix_default_action(tmp_path: Path) -> None:
    # Nothing listens on the milter port: milter_default_action = accept delivers unscanned.
    from support.mta import free_port

    with running_postfix(free_port(), default_action="accept") as postfix:
        code, _ = postfix.send(_message(subject="unscanned"))
        assert code == 250
        (message,) = postfix.wait_delivered(1)
        assert message["X-Spamd-Result"] is None
        assert "connect to milter service" in postfix.log().lower()
    with running_postfix(free_port(), default_action="tempfail") as postfix:
        code, _ = postfix.send(_message(subject="deferred"))
        assert code == 451
