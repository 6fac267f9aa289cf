"""Fuzzing the scan with mutated corpus messages (Hypothesis): every scan gets a verdict
without a check failing, and GTUBE stays rejected whatever surrounds it.

Brief in CI (a few seconds); by hand, run longer with an example count:

    PYSPAMD_FUZZ_EXAMPLES=20000 .venv/bin/python -m pytest tests/test_fuzz.py -q

A failure prints the smallest message Hypothesis found and a blob to replay it
(@reproduce_failure).
"""

from __future__ import annotations

import os
from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import messages
from support.paths import CORPUS

from pyspamd.scanner import Scanner

_EXAMPLES = int(os.environ.get("PYSPAMD_FUZZ_EXAMPLES", "0"))
settings.register_profile(
    "pyspamd-ci", max_examples=40, deadline=None, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "pyspamd-long", parent=settings.get_profile("pyspamd-ci"),
    max_examples=max(_EXAMPLES, 1),
)
FUZZ = settings.get_profile("pyspamd-long" if _EXAMPLES else "pyspamd-ci")

ACTIONS = {"no action", "greylist", "add header", "rewrite subject", "soft reject", "reject"}
GTUBE = messages.GTUBE.encode()

# Pieces that broke parsers before (issue 18) or are known to be hard: 8-bit parameter
# bytes, encoded words, boundaries, nesting, HTML depth, NUL, bare CR, RFC 2231.
FRAGMENTS = [
    b"\xe9", b'; x="\xe9"', b"; filename*=utf-8''%E9%00", b"=?utf-8?q?", b"=?", b"?=",
    b"=?utf-8?b?////?=", b"\n--", b"--\n", b"\n\n", b"\r", b"\x00", b"\n ",
    b'Content-Type: multipart/mixed; boundary="b"\n\n--b\n',
    b"Content-Type: message/rfc822\n\n", b"Content-Type: text/html\n\n",
    b"Content-Disposition: attachment; filename=\"\xff\xfe.exe\"\n",
    b"Content-Transfer-Encoding: base64\n", b"Content-Transfer-Encoding: quoted-printable\n",
    b"<div>" * 40, b"<a href='http://x.example/'>", b"<!--", b"<script>", b";" * 50,
    b"=\n", b"=ZZ", b"Subject: =?x-unknown?q?a?=\n", b"From: <@>\n",
]


@cache
def seeds() -> list[bytes]:
    paths = sorted((CORPUS / "malformed").glob("*.eml"))
    for folder in ("ham", "spam"):  # a few real messages: multipart, HTML, encodings
        paths += sorted(p for p in (CORPUS / folder / "cur").iterdir()
                        if not p.name.startswith("."))[:15]
    return [p.read_bytes() for p in paths]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds())))
    for _ in range(draw(st.integers(1, 8))):
        pos = draw(st.integers(0, len(data)))
        choice = draw(st.integers(0, 4))
        if choice == 0:  # insert a known-hard piece, sometimes many times over
            data[pos:pos] = draw(st.sampled_from(FRAGMENTS)) * draw(st.sampled_from([1, 2, 200]))
        elif choice == 1:  # overwrite bytes
            new = draw(st.binary(min_size=1, max_size=8))
            data[pos : pos + len(new)] = new
        elif choice == 2:  # delete a slice
            data[pos : pos + draw(st.integers(1, 200))] = b""
        elif choice == 3:  # repeat a slice (deeper nesting, more headers, more parts)
            piece = bytes(data[pos : pos + draw(st.integers(1, 300))])
            data[pos:pos] = piece * draw(st.integers(1, 30))
        else:  # cut the message short
            del data[pos:]
    return bytes(data)


@pytest.mark.timeout(300)
@FUZZ
@given(raw=mutated())
def test_every_mutated_message_gets_a_verdict(default_scanner: Scanner, raw: bytes) -> None:
    result = default_scanner.scan(raw)
    assert result.errors == [], result.errors
    assert result.action in ACTIONS


@pytest.mark.timeout(300)
@FUZZ
@given(raw=mutated())
def test_gtube_in_the_subject_is_rejected_whatever_follows(default_scanner: Scanner,
                                                           raw: bytes) -> None:
    # The Subject is part of what body rules read, so GTUBE there must hit however broken
    # the rest of the message is.
    result = default_scanner.scan(b"Subject: " + GTUBE + b"\n" + raw)
    assert result.errors == [], result.errors
    assert result.action == "reject" and "GTUBE" in result.symbols, sorted(result.symbols)


@pytest.mark.timeout(300)
@FUZZ
@given(headers=st.lists(st.sampled_from(FRAGMENTS) | st.binary(max_size=40), max_size=12),
       param=st.binary(max_size=30).filter(lambda b: not set(b) & set(b'";\r\n')))
def test_gtube_in_a_plain_body_is_rejected_under_hostile_headers(
    default_scanner: Scanner, headers: list[bytes], param: bytes
) -> None:
    head = b"".join(b"X-Fuzz: " + h.replace(b"\n", b" ").replace(b"\r", b" ") + b"\n"
                    for h in headers)
    raw = (b"From: a@example.com\n" + head
           + b'Content-Type: text/plain; charset=us-ascii; x="' + param + b'"\n'
           + b'Content-Disposition: inline; y="' + param + b'"\n\n' + GTUBE + b"\n")
    result = default_scanner.scan(raw)
    assert result.errors == [], result.errors
    assert result.action == "reject" and "GTUBE" in result.symbols, sorted(result.symbols)
