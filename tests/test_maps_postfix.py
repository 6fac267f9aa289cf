"""The admin notes' header_checks line through a real Postfix and a real pyspamd daemon."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path

import pytest
from support.messages import make_message
from support.mta import Daemon, running_daemon
from support.paths import REPO
from support.postfix import MAILBOX, Postfix, running_postfix

pytestmark = pytest.mark.postfix

# Thresholds raised tenfold, as in test_postfix_e2e: loopback SMTP alone must not decide.
CONFIG = """
[actions]
greylist = 40.0
add_header = 60.0
reject = 150.0
[[maps]]
name = "header_checks"
type = "regexp"
match = "headers"
file = "{file}"
symbol = "POSTFIX_HEADER_CHECKS"
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Postfix, Daemon, Path]]:
    workdir = tmp_path_factory.mktemp("maps-e2e")
    checks = workdir / "header_checks"
    checks.write_text('/adsgreece\\.com/ REJECT "Plz stop sending SPAM id=8"\n')
    config = f'[rules]\ndirs = ["{REPO / "rules"}"]\n' + CONFIG.format(file=checks)
    with running_daemon(workdir, config, workers=2) as daemon, \
            running_postfix(daemon.port) as postfix:
        yield postfix, daemon, checks




def _message(sender: str, subject: str = "Offers") -> bytes:
    return make_message([("To", MAILBOX), ("From", sender), ("Subject", subject),
                         ("Date", formatdate())], "hello\n")


def test_header_checks_line_rejects_with_its_text(stack: tuple[Postfix, Daemon, Path]) -> None:
    postfix, _, _ = stack
    postfix.clear_mailbox()
    code, reply = postfix.send(_message("Deals <deals@adsgreece.com>"))
    assert code == 554
    assert reply == '5.7.1 "Plz stop sending SPAM id=8"'
    assert 'milter-reject: END-OF-MESSAGE' in postfix.log()
    code, _ = postfix.send(_message("Alice <alice@example.org>"))
    assert code == 250
    assert len(postfix.wait_delivered(1)) == 1


def test_edited_file_is_used_without_restart_and_bad_edit_keeps_old(
        stack: tuple[Postfix, Daemon, Path]) -> None:
    postfix, daemon, checks = stack
    postfix.clear_mailbox()
    checks.write_text('/adsgreece\\.com/ REJECT "Plz stop sending SPAM id=8"\n'
                      "/^Subject:.*newsletter-9/ DISCARD\n"
                      "/^From:.*@spamhouse\\.test/ 550 5.7.1 Go away\n")
    os.utime(checks, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    code, reply = postfix.send(_message("x <x@spamhouse.test>"))
    assert (code, reply) == (554, "5.7.1 Go away")
    code, _ = postfix.send(_message("x <x@example.org>", subject="newsletter-9"))
    assert code == 250  # discarded: accepted, never delivered
    # An edit with a broken line is refused as a whole: the old rules stay in force.
    checks.write_text("/^From:.*@spamhouse\\.test/ REJECT\n/(broken/ REJECT\n")
    os.utime(checks, ns=(time.time_ns(), time.time_ns() + 2_000_000))
    code, reply = postfix.send(_message("Deals <deals@adsgreece.com>"))
    assert code == 554 and "Plz stop sending SPAM id=8" in reply
    time.sleep(0.3)
    assert f"{checks}:2: bad regular expression" in daemon.log()
    assert "reload refused" in daemon.log()
    code, _ = postfix.send(_message("a <a@example.org>", subject="after"))
    assert code == 250
    postfix.wait_delivered(1)
    time.sleep(0.5)
    # The discarded newsletter, sent first, never arrived.
    assert [m["Subject"] for m in postfix.delivered()] == ["after"]
