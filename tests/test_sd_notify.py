"""Type=notify: the daemon tells systemd (here a datagram socket standing in for it, as
$NOTIFY_SOCKET names it) READY=1 once the milter answers, RELOADING=1 and READY=1 around a
SIGHUP, and STOPPING=1 on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import pytest
from support.messages import make_message
from support.mta import Daemon, MtaSession


def _next(sock: socket.socket) -> dict[str, str]:
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.splitlines())


def test_ready_reloading_stopping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    where = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(str(where))
        systemd.settimeout(60)
        monkeypatch.setenv("NOTIFY_SOCKET", str(where))
        daemon = Daemon(tmp_path, workers=1)
        daemon.start()
        try:
            ready = _next(systemd)
            assert ready["READY"] == "1" and ready["STATUS"].startswith("serving inet:")
            session = MtaSession(daemon.port)  # ready means answering
            try:
                assert session.send(make_message()).disposition == "a"
            finally:
                session.close()
            assert daemon.proc is not None
            os.kill(daemon.proc.pid, signal.SIGHUP)
            reload = _next(systemd)
            assert reload["RELOADING"] == "1" and int(reload["MONOTONIC_USEC"]) > 0
            assert _next(systemd)["READY"] == "1"
            os.kill(daemon.proc.pid, signal.SIGTERM)
            assert _next(systemd)["STOPPING"] == "1"
            assert daemon.proc.wait(30) == 0
        finally:
            daemon.stop()
