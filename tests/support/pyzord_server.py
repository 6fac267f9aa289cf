"""A private pyzord (the server the `pyzor` package ships) on 127.0.0.1, on a free UDP port,
keeping its digests in a private redis-server (pyzord's gdbm backend needs Python's _gdbm,
which not every Python has). Stopped, with its directory, even when tests fail."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyzor
import pyzor.client

from support.ports import free_port
from support.redis_server import redis_server


@dataclass(frozen=True)
class Pyzord:
    port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def _pyzord() -> str:
    beside = Path(sys.executable).parent / "pyzord"  # installed with the pyzor package
    found = str(beside) if beside.exists() else shutil.which("pyzord")
    if not found:
        raise RuntimeError("pyzord is missing: pip install pyzor (a pyspamd dependency)")
    return found


@contextmanager
def pyzord_server() -> Iterator[Pyzord]:
    with redis_server() as redis, tempfile.TemporaryDirectory(prefix="pyspamd-pyzord-") as tmp:
        port = free_port()  # a TCP port free now: pyzord listens on UDP
        access = Path(tmp) / "access"
        # pyzord's default lets anonymous users check and report; the tests whitelist too.
        access.write_text("check report ping pong info whitelist : anonymous : allow\n")
        proc = subprocess.Popen(
            [sys.executable, _pyzord(), "--homedir", tmp, "-e", "redis",
             "--dsn", f"127.0.0.1,{redis.port},,0", "-a", "127.0.0.1", "-p", str(port),
             "--access-file", str(access), "--log-file", str(Path(tmp) / "pyzord.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            client = pyzor.client.Client(timeout=0.2)
            deadline = time.monotonic() + 15
            while True:
                try:
                    client.ping(("127.0.0.1", port))
                    break
                except (pyzor.CommError, OSError):
                    if proc.poll() is not None or time.monotonic() > deadline:
                        err = proc.stderr.read().decode() if proc.stderr else ""
                        raise RuntimeError(f"pyzord did not start: {err}") from None
            yield Pyzord(port)
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            if proc.stderr:
                proc.stderr.close()
