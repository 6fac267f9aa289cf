"""Controller auth and bad input, against a running controller: passwords, secure_ip behind a
proxy, cross-site posts, body and recipient limits, junk bodies, concurrent learns, and a
controller on a public address without a password (refused at start)."""

from __future__ import annotations

import base64
import http.client
import io
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from support.controller_proc import ControllerProc, call, running_controller
from support.messages import make_message
from support.mta import free_port, wait_for_port
from support.paths import REPO
from support.ports import outside_address

from pyspamd.cli.pyspamc import main as pyspamc_main
from pyspamd.config import ConfigError, load_config
from pyspamd.controller.auth import HashError, PasswordCheck, make_hash, parse_hash

READ_PW, WRITE_PW = "reader-secret", "writer-secret"


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControllerProc]:
    """No secure_ip: every client needs a password."""
    config = (f'password = "{make_hash(READ_PW)}"\nenable_password = "{make_hash(WRITE_PW)}"\n'
              'secure_ip = []\nmax_body = 200000\nmax_rcpts = 1000\n')
    with running_controller(tmp_path_factory.mktemp("locked"), config) as c:
        yield c


@pytest.fixture(scope="module")
def open_local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControllerProc]:
    """The default: localhost needs no password."""
    with running_controller(tmp_path_factory.mktemp("local")) as c:
        yield c


def test_passwords_and_levels(locked: ControllerProc) -> None:
    message = make_message()
    assert locked.call("GET", "/stat").status == 401
    assert "password required" in locked.call("GET", "/stat").json()["error"]
    assert locked.call("GET", "/stat", headers={"Password": "guess"}).status == 403
    assert locked.call("GET", "/stat", headers={"Password": READ_PW.upper()}).status == 403
    assert locked.call("GET", "/stat", headers={"Password": READ_PW}).status == 200
    assert locked.call("GET", "/auth", headers={"Password": READ_PW}).json()["level"] == "read"
    assert locked.call("POST", "/checkv2", message, {"Password": READ_PW}).status == 200
    refused = locked.call("POST", "/learnspam", message, {"Password": READ_PW})
    assert refused.status == 403 and "enable" in refused.json()["error"]
    assert locked.call("POST", "/learnspam", message, {"Password": WRITE_PW}).status == 200
    assert locked.call("GET", "/history", headers={"Password": WRITE_PW}).status == 200
    # what a Prometheus scraper can send: a bearer token or basic auth
    assert locked.call("GET", "/metrics", headers={
        "Authorization": f"Bearer {READ_PW}"}).status == 200
    basic = base64.b64encode(f"prometheus:{READ_PW}".encode()).decode()
    assert locked.call("GET", "/metrics", headers={"Authorization": f"Basic {basic}"}).status \
        == 200
    assert locked.call("GET", "/metrics", headers={"Authorization": "Basic !!"}).status == 401
    # public: health checks and the page itself (its data needs the password)
    assert locked.call("GET", "/healthy").status == 200
    assert locked.call("GET", "/").status == 200


def test_pyspamc_password(locked: ControllerProc, capsys: pytest.CaptureFixture[str],
                          monkeypatch: pytest.MonkeyPatch) -> None:
    remote = ["-h", f"127.0.0.1:{locked.port}"]
    assert pyspamc_main([*remote, "stat"]) == 1
    assert "401 password required" in capsys.readouterr().err
    assert pyspamc_main([*remote, "-P", "wrong", "stat"]) == 1
    assert "403 wrong password" in capsys.readouterr().err
    assert pyspamc_main([*remote, "-P", READ_PW, "stat"]) == 0
    assert capsys.readouterr().out.startswith("Messages scanned: ")
    monkeypatch.setenv("PYSPAMC_PASSWORD", READ_PW)
    assert pyspamc_main([*remote, "counters"]) == 0


def test_config_page_hides_secrets(locked: ControllerProc) -> None:
    config = locked.call("GET", "/config", headers={"Password": READ_PW})
    text = config.body.decode()
    assert "$scrypt$" not in text
    data = config.json()
    assert data["controller"]["password"] == "***"
    assert data["controller"]["enable_password"] == "***"


def test_body_size_limit(locked: ControllerProc) -> None:
    big = make_message(body="x" * 300_000)
    reply = locked.call("POST", "/checkv2", big, {"Password": READ_PW})
    assert reply.status == 413
    assert locked.call("GET", "/healthy").status == 200  # and it goes on serving


def test_non_rfc822_bodies(locked: ControllerProc) -> None:
    junk = bytes(range(256)) * 20
    scanned = locked.call("POST", "/checkv2", junk, {"Password": READ_PW})
    assert scanned.status == 200  # scanned as the milter would: a verdict, not a crash
    assert scanned.json()["action"] in ("no action", "greylist", "add header", "reject")
    refused = locked.call("POST", "/learnspam", junk, {"Password": WRITE_PW})
    assert refused.status == 400 and "not a mail message" in refused.json()["error"]
    empty = locked.call("POST", "/checkv2", b"", {"Password": READ_PW})
    assert empty.status == 400 and "empty body" in empty.json()["error"]
    bad_ip = locked.call("POST", "/checkv2", make_message(),
                         {"Password": READ_PW, "IP": "not-an-ip<script>"})
    assert bad_ip.status == 400 and "not an IP address" in bad_ip.json()["error"]


