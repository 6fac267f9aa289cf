"""Test messages: `make_message`, a well-formed ham message with any headers and body
changed, and generators for hostile messages that are too big to commit as files.

Every function is pure and deterministic: the same arguments always give the
same bytes, so a failing test can be reproduced exactly.  Output uses LF line
ends, like the files in ``corpus/``.  Nothing here depends on pytest or on the
``pyspamd`` package, so the module can also be used from benchmarks or by hand
(from the ``tests/`` folder)::

    python -c "import sys; from support import messages as m; \
               sys.stdout.buffer.write(m.many_parts())"
"""

from __future__ import annotations

import base64

__all__ = [
    "GTUBE",
    "deep_html",
    "deep_nesting",
    "huge_attachment",
    "huge_attachment_payload",
    "long_header_line",
    "make_message",
    "many_encoded_words",
    "many_headers",
    "many_parts",
    "nested_rfc822",
    "pathological_body",
]

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

_DATE = "Mon, 06 Jan 2003 10:00:00 +0000"


def _headers(subject: str, msgid: str, content_type: str, extra: str = "") -> str:
    """A plausible header block (without the blank line that ends it)."""
    return (
        "Return-Path: <sender@example.com>\n"
        "Received: from mail.example.com (mail.example.com [192.0.2.10])\n"
        "\tby mx1.example.org (Postfix) with ESMTP id 3C9D7A10F2\n"
        f"\tfor <rcpt@example.org>; {_DATE}\n"
        "From: Test Sender <sender@example.com>\n"
        "To: rcpt@example.org\n"
        f"Subject: {subject}\n"
        f"Date: {_DATE}\n"
        f"Message-ID: <{msgid}@example.com>\n"
        "MIME-Version: 1.0\n"
        f"Content-Type: {content_type}\n"
        f"{extra}"
    )


def _base64_lines(data: bytes) -> bytes:
    """Base64 in 76-character lines, LF-terminated (``encodebytes`` style)."""
    return base64.encodebytes(data)


def huge_attachment_payload(size: int = 20 * 1024 * 1024) -> bytes:
    """The exact bytes that :func:`huge_attachment` attaches.

    A repeating 0..255 ramp: cheap to build, incompressible enough to be boring
    for a scanner, and easy for a test to recreate and compare against.
    """
    ramp = bytes(range(256))
    whole, rest = divmod(size, len(ramp))
    return ramp * whole + ramp[:rest]


def huge_attachment(size: int = 20 * 1024 * 1024) -> bytes:
    """A short text/plain part plus a ``size``-byte base64 attachment.

    Exists to check that the milter enforces its size limit (skip or truncate
    instead of buffering and decoding everything) and that decoding stays
    linear: 20 MB of payload is about 27 MB of base64 on the wire.
    """
    boundary = "=_huge_attachment_0001_="
    head = _headers(
        "Backup archive",
        "huge-attachment",
        f'multipart/mixed; boundary="{boundary}"',
    )
    text = (
        f"\n--{boundary}\n"
        "Content-Type: text/plain; charset=us-ascii\n"
        "Content-Transfer-Encoding: 7bit\n"
        "\n"
        "The backup archive is attached.\n"
        f"\n--{boundary}\n"
        'Content-Type: application/octet-stream; name="backup.bin"\n'
        "Content-Transfer-Encoding: base64\n"
        'Content-Disposition: attachment; filename="backup.bin"\n'
        "\n"
    )
    tail = f"\n--{boundary}--\n"
    return (
        (head + text).encode("ascii")
        + _base64_lines(huge_attachment_payload(size))
        + tail.encode("ascii")
    )


def many_parts(n: int = 5000) -> bytes:
    """A multipart/mixed message with ``n`` small text/plain parts.

    Exists to check that MIME walking has a part limit (or at least stays
    linear) and that per-part work such as charset decoding and rule runs does
    not blow up; a mail bomb does not need to be large to be expensive.
    """
    boundary = "=_many_parts_0001_="
    chunks = [
        _headers("Many parts", "many-parts", f'multipart/mixed; boundary="{boundary}"'),
        "\nThis is a multi-part message in MIME format.\n",
    ]
    for i in range(n):
        chunks.append(
            f"\n--{boundary}\n"
            "Content-Type: text/plain; charset=us-ascii\n"
            "Content-Transfer-Encoding: 7bit\n"
            "\n"
            f"Part {i + 1} of {n}.\n"
        )
    chunks.append(f"\n--{boundary}--\n")
    return "".join(chunks).encode("ascii")


