"""Greylisting as a real sending MTA sees it: a second Postfix (the sender's) relays to the
Postfix with pyspamd, gets 451, keeps the message in its deferred queue, and delivers it
when it retries after the greylist delay."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from email.utils import formatdate

import pytest
from support.greylisting import CONFIG, DELAY
from support.messages import make_message
from support.mta import Daemon, running_daemon
from support.paths import REPO
from support.postfix import MAILBOX, Postfix, running_postfix, sending_postfix

pytestmark = pytest.mark.postfix


@pytest.fixture(scope="module")
def relay_stack(tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[tuple[Postfix, Postfix, Daemon]]:
    if shutil.which("postfix") is None:
        pytest.fail("postfix is not installed: .ci/run installs it")
    workdir = tmp_path_factory.mktemp("grey-relay")
    rules = workdir / "rules"
    rules.mkdir()
    (rules / "markers.rules").write_text("body GREY_ME /greylist-me-please/\nscore GREY_ME 45\n")
    config = (f'[rules]\ndirs = ["{REPO / "rules"}", "{rules}"]\n'
              + CONFIG.format(store=workdir / "store.sqlite", delay=DELAY))
    with running_daemon(workdir, config, workers=2) as daemon, \
            running_postfix(daemon.port) as receiver, \
            sending_postfix(receiver.smtp_port) as sender:
        yield sender, receiver, daemon


def _queue(sender: Postfix) -> str:
    return subprocess.run(["postqueue", "-c", str(sender.conf), "-p"], capture_output=True,
                          text=True, check=False, timeout=30).stdout


def _wait(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_sender_queue_defers_then_delivers_after_the_delay(
        relay_stack: tuple[Postfix, Postfix, Daemon]) -> None:
    sender, receiver, _ = relay_stack
    receiver.clear_mailbox()
    raw = make_message([("To", MAILBOX), ("Subject", "relayed grey"), ("Date", formatdate())],
                       "greylist-me-please\n")
    subprocess.run(["/usr/sbin/sendmail", "-C", str(sender.conf), "-f", "alice@sender.test",
                    MAILBOX], input=raw, check=True, timeout=30)
    _wait(lambda: "4.7.1 Greylisted" in _queue(sender), 30, "the deferred entry")
    # The delay runs from the first attempt, which the sender may make a few seconds after
    # the submission: count it from when the deferral is seen, which is after that attempt.
    deferred = time.monotonic()
    queue = _queue(sender)
    assert "(host 127.0.0.1[127.0.0.1] said: 451 4.7.1 Greylisted, please try again later" \
           in queue and MAILBOX in queue
    assert receiver.delivered() == []
    time.sleep(max(0.0, DELAY + 0.3 - (time.monotonic() - deferred)))
    subprocess.run(["postqueue", "-c", str(sender.conf), "-f"], check=True, timeout=30)
    (message,) = receiver.wait_delivered(1, timeout=30)
    assert message["Subject"] == "relayed grey"
    assert "GREYLIST(0.00)[pass]" in "".join(message["X-Spamd-Result"].split())
    _wait(lambda: "Mail queue is empty" in _queue(sender), 30, "the sender's queue to empty")
    assert "status=deferred" in sender.log() and "status=sent" in sender.log()
