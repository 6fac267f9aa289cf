"""MIME structure: the parts of a parsed message, with limits, and their transfer decoding.

Limits exist because a message is attacker-controlled: 5,000 parts or 50 levels of
message/rfc822 must cost a bounded amount of work, and the excess is a symbol, not a crash.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass, field
from email import errors as email_errors
from email.message import Message

from pyspamd.textdecode import decode_header_value

_B64_BODY = re.compile(rb"[A-Za-z0-9+/]*={0,2}")
_B64_JUNK = re.compile(rb"[^A-Za-z0-9+/]")
_QP_BAD_ESCAPE = re.compile(rb"=(?![0-9A-Fa-f]{2}|\r?\n|[ \t]*\r?\n)")

# email's defect classes, as the anomaly names used by the mime_sanity check.
_DEFECTS: dict[type, str] = {
    email_errors.CloseBoundaryNotFoundDefect: "truncated",
    email_errors.StartBoundaryNotFoundDefect: "broken_multipart",
    email_errors.NoBoundaryInMultipartDefect: "broken_multipart",
    email_errors.MultipartInvariantViolationDefect: "broken_multipart",
    email_errors.MissingHeaderBodySeparatorDefect: "header_body_separator",
    email_errors.MisplacedEnvelopeHeaderDefect: "misplaced_envelope_header",
}


@dataclass(slots=True)
class MimePart:
    msg: Message = field(repr=False)
    content_type: str  # "type/subtype", lower case
    depth: int
    charset: str | None
    filename: str | None
    transfer_encoding: str
    is_attachment: bool

    def header_values(self, name: str) -> list[str]:
        return [decode_header_value(v)[0] for v in self.msg.get_all(name, [])]


def walk_parts(
    msg: Message, max_parts: int, max_depth: int, anomalies: dict[str, list[str]]
) -> list[MimePart]:
    """Every part in document order, stopping at the limits and noting why."""
    parts: list[MimePart] = []
    stack: list[tuple[Message, int]] = [(msg, 0)]
    while stack:
        node, depth = stack.pop()
        if len(parts) >= max_parts:
            anomalies.setdefault("too_many_parts", []).append(str(max_parts))
            break
        for defect in node.defects:
            name = _DEFECTS.get(type(defect))
            if name:
                anomalies.setdefault(name, [])
        parts.append(_make_part(node, depth))
        if node.is_multipart():
            children = node.get_payload()
            if not isinstance(children, list) or not children:
                continue
            if depth + 1 > max_depth:
                anomalies.setdefault("too_deep", []).append(str(max_depth))
                continue
            stack.extend((child, depth + 1) for child in reversed(children))
    return parts


# Longest Content-Type / Content-Disposition given to the stdlib parameter parser, which is
# quadratic in the number of ";" (a 25 kB header of ";;;" costs 40 ms, 200 kB minutes).
# Real headers with many RFC 2231 filename continuations stay far below this.
_MAX_PARAM_HEADER = 2048


def _bound_param_headers(node: Message) -> None:
    for name in ("content-type", "content-disposition"):
        value = node.get(name)
        if isinstance(value, str) and len(value) > _MAX_PARAM_HEADER:
            node.replace_header(name, value[:_MAX_PARAM_HEADER])


def _make_part(node: Message, depth: int) -> MimePart:
    _bound_param_headers(node)
    try:
        ctype = node.get_content_type()
    except Exception:  # a Content-Type header that is not even parseable
        ctype = "text/plain"
    charset = node.get_param("charset")
    if isinstance(charset, tuple):  # RFC 2231 form
        charset = charset[2] or None
    filename = None
    try:
        raw_name = node.get_filename()
    except Exception:
        raw_name = None
    if raw_name:
        filename = decode_header_value(raw_name)[0]
    disposition = (node.get("content-disposition") or "").split(";", 1)[0].strip().lower()
    cte = str(node.get("content-transfer-encoding") or "7bit").strip().lower()
    return MimePart(
        msg=node,
        content_type=ctype,
        depth=depth,
        charset=str(charset) if charset else None,
        filename=filename,
        transfer_encoding=cte,
        is_attachment=disposition == "attachment" or bool(filename),
    )


def payload_bytes(part: MimePart, limit: int) -> tuple[bytes, str | None]:
    """The part's content after transfer decoding, at most about `limit` bytes.

    Returns (data, problem) where problem is "bad_base64" or "bad_qp" when the encoding was
    broken; the data is then what could still be decoded.
    """
    # The stored payload: compat32's get_payload() would already have decoded 8-bit text with
    # errors="replace", hiding a wrong charset, and is lenient about broken base64.
    payload = part.msg._payload  # type: ignore[attr-defined]  # not in the typeshed stubs
    if not isinstance(payload, str):
        return b"", None
    try:
        raw = payload.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        raw = payload.encode("utf-8", "surrogateescape")
    cte = part.transfer_encoding
    if cte == "base64":
        raw = _cut_at_line(raw, limit * 4 // 3 + 4)
        return _decode_base64(raw)
    if cte == "quoted-printable":
        raw = _cut_at_line(raw, limit * 2)
        problem = "bad_qp" if _QP_BAD_ESCAPE.search(raw) else None
        return binascii.a2b_qp(raw)[:limit], problem
    return raw[:limit], None


def _cut_at_line(raw: bytes, limit: int) -> bytes:
    if len(raw) <= limit:
        return raw
    cut = raw.rfind(b"\n", 0, limit)
    return raw[: cut if cut > 0 else limit]


def _decode_base64(raw: bytes) -> tuple[bytes, str | None]:
    compact = raw.translate(None, b" \t\r\n")
    clean = _B64_BODY.fullmatch(compact) is not None and len(compact) % 4 == 0
    if clean:
        try:
            return binascii.a2b_base64(compact), None
        except binascii.Error:
            pass
    # Broken: keep every valid character, drop padding inside, re-pad, and decode what is left.
    data = _B64_JUNK.sub(b"", compact.replace(b"=", b""))
    data = data[: len(data) - len(data) % 4] if len(data) % 4 == 1 else data
    data += b"=" * (-len(data) % 4)
    try:
        return binascii.a2b_base64(data), "bad_base64"
    except binascii.Error:
        return b"", "bad_base64"