def test_huge_recipient_lists(locked: ControllerProc) -> None:
    def rcpt_headers(count: int) -> list[tuple[str, str]]:
        addresses = [f"user{i}@example.net" for i in range(count)]
        return [("Password", READ_PW)] + [
            ("Rcpt", ", ".join(addresses[i:i + 100])) for i in range(0, count, 100)]

    ok = locked.call("POST", "/checkv2", make_message(), rcpt_headers(1000))
    assert ok.status == 200
    refused = locked.call("POST", "/checkv2", make_message(), rcpt_headers(5000))
    assert refused.status == 400 and "5000 recipients" in refused.json()["error"]
    one_huge = [("Password", READ_PW), ("Rcpt", ",".join(f"u{i}@example.net"
                                                         for i in range(3000)))]
    assert locked.call("POST", "/checkv2", make_message(), one_huge).status == 400
    assert locked.call("GET", "/healthy").status == 200


def test_concurrent_learns_of_one_message(locked: ControllerProc) -> None:
    raw = make_message({"Message-ID": "<same@example.org>", "Subject": "Same message"},
                       body="exactly the same words every time, learned by sixteen clients\n")

    def learn(_: int) -> str:
        reply = locked.call("POST", "/learnspam", raw, {"Password": WRITE_PW})
        assert reply.status == 200, reply.body
        return str(reply.json()["outcome"])

    with ThreadPoolExecutor(16) as pool:
        outcomes = list(pool.map(learn, range(16)))
    assert outcomes.count("learned") == 1 and outcomes.count("already learned") == 15
    again = locked.call("POST", "/learnham", raw, {"Password": WRITE_PW}).json()["outcome"]
    assert again == "moved"


def test_cross_site_posts_are_refused(open_local: ControllerProc) -> None:
    raw = make_message()
    evil = open_local.call("POST", "/learnspam", raw, {"Origin": "http://evil.example"})
    assert evil.status == 403 and "cross-site" in evil.json()["error"]
    fetch = open_local.call("POST", "/learnspam", raw, {"Sec-Fetch-Site": "cross-site"})
    assert fetch.status == 403
    same = open_local.call("POST", "/checkv2", raw,
                           {"Origin": f"http://127.0.0.1:{open_local.port}"})
    assert same.status == 200


def test_secure_ip_behind_a_proxy(open_local: ControllerProc) -> None:
    """A proxy on localhost passes the stranger's address on: the stranger needs a password
    (and none is configured here, so nobody but localhost itself gets in)."""
    assert open_local.call("GET", "/stat").status == 200
    proxied = open_local.call("GET", "/stat", headers={"X-Forwarded-For": "198.51.100.7"})
    assert proxied.status == 401
    real_ip = open_local.call("GET", "/stat", headers={"X-Real-IP": "198.51.100.7"})
    assert real_ip.status == 401
    local = open_local.call("GET", "/stat", headers={"X-Forwarded-For": "10.0.0.1, 127.0.0.1"})
    assert local.status == 200  # the proxy's own entry (the last) is the one that counts


def _start(config: Path, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pyspamd.cli.pyspamd", "--config", str(config),
                           *command], capture_output=True, text=True, timeout=60, check=False,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


def test_public_address_without_password_is_refused(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "pyspamd.toml"
    config.write_text(f'[controller]\nlisten = "0.0.0.0:{port}"\n'
                      f'[storage]\npath = "{tmp_path / "s.sqlite"}"\n')
    for command in (["controller"], ["configtest"], []):
        proc = _start(config, *command)
        assert proc.returncode == 1, command
        out = proc.stdout + proc.stderr
        assert f"{config}:2: controller.listen is 0.0.0.0:{port}" in out, out
        assert "no password is set" in out and "pyspamc pw" in out
    # with a password it starts on that address; a client from another address needs it
    config.write_text(f'[controller]\nlisten = "0.0.0.0:{port}"\n'
                      f'enable_password = "{make_hash("x")}"\n'
                      f'[storage]\npath = "{tmp_path / "s.sqlite"}"\n')
    proc = subprocess.Popen([sys.executable, "-m", "pyspamd.cli.pyspamd", "--config",
                             str(config), "controller"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env={"PYTHONPATH": str(REPO)})
    try:
        wait_for_port(port, proc=proc)
        assert call(port, "GET", "/stat").status == 200  # from 127.0.0.1: secure_ip
        outside = outside_address()
        if outside is not None:
            stranger = http.client.HTTPConnection(outside, port, timeout=10)
            stranger.request("GET", "/stat")
            assert stranger.getresponse().status == 401
            stranger.close()
    finally:
        proc.terminate()
        proc.wait(15)
        if proc.stdout:
            proc.stdout.close()




def test_password_hashes(capsys: pytest.CaptureFixture[str],
                         monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("s3cret\n"))
    assert pyspamc_main(["pw"]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed.startswith("$scrypt$n=16384,r=8,p=1$") and "s3cret" not in printed
    check = PasswordCheck(printed)
    assert check.matches("s3cret") and check.matches("s3cret")  # the second from the cache
    assert not check.matches("s3cret ") and not check.matches("")
    assert make_hash("s3cret") != printed  # salted
    for bad in ("s3cret", "$scrypt$n=3,r=8,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
                "$scrypt$garbage"):
        with pytest.raises(HashError):
            parse_hash(bad)
    config = tmp_path / "pyspamd.toml"
    config.write_text('[controller]\npassword = "plain-text"\n')
    with pytest.raises(ConfigError, match=r"pyspamd.toml:2: controller.password is not a "
                                          r"password hash"):
        load_config(config)
