"""The rules of today's spam and phishing (rules/6*-8*.rules) and the checks behind them:
each fires on its own small message, every such rule has one, and the ham sample in
corpus/ham stays below `add header` with them all.

Text, URL, HTML and header cases live in tests/rule_cases/*.cases (format: the comment at
the top of 60_url_hosts.cases). Attachment cases need real ZIP, OLE, PDF and ISO bytes, so
they are built here.
"""

from __future__ import annotations

import base64
import io
import re
import zipfile
from pathlib import Path

import pytest

from pyspamd.checks.registry import build_checks
from pyspamd.config import load_config
from pyspamd.ruleset.loader import load_rules
from pyspamd.scanner import Scanner, builtin_symbols
from pyspamd.services import Services
from pyspamd.task import Envelope

ROOT = Path(__file__).resolve().parents[1]
CASES_DIR = ROOT / "tests" / "rule_cases"
RULES_DIR = ROOT / "rules"
HAM_SAMPLE = ROOT / "corpus" / "ham" / "cur"
NEW_RULE_FILES = re.compile(r"^[678]\d_.*\.rules$")
NEW_CHECKS = ("url_features", "html_features", "attachment_content", "sender_identity",
              "era_lexicon")

DEFAULT_HEADERS = {
    "from": "Sender <sender@example.com>",
    "to": "Bob <bob@example.net>",
    "subject": "Notice",
    "date": "Mon, 04 Mar 2024 10:00:00 +0000",
    "message-id": "<case.4711@mail.example.com>",
    "mime-version": "1.0",
}
# A case starts with headers when its first line is one of these (a body line such as
# "Login: https://..." must not be taken for a header).
_HEADER_LINE = re.compile(
    r"^(?:from|to|cc|bcc|subject|date|message-id|reply-to|content-type|mime-version"
    r"|received|list-[a-z-]+|x-[a-z0-9-]+):", re.IGNORECASE)


def build_case(text: str) -> tuple[bytes, Envelope | None]:
    """Headers of the case (up to the first blank line, if it starts with headers), the
    defaults for the ones it leaves out, then its body."""
    lines = text.split("\n")
    headers: list[str] = []
    envelope: Envelope | None = None
    body_start = 0
    if lines and (_HEADER_LINE.match(lines[0]) or lines[0].startswith("# envelope:")):
        for index, line in enumerate(lines):
            if not line.strip():
                body_start = index + 1
                break
            if line.startswith("# envelope:"):
                fields = dict(f.split("=", 1) for f in line.split(":", 1)[1].split())
                envelope = Envelope(mail_from=fields.get("mail_from"))
            else:
                headers.append(line)
        else:
            body_start = len(lines)
    given = {h.split(":", 1)[0].strip().lower() for h in headers}
    for name, value in DEFAULT_HEADERS.items():
        if name not in given:
            headers.append(f"{name.title()}: {value}")
    if not any(h.lower().startswith("content-type:") for h in headers):
        headers.append("Content-Type: text/plain; charset=utf-8")
    body = "\n".join(lines[body_start:]).strip("\n") + "\n"
    return ("\n".join(headers) + "\n\n" + body).encode("utf-8"), envelope


def read_cases() -> list[tuple[str, list[str], str]]:
    """(case id, rule names, case text) of every case file."""
    out = []
    for path in sorted(CASES_DIR.glob("*.cases")):
        chunks = re.split(r"(?m)^=== ", path.read_text(encoding="utf-8"))[1:]
        for number, chunk in enumerate(chunks, 1):
            head, _, text = chunk.partition("\n")
            names = head.split()
            out.append((f"{path.stem}:{number}:{names[0]}", names, text.strip("\n")))
    return out


# ---------------------------------------------------------------- attachment cases
def mime_message(body: str, parts: list[tuple[str, str, bytes]], headers: str = "") -> bytes:
    """multipart/mixed with a text/plain body and (filename, content type, bytes) parts."""
    boundary = "==case_boundary=="
    chunks = [f"--{boundary}\nContent-Type: text/plain; charset=utf-8\n\n{body}\n"]
    for filename, ctype, data in parts:
        encoded = base64.encodebytes(data).decode()
        chunks.append(
            f"--{boundary}\nContent-Type: {ctype}; name=\"{filename}\"\n"
            f"Content-Disposition: attachment; filename=\"{filename}\"\n"
            f"Content-Transfer-Encoding: base64\n\n{encoded}"
        )
    head = headers + "".join(
        f"{n.title()}: {v}\n" for n, v in DEFAULT_HEADERS.items()
        if n.title() + ":" not in headers)
    return (f"{head}Content-Type: multipart/mixed; boundary=\"{boundary}\"\n\n"
            + "".join(chunks) + f"--{boundary}--\n").encode("utf-8")


