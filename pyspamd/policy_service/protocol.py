"""Postfix's policy delegation protocol (SMTPD_POLICY_README): a request is `name=value`
lines ended by an empty line, the answer `action=...` and an empty line; one connection
carries many requests.

Reading is bounded: a request longer than MAX_REQUEST, or a client that stops in the middle
of one, ends the connection (there is no telling where the next request would start). A
request with binary bytes, a line without `=`, more than MAX_ATTRIBUTES lines or no
`request=smtpd_access_policy` is answered DUNNO. Attributes Postfix may add in later
versions are ignored, as the protocol asks of a policy server.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

MAX_REQUEST = 65536  # Postfix's longest request (client certificate fields) fits many times
MAX_ATTRIBUTES = 128  # Postfix 3.7 sends about 40
POLICY_REQUEST = "smtpd_access_policy"


class ProtocolError(Exception):
    """The connection cannot go on: the reason, for the log."""


@dataclass
class Request:
    attrs: dict[str, str] = field(default_factory=dict)
    problem: str = ""  # why it is answered DUNNO unread; "" for a request to decide


def _clean(raw: bytes) -> str | None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    # Control characters have no place in an attribute (Postfix sends printable text).
    if any(ord(c) < 32 and c != "\t" for c in text):
        return None
    return text


async def read_request(reader: asyncio.StreamReader, idle: float) -> Request | None:
    """The next request, or None at a clean end of the connection (EOF before a request,
    or no request within `idle` seconds)."""
    try:
        async with asyncio.timeout(idle):
            raw = await reader.readuntil(b"\n\n")
    except TimeoutError:
        return None  # idle, or a request never ended: the connection is closed either way
    except asyncio.LimitOverrunError:
        raise ProtocolError(f"a request longer than {MAX_REQUEST} bytes") from None
    except asyncio.IncompleteReadError as exc:
        if not exc.partial.strip():
            return None
        raise ProtocolError("connection closed in the middle of a request") from None
    return parse_request(raw)


def parse_request(raw: bytes) -> Request:
    request = Request()
    lines = raw.strip(b"\n").split(b"\n")
    if len(lines) > MAX_ATTRIBUTES:
        request.problem = f"more than {MAX_ATTRIBUTES} attributes"
        return request
    for line in lines:
        text = _clean(line.rstrip(b"\r"))
        if text is None:
            request.problem = "binary or control bytes in an attribute"
            return request
        name, sep, value = text.partition("=")
        if not sep or not name:
            request.problem = f"a line without name=value: {text[:60]!r}"
            return request
        request.attrs[name.strip()] = value
    if request.attrs.get("request") != POLICY_REQUEST:
        request.problem = (f"request={request.attrs.get('request', '')!r}, not "
                           f"{POLICY_REQUEST}")
    return request


def answer(action: str) -> bytes:
    # An answer is one line: a newline in a configured text would end it early. Otherwise
    # sent as the decision wrote it (policyd-spf's answers end in a space).
    action = action.replace("\r", " ").replace("\n", " ")
    return f"action={action}\n\n".encode("utf-8", "replace")
