"""The policy service's protocol against the real daemon: many requests on one connection,
many connections at once, and bad input (no empty line, a 1 MB attribute, binary bytes,
unknown attributes, no request=smtpd_access_policy) answered DUNNO or closed, with the
service answering the others; a store that is down or hangs gets the configured answer
within the request timeout. postgrey's whitelist files read as postgrey reads them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.mta import Daemon, free_port, running_daemon

from pyspamd.config import ConfigError, load_config
from pyspamd.policy_service.decide import Connection
from pyspamd.policy_service.postgrey_lists import ClientWhitelist, RecipientWhitelist
from pyspamd.policy_service.server import PolicyServer

REQUEST = ("request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
           "client_address={ip}\nclient_name=unknown\nhelo_name=mx.example.org\n"
           "sender={sender}\nrecipient=bob@example.test\ninstance={instance}\n")


def request(ip: str = "192.0.2.7", sender: str = "a@example.org", instance: str = "1",
            extra: str = "") -> bytes:
    return (REQUEST.format(ip=ip, sender=sender, instance=instance) + extra + "\n").encode()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, int]]:
    workdir = tmp_path_factory.mktemp("policy-proto")
    port = free_port()
    config = (f'[storage]\npath = "{workdir / "store.sqlite"}"\n[greylist]\ndelay = 60\n'
              f'[policy_service]\nlisten = ["inet:{port}@127.0.0.1"]\nrequest_timeout = 2.0\n'
              f'health_check_interval = 0.5\n')
    with running_daemon(workdir, config, workers=1) as running:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield running, port


def ask(port: int, *payloads: bytes, expect: int | None = None) -> list[bytes]:
    """Send the payloads on one connection; the answers up to the close (or `expect`)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for payload in payloads:
            sock.sendall(payload)
        data = b""
        while expect is None or data.count(b"\n\n") < expect:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return [a + b"\n\n" for a in data.split(b"\n\n") if a]


def test_many_requests_on_one_connection(daemon: tuple[Daemon, int]) -> None:
    _, port = daemon
    answers = ask(port, *(request(ip=f"192.0.2.{i}", instance=str(i)) for i in range(1, 21)),
                  expect=20)
    assert len(answers) == 20
    assert all(a.startswith(b"action=DEFER_IF_PERMIT Greylisted") for a in answers), answers


def test_many_connections_at_once(daemon: tuple[Daemon, int]) -> None:
    _, port = daemon
    results: list[list[bytes]] = []

    def client(n: int) -> None:
        results.append(ask(port, request(ip=f"198.51.100.{n}"), request(ip="192.0.2.1"),
                           expect=2))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(1, 41)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 40 and all(len(r) == 2 for r in results)


MALFORMED = [
    b"request=smtpd_access_policy\nprotocol_state=RCPT\n\xff\xfe\x00binary=\x01\n\n",
    b"request=smtpd_access_policy\nthis line has no equals sign\n\n",
    b"protocol_state=RCPT\nclient_address=192.0.2.9\nrecipient=bob@example.test\n\n",
]


def test_malformed_requests_answered_dunno_one_log_line(daemon: tuple[Daemon, int]) -> None:
    running, port = daemon
    for payload in MALFORMED:
        answers = ask(port, payload, request(ip="203.0.113.5"), expect=2)
        assert answers[0] == b"action=DUNNO\n\n"
        assert answers[1].startswith(b"action=DEFER_IF_PERMIT")  # the next one is decided
    lines = [line for line in running.log().splitlines() if "malformed request" in line]
    assert len(lines) == 1, lines  # rate-limited: the first says why, the others wait
    assert "binary or control bytes" in lines[0]


def test_unknown_attributes_are_ignored(daemon: tuple[Daemon, int]) -> None:
    _, port = daemon
    (answer,) = ask(port, request(ip="203.0.113.6", extra="future_attribute=42\n"), expect=1)
    assert answer.startswith(b"action=DEFER_IF_PERMIT")


def test_huge_attribute_closes_the_connection_only(daemon: tuple[Daemon, int]) -> None:
    running, port = daemon
    huge = b"request=smtpd_access_policy\nccert_subject=" + b"x" * (1 << 20) + b"\n\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock, \
            contextlib.suppress(OSError):  # closed under our feet: as good as no answer
        sock.sendall(huge)
        assert sock.recv(100) == b""
    assert "a request longer than" in running.log()
    assert ask(port, request(ip="203.0.113.7"), expect=1)[0].startswith(b"action=")


