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

from support.ports import free_port


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


@dataclass(frozen=True)
class RedisCluster:
    ports: tuple[int, ...]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"


@contextmanager
def redis_cluster(nodes: int = 3) -> Iterator[RedisCluster]:
    """A private Redis Cluster: `nodes` masters, no replicas, every slot covered."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    cli = shutil.which("redis-cli") or "/usr/bin/redis-cli"
    with tempfile.TemporaryDirectory(prefix="pyspamd-redis-cluster-") as tmp:
        chosen: list[int] = []
        while len(chosen) < nodes:
            port = _cluster_port()
            if port not in chosen and port + 10000 not in chosen:
                chosen.append(port)
        ports = tuple(chosen)
        procs = []
        try:
            for port in ports:
                folder = Path(tmp) / str(port)
                folder.mkdir()
                procs.append(subprocess.Popen(
                    [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
                     "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                     "--save", "", "--appendonly", "no", "--logfile", str(folder / "log")],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            for port in ports:
                _wait_ping(port)
            subprocess.run([cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
                            "--cluster-replicas", "0", "--cluster-yes"],
                           check=True, capture_output=True, timeout=60)
            deadline = time.monotonic() + 20
            client = redis.Redis(port=ports[0], decode_responses=True)
            while not _cluster_ok(client):
                if time.monotonic() > deadline:
                    raise RuntimeError("Redis Cluster did not reach cluster_state:ok")
                time.sleep(0.05)
            client.close()
            yield RedisCluster(ports)
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def _wait_ping(port: int) -> None:
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            client.close()
            return
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {port} did not start") from None
            time.sleep(0.05)


def _cluster_ok(client: redis.Redis) -> bool:
    info = client.execute_command("CLUSTER INFO")  # redis-py parses it into a dict
    return (info.get("cluster_state") if isinstance(info, dict)
            else "cluster_state:ok" in str(info)) in ("ok", True)


def _cluster_port() -> int:
    """A free port whose cluster-bus port (port + 10000, fixed by Redis) is free as well."""
    for _ in range(200):
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a Redis Cluster node")
