"""A quarantine that cannot be written, through the real daemon over the milter protocol:
the message gets [quarantine] fallback_action (here tempfail: the sender keeps it and
retries), one log line says why, and nothing is discarded."""

from __future__ import annotations

from pathlib import Path

from miltertest import constants as C
from support.messages import attachment_message
from support.mta import MtaSession, running_daemon


def test_unwritable_quarantine_falls_back_with_one_log_line(tmp_path: Path) -> None:
    blocked = tmp_path / "held"
    blocked.write_text("a file where the quarantine directory should be\n")
    config = (f'[quarantine]\ndir = "{blocked}"\nfallback_action = "tempfail"\n'
              '[banned_files]\n[[banned_files.rules]]\nname = "BANNED_DISK_IMAGE"\n'
              "names = ['\\.iso$']\naction = \"quarantine\"\n")
    with running_daemon(tmp_path, config, workers=1) as daemon:
        session = MtaSession(daemon.port)
        try:
            result = session.send(attachment_message("disk.iso", b"\0" * 2048),
                                  queue_id="4QFALL1")
        finally:
            session.close()
        log = daemon.log()
    assert result.reply == "451 4.7.1 Temporary local problem, please try again later"
    assert result.disposition != C.SMFIR_DISCARD
    lines = [line for line in log.splitlines() if "not quarantined" in line]
    assert len(lines) == 1, log
    assert "qid: 4QFALL1: not quarantined, fallback_action=tempfail: cannot write to the " \
           "quarantine" in lines[0]
    assert "Traceback" not in log