def zip_of(*members: str, encrypted: bool = False) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in members:
            archive.writestr(name, b"harmless test content")
    data = bytearray(buffer.getvalue())
    if encrypted:  # set the "encrypted" flag bit in every local and central header
        for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
            start = 0
            while (found := data.find(signature, start)) >= 0:
                data[found + offset] |= 1
                start = found + 4
    return bytes(data)


OLE_MACRO = (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504
             + "_VBA_PROJECT".encode("utf-16-le") + b"\x00" * 64)
ISO_IMAGE = b"\x00" * 0x8001 + b"CD001" + b"\x01" * 64
PE_STUB = b"MZ\x90\x00\x03\x00\x00\x00 test stub, not a program"
PDF_JS = b"%PDF-1.7\n1 0 obj << /Type /Catalog /OpenAction 2 0 R >> endobj\n"
# the same action with its name written in #xx escapes, as readers accept it
PDF_JS_ESCAPED = b"%PDF-1.7\n2 0 obj << /S /J#61vaScr#69pt /J#53 (app.alert(1)) >> endobj\n"
HTML_ACTIVE = b"<html><script>window.location.href='https://x.example/'</script></html>"
HTML_LOGIN = b"<html><form><input type='password' name='pass'></form></html>"
SVG_SCRIPT = b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>"
TEXT = "Please see the attached file."

ATTACHMENT_CASES: list[tuple[list[str], bytes]] = [
    (["ATT_ZIP_EXECUTABLE", "ATT_ZIP_SINGLE_FILE"],
     mime_message(TEXT, [("invoice.zip", "application/zip", zip_of("invoice.exe"))])),
    (["ATT_ZIP_DISK_IMAGE"],
     mime_message(TEXT, [("order.zip", "application/zip", zip_of("order.img", "x.txt"))])),
    (["ATT_ZIP_WEB_PAGE"],
     mime_message(TEXT, [("fax.zip", "application/zip", zip_of("fax.html", "y.txt"))])),
    (["ATT_ZIP_DOUBLE_EXT"],
     mime_message(TEXT, [("scan.zip", "application/zip", zip_of("scan.pdf.exe"))])),
    (["ATT_ZIP_NESTED"],
     mime_message(TEXT, [("docs.zip", "application/zip", zip_of("inner.rar", "z.txt"))])),
    (["ATT_ZIP_ENCRYPTED", "ATT_ENCRYPTED_PASSWORD_TEXT"],
     mime_message("The archive password is: 4711\n",
                  [("doc.zip", "application/zip", zip_of("doc.txt", encrypted=True))])),
    (["ATT_ARCHIVE_PASSWORD_TEXT"],
     mime_message("Password: 8842\n", [("doc.rar", "application/x-rar", b"Rar!\x1a\x07\x00")])),
    (["ATT_OFFICE_MACRO"],
     mime_message(TEXT, [("invoice.xls", "application/vnd.ms-excel", OLE_MACRO)])),
    (["ATT_OFFICE_MACRO"],
     mime_message(TEXT, [("order.docm", "application/octet-stream",
                          zip_of("word/document.xml", "word/vbaProject.bin"))])),
    (["ATT_PE_DISGUISED"],
     mime_message(TEXT, [("photo.jpg", "image/jpeg", PE_STUB)])),
    (["ATT_DISK_IMAGE_CONTENT"],
     mime_message(TEXT, [("invoice.pdf", "application/pdf", ISO_IMAGE)])),
    (["ATT_PDF_ACTIVE"],
     mime_message(TEXT, [("statement.pdf", "application/pdf", PDF_JS)])),
    (["ATT_PDF_ACTIVE"],
     mime_message(TEXT, [("statement.pdf", "application/pdf", PDF_JS_ESCAPED)])),
    (["ATT_WEB_ACTIVE", "ATT_WEB_PAGE_LURE"],
     mime_message(TEXT, [("Document0098.html", "text/html", HTML_ACTIVE)])),
    (["ATT_WEB_PASSWORD", "ATT_HTML_NAME_DOCUMENT"],
     mime_message(TEXT, [("Remittance_advice.htm", "text/html", HTML_LOGIN)])),
    (["ATT_SVG_SCRIPT", "ATT_SVG_FILE"],
     mime_message(TEXT, [("voice_message.svg", "image/svg+xml", SVG_SCRIPT)])),
    (["ATT_NAME_FAKE_PDF_HTML"],
     mime_message(TEXT, [("invoice.pdf.html", "text/html", b"<p>x</p>")])),
    (["ATT_NAME_MANY_SPACES"],
     mime_message(TEXT, [("report.pdf          .lnk", "application/octet-stream", b"x")])),
    (["ATT_NAME_INVISIBLE"],
     mime_message(TEXT, [("inv\u200boice.pdf", "application/pdf", b"%PDF-1.4\n")])),
    (["ATT_NAME_LOOKALIKE_DOT"],
     mime_message(TEXT, [("invoice\u2024pdf", "application/octet-stream", b"x")])),
    (["ATT_DOUBLE_EXT_IMAGE", "ATT_ARCHIVE_INVOICE_LURE"],
     mime_message("Please find attached the invoice no. 448812.\n",
                  [("invoice.pdf.iso", "application/octet-stream", b"x")])),
    (["ATT_ONENOTE"],
     mime_message(TEXT, [("notes.one", "application/onenote", b"x")])),
    (["ATT_INSTALLER_PKG"],
     mime_message(TEXT, [("update.msix", "application/octet-stream", b"x")])),
    (["ATT_ARCHIVE_RARE"],
     mime_message(TEXT, [("scan.ace", "application/octet-stream", b"x")])),
    (["ATT_NAME_EXE_WORD"],
     mime_message(TEXT, [("setup_update.zip", "application/zip", zip_of("readme.txt"))])),
    (["ATT_CT_OCTET_HTML_NAME"],
     mime_message(TEXT, [("etrade-Notification.html", "application/octet-stream", b"<p>")])),
    (["ATT_CT_MISMATCH_PDF"],
     mime_message(TEXT, [("statement.html", "application/pdf", b"<p>")])),
]


