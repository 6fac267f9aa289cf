"""A running daemon with an update channel and a signed https:// map, both served by a real
nginx over HTTPS: the map poller brings a changed map to the workers and refuses a copy
with a bad signature; a daemon under load answers every message through `pyspamc update`
and the reload it asks for, and scans with the new set after it."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.https_server import HttpsServer, https_server
from support.messages import make_message
from support.mta import Daemon, MtaSession

from pyspamd.config import load_config
from pyspamd.config_schema import shipped_path
from pyspamd.update.bundle import generate_key, make_bundle, private_key, sign
from pyspamd.update.install import UPDATED, run_update

NEW_RULE = 'body CHANNEL_TEST_WORD /zorblaxian offer/i\nscore CHANNEL_TEST_WORD 3.5\n'


class Stack:
    def __init__(self, top: Path, server: HttpsServer) -> None:
        self.top, self.server = top, server
        self.key = top / "channel.pem"
        self.public = generate_key(self.key)
        (server.root / "ch").mkdir(mode=0o755)

    def publish_set(self, version: int, extra_rule: str = "") -> None:
        src = self.top / f"src{version}"
        shutil.copytree(shipped_path("rules"), src / "rules")
        if extra_rule:
            (src / "rules" / "90_channel.rules").write_text(extra_rule)
        out = self.server.root / "ch" / "bundle.tar.gz"
        make_bundle(src, private_key(str(self.key)), out, version)
        out.chmod(0o644)

    def publish_map(self, text: str, signed_by: Path | None = None) -> None:
        data = text.encode()
        for name, content in (("senders.map", data),
                              ("senders.map.sig",
                               sign(private_key(str(signed_by or self.key)), data))):
            path = self.server.root / name
            path.write_bytes(content)
            path.chmod(0o644)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Daemon]]:
    top = tmp_path_factory.mktemp("update-daemon")
    with https_server() as server:
        stack = Stack(top, server)
        stack.publish_set(100)
        stack.publish_map("spammer@example.net REJECT listed by the map\n")
        config_text = f"""
[model]
enabled = false
[update]
dir = "{top / 'updates'}"
ca_file = "{server.ca_file}"
pidfile = "{top / 'pyspamd.pid'}"
map_refresh = 1.0
map_timeout = 3.0
[[update.channels]]
name = "test"
url = "{server.url('ch/bundle.tar.gz')}"
key = "{stack.public}"
[[maps]]
name = "remote_senders"
type = "address"
file = "{server.url('senders.map')}"
key = "{stack.public}"
"""
        daemon = Daemon(top, config_text, workers=2)
        (top / "pyspamd.toml").write_text(config_text)  # for run_update before the start
        code, lines = run_update(load_config(top / "pyspamd.toml"))
        assert code == UPDATED, lines
        daemon.start()
        try:
            (top / "pyspamd.pid").write_text(f"{daemon.proc.pid}\n")  # type: ignore[union-attr]
            yield stack, daemon
        finally:
            daemon.stop()


def _result(daemon: Daemon, raw: bytes, mail_from: str = "alice@example.org") -> str:
    session = MtaSession(daemon.port)
    try:
        result = session.send(raw, mail_from=mail_from)
    finally:
        session.close()
    return result.added.get("X-Spamd-Result", "") + " " + result.reply


def _wait_for(check: object, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return True
        time.sleep(0.3)
    return False


def test_remote_map_is_polled_and_checked(stack: tuple[Stack, Daemon]) -> None:
    srv, daemon = stack
    first = _result(daemon, make_message(), "spammer@example.net")
    assert "listed by the map" in first
    srv.publish_map("spammer@example.net REJECT listed by the map\n"
                    "newcomer@example.net REJECT listed by the new map\n")
    assert _wait_for(lambda: "listed by the new map" in _result(
        daemon, make_message(), "newcomer@example.net")), daemon.log()[-3000:]
    # A copy signed by another key is not used: the last good one stays, one line says so.
    other = srv.top / "other.pem"
    generate_key(other)
    srv.publish_map("nobody@example.net OK\n", signed_by=other)
    assert _wait_for(lambda: "remote_senders" in daemon.log()
                     and "bad signature" in daemon.log()), daemon.log()[-3000:]
    assert "listed by the new map" in _result(daemon, make_message(), "newcomer@example.net")


def test_update_under_load_answers_every_message(stack: tuple[Stack, Daemon]) -> None:
    srv, daemon = stack
    probe = make_message(body="A zorblaxian offer for you\n")
    assert "CHANNEL_TEST_WORD" not in _result(daemon, probe)
    stop = threading.Event()
    sent, answered, failures = [0] * 4, [0] * 4, []

    def keep_sending(index: int) -> None:
        # New connections now and then, as Postfix opens one per SMTP session.
        while not stop.is_set():
            try:
                session = MtaSession(daemon.port)
                try:
                    for n in range(5):
                        sent[index] += 1
                        result = session.send(make_message(body=f"load {index} {n}\n"))
                        if result.disposition:
                            answered[index] += 1
                finally:
                    session.close()
            except (OSError, AssertionError) as exc:
                failures.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=keep_sending, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        srv.publish_set(200, NEW_RULE)
        code, lines = run_update(load_config(srv.top / "pyspamd.toml"))
        assert code == UPDATED, lines
        assert any(line.startswith("told pyspamd") for line in lines), lines
        assert _wait_for(lambda: "CHANNEL_TEST_WORD" in _result(daemon, probe), 60)
        time.sleep(1.0)  # the old workers' last messages, the new ones' first
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert failures == []
    assert sum(sent) == sum(answered) > 20
    assert "reloaded config and rules" in daemon.log()
