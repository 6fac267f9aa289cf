"""Banned files through the whole scanner: names, double extensions, detected types, archive
members of every format, and hostile archives (bomb, 10,000 members, password, truncated)."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
import tarfile
import time
import zipfile
import zlib
from pathlib import Path

import libarchive
import pytest
from support.messages import attachment_message

from pyspamd.config import ConfigError, load_config
from pyspamd.scanner import Scanner
from pyspamd.task import Envelope


def zip_of(files: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", method) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return out.getvalue()


def archive_bomb(levels: int = 3, width: int = 4) -> bytes:
    """42.zip's shape: zips of zips, the innermost holding a file of zeros that deflates
    a thousandfold."""
    layer = zip_of({"0.dat": b"\0" * (5 << 20)})
    for level in range(levels):
        layer = zip_of({f"{level}-{i}.zip": layer for i in range(width)}, zipfile.ZIP_STORED)
    return layer


def rar4(name: bytes, data: bytes) -> bytes:
    """A RAR 4 archive with one stored file, written block by block (RAR's technote)."""
    def block(kind: int, flags: int, body: bytes) -> bytes:
        header = bytes([kind]) + struct.pack("<HH", flags, 7 + len(body)) + body
        return struct.pack("<H", zlib.crc32(header) & 0xFFFF) + header

    file_header = struct.pack("<IIBIIBBHI", len(data), len(data), 2, zlib.crc32(data), 0,
                              20, 0x30, len(name), 0x20) + name
    return (b"Rar!\x1a\x07\x00" + block(0x73, 0, b"\0" * 6) + block(0x74, 0x8000, file_header)
            + data + block(0x7B, 0x4000, b""))


@pytest.fixture(scope="module")
def scanner() -> Scanner:
    return Scanner.from_config(load_config(None))


def _scan(scanner: Scanner, filename: str, data: bytes, ctype: str = "application/octet-stream"):
    start = time.perf_counter()
    result = scanner.scan(attachment_message(filename, data, ctype))
    return result, time.perf_counter() - start


def test_double_extension_is_rejected_naming_the_file(scanner: Scanner) -> None:
    result, _ = _scan(scanner, "invoice.pdf.exe", b"MZ\x90\x00" + b"\0" * 300,
                      "application/pdf")
    assert result.action == "reject"
    assert result.message == "banned attachment: invoice.pdf.exe"
    assert result.forced_by == "BANNED_DOUBLE_EXTENSION"
    assert "ATTACHMENT_TYPE_MISMATCH" in result.symbols


def test_program_under_a_harmless_name_is_banned_by_its_bytes(scanner: Scanner) -> None:
    result, _ = _scan(scanner, "photo.jpg", b"MZ\x90\x00" + b"\0" * 300, "image/jpeg")
    assert result.action == "reject"
    assert result.symbols["BANNED_EXECUTABLE_TYPE"].options == ["photo.jpg"]


def test_harmless_attachment_is_not_banned(scanner: Scanner) -> None:
    result, _ = _scan(scanner, "report.pdf", b"%PDF-1.4\n%\xe2\xe3\n1 0 obj\n<<>>\nendobj\n",
                      "application/pdf")
    assert not [s for s in result.symbols if s.startswith(("BANNED_", "ARCHIVE_"))]
    assert result.action != "reject"


@pytest.mark.parametrize("kind", ["zip", "tgz", "7z", "rar"])
def test_program_inside_an_archive_is_banned(scanner: Scanner, kind: str) -> None:
    payload = b"@echo off\r\n"
    if kind == "zip":
        data, name = zip_of({"docs/readme.txt": b"hi", "docs/setup.bat": payload}), "a.zip"
    elif kind == "tgz":
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w:gz") as archive:
            info = tarfile.TarInfo("docs/setup.bat")
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
        data, name = out.getvalue(), "a.tgz"
    elif kind == "7z":
        out_path = io.BytesIO()
        with libarchive.custom_writer(out_path.write, "7zip") as archive:
            archive.add_file_from_memory("docs/setup.bat", len(payload), payload)
        data, name = out_path.getvalue(), "a.7z"
    else:
        data, name = rar4(b"docs\\setup.bat", payload), "a.rar"
    result, _ = _scan(scanner, name, data)
    assert result.action == "reject", result.symbols
    assert result.message.startswith(f"banned attachment: {name}/docs")
    assert result.message.endswith("setup.bat")


def test_archive_bomb_gets_a_symbol_within_the_budget(scanner: Scanner) -> None:
    result, seconds = _scan(scanner, "42.zip", archive_bomb())
    assert "ARCHIVE_BOMB" in result.symbols
    assert seconds < 2.0  # the scan budget


def test_ten_thousand_member_zip(scanner: Scanner) -> None:
    data = zip_of({f"file{i}.txt": b"x" for i in range(10_000)}, zipfile.ZIP_STORED)
    result, seconds = _scan(scanner, "many.zip", data)
    assert result.symbols["ARCHIVE_LIMITS"].options == ["many.zip"]
    assert seconds < 2.0


@pytest.mark.skipif(shutil.which("zip") is None, reason="needs Info-ZIP's zip (.ci/run)")
def test_password_protected_zip(scanner: Scanner, tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("the numbers\n")
    subprocess.run(["zip", "-q", "-P", "secret", "locked.zip", "notes.txt"], cwd=tmp_path,
                   check=True)
    result, _ = _scan(scanner, "locked.zip", (tmp_path / "locked.zip").read_bytes())
    assert result.symbols["ARCHIVE_ENCRYPTED"].options == ["locked.zip/notes.txt"]
    assert result.action != "reject"  # scored only unless encrypted_action says otherwise


def test_truncated_rar_is_broken_but_its_listed_member_still_counts(scanner: Scanner) -> None:
    whole = rar4(b"invoice.pdf.exe", b"MZ" + b"\0" * 200)
    result, _ = _scan(scanner, "invoice.rar", whole[:-120])
    assert "ARCHIVE_BROKEN" in result.symbols
    assert result.message == "banned attachment: invoice.rar/invoice.pdf.exe"
    result, _ = _scan(scanner, "cut.rar", whole[:30])
    assert result.symbols["ARCHIVE_BROKEN"].options == ["cut.rar"]


def test_exemptions_and_quarantine_per_rule(tmp_path: Path) -> None:
    config_path = tmp_path / "pyspamd.toml"
    config_path.write_text("""
[banned_files]
exempt = ["BANNED_EXECUTABLE_NAME"]
encrypted_action = "quarantine"
[[banned_files.rules]]
name = "BANNED_DISK_IMAGE"
names = ['\\.(iso|img)$']
action = "quarantine"
""")
    scanner = Scanner.from_config(load_config(config_path))
    result, _ = _scan(scanner, "setup.bat", b"@echo off\r\n")
    assert result.action != "reject" and "BANNED_EXECUTABLE_NAME" not in result.symbols
    result, _ = _scan(scanner, "disk.iso", b"\0" * 64)
    assert result.action == "quarantine"
    assert result.message == "banned attachment: disk.iso"


def test_bad_banned_files_config_names_the_line(tmp_path: Path) -> None:
    config_path = tmp_path / "pyspamd.toml"
    config_path.write_text("""[banned_files]
exempt = ["NO_SUCH_RULE"]
[[banned_files.rules]]
name = "BAD"
names = ['(']
action = "discard"
""")
    with pytest.raises(ConfigError) as caught:
        load_config(config_path)
    text = str(caught.value)
    assert "NO_SUCH_RULE" in text and "which is wrong" in text and "discard" in text
    assert f"{config_path}:" in text


def test_settings_exempt_a_rule_for_their_recipients_only(tmp_path: Path) -> None:
    config_path = tmp_path / "pyspamd.toml"
    config_path.write_text("""
[[settings]]
name = "it-department"
rcpt_domain = ["it.example.test"]
banned_exempt = ["BANNED_EXECUTABLE_NAME"]
quarantine_instead_of_reject = true
""")
    scanner = Scanner.from_config(load_config(config_path))
    raw = attachment_message("setup.bat", b"@echo off\r\n")
    it = scanner.scan(raw, Envelope(mail_from="alice@example.org",
                                    rcpts=("ops@it.example.test",)))
    assert "BANNED_EXECUTABLE_NAME" not in it.symbols and it.settings == "it-department"
    other = scanner.scan(raw, Envelope(mail_from="alice@example.org",
                                       rcpts=("bob@example.test",)))
    assert other.action == "reject" and other.forced_by == "BANNED_EXECUTABLE_NAME"
    exe = attachment_message("invoice.pdf.exe", b"MZ\x90\x00" + b"\0" * 300, "application/pdf")
    held = scanner.scan(exe, Envelope(mail_from="alice@example.org",
                                      rcpts=("ops@it.example.test",)))
    assert held.action == "quarantine" and held.forced_by == "BANNED_DOUBLE_EXTENSION"
