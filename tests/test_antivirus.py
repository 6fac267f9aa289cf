"""The antivirus check against a real clamd (tests/clamd_server.py) with test signatures."""

from __future__ import annotations

import io
import logging
import os
import signal
import zipfile
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from support.clamd_server import (
    EICAR,
    EICAR_SIGNATURE,
    JUNK_TEXT,
    MAX_FILES,
    PHISH_TEXT,
    PORCUPINE_JUNK_SIGNATURE,
    PORCUPINE_JUNK_TEXT,
    SECURITEINFO_SPAM_SIGNATURE,
    SECURITEINFO_SPAM_TEXT,
    ClamdServer,
    clamd_server,
    start_clamd,
)
from support.paths import REPO

from pyspamd import actions
from pyspamd.checks.antivirus import HEADER
from pyspamd.config import ConfigError, load_config
from pyspamd.result import ScanResult
from pyspamd.scanner import Scanner
from pyspamd.task import Task


@pytest.fixture(scope="module")
def clamd() -> Iterator[ClamdServer]:
    with clamd_server() as server:
        yield server


def _scanner(tmp_path: Path, address: str, extra: str = "", timeout: float = 2.0) -> Scanner:
    path = tmp_path / "pyspamd.toml"
    path.write_text(f'[rules]\ndirs = ["{REPO / "rules"}"]\n[bayes]\nenabled = false\n'
                    f'[fuzzy]\nenabled = false\n[storage]\npath = "{tmp_path / "s.sqlite"}"\n'
                    f'[antivirus]\nenabled = true\naddress = "{address}"\ntimeout = {timeout}\n'
                    + extra)
    return Scanner.from_config(load_config(path))


def _message(body: str = "Hello Bob,\n\nthe minutes are attached.\n",
             attachments: list[tuple[str, bytes]] | None = None) -> bytes:
    msg = EmailMessage()
    msg["From"] = "alice@example.org"
    msg["To"] = "bob@example.net"
    msg["Subject"] = "Minutes"
    msg["Date"] = "Mon, 6 Jan 2003 10:00:00 +0000"
    msg["Message-ID"] = "<minutes.1@example.org>"
    msg.set_content(body)
    for name, data in attachments or []:
        msg.add_attachment(data, maintype="application", subtype="octet-stream",
                           filename=name)
    return msg.as_bytes()


def _scan(scanner: Scanner, raw: bytes) -> tuple[ScanResult, Task]:
    task = scanner.task(raw)
    return scanner.scan_task(task, budget=10.0), task


def _zip(files: dict[str, bytes], encrypted: bool = False) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    data = bytearray(buffer.getvalue())
    if encrypted:
        # zipfile cannot encrypt; setting the "encrypted" bit of each entry's local and
        # central header is what makes an archive encrypted to a reader such as clamd.
        start = 0
        while (at := data.find(b"PK\x03\x04", start)) >= 0:
            data[at + 6] |= 1
            start = at + 4
        start = 0
        while (at := data.find(b"PK\x01\x02", start)) >= 0:
            data[at + 8] |= 1
            start = at + 4
    return bytes(data)


def test_eicar_is_rejected_with_the_signature_name(clamd: ClamdServer, tmp_path: Path) -> None:
    scanner = _scanner(tmp_path, str(clamd.socket_path))
    result, task = _scan(scanner, _message(attachments=[("eicar.com", EICAR)]))
    assert result.symbols["CLAM_VIRUS"].options == [EICAR_SIGNATURE]
    assert result.action == actions.REJECT and result.forced_by == "CLAM_VIRUS"
    assert EICAR_SIGNATURE in result.message
    assert not result.errors and not task.add_headers


def test_clean_message_gets_no_symbol(clamd: ClamdServer, tmp_path: Path) -> None:
    result, task = _scan(_scanner(tmp_path, str(clamd.socket_path)), _message())
    assert not [name for name in result.symbols if name.startswith("CLAM_")]
    assert result.action != actions.REJECT and not task.add_headers


