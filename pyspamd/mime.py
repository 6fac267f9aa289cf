"""MIME structure: parsing a message, its parts with limits, and their transfer decoding.

Limits exist because a message is attacker-controlled: 5,000 parts, 100,000 headers or
1,000 levels of message/rfc822 must cost a bounded amount of work, and the excess is a
symbol, not a crash.
"""

from __future__ import annotations

import binascii
import email
import re
from dataclasses import dataclass, field
from email import errors as email_errors
from email.message import Message
from email.policy import Compat32
from functools import lru_cache

from pyspamd.textdecode import decode_header_value, header_text, surrogates_to_text

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


class _ScanMessage(Message):
    """A compat32 message that knows its nesting depth while it is being parsed.

    The stdlib parser recurses once per level of multipart or message/rfc822 nesting (a
    chain of generators), so about 1,000 levels raise RecursionError. A part deeper than
    the policy's max_depth reports text/plain to the parser, which then keeps its content
    as one opaque payload instead of descending; walk_parts names it too_deep.
    """

    _depth = 0
    _opaque = False

    def attach(self, payload: Message) -> None:  # type: ignore[override]
        if isinstance(payload, _ScanMessage):
            payload._depth = self._depth + 1
            payload._opaque = payload._depth > self.policy.max_depth  # type: ignore[attr-defined]
        super().attach(payload)

    def get_content_type(self) -> str:
        return "text/plain" if self._opaque else super().get_content_type()


class _ScanPolicy(Compat32):
    """compat32 (fast, keeps raw header bytes) with two changes for hostile mail: header
    values read through the message's accessors (get, get_all, get_param, get_filename,
    get_content_type ...) are always text, never an email.header.Header; and nesting is
    bounded while parsing."""

    message_factory = _ScanMessage
    max_depth = 20

    def header_fetch_parse(self, name: str, value: str) -> str:
        return surrogates_to_text(value)[0] if isinstance(value, str) else header_text(value)


# A line break not followed by folding whitespace: where the next header field starts.
_FIELD_START = re.compile(rb"\n(?![ \t])")


def parse_message(
    raw: bytes, max_depth: int, max_headers: int, anomalies: dict[str, list[str]]
) -> Message:
    """The message parsed without recursion failures and with at most max_headers fields
    in its top header block; what was cut is noted in anomalies."""
    raw = _cut_header_block(raw, max_headers, anomalies)
    return email.message_from_bytes(raw, policy=_policy(max_depth))


@lru_cache(maxsize=8)
def _policy(max_depth: int) -> _ScanPolicy:
    return _ScanPolicy(max_depth=max_depth)  # type: ignore[call-arg]  # policies take their attributes as keywords


def _cut_header_block(raw: bytes, max_headers: int, anomalies: dict[str, list[str]]) -> bytes:
    """The message with its top header block cut to max_headers fields: the stdlib parser
    and every check that reads all headers take time in proportion (100,000 cost 1 s)."""
    head_end = raw.find(b"\n\n")
    head_end = len(raw) if head_end < 0 else head_end
    crlf_end = raw.find(b"\n\r\n", 0, head_end)
    head_end = head_end if crlf_end < 0 else crlf_end
    if raw.count(b"\n", 0, head_end) < max_headers:  # fewer lines than fields allowed
        return raw
    for count, m in enumerate(_FIELD_START.finditer(raw, 0, head_end), 2):
        if count > max_headers:
            anomalies.setdefault("too_many_headers", []).append(str(max_headers))
            return raw[: m.start()] + raw[head_end:]
    return raw


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
        # str(): compat32 hands back an email.header.Header for raw 8-bit values
        return [decode_header_value(str(v))[0] for v in self.msg.get_all(name, [])]


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
            stack.extend((child, depth + 1) for child in reversed(children)
                         if isinstance(child, Message))
    return parts


# Longest Content-Type / Content-Disposition given to the stdlib parameter parser, which is
# quadratic in the number of ";" (a 25 kB header of ";;;" costs 40 ms, 200 kB minutes).
# Real headers with many RFC 2231 filename continuations stay far below this.
_MAX_PARAM_HEADER = 2048


def _bound_param_headers(node: Message) -> None:
    for name in ("content-type", "content-disposition"):
        value = node.get(name)
        if value is not None and len(value) > _MAX_PARAM_HEADER:
            node.replace_header(name, value[:_MAX_PARAM_HEADER])


def _make_part(node: Message, depth: int) -> MimePart:
    _bound_param_headers(node)
    try:
        ctype = node.get_content_type()
    except Exception:  # a Content-Type header that is not even parseable
        ctype = "text/plain"
    charset = header_text(node.get_param("charset")) or None
    filename = None
    try:
        raw_name = header_text(node.get_filename())
    except Exception:
        raw_name = None
    if raw_name:
        filename = decode_header_value(raw_name)[0]
        if "\ufffd" in filename:
            filename = _raw_8bit_filename(node) or filename
    disposition = header_text(node.get("content-disposition")).split(";", 1)[0].strip().lower()
    cte = header_text(node.get("content-transfer-encoding")).strip().lower() or "7bit"
    return MimePart(
        msg=node,
        content_type=ctype,
        depth=depth,
        charset=charset,
        filename=filename,
        transfer_encoding=cte,
        is_attachment=disposition == "attachment" or bool(filename),
    )


_NAME_PARAM = re.compile(r'\b(?:file)?name\s*=\s*"?([^";\r\n]+)', re.IGNORECASE)


def _raw_8bit_filename(node: Message) -> str | None:
    """A file name written in raw 8-bit (UTF-8, as RFC 6532 mail does): the stdlib's
    parameter parser has already replaced its bytes with U+FFFD, so read it again from
    the header as received."""
    for name, value in node.raw_items():
        if name.lower() in ("content-disposition", "content-type") and isinstance(value, str):
            found = _NAME_PARAM.search(surrogates_to_text(value)[0])
            if found:
                return found.group(1).strip()
    return None


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
