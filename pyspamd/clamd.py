"""A client for clamd's documented stream protocol (clamd(8): zINSTREAM), over a unix
socket or TCP, with asyncio.

Written here rather than taken from PyPI: the maintained async client (aioclamd) speaks TCP
only, while Debian's clamd listens on a unix socket by default, and it reads the data
through a thread hop per KiB; the sync clients would block the scan's event loop.

    zINSTREAM\\0, then chunks of <length: 4 bytes, network order><data>, then a zero length;
    clamd answers "stream: OK\\0", "stream: NAME FOUND\\0" or "... ERROR\\0".
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from dataclasses import dataclass

from pyspamd.config_schema import split_host_port

CHUNK = 64 << 10  # bytes per INSTREAM chunk; StreamMaxLength bounds the sum, not a chunk
MAX_REPLY = 4096


class ClamdError(Exception):
    """clamd could not be reached, did not answer in time, or answered an error."""


@dataclass(frozen=True, slots=True)
class ClamdReply:
    found: str | None  # the signature name, or None when clean


def parse_reply(raw: bytes) -> ClamdReply:
    text = raw.rstrip(b"\0\n").decode("utf-8", "replace").strip()
    _, sep, status = text.partition(": ")
    if not sep:
        status = text
    if status == "OK":
        return ClamdReply(None)
    if status.endswith(" FOUND"):
        name = status[: -len(" FOUND")].strip()
        if name:
            return ClamdReply(name)
    if status.endswith("ERROR"):
        raise ClamdError(f"clamd answered an error: {status[: -len('ERROR')].strip() or text}")
    raise ClamdError(f"clamd gave an answer this client does not know: {text[:200]!r}")


class Clamd:
    def __init__(self, address: str) -> None:
        self.address = address
        self._unix = address.startswith("/")
        self._host, self._port = ("", 0) if self._unix else split_host_port(address)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            if self._unix:
                return await asyncio.open_unix_connection(self.address)
            return await asyncio.open_connection(self._host, self._port)
        except OSError as exc:
            raise ClamdError(f"cannot connect to clamd at {self.address}: "
                             f"{exc.strerror or exc}") from exc

    async def _talk(self, request: list[bytes | memoryview]) -> bytes:
        reader, writer = await self._connect()
        try:
            for piece in request:
                writer.write(piece)
            await writer.drain()
            reply = await reader.readuntil(b"\0")
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                return exc.partial
            raise ClamdError(f"clamd at {self.address} closed the connection without an "
                             "answer") from exc
        except asyncio.LimitOverrunError as exc:
            raise ClamdError(f"clamd at {self.address} sent an overlong answer") from exc
        except OSError as exc:  # reset or broken pipe: clamd went away mid-stream
            raise ClamdError(f"connection to clamd at {self.address} failed: "
                             f"{exc.strerror or exc}") from exc
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        return reply

    async def instream(self, data: bytes, timeout: float) -> ClamdReply:
        """Scan `data`; raises ClamdError when clamd is down, slow or answers an error."""
        request: list[bytes | memoryview] = [b"zINSTREAM\0"]
        view = memoryview(data)
        for start in range(0, len(data), CHUNK):
            chunk = view[start : start + CHUNK]
            request.append(struct.pack("!L", len(chunk)))
            request.append(chunk)
        request.append(struct.pack("!L", 0))
        try:
            async with asyncio.timeout(timeout):
                reply = await self._talk(request)
        except TimeoutError as exc:
            raise ClamdError(f"clamd at {self.address} did not answer within "
                             f"{timeout:g}s") from exc
        if b"size limit exceeded" in reply:
            raise ClamdError(f"clamd at {self.address}: the data ({len(data)} bytes) is over "
                             "its StreamMaxLength; lower [antivirus] max_size to match")
        return parse_reply(reply)

    async def ping(self, timeout: float) -> bool:
        try:
            async with asyncio.timeout(timeout):
                return (await self._talk([b"zPING\0"])).rstrip(b"\0") == b"PONG"
        except (TimeoutError, ClamdError):
            return False
