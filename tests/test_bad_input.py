"""Hostile and broken messages: each gets a verdict (or a clear per-file error), never a crash.

Malformed samples live in corpus/malformed/; the large cases are generated (tests/messages.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support import messages
from support.messages import make_message
from support.paths import CORPUS

from pyspamd.scanner import Scanner

MALFORMED = sorted((CORPUS / "malformed").glob("*.eml"))


@pytest.mark.parametrize("path", MALFORMED, ids=lambda p: p.name)
def test_every_malformed_sample_gets_a_verdict(default_scanner: Scanner, path: Path) -> None:
    result = default_scanner.scan(path.read_bytes())
    assert result.errors == []
    assert result.action in {"no action", "greylist", "add header", "reject"}


EXPECTED = {
    "bad-base64.eml": "MIME_BAD_BASE64",
    "bad-qp.eml": "MIME_BAD_QP",
    "truncated-multipart.eml": "MIME_TRUNCATED",
    "nul-bytes.eml": "NUL_IN_MESSAGE",
    "8bit-headers.eml": "HEADER_8BIT",
    "unknown-charset.eml": "R_BAD_CHARSET",
    "wrong-charset.eml": "R_BAD_CHARSET",
    "html-only.eml": "MIME_HTML_ONLY",
    "gtube.eml": "GTUBE",
    "gtube-base64.eml": "GTUBE",
}


@pytest.mark.parametrize(("name", "symbol"), EXPECTED.items())
def test_the_defect_is_named(default_scanner: Scanner, name: str, symbol: str) -> None:
    result = default_scanner.scan((CORPUS / "malformed" / name).read_bytes())
    assert symbol in result.symbols, sorted(result.symbols)


def test_unknown_charset_text_is_still_read(default_scanner: Scanner) -> None:
    task = default_scanner.task((CORPUS / "malformed" / "unknown-charset.eml").read_bytes())
    assert task.text_parts and task.text_parts[0].text.strip()
    assert "x-klingon" in task.anomalies["bad_charset"]


def test_empty_message(default_scanner: Scanner) -> None:
    result = default_scanner.scan(b"")
    assert result.errors == [] and "MIME_GOOD" not in result.symbols


def test_huge_attachment_is_not_decoded(default_scanner: Scanner) -> None:
    raw = messages.huge_attachment()
    assert len(raw) > 20_000_000
    task = default_scanner.task(raw)
    result = default_scanner.scan_task(task)
    assert result.errors == []
    assert len(task.full_bytes) == default_scanner.config.scan.max_full_bytes
    assert "HAS_ATTACHMENT" in result.symbols


def test_huge_text_part_is_bounded(default_scanner: Scanner) -> None:
    raw = make_message(body="spam " * 2_000_000)  # 10 MB of text
    task = default_scanner.task(raw)
    assert default_scanner.scan_task(task).errors == []
    assert len(task.body_text) <= default_scanner.config.scan.max_part_text_bytes + 200


def test_five_thousand_parts(default_scanner: Scanner) -> None:
    task = default_scanner.task(messages.many_parts(5000))
    result = default_scanner.scan_task(task)
    assert result.errors == []
    assert "MIME_TOO_MANY_PARTS" in result.symbols
    assert len(task.parts) == default_scanner.config.scan.max_parts


def test_nested_rfc822_fifty_deep(default_scanner: Scanner) -> None:
    task = default_scanner.task(messages.nested_rfc822(50))
    result = default_scanner.scan_task(task)
    assert result.errors == []
    assert "MIME_TOO_DEEP" in result.symbols
    assert max(p.depth for p in task.parts) <= default_scanner.config.scan.max_depth


def test_long_header_and_pathological_body(default_scanner: Scanner) -> None:
    for raw in (messages.long_header_line(), messages.pathological_body()):
        assert default_scanner.scan(raw).errors == []


def test_binary_garbage(default_scanner: Scanner) -> None:
    raw = bytes(range(256)) * 4000
    assert default_scanner.scan(raw).errors == []


def test_bad_encoded_words_and_rfc2231(default_scanner: Scanner) -> None:
    raw = make_message({
        "Subject": "=?utf-8?B?!!!notbase64?= =?nope?Q?x?= =?utf-8?q?ok?=",
        "From": "=?iso-8859-1?q?J=F6rg?= <jorg@example.org>",
        "Content-Type": "text/plain; charset*=x-bogus''%FF%FE",
    })
    result = default_scanner.scan(raw)
    assert result.errors == []
    assert "R_BAD_CHARSET" in result.symbols


def test_content_type_with_endless_parameters(default_scanner: Scanner) -> None:
    # The stdlib parameter parser is quadratic in ";": unbounded, this takes minutes.
    raw = make_message({"Content-Type": "text/html" + " ;" * 100_000}, "<p>hello</p>")
    result = default_scanner.scan(raw)
    assert result.errors == [] and "MIME_HTML_ONLY" in result.symbols
