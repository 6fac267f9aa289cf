"""The nightly job (contrib/pyspamd-daily, /usr/lib/pyspamd/daily in the package) as cron
runs it, on a machine without a syslog daemon (this one and CI): its summary must land in
its log file, and a failed step must make it exit 1 with the whole output for cron's mail."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.paths import CORPUS

REPO = Path(__file__).resolve().parent.parent
JOB = REPO / "contrib" / "pyspamd-daily"
PYSPAMC = Path(sys.executable).parent / "pyspamc"


def _maildir(root: Path, source: Path, count: int) -> Path:
    """A Maildir of `count` messages that arrived just now (the job reads the last day)."""
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True)
    messages = sorted(p for p in source.rglob("*") if p.is_file())[:count]
    for i, message in enumerate(messages):
        shutil.copy(message, root / "cur" / f"{i}.test:2,S")
    return root


def _run_job(tmp_path: Path, spam: str, ham: str, log: Path) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "pyspamd.toml"
    config.write_text(f'[storage]\npath = "{tmp_path}/store.sqlite"\n')
    defaults = tmp_path / "default-pyspamd"
    defaults.write_text(f'TRAIN_SPAM="{spam}"\nTRAIN_HAM="{ham}"\n')
    env = {**os.environ, "PYSPAMC": str(PYSPAMC), "PYSPAMD_CONFIG": str(config),
           "PYSPAMD_DEFAULTS": str(defaults), "PYSPAMD_DAILY_LOG": str(log)}
    return subprocess.run(["sh", str(JOB)], capture_output=True, text=True, env=env,
                          timeout=120)


def test_summary_goes_to_the_log_file(tmp_path: Path) -> None:
    spam = _maildir(tmp_path / "Junk", CORPUS / "spam", 5)
    ham = _maildir(tmp_path / "Archive", CORPUS / "ham", 5)
    log = tmp_path / "log" / "daily.log"
    log.parent.mkdir()
    out = _run_job(tmp_path, str(spam), str(ham), log)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout == "" and out.stderr == ""  # nothing for cron to mail
    lines = log.read_text().splitlines()
    assert any("pyspamd-daily[" in line and "learned" in line for line in lines), lines
    assert any("expired" in line for line in lines), lines


def test_a_failed_step_exits_1_with_its_output(tmp_path: Path) -> None:
    log = tmp_path / "daily.log"
    out = _run_job(tmp_path, str(tmp_path / "no-such-folder"), "", log)
    assert out.returncode == 1
    assert "no-such-folder" in out.stdout  # cron mails the whole output
    summary = log.read_text()
    assert "failed: a step exited non-zero" in summary, summary


@pytest.mark.skipif(os.path.exists("/dev/log"), reason="a syslog daemon takes the summary here")
def test_a_summary_written_nowhere_is_not_a_success(tmp_path: Path) -> None:
    ham = _maildir(tmp_path / "Archive", CORPUS / "ham", 2)
    out = _run_job(tmp_path, "", str(ham), tmp_path / "missing-dir" / "daily.log")
    assert out.returncode == 1
    assert "neither syslog (/dev/log) nor" in out.stdout
    assert "learned" in out.stdout
