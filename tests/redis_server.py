"""A private redis-server for the tests: its own port, directory and Unix socket, stopped
afterwards even when tests fail. Never the machine's Redis on 6379, never FLUSHALL there."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis


@dataclass(frozen=True)
class RedisServer:
    port: int
    socket_path: Path
    pid: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def unix_url(self) -> str:
        return f"unix://{self.socket_path}?db=1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(binary).exists():
        raise RuntimeError("redis-server is missing: apt-get install redis-server "
                           "(.ci/run installs it)")
    with tempfile.TemporaryDirectory(prefix="pyspamd-redis-") as tmp:
        port = free_port()
        sock = Path(tmp) / "redis.sock"
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", tmp,
             "--unixsocket", str(sock), "--unixsocketperm", "700", "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--logfile", str(Path(tmp) / "log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            client = redis.Redis(port=port)
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        log = (Path(tmp) / "log")
                        raise RuntimeError("redis-server did not start: "
                                           + (log.read_text() if log.exists() else "")) from None
                    time.sleep(0.05)
            client.close()
            yield RedisServer(port, sock, proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
