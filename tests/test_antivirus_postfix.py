"""The antivirus check end to end: a real Postfix, the pyspamd daemon and a real clamd."""

from __future__ import annotations

from collections.abc import Iterator
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path

import pytest
from support.clamd_server import (
    EICAR,
    EICAR_SIGNATURE,
    PORCUPINE_JUNK_SIGNATURE,
    PORCUPINE_JUNK_TEXT,
    SECURITEINFO_SPAM_SIGNATURE,
    SECURITEINFO_SPAM_TEXT,
    ClamdServer,
    start_clamd,
)
from support.mta import Daemon, running_daemon
from support.paths import REPO
from support.postfix import MAILBOX, Postfix, running_postfix

from pyspamd.checks.antivirus import HEADER


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[Postfix, Daemon, ClamdServer]]:
    workdir = tmp_path_factory.mktemp("av-e2e")
    clamd = start_clamd(workdir / "clamd")
    # No greylisting: the executable attachment alone scores enough for it. No banned-file
    # rules: they would refuse report.com whether clamd is up or not, and this is clamd's test.
    config = (f'[rules]\ndirs = ["{REPO / "rules"}"]\n[bayes]\nenabled = false\n'
              f'[fuzzy]\nenabled = false\n[greylist]\nenabled = false\n'
              f'[banned_files]\nenabled = false\n'
              f'[actions]\ngreylist = false\n'
              f'[antivirus]\nenabled = true\naddress = "{clamd.socket_path}"\n'
              f'timeout = 3.0\n')
    try:
        with running_daemon(workdir, config, workers=1) as daemon, \
                running_postfix(daemon.port) as postfix:
            yield postfix, daemon, clamd
    finally:
        clamd.stop()


def _message(subject: str, attachment: bytes | None = None, body: str = "") -> bytes:
    msg = EmailMessage()
    msg[HEADER] = "clean"  # forged by the sender: the milter removes it
    msg["From"] = "alice@example.org"
    msg["To"] = MAILBOX
    msg["Subject"] = subject
    msg["Date"] = formatdate()
    msg["Message-ID"] = f"<{subject.replace(' ', '.')}@example.org>"
    msg.set_content(body or "Hello Bob,\n\nthe report you asked for is attached.\n")
    if attachment is not None:
        msg.add_attachment(attachment, maintype="application", subtype="octet-stream",
                           filename="report.com")
    return msg.as_bytes()


def test_third_party_spam_signatures_are_delivered_scored_not_refused(
        stack: tuple[Postfix, Daemon, ClamdServer]) -> None:
    postfix, _, _ = stack
    postfix.clear_mailbox()
    for text in (SECURITEINFO_SPAM_TEXT, PORCUPINE_JUNK_TEXT):
        code, reply = postfix.send(_message(f"offer {text[:12].decode()}",
                                            body=f"See {text.decode()} today.\n"))
        assert code == 250, reply
    delivered = postfix.wait_delivered(2)
    results = " ".join(m["X-Spamd-Result"] for m in delivered)
    assert f"CLAM_SPAM(6.00)[{SECURITEINFO_SPAM_SIGNATURE}]" in results
    assert f"CLAM_SPAM(6.00)[{PORCUPINE_JUNK_SIGNATURE}]" in results
    assert "CLAM_VIRUS" not in results


def test_eicar_refused_with_the_signature_name_then_clamd_down_delivers_with_header(
        stack: tuple[Postfix, Daemon, ClamdServer]) -> None:
    postfix, daemon, clamd = stack
    postfix.clear_mailbox()
    code, reply = postfix.send(_message("with virus", EICAR))
    assert code == 554, reply
    assert reply.startswith("5.7.1 ") and EICAR_SIGNATURE in reply
    code, _ = postfix.send(_message("clean while up"))
    assert code == 250
    (clean,) = postfix.wait_delivered(1)
    assert clean[HEADER] is None and "CLAM_" not in clean["X-Spamd-Result"]

    clamd.stop()  # mid-test: the next message must still arrive, marked unchecked
    postfix.clear_mailbox()
    code, _ = postfix.send(_message("while down", EICAR))
    assert code == 250
    (message,) = postfix.wait_delivered(1)
    assert message["Subject"] == "while down"
    assert message[HEADER].startswith("failed (down)")
    assert "CLAM_FAIL" in message["X-Spamd-Result"]
    log = Path(daemon.log_path).read_text()
    assert log.count("antivirus check failed") == 1
