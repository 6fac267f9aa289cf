"""Postfix's policy delegation protocol (SMTPD_POLICY_README): a request is `name=value`
lines ended by an empty line, the answer `action=...` and an empty line; one connection
carries many requests.

Reading is bounded: a line longer than MAX_LINE, more than MAX_ATTRIBUTES lines, or a
client that stops in the middle of a request ends the connection (there is no telling where
the next request would start). A request with binary bytes, a line without `=`, or no
`request=smtpd_access_policy` is answered DUNNO. Attributes Postfix may add in later
versions are ignored, as the protocol asks of a policy server.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

MAX_LINE = 16384  # Postfix's longest attribute (a client certificate's subject) fits
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


async def read_request(reader: asyncio.StreamReader, idle: float,
                       timeout: float) -> Request | None:
    """The next request, or None at a clean end of the connection (EOF before a request)."""
    request = Request()
    first = True
    count = 0
    while True:
        try:
            line = await asyncio.wait_for(reader.readline(), idle if first else timeout)
        except TimeoutError:
            if first:
                return None
            raise ProtocolError(f"request not ended within {timeout:g}s") from None
        except ValueError:  # asyncio's "separator is not found, chunk exceed the limit"
            raise ProtocolError(f"a line longer than {MAX_LINE} bytes") from None
        if not line:
            if first:
                return None
            raise ProtocolError("connection closed in the middle of a request")
        line = line.rstrip(b"\r\n")
        if not line:
            if first:
                continue  # a stray empty line between requests: nothing asked
            break
        first = False
        count += 1
        if count > MAX_ATTRIBUTES:
            raise ProtocolError(f"more than {MAX_ATTRIBUTES} attributes in one request")
        if request.problem:
            continue
        text = _clean(line)
        if text is None:
            request.problem = "binary or control bytes in an attribute"
            continue
        name, sep, value = text.partition("=")
        if not sep or not name:
            request.problem = f"a line without name=value: {text[:60]!r}"
            continue
        request.attrs[name.strip()] = value
    if not request.problem and request.attrs.get("request") != POLICY_REQUEST:
        request.problem = (f"request={request.attrs.get('request', '')!r}, not "
                           f"{POLICY_REQUEST}")
    return request


def answer(action: str) -> bytes:
    # An answer is one line: a newline in a configured text would end it early.
    action = " ".join(action.split())
    return f"action={action}\n\n".encode("utf-8", "replace")
