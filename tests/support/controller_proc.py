"""Test helper: a `pyspamd controller` process on a free port, and HTTP calls to it."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.mta import free_port, wait_for_port
from support.paths import REPO


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def call(port: int, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | list[tuple[str, str]] | None = None,
         timeout: float = 30.0) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.putrequest(method, path)
        items = headers.items() if isinstance(headers, dict) else (headers or [])
        for name, value in items:
            conn.putheader(name, value)
        conn.putheader("Content-Length", str(len(body or b"")))
        conn.endheaders(body or b"")
        response = conn.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()},
                     response.read())
    finally:
        conn.close()


def eventually(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    """`check()` once it returns something true (statistics arrive within a flush)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


@dataclass
class ControllerProc:
    workdir: Path
    config_text: str = ""
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def config_path(self) -> Path:
        return self.workdir / "pyspamd.toml"

    def write_config(self) -> None:
        storage = "" if "[storage]" in self.config_text else \
            f'[storage]\npath = "{self.workdir / "store.sqlite"}"\n'
        self.config_path.write_text(
            f'{storage}[logging]\ntarget = "{self.workdir / "pyspamd.log"}"\n'
            f'[controller]\nlisten = "127.0.0.1:{self.port}"\nflush_interval = 0.1\n'
            f'{self.config_text}\n')

    def start(self) -> None:
        self.write_config()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pyspamd.cli.pyspamd", "--config", str(self.config_path),
             "controller"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "PYTHONPATH": str(REPO)})
        try:
            wait_for_port(self.port, proc=self.proc)
        except (TimeoutError, RuntimeError):
            self.stop()
            raise

    def call(self, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | list[tuple[str, str]] | None = None) -> Reply:
        return call(self.port, method, path, body, headers)

    def stop(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        if self.proc.stdout:
            self.proc.stdout.close()


@contextlib.contextmanager
def running_controller(workdir: Path, config_text: str = "") -> Iterator[ControllerProc]:
    controller = ControllerProc(workdir, config_text)
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()