def test_request_without_end_then_eof_gets_no_answer(daemon: tuple[Daemon, int]) -> None:
    _, port = daemon
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request()[:-1])  # no empty line
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(100) == b""
    assert ask(port, request(ip="203.0.113.8"), expect=1)[0].startswith(b"action=")


def test_health_probe_keeps_the_service(daemon: tuple[Daemon, int]) -> None:
    running, _ = daemon
    time.sleep(1.5)  # three probes at 0.5 s
    assert "health check of policy-service failed" not in running.log()


def _server(tmp_path: Path, storage: str, store_down: str = "DUNNO") -> PolicyServer:
    path = tmp_path / "pyspamd.toml"
    path.write_text(f'[storage]\n{storage}\n[policy_service]\nlisten = ["inet:1@127.0.0.1"]\n'
                    f'request_timeout = 1.0\nstore_down = "{store_down}"\n')
    return PolicyServer(path, load_config(path))


ATTRS = {"request": "smtpd_access_policy", "protocol_state": "RCPT",
         "client_address": "192.0.2.7", "client_name": "unknown", "sender": "a@example.org",
         "recipient": "bob@example.test", "instance": "1"}


def test_store_down_gets_configured_answer(tmp_path: Path) -> None:
    dead = free_port()  # nothing listens there
    server = _server(tmp_path, f'backend = "redis"\nredis_url = "redis://127.0.0.1:{dead}/0"'
                     '\nredis_timeout = 0.5', store_down="451 4.3.0 Try again later")
    start = time.monotonic()
    assert asyncio.run(server._decide(dict(ATTRS), Connection())) == \
        "451 4.3.0 Try again later"
    assert time.monotonic() - start < 1.5


def test_hung_store_answered_within_the_timeout(tmp_path: Path) -> None:
    # A server that accepts and never says a word: the Redis client would wait 30 s.
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(8)
    try:
        server = _server(tmp_path, f'backend = "redis"\nredis_url = "redis://127.0.0.1:'
                         f'{hung.getsockname()[1]}/0"\nredis_timeout = 30')
        start = time.monotonic()
        assert asyncio.run(server._decide(dict(ATTRS), Connection())) == "DUNNO"
        assert time.monotonic() - start < 2.0
        server.decider.close()
    finally:
        hung.close()


def test_postgrey_whitelist_files(tmp_path: Path) -> None:
    clients = tmp_path / "whitelist_clients"
    clients.write_text("# comment\nmail.example.com\n/^smtp\\d+\\.bigmail\\./\n"
                       "192.0.2.5\n198.51.100\n10.1\n203.0.113.0/28\n2001:db8:1::/48\n"
                       "/[unclosed/\n")
    recipients = tmp_path / "whitelist_recipients"
    recipients.write_text("postmaster@\nabuse@example.org\nlists.example.net\n/^spam-.*@/\n")
    c = ClientWhitelist.load([str(clients), str(tmp_path / "missing.local")])
    assert c.matches("192.0.2.99", "mx1.mail.example.com")
    assert c.matches("192.0.2.99", "mail.example.com")
    assert not c.matches("192.0.2.99", "notmail.example.com")
    assert c.matches("192.0.2.99", "smtp7.bigmail.test")
    assert c.matches("192.0.2.5", "") and not c.matches("192.0.2.6", "")
    assert c.matches("198.51.100.200", "") and c.matches("10.1.2.3", "")
    assert c.matches("203.0.113.15", "") and not c.matches("203.0.113.16", "")
    assert c.matches("2001:db8:1:2::1", "") and not c.matches("2001:db8:2::1", "")
    assert len(c) == 7  # the bad regex skipped
    r = RecipientWhitelist.load([str(recipients)])
    assert r.matches("postmaster@anything.test") and r.matches("postmaster+x@a.test")
    assert r.matches("abuse+tag@example.org") and not r.matches("abuse@example.com")
    assert r.matches("x@lists.example.net") and r.matches("x@sub.lists.example.net")
    assert not r.matches("x@otherlists.example.net")
    assert r.matches("spam-report@example.com") and not r.matches("bob@example.com")


