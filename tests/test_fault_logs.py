"""Faults are logged as one line each, rate-limited, without tracebacks (issue 18): a store
that is down must not write a traceback per scan, and a client gone at end of message is
not a failed scan."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.messages import make_message
from support.mta import Daemon, MtaSession, running_daemon
from support.ports import free_port

from pyspamd import scanner as scanner_module
from pyspamd.config import load_config
from pyspamd.faultlog import FaultLog
from pyspamd.scanner import Scanner


def test_store_down_logs_one_line_not_a_traceback_per_scan(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The scanner's fault log is one per process, as in a worker: a store fault that an
    # earlier test in this process logged within the interval would hold this one back.
    monkeypatch.setattr(scanner_module, "faults", FaultLog(scanner_module.log))
    # A Redis URL where nothing listens: every Bayes lookup fails at once, as with Redis down.
    config_path = tmp_path / "pyspamd.toml"
    config_path.write_text(f'[storage]\nbackend = "redis"\n'
                           f'redis_url = "redis://127.0.0.1:{free_port()}/0"\n')
    scanner = Scanner.from_config(load_config(config_path))
    with caplog.at_level(logging.INFO, logger="pyspamd"):
        results = [scanner.scan(make_message(body=f"message {i}\n")) for i in range(20)]
    assert all(r.errors and r.errors[0].startswith("bayes: ") for r in results)
    lines = [r for r in caplog.records if "bayes" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert lines[0].exc_info is None and "check bayes failed: " in lines[0].getMessage()


def test_fault_log_counts_what_it_left_out(caplog: pytest.LogCaptureFixture) -> None:
    faults = FaultLog(logging.getLogger("pyspamd.test"), interval=0.2)
    with caplog.at_level(logging.INFO, logger="pyspamd.test"):
        for _ in range(5):
            faults.report("here", "it broke", ConnectionError("refused"))
        time.sleep(0.25)
        faults.report("here", "it broke", ConnectionError("refused"))
    assert [r.getMessage() for r in caplog.records] == [
        "it broke: refused (ConnectionError)",
        "it broke: refused (ConnectionError) (4 more like it in the last 0s not logged)",
    ]


def test_debug_level_logs_every_fault_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    faults = FaultLog(logging.getLogger("pyspamd.test"))
    with caplog.at_level(logging.DEBUG, logger="pyspamd.test"):
        for _ in range(3):
            try:
                raise ConnectionError("refused")
            except ConnectionError as exc:
                faults.report("here", "it broke", exc)
    assert len(caplog.records) == 3 and all(r.exc_info for r in caplog.records)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running_daemon(tmp_path_factory.mktemp("faultlogs"), workers=1) as d:
        yield d


def test_client_gone_at_end_of_message_is_not_a_failed_scan(daemon: Daemon) -> None:
    for index in range(3):
        queue_id = f"4QGONE{index}"
        session = MtaSession(daemon.port)
        session.send_until_eom(make_message(body="bye\n"), queue_id=queue_id)
        session.sock.close()  # gone before the milter answers
        deadline = time.monotonic() + 20
        while f"qid: {queue_id}," not in daemon.log() and time.monotonic() < deadline:
            time.sleep(0.1)
    time.sleep(0.5)  # the verdict is being sent to the closed connection
    log = daemon.log()
    assert "qid: 4QGONE2," in log
    assert "Traceback" not in log and "scan failed" not in log, log
    assert log.count("verdict not sent to the MTA") <= 1, log
