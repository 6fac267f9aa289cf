"""The controller against slow and hoarding clients and password guessing (issue 18, defect 7),
over real sockets to a running controller."""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.controller_proc import ControllerProc, running_controller
from support.messages import make_message

from pyspamd.controller import auth
from pyspamd.controller.auth import FREE_FAILURES, LoginThrottle, PasswordCheck, make_hash

PASSWORD = "right-secret"


@pytest.fixture(scope="module")
def controller(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControllerProc]:
    config = (f'password = "{make_hash(PASSWORD)}"\nsecure_ip = []\n'
              "header_timeout = 1.0\nbody_timeout = 1.0\nmax_connections = 6\n")
    with running_controller(tmp_path_factory.mktemp("limits"), config) as c:
        yield c


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    return sock


def _closed_within(sock: socket.socket, seconds: float, dribble: bytes = b"") -> bytes | None:
    """Everything the server sent until it closed, or None if still open after `seconds`.
    With `dribble`, one byte of it every 0.2 s, as a slow client would."""
    deadline = time.monotonic() + seconds
    received = b""
    sock.settimeout(0.2)
    sent = 0
    while time.monotonic() < deadline:
        if dribble:
            try:
                sock.send(dribble[sent % len(dribble): sent % len(dribble) + 1])
                sent += 1
            except OSError:
                return received
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            return received
        if not data:
            return received
        received += data
    return None


def test_half_sent_headers_are_closed(controller: ControllerProc) -> None:
    clients = []
    for _ in range(5):
        sock = _connect(controller.port)
        sock.sendall(b"GET /stat HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        clients.append(sock)
    try:
        for sock in clients:
            assert _closed_within(sock, 5) is not None, "half-sent request still open"
    finally:
        for sock in clients:
            sock.close()


def test_dribbling_headers_are_closed(controller: ControllerProc) -> None:
    # A byte every 0.2 s never lets a timer that restarts on data expire.
    with _connect(controller.port) as sock:
        sock.sendall(b"GET /stat HTTP/1.1\r\n")
        assert _closed_within(sock, 5, dribble=b"X-Slow: aaaaaaaaaaaaaaaaaa\r\n") is not None


def test_slow_body_gets_408_and_is_closed(controller: ControllerProc) -> None:
    with _connect(controller.port) as sock:
        sock.sendall(b"POST /checkv2 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     + f"Password: {PASSWORD}\r\n".encode()
                     + b"Content-Length: 100000\r\n\r\nFrom: a@example.org\r\n")
        reply = _closed_within(sock, 8, dribble=b"x")
    assert reply is not None, "slow body still open"
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]


def test_idle_connections_are_capped(controller: ControllerProc) -> None:
    idle = [_connect(controller.port) for _ in range(6)]
    try:
        time.sleep(0.2)
        # A seventh client is served; an idle connection made room for it. Which one is the
        # longest idle depends on what earlier tests of this module left open, and on a
        # loaded machine the close can take a moment: look at all of them for a while.
        reply = controller.call("GET", "/healthy")
        assert reply.status == 200
        deadline = time.monotonic() + 5.0
        closed = []
        while not closed and time.monotonic() < deadline:
            closed = [sock for sock in idle if _closed_within(sock, 0.05) is not None]
        assert closed
    finally:
        for sock in idle:
            sock.close()


def test_wrong_passwords_back_off(controller: ControllerProc) -> None:
    right = {"Password": PASSWORD}
    wrong = {"Password": "guess"}
    assert controller.call("GET", "/stat", headers=right).status == 200
    for _ in range(FREE_FAILURES):
        assert controller.call("GET", "/stat", headers=wrong).status == 403
    assert controller.call("GET", "/stat", headers=wrong).status == 403  # earns 1 s
    refused = controller.call("GET", "/stat", headers=wrong)
    assert refused.status == 429
    assert refused.headers["retry-after"] == "1"
    # While it waits, even the right password is not checked for this client.
    assert controller.call("GET", "/stat", headers=right).status == 429
    time.sleep(1.1)
    assert controller.call("GET", "/stat", headers=right).status == 200
    assert controller.call("POST", "/checkv2", make_message(), right).status == 200
    log = (controller.workdir / "pyspamd.log").read_text()
    assert "it must wait 1s" in log


def test_parallel_wrong_passwords_get_no_more_guesses(controller: ControllerProc) -> None:
    """Many connections at once: each password is counted as a failure before it is
    checked, so a lockout allows FREE_FAILURES + 1 checks however many run in parallel."""
    from concurrent.futures import ThreadPoolExecutor

    right, wrong = {"Password": PASSWORD}, {"Password": "parallel-guess"}
    log = controller.workdir / "pyspamd.log"
    before = log.read_text().count("wrong password from")
    # four at once: the fixture's max_connections is 6 and a closed one may still count
    with ThreadPoolExecutor(4) as pool:  # right ones in parallel all get in
        assert set(pool.map(lambda _: controller.call("GET", "/stat", headers=right).status,
                            range(20))) == {200}
        statuses = list(pool.map(lambda _: controller.call("GET", "/stat",
                                                           headers=wrong).status, range(48)))
    checked = log.read_text().count("wrong password from") - before
    assert statuses.count(403) == checked <= FREE_FAILURES + 1, statuses
    assert statuses.count(429) == 48 - checked
    time.sleep(1.1)  # the wait earned; then the right password is checked again
    assert controller.call("GET", "/stat", headers=right).status == 200


def test_wrong_password_pays_full_cost_after_a_right_one(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    calls = []
    real = hashlib.scrypt

    def counting(*args: object, **kw: object) -> bytes:
        calls.append(1)
        return real(*args, **kw)  # type: ignore[arg-type]

    check = PasswordCheck(make_hash("s3cret"))
    monkeypatch.setattr(auth.hashlib, "scrypt", counting)
    assert check.matches("s3cret") and len(calls) == 1
    assert check.matches("s3cret") and len(calls) == 1  # remembered: no second scrypt
    assert not check.matches("guess")
    assert len(calls) == 2  # a wrong password is checked against the real hash


def test_login_throttle_doubles_and_forgets() -> None:
    now = [1000.0]
    throttle = LoginThrottle(clock=lambda: now[0])
    waits = [throttle.failed("198.51.100.7") for _ in range(FREE_FAILURES + 4)]
    assert waits == [0.0] * FREE_FAILURES + [1.0, 2.0, 4.0, 8.0]
    assert throttle.wait("198.51.100.7") == 8.0
    assert throttle.wait("198.51.100.8") == 0.0  # per client
    # One IPv6 host can use its whole /64: it counts as one client.
    for n in range(FREE_FAILURES + 1):
        throttle.failed(f"2001:db8::{n + 1:x}")
    assert throttle.wait("2001:db8::ffff") == 1.0
    now[0] += 9
    assert throttle.wait("198.51.100.7") == 0.0
    throttle.succeeded("198.51.100.7")
    assert throttle.failed("198.51.100.7") == 0.0  # a right password cleared the record


def test_limits_are_checked(tmp_path: Path) -> None:
    from pyspamd.config import ConfigError, load_config

    path = tmp_path / "pyspamd.toml"
    path.write_text("[controller]\nheader_timeout = 0\nmax_connections = 0\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "controller.header_timeout" in str(info.value)
    assert "controller.max_connections must be positive" in str(info.value)