def _wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_reload_and_restart_by_the_master(daemon: tuple[Daemon, int]) -> None:
    running, port = daemon
    assert running.proc is not None
    os.kill(running.proc.pid, signal.SIGHUP)
    _wait_for(lambda: "policy service: reloaded config" in running.log())
    line = next(x for x in running.log().splitlines() if "policy service listening" in x)
    pid = int(re.search(r"pyspamd\[(\d+)\]", line).group(1))  # type: ignore[union-attr]
    os.kill(pid, signal.SIGKILL)
    _wait_for(lambda: running.log().count("policy service listening") == 2)
    assert "pool for policy-service died (signal SIGKILL)" in running.log()
    _wait_for(lambda: bool(_answers(port)))


def _answers(port: int) -> list[bytes]:
    try:
        return ask(port, request(ip="203.0.113.9"), expect=1)
    except OSError:
        return []


def test_config_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "pyspamd.toml"
    path.write_text('[policy_service]\nlisten = ["tcp:11335"]\nstore_down = "MAYBE"\n'
                    'spf_config = "nowhere.conf"\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert f"{path}:2: policy_service.listen has 'tcp:11335'" in text
    assert f"{path}:3: policy_service.store_down must be a Postfix access action" in text
    assert "policy_service.spf_config names" in text and "nowhere.conf" in text


def test_policy_socket_in_use_refuses_to_start(tmp_path: Path) -> None:
    path = tmp_path / "policy.sock"
    with socket.socket(socket.AF_UNIX) as holder:
        holder.bind(str(path))
        holder.listen()
        config = tmp_path / "c.toml"
        config.write_text(f'[milter]\nlisten = ["inet:{free_port()}@127.0.0.1"]\n'
                          f'[controller]\nenabled = false\n[storage]\npath = "{tmp_path}/s.db"'
                          f'\n[policy_service]\nlisten = ["unix:{path}"]\n')
        out = subprocess.run([sys.executable, "-m", "pyspamd.cli.pyspamd", "--config",
                              str(config)], capture_output=True, text=True, timeout=60,
                             check=False)
        assert out.returncode == 1
        assert f"policy_service.listen unix:{path}: address in use" in out.stderr


def test_policy_socket_directory_missing_refuses_to_start(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[milter]\nlisten = ["inet:{free_port()}@127.0.0.1"]\n'
                      f'[controller]\nenabled = false\n[storage]\npath = "{tmp_path}/s.db"\n'
                      f'[policy_service]\nlisten = ["unix:{tmp_path}/nowhere/policy"]\n')
    out = subprocess.run([sys.executable, "-m", "pyspamd.cli.pyspamd", "--config",
                          str(config)], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 1
    assert (f"policy_service.listen unix:{tmp_path}/nowhere/policy: directory "
            f"{tmp_path}/nowhere does not exist") in out.stderr


def test_unix_listener_gets_its_mode_and_group(tmp_path: Path) -> None:
    import grp

    from pyspamd.policy_service.server import open_listener

    path = tmp_path / "policy.sock"
    path.touch()  # not a socket: never removed
    with pytest.raises(OSError):
        open_listener(f"unix:{path}", "0640", "")
    path.unlink()
    group = grp.getgrgid(os.getgid()).gr_name
    sock = open_listener(f"unix:{path}", "0640", group)
    try:
        st = path.stat()
        assert (st.st_mode & 0o777, st.st_gid) == (0o640, os.getgid())
    finally:
        sock.close()


def test_reload_turns_the_service_on_and_off(tmp_path: Path) -> None:
    port = free_port()
    with running_daemon(tmp_path, f'[storage]\npath = "{tmp_path / "s.sqlite"}"\n',
                         workers=1) as running:
        assert running.proc is not None
        config = tmp_path / "pyspamd.toml"
        plain = config.read_text()
        config.write_text(plain + f'[policy_service]\nlisten = ["inet:{port}@127.0.0.1"]\n')
        os.kill(running.proc.pid, signal.SIGHUP)
        _wait_for(lambda: bool(_answers(port)))
        # New sockets: the service is started again on them.
        other = free_port()
        config.write_text(plain + f'[policy_service]\nlisten = ["inet:{other}@127.0.0.1"]\n')
        os.kill(running.proc.pid, signal.SIGHUP)
        _wait_for(lambda: bool(_answers(other)))
        assert not _answers(port)
        config.write_text(plain)
        os.kill(running.proc.pid, signal.SIGHUP)
        _wait_for(lambda: not _answers(other))
        time.sleep(0.5)  # a stop on purpose is not a death: no restart follows
        assert not _answers(other)
        assert "died" not in running.log()
