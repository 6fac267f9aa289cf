"""The controller as the milter's master runs it: counts the workers' scans, comes back
after it dies, reloads with SIGHUP, stops with the daemon; and on the Redis backend."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from support.controller_proc import call, eventually, running_controller
from support.messages import make_message
from support.mta import Daemon, MtaSession, free_port, running_daemon, wait_for_port
from support.paths import CORPUS
from support.redis_server import RedisServer


def _controller_pid(daemon: Daemon) -> int:
    """The master's child that has no children of its own (pools have workers)."""
    assert daemon.proc is not None
    children = subprocess.run(["pgrep", "-P", str(daemon.proc.pid)], capture_output=True,
                              text=True, check=False).stdout.split()
    lonely = [int(pid) for pid in children
              if not subprocess.run(["pgrep", "-P", pid], capture_output=True,
                                    check=False).stdout.strip()]
    assert len(lonely) == 1, (children, lonely)
    return lonely[0]


def test_controller_under_the_master(tmp_path: Path) -> None:
    port = free_port()
    config = (f'[storage]\npath = "{tmp_path / "store.sqlite"}"\n[greylist]\nenabled = false\n'
              f'[controller]\nlisten = "127.0.0.1:{port}"\nflush_interval = 0.2\n')
    with running_daemon(tmp_path, config, workers=2) as daemon:
        wait_for_port(port)
        session = MtaSession(daemon.port)
        try:
            session.send(make_message(), queue_id="4DAEMON1")
            session.send((CORPUS / "malformed" / "gtube.eml").read_bytes(), queue_id="4DAEMON2")
        finally:
            session.close()
        stat = eventually(lambda: (s := call(port, "GET", "/stat").json())["scanned"] == 2
                          and s)
        assert stat["actions"]["reject"] == 1
        assert stat["started"] and abs(stat["started"] - time.time()) < 120
        rows = call(port, "GET", "/history").json()["rows"]
        assert [r["queue_id"] for r in rows] == ["4DAEMON2", "4DAEMON1"]
        assert {r["source"] for r in rows} == {"milter"}

        # killed, it comes back; the milter never noticed
        first = _controller_pid(daemon)
        os.kill(first, signal.SIGKILL)
        assert eventually(lambda: _lonely_other_than(daemon, first), timeout=15)
        wait_for_port(port)
        assert call(port, "GET", "/stat").json()["scanned"] == 2

        # SIGHUP: a new threshold shows; a broken config is refused, the old one stays
        config_path = tmp_path / "pyspamd.toml"
        config_path.write_text(config_path.read_text().replace(
            "[greylist]", "[actions]\nreject = 20.0\n[greylist]"))
        os.kill(daemon.proc.pid, signal.SIGHUP)  # type: ignore[union-attr]

        def reject_threshold() -> float:
            actions = call(port, "GET", "/actions").json()["actions"]
            return next(a["threshold"] for a in actions if a["action"] == "reject")

        assert eventually(lambda: reject_threshold() == 20.0, timeout=15)
        config_path.write_text(config_path.read_text() + "\n[actions]\nreject = true\n")
        os.kill(daemon.proc.pid, signal.SIGHUP)  # type: ignore[union-attr]
        time.sleep(1.0)
        assert reject_threshold() == 20.0
    assert daemon.proc is not None and daemon.proc.returncode == 0  # SIGTERM stopped it all
    assert "died (signal SIGKILL)" in daemon.log()


def _lonely_other_than(daemon: Daemon, old: int) -> bool:
    try:
        return _controller_pid(daemon) != old
    except AssertionError:
        return False


def test_controller_on_redis(tmp_path: Path, redis_proc: RedisServer) -> None:
    config = (f'[storage]\nbackend = "redis"\nredis_url = "{redis_proc.url}"\n'
              f'redis_prefix = "ctl{free_port()}"\n')
    with running_controller(tmp_path, config) as controller:
        raw = (CORPUS / "malformed" / "gtube.eml").read_bytes()
        assert controller.call("POST", "/checkv2", raw, {"Queue-Id": "4REDIS"}).status == 200
        assert controller.call("POST", "/learnspam", raw).json()["outcome"] == "learned"
        stat = eventually(lambda: (s := controller.call("GET", "/stat").json())["scanned"]
                          and s)
        assert stat["actions"]["reject"] == 1 and stat["bayes"]["backend"] == "redis"
        assert stat["bayes"]["learned"]["spam"] == 1
        (row,) = controller.call("GET", "/history").json()["rows"]
        assert row["queue_id"] == "4REDIS"
        assert controller.call("GET", "/ready").json() == {"ready": True}
