"""Talking to Pyzor servers through the `pyzor` library's client: the message's digest
(pyzor's own normalisation, so counts agree with every other Pyzor user), `check` for the
spam and whitelist counts, and `report` of learned spam. The library's client is blocking
UDP with a timeout; the scan runs it in threads, one per server, bounded by that timeout."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from email.message import Message

import pyzor
import pyzor.client
import pyzor.digest

from pyspamd.config_schema import split_host_port

_EMPTY = hashlib.sha1(b"").hexdigest()  # the digest of a message with no text to digest


class PyzorError(Exception):
    """A server that did not answer, or answered an error: one line."""


@dataclass(frozen=True)
class Counts:
    server: str
    count: int
    whitelist: int


def digest_of(message: Message) -> str | None:
    """The Pyzor digest, or None when the message has no line long enough to digest."""
    value = pyzor.digest.DataDigester(message).value
    return None if value == _EMPTY else str(value)


def _ask(op: str, digest: str, server: str, timeout: float) -> Counts:
    address = split_host_port(server)
    client = pyzor.client.Client(timeout=timeout)
    try:
        response = getattr(client, op)(digest, address)
    except pyzor.TimeoutError as exc:
        raise PyzorError(f"{server}: no answer within {timeout:g}s") from exc
    except (pyzor.CommError, pyzor.ProtocolError, OSError) as exc:
        raise PyzorError(f"{server}: {exc}") from exc
    if not response.is_ok():
        raise PyzorError(f"{server}: {response.get_code()} {response.get_diag()}")
    return Counts(server, int(response.get("Count", 0) or 0),
                  int(response.get("WL-Count", 0) or 0))


async def check_all(digest: str, servers: list[str], timeout: float
                    ) -> list[Counts | PyzorError]:
    """Every server's counts (or why not), asked at once, in at most `timeout` seconds."""

    async def one(server: str) -> Counts | PyzorError:
        try:
            return await asyncio.wait_for(
                asyncio.to_thread(_ask, "check", digest, server, timeout), timeout)
        except TimeoutError:
            return PyzorError(f"{server}: no answer within {timeout:g}s")
        except PyzorError as exc:
            return exc

    return list(await asyncio.gather(*(one(s) for s in servers)))


def report(digest: str, servers: list[str], timeout: float) -> list[str]:
    """Report a spam digest to every server; the errors, one line each."""
    errors = []
    for server in servers:
        try:
            _ask("report", digest, server, timeout)
        except PyzorError as exc:
            errors.append(str(exc))
    return errors
