"""Checks on the committed sample corpus and the hostile-message generators.

Only the standard library and the files in ``corpus/`` and ``tests/support/messages.py``
are used, so these tests say whether the test inputs themselves are sound,
independently of the scan engine.
"""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import hashlib
import importlib.util
import mailbox
import re
from email.message import Message
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
CORPUS = TESTS.parent / "corpus"
MALFORMED = CORPUS / "malformed"
GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
MBOX_SEPARATOR = b"From sender@example.com Mon Jan  6 10:00:00 2003"

MALFORMED_CASES = [
    "truncated-multipart.eml",
    "truncated-headers.eml",
    "no-headers.eml",
    "missing-from-date-msgid.eml",
    "nul-bytes.eml",
    "8bit-headers.eml",
    "bad-base64.eml",
    "bad-qp.eml",
    "unknown-charset.eml",
    "wrong-charset.eml",
    "html-only.eml",
    "empty.eml",
    "gtube.eml",
    "gtube-base64.eml",
    "gtube-8bit-content-type.eml",
    "gtube-8bit-disposition.eml",
    "exe-attachment.eml",
    "crlf-line-ends.eml",
    "mixed.mbox",
]


def _load_messages_module():
    """Import tests/support/messages.py by path, whatever pytest's import mode is."""
    spec = importlib.util.spec_from_file_location("_corpus_test_messages",
                                                  TESTS / "support" / "messages.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


messages = _load_messages_module()


def _parse(raw: bytes) -> Message:
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def _sample(label: str) -> list[Path]:
    return sorted((CORPUS / label / "cur").glob("*.eml"))


# --- the SpamAssassin sample -------------------------------------------------


@pytest.mark.parametrize("label", ["ham", "spam"])
def test_sample_count(label: str) -> None:
    assert 90 <= len(_sample(label)) <= 110


@pytest.mark.parametrize("label", ["ham", "spam"])
def test_sample_is_a_maildir(label: str) -> None:
    for sub in ("cur", "new", "tmp"):
        assert (CORPUS / label / sub).is_dir()
    for sub in ("new", "tmp"):
        assert (CORPUS / label / sub / ".gitkeep").is_file()
    # Python 3.11's mailbox.Maildir lists new/.gitkeep as a message: readers of
    # this Maildir must skip dot-files themselves.
    box = mailbox.Maildir(CORPUS / label, factory=None, create=False)
    keys = [k for k in box.iterkeys() if not k.startswith(".")]
    assert len(keys) == len(_sample(label))


@pytest.mark.parametrize(
    "path",
    _sample("ham") + _sample("spam"),
    ids=lambda p: f"{p.parent.parent.name}/{p.name}",
)
def test_sample_message_parses(path: Path) -> None:
    raw = path.read_bytes()
    assert 0 < len(raw) <= 60 * 1024
    msg = _parse(raw)
    assert msg["From"] is not None or msg["Subject"] is not None
    # Names are kept from the source: <group>.<id>.<md5 of the original>.eml
    assert re.fullmatch(
        r"(easy-ham-[12]|hard-ham-1|spam-[12])\.\d{5}\.[0-9a-f]{32}\.eml", path.name
    )


def test_sample_size_and_variety() -> None:
    paths = _sample("ham") + _sample("spam")
    assert sum(p.stat().st_size for p in paths) < 2_500_000
    groups = {p.name.split(".")[0] for p in paths}
    assert groups == {"easy-ham-1", "easy-ham-2", "hard-ham-1", "spam-1", "spam-2"}

    multipart = html_only = base64_parts = not_utf8 = 0
    for p in paths:
        raw = p.read_bytes()
        msg = _parse(raw)
        types = {part.get_content_type() for part in msg.walk()}
        multipart += msg.is_multipart()
        html_only += "text/html" in types and "text/plain" not in types
        base64_parts += any(
            str(part.get("Content-Transfer-Encoding", "")).strip().lower() == "base64"
            for part in msg.walk()
        )
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            not_utf8 += 1
    assert multipart >= 20
    assert html_only >= 20
    assert base64_parts >= 10
    assert not_utf8 >= 10


# --- hand-made malformed messages ------------------------------------------


def _read(name: str) -> bytes:
    return (MALFORMED / name).read_bytes()


@pytest.mark.parametrize("name", MALFORMED_CASES)
def test_malformed_case_exists(name: str) -> None:
    assert (MALFORMED / name).is_file()


def test_malformed_has_no_unlisted_files() -> None:
    assert sorted(p.name for p in MALFORMED.iterdir()) == sorted(MALFORMED_CASES)


@pytest.mark.parametrize("name", [n for n in MALFORMED_CASES if n != "crlf-line-ends.eml"])
def test_malformed_uses_lf_line_ends(name: str) -> None:
    assert b"\r" not in _read(name)


def test_malformed_case_contents() -> None:
    # Sanity checks that each file still shows the defect it is named for
    # (guards against editors or git "fixing" them).
    assert _read("empty.eml") == b""

    raw = _read("truncated-multipart.eml")
    assert b"multipart/mixed" in raw and b"Content-Transfer-Encoding: base64" in raw
    assert not raw.endswith(b"\n") and b"------=_Part_1042_9911--" not in raw

    raw = _read("truncated-headers.eml")
    assert b"\n\n" not in raw and not raw.endswith(b"\n")

    msg = _parse(_read("missing-from-date-msgid.eml"))
    assert sorted(msg.keys()) == ["Subject", "To"]

    assert _parse(_read("no-headers.eml")).keys() == []

    raw = _read("nul-bytes.eml")
    head, _, body = raw.partition(b"\n\n")
    assert b"\x00" in head and b"\x00" in body

    raw = _read("8bit-headers.eml")
    subject = next(line for line in raw.splitlines() if line.startswith(b"Subject:"))
    from_ = next(line for line in raw.splitlines() if line.startswith(b"From:"))
    assert "Grüße".encode() in subject and "Grüße".encode("latin-1") in subject
    assert "Jürgen".encode("latin-1") in from_ and b"=?" not in raw

    body = _parse(_read("bad-base64.eml")).get_payload()
    with pytest.raises(binascii.Error):
        base64.b64decode(body.replace("\n", ""), validate=True)

    raw = _read("bad-qp.eml")
    assert b"=ZZ" in raw and raw.endswith(b"=\n")

    raw = _read("unknown-charset.eml")
    assert b'charset="x-klingon"' in raw and b"=?x-unknown?B?" in raw
    assert any(b > 0x7F for b in raw.partition(b"\n\n")[2])

    raw = _read("wrong-charset.eml")
    assert b"charset=utf-8" in raw
    with pytest.raises(UnicodeDecodeError):
        raw.partition(b"\n\n")[2].decode("utf-8")

    msg = _parse(_read("html-only.eml"))
    assert msg.get_content_type() == "text/html" and not msg.is_multipart()
    html = msg.get_payload()
    assert "http://203.0.113.45/" in html and "http://bit.ly/" in html
    assert "<script" in html and "<style" in html

    assert GTUBE + b"\n" in _read("gtube.eml").splitlines(keepends=True)

    raw = _read("gtube-base64.eml")
    assert GTUBE not in raw
    decoded = [p.get_payload(decode=True) for p in _parse(raw).walk() if not p.is_multipart()]
    assert any(GTUBE in d for d in decoded)

    msg = _parse(_read("exe-attachment.eml"))
    attachments = [p for p in msg.walk() if p.get_filename()]
    assert [p.get_filename() for p in attachments] == ["invoice.pdf.exe"]
    assert attachments[0].get_content_type() == "application/octet-stream"
    assert attachments[0].get_payload(decode=True).startswith(b"MZ")

    raw = _read("crlf-line-ends.eml")
    assert raw.count(b"\r\n") == raw.count(b"\n") > 10
    assert _parse(raw)["Subject"] == "Re: build server downtime"


def _split_mboxrd(raw: bytes) -> list[bytes]:
    """Split an mboxrd file and undo its ``>From`` quoting (stdlib has no reader for it)."""
    out: list[list[bytes]] = []
    prev_blank = True
    for line in raw.splitlines(keepends=True):
        if prev_blank and line.startswith(b"From "):
            out.append([])
        elif out:
            if re.match(rb">+From ", line):
                line = line[1:]
            out[-1].append(line)
        prev_blank = line.strip() == b""
    return [b"".join(lines) for lines in out]


def test_mixed_mbox() -> None:
    raw = _read("mixed.mbox")
    separators = [line for line in raw.splitlines() if line.startswith(b"From ")]
    assert separators == [MBOX_SEPARATOR] * 3
    msgs = _split_mboxrd(raw)
    assert len(msgs) == 3
    for m in msgs:
        assert _parse(m)["From"] == "Sender <sender@example.com>"
    bodies = [_parse(m).get_payload() for m in msgs]
    assert any(line.startswith("From the desk of") for b in bodies for line in b.splitlines())
    assert b">From the desk of" in raw


# --- generators in tests/support/messages.py ---------------------------------------


def test_generators_are_deterministic() -> None:
    for make in (
        lambda: messages.many_parts(50),
        lambda: messages.nested_rfc822(5),
        lambda: messages.long_header_line(1000),
        lambda: messages.huge_attachment(10_000),
        messages.pathological_body,
    ):
        assert hashlib.sha256(make()).digest() == hashlib.sha256(make()).digest()


def test_huge_attachment() -> None:
    raw = messages.huge_attachment()
    assert len(raw) > 20 * 1024 * 1024
    msg = _parse(raw)
    attachments = [p for p in msg.walk() if p.get_filename()]
    assert len(attachments) == 1
    payload = attachments[0].get_payload(decode=True)
    assert len(payload) == 20 * 1024 * 1024
    assert payload == messages.huge_attachment_payload()


def test_huge_attachment_custom_size() -> None:
    msg = _parse(messages.huge_attachment(size=1000))
    (attachment,) = [p for p in msg.walk() if p.get_filename()]
    assert len(attachment.get_payload(decode=True)) == 1000


def test_many_parts() -> None:
    msg = _parse(messages.many_parts())
    assert msg.get_content_type() == "multipart/mixed"
    parts = [p for p in msg.walk() if p.get_content_type() == "text/plain"]
    assert len(parts) == 5000
    assert parts[-1].get_payload().strip() == "Part 5000 of 5000."
    assert not msg.defects


def _rfc822_depth(msg: Message) -> tuple[int, Message]:
    depth = 0
    while True:
        attached = [p for p in msg.walk() if p.get_content_type() == "message/rfc822"]
        if not attached:
            return depth, msg
        (msg,) = attached[0].get_payload()
        depth += 1


@pytest.mark.parametrize("depth", [1, 50])
def test_nested_rfc822(depth: int) -> None:
    raw = messages.nested_rfc822() if depth == 50 else messages.nested_rfc822(depth)
    msg = _parse(raw)
    found, innermost = _rfc822_depth(msg)
    assert found == depth
    assert innermost.get_content_type() == "text/plain"
    assert f"{depth} levels down" in innermost.get_payload()


def test_long_header_line() -> None:
    raw = messages.long_header_line()
    subject = _parse(raw)["Subject"]
    assert len(subject) == 200_000
    assert " " not in subject and "\t" not in subject


def test_pathological_body() -> None:
    msg = _parse(messages.pathological_body())
    lines = msg.get_payload().split("\n")
    assert "a" * 50_000 + "!" in lines
    assert " " * 100_000 + "x" in lines
    assert max(len(line) for line in lines) >= 1024 * 1024