def nested_rfc822(depth: int = 50) -> bytes:
    """``depth`` levels of forwarded messages; the innermost one is text/plain.

    Each level is a multipart/mixed with a short note and a message/rfc822
    part holding the next level.  Exists to check that the parser and anything
    that recurses over the MIME tree has a depth limit and does not hit
    Python's recursion limit or quadratic copying.  Boundaries are zero-padded
    so no boundary is a prefix of another.
    """
    inner = (
        _headers(
            "Innermost message",
            f"nested-{depth:04d}",
            "text/plain; charset=us-ascii",
        )
        + f"\nThis is the innermost message, {depth} levels down.\n"
    )
    for level in range(depth - 1, -1, -1):
        boundary = f"=_nested_{level:04d}_="
        inner = (
            _headers(
                f"Fwd: level {level}",
                f"nested-{level:04d}",
                f'multipart/mixed; boundary="{boundary}"',
            )
            + f"\n--{boundary}\n"
            "Content-Type: text/plain; charset=us-ascii\n"
            "\n"
            f"Forwarded message, level {level}.\n"
            f"\n--{boundary}\n"
            "Content-Type: message/rfc822\n"
            "Content-Disposition: inline\n"
            "\n"
            f"{inner}"
            f"\n--{boundary}--\n"
        )
    return inner.encode("ascii")


def long_header_line(n: int = 200_000) -> bytes:
    """A message whose Subject is one ``n``-character word with no spaces.

    Exists because header folding/unfolding, RFC 2047 decoding and header
    regexes are often written for short lines; a single unbreakable 200k
    header is legal to send (servers may reject it) and must not stall the
    scan.  The word cycles through letters and digits.
    """
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    reps, rest = divmod(n, len(alphabet))
    subject = alphabet * reps + alphabet[:rest]
    return (
        _headers(subject, "long-header-line", "text/plain; charset=us-ascii") + "\nShort body.\n"
    ).encode("ascii")


PATHOLOGICAL_A_RUN = 50_000
PATHOLOGICAL_SPACE_RUN = 100_000
PATHOLOGICAL_LONG_LINE = 1024 * 1024


