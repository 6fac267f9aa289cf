"""Releasing a held message: back to the MTA over SMTP with its original envelope, with a
header that tells the milter not to hold it again.

The header carries an HMAC (SHA-256) of the quarantine id, the time and the message body
under a key only pyspamd's state directory holds (release.key beside the held messages), so
a sender cannot forge one, and one seen in a released message does not free another.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path

import aiosmtplib

from pyspamd.config_schema import split_host_port
from pyspamd.quarantine.settings import QuarantineConfig
from pyspamd.quarantine.store import QuarantineError, QuarantineStore

log = logging.getLogger("pyspamd.quarantine")

HEADER = "X-Pyspamd-Release"
KEY_FILE = "release.key"
TOKEN_TTL = 3600.0  # seconds a release header is honoured: the MTA scans it on arrival
_TOKEN = re.compile(r"id=([0-9a-z-]+);\s*t=(\d+);\s*by=([^;]*);\s*sig=([0-9a-f]{64})")


def _key(directory: Path, create: bool) -> bytes | None:
    path = directory / KEY_FILE
    try:
        return path.read_bytes()
    except FileNotFoundError:
        if not create:
            return None
    directory.mkdir(parents=True, exist_ok=True, mode=0o750)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return path.read_bytes()
    with os.fdopen(fd, "wb") as out:
        out.write(secrets.token_bytes(32))
    return path.read_bytes()


def body_of(raw: bytes) -> bytes:
    """The body, line ends and trailing empty lines evened out: what the MTA hands the
    milter back is the same body, with CRLF, perhaps a final line end more or less."""
    for separator in (b"\r\n\r\n", b"\n\n"):
        _, sep, body = raw.partition(separator)
        if sep:
            return body.replace(b"\r\n", b"\n").rstrip(b"\n")
    return b""


def _sign(key: bytes, message_id: str, stamp: int, by: str, body: bytes) -> str:
    text = f"{message_id}|{stamp}|{by}|".encode() + hashlib.sha256(body).digest()
    return hmac.new(key, text, hashlib.sha256).hexdigest()


def release_header(directory: Path, message_id: str, by: str, raw: bytes) -> str:
    key = _key(directory, create=True)
    assert key is not None
    stamp = int(time.time())
    by = re.sub(r"[;\r\n]", " ", by)[:100]
    return (f"id={message_id}; t={stamp}; by={by}; "
            f"sig={_sign(key, message_id, stamp, by, body_of(raw))}")


class ReleaseCheck:
    """For the milter: is this message one pyspamd released a moment ago?"""

    def __init__(self, config: QuarantineConfig) -> None:
        self.directory = QuarantineStore(config).dir
        self._key: bytes | None = None

    def released(self, values: list[str], raw: bytes) -> str | None:
        """The quarantine id when one of the release headers `values` is valid."""
        if not values:
            return None
        if self._key is None:
            self._key = _key(self.directory, create=False)
            if self._key is None:
                return None
        for value in values:
            match = _TOKEN.search(" ".join(value.split()))
            if match is None:
                continue
            message_id, stamp, by, signature = match.groups()
            if abs(time.time() - int(stamp)) > TOKEN_TTL:
                continue
            expected = _sign(self._key, message_id, int(stamp), by.strip(), body_of(raw))
            if hmac.compare_digest(expected, signature):
                return message_id
        return None


async def _send(host: str, port: int, timeout: float, sender: str, rcpts: list[str],
                data: bytes) -> tuple[str, str]:
    """(the MTA's reply, the recipients it refused); raises when it took none."""
    async with aiosmtplib.SMTP(hostname=host, port=port, timeout=timeout,
                               start_tls=False) as smtp:
        refused, reply = await smtp.sendmail(sender, rcpts, data)
    return reply, ", ".join(f"{r} ({code} {text})" for r, (code, text) in refused.items())


def release(store: QuarantineStore, config: QuarantineConfig, message_id: str, by: str,
            learn_ham: Callable[[bytes], str] | None = None) -> str:
    """Sends the held message to [quarantine] release_smtp with its original envelope,
    marks it released, and learns it as ham when `learn_ham` is given. Returns what the MTA
    answered; raises QuarantineError (nothing changed) when it could not be sent."""
    entry = store.get(message_id)
    if not store.claim(message_id, by):
        raise QuarantineError(f"message {message_id} was released already by "
                              f"{store.get(message_id).released_by or entry.released_by}")
    try:
        raw = store.read(message_id)
        stamped = f"{HEADER}: {release_header(store.dir, message_id, by, raw)}\r\n".encode() \
            + raw
        host, port = split_host_port(config.release_smtp)
        reply, refused = asyncio.run(_send(host, port, config.release_timeout,
                                           entry.sender, entry.rcpts, stamped))
    except (aiosmtplib.SMTPException, OSError, TimeoutError, QuarantineError) as exc:
        store.unclaim(message_id)
        if isinstance(exc, QuarantineError):
            raise
        raise QuarantineError(f"message {message_id} not released: {config.release_smtp}: "
                              f"{exc}") from exc
    except BaseException:
        store.unclaim(message_id)
        raise
    # Queued for the others: released, so a second release does not deliver it twice.
    store.mark_released(message_id, by)
    if refused:
        log.warning("quarantine: %s released, but the MTA refused %s", message_id, refused)
    log.info("quarantine: %s released by %s to %s (from=<%s>, rcpts=%s): %s", message_id, by,
             config.release_smtp, entry.sender, ",".join(entry.rcpts), reply.strip())
    if learn_ham is not None:
        try:
            outcome = learn_ham(raw)
            log.info("quarantine: %s learned as ham: %s", message_id, outcome)
        except Exception as exc:  # the release stands; only the learning failed
            log.error("quarantine: %s released but not learned as ham: %s", message_id, exc)
    return reply