# ---------------------------------------------------------------- fixtures and tests
@pytest.fixture(scope="module")
def scanner(tmp_path_factory: pytest.TempPathFactory) -> Scanner:
    config = load_config(None)
    config.storage.path = str(tmp_path_factory.mktemp("store") / "empty.sqlite")
    return Scanner.from_config(config)  # an empty Bayes store: Bayes casts no vote


CASES = read_cases()


@pytest.mark.parametrize(("names", "text"), [(n, t) for _, n, t in CASES],
                         ids=[i for i, _, _ in CASES])
def test_rule_fires_on_its_case(scanner: Scanner, names: list[str], text: str) -> None:
    raw, envelope = build_case(text)
    result = scanner.scan(raw, envelope)
    missing = [n for n in names if n not in result.symbols]
    assert not missing, f"{missing} did not fire; got {sorted(result.symbols)}"


@pytest.mark.parametrize(("names", "raw"), ATTACHMENT_CASES,
                         ids=[n[0] for n, _ in ATTACHMENT_CASES])
def test_attachment_rule_fires_on_its_case(scanner: Scanner, names: list[str],
                                           raw: bytes) -> None:
    result = scanner.scan(raw)
    missing = [n for n in names if n not in result.symbols]
    assert not missing, f"{missing} did not fire; got {sorted(result.symbols)}"


def test_every_new_rule_and_check_symbol_has_a_case() -> None:
    config = load_config(None)
    checks = build_checks(config, Services(config, symbols_only=True))
    rs = load_rules([RULES_DIR], builtin_symbols(checks))
    wanted = {name for name, rule in rs.rules.items()
              if not name.startswith("__") and NEW_RULE_FILES.match(
                  Path(rule.source.rsplit(":", 1)[0]).name)}
    wanted |= {name for c in checks if c.name in NEW_CHECKS for name in c.symbols}
    covered = {n for _, names, _ in CASES for n in names}
    covered |= {n for names, _ in ATTACHMENT_CASES for n in names}
    assert sorted(wanted - covered) == []


def test_new_rule_files_say_what_they_target() -> None:
    for path in sorted(RULES_DIR.glob("*.rules")):
        if NEW_RULE_FILES.match(path.name):
            first = path.read_text(encoding="utf-8").splitlines()[0]
            assert first.startswith("# ") and len(first) > 30, path.name


def new_symbols(scanner: Scanner) -> set[str]:
    """Symbols of the rule files and checks this suite is about."""
    out = {name for name, rule in scanner.ruleset.rules.items()
           if NEW_RULE_FILES.match(Path(rule.source.rsplit(":", 1)[0]).name)}
    out |= {name for name, d in scanner.ruleset.defs.items()
            if d.source.removeprefix("check:") in NEW_CHECKS}
    return out


def test_ham_sample_stays_below_add_header(scanner: Scanner) -> None:
    """No ham message of corpus/ham reaches `add header` because of the new rules. (One
    hard-ham message, an HTML newsletter naming Viagra, is flagged by the older phrase
    rules alone; the rescore of the verdict-quality issue is where that is fixed.)"""
    files = sorted(p for p in HAM_SAMPLE.iterdir() if p.is_file() and not p.name.startswith("."))
    assert files, "corpus/ham/cur is empty"
    threshold = scanner.thresholds.spam_score  # add header
    new = new_symbols(scanner)
    pushed = {}
    for path in files:
        result = scanner.scan(path.read_bytes())
        added = sum(s.score for name, s in result.symbols.items() if name in new)
        if result.score >= threshold and result.score - added < threshold:
            pushed[path.name] = (round(result.score, 1), sorted(
                n for n in result.symbols if n in new))
    assert pushed == {}