def test_third_party_families_get_their_symbols(clamd: ClamdServer, tmp_path: Path) -> None:
    scanner = _scanner(tmp_path, str(clamd.socket_path))
    phish, _ = _scan(scanner, _message(f"Please go to {PHISH_TEXT.decode()} today.\n"))
    assert phish.symbols["CLAM_PHISH"].options == ["Sanesecurity.Phishing.Test"]
    assert "CLAM_VIRUS" not in phish.symbols and phish.forced_by == ""
    junk, _ = _scan(scanner, _message(f"Visit {JUNK_TEXT.decode()} now.\n"))
    assert junk.symbols["CLAM_SPAM"].options == ["Sanesecurity.Junk.Test"]
    # The prefixes are the admin's: another family symbol, another prefix.
    custom = _scanner(tmp_path, str(clamd.socket_path),
                      '[antivirus.families]\nCLAM_SANE_JUNK = ["Sanesecurity.Junk."]\n')
    junk, _ = _scan(custom, _message(f"Visit {JUNK_TEXT.decode()} now.\n"))
    assert "CLAM_SANE_JUNK" in junk.symbols and "CLAM_SPAM" not in junk.symbols


@pytest.mark.parametrize(("text", "signature"), [
    (SECURITEINFO_SPAM_TEXT, SECURITEINFO_SPAM_SIGNATURE),
    (PORCUPINE_JUNK_TEXT, PORCUPINE_JUNK_SIGNATURE),
])
def test_other_feeds_spam_signatures_are_scored_as_spam_not_rejected(
        clamd: ClamdServer, tmp_path: Path, text: bytes, signature: str) -> None:
    scanner = _scanner(tmp_path, str(clamd.socket_path))
    result, _ = _scan(scanner, _message(f"Visit {text.decode()} now.\n"))
    assert result.symbols["CLAM_SPAM"].options == [signature]
    assert result.symbols["CLAM_SPAM"].score == 6.0
    assert "CLAM_VIRUS" not in result.symbols
    assert result.forced_by == "" and result.action != actions.REJECT


def test_reject_classes_and_admin_prefixes_over_the_table(clamd: ClamdServer,
                                                          tmp_path: Path) -> None:
    # An admin who wants this spam family refused: its prefix made malware.
    scanner = _scanner(tmp_path, str(clamd.socket_path),
                       '[antivirus.families]\nCLAM_VIRUS = ["Porcupine.Junk."]\n')
    result, _ = _scan(scanner, _message(f"Visit {PORCUPINE_JUNK_TEXT.decode()} now.\n"))
    assert result.symbols["CLAM_VIRUS"].options == [PORCUPINE_JUNK_SIGNATURE]
    assert result.action == actions.REJECT and result.forced_by == "CLAM_VIRUS"
    # Or a whole class refused.
    scanner = _scanner(tmp_path, str(clamd.socket_path), 'reject_classes = ["malware", "spam"]\n')
    result, _ = _scan(scanner, _message(f"Visit {SECURITEINFO_SPAM_TEXT.decode()} now.\n"))
    assert result.action == actions.REJECT and result.forced_by == "CLAM_SPAM"
    assert SECURITEINFO_SPAM_SIGNATURE in result.message


