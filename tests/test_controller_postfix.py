"""Done-when of the controller issue: mail through a real Postfix into a daemon with two
workers and its controller; `pyspamc -h stat` then shows the per-action counts of all
workers together, history holds Postfix's queue ids, and /metrics is valid Prometheus text."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from collections import Counter
from pathlib import Path

import aiosmtplib
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.controller_proc import call, eventually
from support.messages import make_message
from support.mta import free_port, running_daemon, wait_for_port
from support.paths import CORPUS, REPO
from support.postfix import MAILBOX, running_postfix

from pyspamd.cli.pyspamc import main as pyspamc_main

pytestmark = pytest.mark.postfix

MARKER_RULES = "body GREY_ME /greylist-me-please/\nscore GREY_ME 45\n"
# Thresholds tenfold, as in test_postfix_e2e: loopback SMTP's looks decide nothing here.
CONFIG = """
[actions]
greylist = 40.0
add_header = 60.0
reject = 150.0
[greylist]
enabled = false
"""
SENDERS = 4


def _messages() -> list[tuple[str, bytes]]:
    """(expected action, message): ham, greylist-marked, GTUBE."""
    gtube = (CORPUS / "malformed" / "gtube.eml").read_bytes()
    out = []
    for n in range(24):
        if n % 4 == 3:
            out.append(("reject", gtube))
        elif n % 4 == 2:
            out.append(("greylist", make_message(
                [("To", MAILBOX), ("Subject", f"grey {n}")], "greylist-me-please\n")))
        else:
            out.append(("no action", make_message([("To", MAILBOX), ("Subject", f"ham {n}")])))
    return out


async def _send_all(port: int, messages: list[tuple[str, bytes]]) -> list[int]:
    codes: list[int] = [0] * len(messages)

    async def sender(index: int) -> None:
        # Connections held open together, so both workers get sessions (see gate.py).
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=60) as smtp:
            for n in range(index, len(messages), SENDERS):
                try:
                    await smtp.sendmail("alice@example.org", [MAILBOX], messages[n][1])
                    codes[n] = 250
                except aiosmtplib.SMTPResponseException as exc:
                    codes[n] = exc.code
                    await smtp.rset()
                await asyncio.sleep(0.02)

    await asyncio.gather(*(sender(i) for i in range(SENDERS)))
    return codes


def test_stat_over_http_sums_all_workers(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "markers.rules").write_text(MARKER_RULES)
    port = free_port()
    config = (f'[rules]\ndirs = ["{REPO / "rules"}", "{rules}"]\n{CONFIG}'
              f'[storage]\npath = "{tmp_path / "store.sqlite"}"\n'
              f'[controller]\nlisten = "127.0.0.1:{port}"\nflush_interval = 0.2\n')
    messages = _messages()
    expected = Counter(action for action, _ in messages)
    with running_daemon(tmp_path, config, workers=2) as daemon, \
            running_postfix(daemon.port) as postfix:
        wait_for_port(port)
        codes = asyncio.run(_send_all(postfix.smtp_port, messages))
        wanted = {"no action": 250, "greylist": 451, "reject": 554}
        assert codes == [wanted[action] for action, _ in messages]
        delivered = postfix.wait_delivered(expected["no action"])

        def all_counted() -> bool:
            stat = call(port, "GET", "/stat").json()
            return stat["scanned"] == len(messages)

        assert eventually(all_counted, timeout=15)
        assert pyspamc_main(["-h", f"127.0.0.1:{port}", "stat"]) == 0
        out = capsys.readouterr().out
        assert f"Messages scanned: {len(messages)}\n" in out
        for action in ("reject", "greylist", "no action"):
            n = expected[action]
            assert f"Messages with action {action}: {n}, {100 * n / len(messages):.2f}%" in out
        assert "Messages with action add header: 0, 0.00%" in out

        rows = call(port, "GET", "/history").json()["rows"]
        assert len(rows) == len(messages)
        workers = {row["id"].split("-")[1] for row in rows}
        assert len(workers) == 2, workers  # both workers' scans, in one history
        assert {row["source"] for row in rows} == {"milter"}
        queue_ids = {m["X-Pyspamd-Queue-Id"] for m in delivered}
        history_ids = {row["queue_id"] for row in rows if row["action"] == "no action"}
        assert queue_ids == history_ids
        for qid in queue_ids:  # the same queue id is in Postfix's log
            assert re.search(rf"{qid}: to=<{MAILBOX}>", postfix.log())

        metrics = call(port, "GET", "/metrics").body.decode()
        families = {f.name: f for f in text_string_to_metric_families(metrics)}
        by_action = {s.labels["action"]: s.value for s in families["pyspamd_scanned"].samples}
        assert by_action["reject"] == expected["reject"]
        assert by_action["greylist"] == expected["greylist"]
        count = next(s.value for s in families["pyspamd_scan_duration_seconds"].samples
                     if s.name == "pyspamd_scan_duration_seconds_count")
        assert count == len(messages)
        assert families["pyspamd_worker_restarts"].samples[0].value == 0
        assert "controller listening on http://127.0.0.1:" in daemon.log()

        os.kill(max(daemon.worker_pids()), signal.SIGKILL)

        def restarts() -> float:
            text = call(port, "GET", "/metrics").body.decode()
            family = next(f for f in text_string_to_metric_families(text)
                          if f.name == "pyspamd_worker_restarts")
            return family.samples[0].value

        assert eventually(restarts, timeout=15) == 1