def pathological_body() -> bytes:
    """A text/plain message built to make backtracking regexes slow.

    Contains, each on its own line:

    * ``a`` x 50,000 followed by ``!`` - kills patterns like ``(a+)+$`` or
      ``\\w+\\s*\\w+:`` that fail only at the end;
    * 100,000 spaces followed by ``x`` - kills ``\\s*\\S*\\s*$`` style patterns;
    * ``http://`` plus ``a.`` x 20,000 and ``!`` - stresses URL/domain
      extractors;
    * ``a`` x 30,000 then ``@`` - stresses e-mail address extractors;
    * one single line of 1 MiB (``ab`` repeated, no whitespace) - stresses
      per-line buffers and line-length limits.

    Every line is far over the RFC 5322 998-octet limit on purpose.
    """
    lines = [
        "Hello,",
        "",
        "a" * PATHOLOGICAL_A_RUN + "!",
        " " * PATHOLOGICAL_SPACE_RUN + "x",
        "http://" + "a." * 20_000 + "!",
        "a" * 30_000 + "@",
        ("ab" * (PATHOLOGICAL_LONG_LINE // 2 + 1))[:PATHOLOGICAL_LONG_LINE],
        "",
        "Bye.",
    ]
    return (
        _headers("Regex stress test", "pathological-body", "text/plain; charset=us-ascii")
        + "\n"
        + "\n".join(lines)
        + "\n"
    ).encode("ascii")


def make_message(
    headers: dict[str, str] | list[tuple[str, str]] | None = None,
    body: str = "Hello,\n\nsee you at lunch.\n",
) -> bytes:
    """A raw RFC 5322 message; default headers make it well-formed ham."""
    defaults = [
        ("Received", "from mail.example.org (mail.example.org [192.0.2.10]) by mx.example.net "
                     "with ESMTP id 4A1B2C; Mon, 6 Jan 2003 10:00:05 +0000"),
        ("From", "Alice Example <alice@example.org>"),
        ("To", "bob@example.net"),
        ("Subject", "Lunch on Friday"),
        ("Date", "Mon, 6 Jan 2003 10:00:00 +0000"),
        ("Message-ID", "<20030106100000.1234@mail.example.org>"),
        ("MIME-Version", "1.0"),
        ("Content-Type", "text/plain; charset=us-ascii"),
    ]
    items = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    names = {n.lower() for n, _ in items}
    merged = [(n, v) for n, v in defaults if n.lower() not in names] + items
    head = "".join(f"{n}: {v}\n" for n, v in merged if v is not None)
    return (head + "\n" + body).encode("utf-8")


def deep_nesting(depth: int = 1000, kind: str = "multipart", text: str = GTUBE) -> bytes:
    """``depth`` levels of multipart/mixed (kind "multipart") or message/rfc822 (kind
    "rfc822") nesting, with ``text`` in a text/plain part at the top level.

    Python's email parser recurses once per level, so about 1,000 levels raised
    RecursionError; the top-level text must still be scanned.
    """
    if kind == "multipart":
        inner = "Content-Type: text/plain\n\ninnermost\n"
        for level in range(depth, 0, -1):
            inner = (f'Content-Type: multipart/mixed; boundary="b{level}"\n\n'
                     f"--b{level}\n{inner}\n--b{level}--\n")
    elif kind == "rfc822":
        inner = "From: x@example.com\nContent-Type: text/plain\n\ninnermost\n"
        for level in range(depth, 0, -1):
            inner = f"From: x{level}@example.com\nContent-Type: message/rfc822\n\n{inner}"
    else:
        raise ValueError(kind)
    top = (
        _headers("Deep", f"deep-{kind}-{depth}", 'multipart/mixed; boundary="top"')
        + "\n--top\nContent-Type: text/plain; charset=us-ascii\n\n"
        + f"{text}\n\n--top\n{inner}\n--top--\n"
    )
    return top.encode("ascii")


def deep_html(depth: int = 50_000, text: str = GTUBE) -> bytes:
    """An HTML part of ``depth`` nested <div> around ``text`` and a link: HTML parsers
    that keep a stack of open elements take time in the square of the depth."""
    markup = ("<html><body>" + "<div>" * depth + f'{text} <a href="http://deep.example.com/x">'
              "x</a>" + "</div>" * depth + "</body></html>")
    return (_headers("Deep HTML", f"deep-html-{depth}", "text/html; charset=us-ascii")
            + "\n" + markup + "\n").encode("ascii")


def many_encoded_words(n: int = 100_000, text: str = GTUBE) -> bytes:
    """A Subject of ``n`` RFC 2047 encoded words (the stdlib decoder is slower than
    linear in their number), ``text`` in the body."""
    subject = " ".join(f"=?utf-8?q?w{i}?=" for i in range(n))
    return (_headers(subject, f"encoded-words-{n}", "text/plain; charset=us-ascii")
            + f"\n{text}\n").encode("ascii")


def many_headers(n: int = 100_000, text: str = GTUBE) -> bytes:
    """``n`` extra header fields before the body, ``text`` in the body."""
    extra = "".join(f"X-Filler-{i}: value {i}\n" for i in range(n))
    return (_headers("Many headers", f"many-headers-{n}", "text/plain; charset=us-ascii",
                     extra) + f"\n{text}\n").encode("ascii")


def attachment_message(filename: str, data: bytes,
                       content_type: str = "application/octet-stream") -> bytes:
    body = base64.encodebytes(data).replace(b"\n", b"\r\n")
    return (b"From: alice@example.org\r\nTo: bob@example.test\r\nSubject: papers\r\n"
            b"Message-ID: <banned@example.org>\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=XX\r\n\r\n--XX\r\n"
            b"Content-Type: text/plain\r\n\r\nsee the attachment\r\n--XX\r\n"
            + f"Content-Type: {content_type}; name=\"{filename}\"\r\n"
              f"Content-Disposition: attachment; filename=\"{filename}\"\r\n"
              "Content-Transfer-Encoding: base64\r\n\r\n".encode()
            + body + b"--XX--\r\n")
