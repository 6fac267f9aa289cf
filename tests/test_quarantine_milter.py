"""The quarantine through the real daemon over the milter protocol: one that cannot be
written gives [quarantine] fallback_action (here tempfail: the sender keeps the message and
retries) with one log line and nothing discarded; a virus is held when virus_action says
so."""

from __future__ import annotations

from pathlib import Path

from miltertest import constants as C
from support.clamd_server import EICAR, EICAR_SIGNATURE, start_clamd
from support.messages import attachment_message
from support.mta import MtaSession, running_daemon

from pyspamd.quarantine.settings import QuarantineConfig
from pyspamd.quarantine.store import QuarantineStore


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


def test_virus_quarantined_when_configured(tmp_path: Path) -> None:
    """[antivirus] virus_action = "quarantine": the real clamd finds EICAR, the milter keeps
    the message in pyspamd's quarantine with the signature as the reason and discards it."""
    clamd = start_clamd(tmp_path / "clamd")
    held = tmp_path / "held"
    config = (f'[quarantine]\ndir = "{held}"\n'
              f'[antivirus]\nenabled = true\naddress = "{clamd.socket_path}"\ntimeout = 3.0\n'
              'virus_action = "quarantine"\n')
    try:
        with running_daemon(tmp_path, config, workers=1) as daemon:
            session = MtaSession(daemon.port)
            try:
                result = session.send(attachment_message("notes.txt", EICAR),
                                      rcpts=("bob@example.net", "carol@example.net"),
                                      queue_id="4QVIRUS")
            finally:
                session.close()
    finally:
        clamd.stop()
    assert result.disposition == C.SMFIR_DISCARD
    (entry,) = QuarantineStore(QuarantineConfig(dir=str(held))).list()
    assert entry.rcpts == ["bob@example.net", "carol@example.net"]
    assert entry.queue_id == "4QVIRUS" and "CLAM_VIRUS" in entry.symbols
    assert EICAR_SIGNATURE in entry.reason