def test_bad_family_table_is_a_config_error_naming_the_line(tmp_path: Path) -> None:
    table = tmp_path / "families.toml"
    table.write_text('[classes]\nmalware = { symbol = "CLAM_VIRUS", score = 10 }\n'
                     '[prefixes]\n"Feed.Spam." = "spam"\n')
    path = tmp_path / "pyspamd.toml"
    path.write_text('[antivirus]\nfamilies_file = "families.toml"\n'
                    'reject_classes = ["malware", "worms"]\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = str(caught.value)
    assert f"{table}:4: prefix 'Feed.Spam.' names class 'spam'" in text
    assert "has 'worms'" not in text  # the table's own error is the one to fix first
    table.write_text('[classes]\nmalware = { symbol = "CLAM_VIRUS", score = 10 }\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "reject_classes has 'worms'; the family table's classes are malware" in str(
        caught.value)


def test_encrypted_and_oversized_archives(clamd: ClamdServer, tmp_path: Path) -> None:
    scanner = _scanner(tmp_path, str(clamd.socket_path))
    locked = _zip({"invoice.doc": b"secret " * 100}, encrypted=True)
    result, _ = _scan(scanner, _message(attachments=[("invoice.zip", locked)]))
    assert result.symbols["CLAM_ENCRYPTED"].options == ["Heuristics.Encrypted.Zip"]
    assert "CLAM_VIRUS" not in result.symbols and result.action != actions.REJECT
    many = _zip({f"f{i}.txt": os.urandom(200) for i in range(MAX_FILES + 5)})
    result, _ = _scan(scanner, _message(attachments=[("many.zip", many)]))
    assert result.symbols["CLAM_LIMITS"].options[0].startswith("Heuristics.Limits.Exceeded")


def test_attachments_mode_sends_only_non_text_parts(clamd: ClamdServer, tmp_path: Path) -> None:
    scanner = _scanner(tmp_path, str(clamd.socket_path), 'scan = "attachments"\n')
    result, _ = _scan(scanner, _message(f"Go to {PHISH_TEXT.decode()}\n",
                                        [("a.bin", b"plain data " * 50),
                                         ("eicar.com", EICAR)]))
    assert result.symbols["CLAM_VIRUS"].options == [EICAR_SIGNATURE]
    assert "CLAM_PHISH" not in result.symbols  # the body text was not sent


def test_over_max_size_is_not_sent(clamd: ClamdServer, tmp_path: Path) -> None:
    scanner = _scanner(tmp_path, str(clamd.socket_path), "max_size = 2000\n")
    result, _ = _scan(scanner, _message(attachments=[("eicar.com", EICAR),
                                                        ("pad.bin", b"x" * 3000)]))
    assert result.symbols["CLAM_SKIPPED"].options == ["size>2000"]
    assert "CLAM_VIRUS" not in result.symbols and "CLAM_FAIL" not in result.symbols


def test_clamd_down_accepts_with_header_and_one_log_line(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    server = start_clamd(tmp_path / "clamd")
    try:
        scanner = _scanner(tmp_path, str(server.socket_path))
        result, _ = _scan(scanner, _message(attachments=[("eicar.com", EICAR)]))
        assert result.action == actions.REJECT  # up: the virus is found
    finally:
        server.stop()
    caplog.set_level(logging.WARNING, logger="pyspamd.antivirus")
    # Named as no banned-file rule bans: with clamd down, nothing else refuses it.
    result, task = _scan(scanner, _message(attachments=[("eicar.txt", EICAR)]))
    assert result.symbols["CLAM_FAIL"].options == ["down"]
    assert result.action != actions.REJECT and not result.errors
    assert [name for name, _ in task.add_headers] == [HEADER]
    assert task.add_headers[0][1].startswith("failed (down)")
    lines = [r for r in caplog.records if r.name == "pyspamd.antivirus"]
    assert len(lines) == 1 and "antivirus check failed" in lines[0].getMessage()


def test_clamd_hanging_times_out(tmp_path: Path) -> None:
    server = start_clamd(tmp_path / "clamd")
    try:
        scanner = _scanner(tmp_path, str(server.socket_path),
                           'fail_action = "tempfail"\n', timeout=0.5)
        os.kill(server.proc.pid, signal.SIGSTOP)  # accepts (kernel backlog), never answers
        try:
            result, task = _scan(scanner, _message())
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
    finally:
        server.stop()
    assert result.symbols["CLAM_FAIL"].options == ["timeout"]
    assert result.action == actions.SOFT_REJECT and result.forced_by == "CLAM_FAIL"
    assert not task.add_headers


def test_tcp_address(tmp_path: Path) -> None:
    from support.ports import free_port

    root = tmp_path / "clamd"
    port = free_port()
    root.mkdir()
    server = start_clamd(root, tcp_port=port)
    try:
        scanner = _scanner(tmp_path, f"127.0.0.1:{port}")
        result, _ = _scan(scanner, _message(attachments=[("eicar.com", EICAR)]))
        assert result.symbols["CLAM_VIRUS"].options == [EICAR_SIGNATURE]
    finally:
        server.stop()


@pytest.mark.parametrize(("text", "expected"), [
    ('address = "clamd"\n', "antivirus.address"),
    ('scan = "parts"\n', "antivirus.scan"),
    ("timeout = 30.0\n", "antivirus.timeout"),
    ('virus_action = "explode"\n', "antivirus.virus_action"),
    ('fail_action = "drop"\n', "antivirus.fail_action"),
])
def test_config_errors(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[antivirus]\nenabled = true\n" + text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert any(expected in line and f"{path}:" in line for line in info.value.errors)


def test_a_virus_outranks_a_whitelist_map(clamd: ClamdServer, tmp_path: Path) -> None:
    scanner = _scanner(tmp_path, str(clamd.socket_path),
                       '[[maps]]\nname = "friends"\ntype = "address"\nmatch = "header_from"\n'
                       'values = ["alice@example.org"]\naction = "accept"\n')
    clean, _ = _scan(scanner, _message())
    assert clean.forced_by == "FRIENDS"
    result, _ = _scan(scanner, _message(attachments=[("eicar.com", EICAR)]))
    assert result.action == actions.REJECT and result.forced_by == "CLAM_VIRUS"
