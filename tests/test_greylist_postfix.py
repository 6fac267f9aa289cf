"""Greylisting through a real Postfix and a real pyspamd daemon (two workers sharing the
store): 451 on first sight and on an early retry, delivered once `delay` has passed.

The delay is set to two seconds in the config rather than faking a clock: the daemon runs
the production code path with real time, and the test waits those two seconds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from email.utils import formatdate

import pytest
from support.greylisting import CONFIG, DELAY
from support.messages import make_message
from support.mta import Daemon, running_daemon
from support.paths import REPO
from support.postfix import MAILBOX, Postfix, running_postfix

pytestmark = pytest.mark.postfix

MARKER_RULES = "body GREY_ME /greylist-me-please/\nscore GREY_ME 45\n"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Postfix, Daemon]]:
    workdir = tmp_path_factory.mktemp("grey-e2e")
    rules = workdir / "rules"
    rules.mkdir()
    (rules / "markers.rules").write_text(MARKER_RULES)
    config = (f'[rules]\ndirs = ["{REPO / "rules"}", "{rules}"]\n'
              + CONFIG.format(store=workdir / "store.sqlite", delay=DELAY))
    with running_daemon(workdir, config, workers=2) as daemon, \
            running_postfix(daemon.port) as postfix:
        yield postfix, daemon




def test_first_attempt_deferred_retry_after_delay_delivered(
        stack: tuple[Postfix, Daemon]) -> None:
    postfix, daemon = stack
    postfix.clear_mailbox()
    raw = make_message([("To", MAILBOX), ("Subject", "grey"), ("Date", formatdate())],
                       "greylist-me-please\n")
    assert postfix.send(raw, "alice@example.org") == (
        451, "4.7.1 Greylisted, please try again later")
    # Counted from the answer, not from before the send: the triplet was first seen during
    # that transaction, which on a loaded machine can take longer than the margin below.
    start = time.monotonic()
    assert postfix.send(raw, "alice@example.org")[0] == 451  # too early
    # Another sender is another triplet: deferred on its own first sight.
    assert postfix.send(raw, "carol@example.org")[0] == 451
    time.sleep(max(0.0, DELAY + 0.3 - (time.monotonic() - start)))
    code, _ = postfix.send(raw, "alice@example.org")
    assert code == 250
    (message,) = postfix.wait_delivered(1)
    assert "GREYLIST(0.00)[pass]" in message["X-Spamd-Result"].replace("\n", "").replace(
        "\t", "")
    assert "milter-reject: END-OF-MESSAGE" in postfix.log() and "4.7.1 Greylisted" in \
        postfix.log()
    task_lines = [line for line in daemon.log().splitlines() if "pyspamd.task" in line]
    assert [("(greylist)" in line, "carol" in line) for line in task_lines] == [
        (True, False), (True, False), (True, True), (False, False)]
    assert "F (no action)" in task_lines[-1]
