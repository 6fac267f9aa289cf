"""A resolver that does not answer: [dns] enabled = "auto" asks the local resolver once at
start and on reload (pyspamd/dns/probe.py); silent, the network checks go off with one line
in configtest and the log, so a message is not held up by lookups that cannot succeed. With
enabled = true, a worker's resolver stops asking a nameserver that stays silent and asks it
again later (pyspamd/dns/resolver.py). Against the Knot/Unbound lab, and a UDP socket that
never replies."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.dns_delay import delayed_udp
from support.mta import MtaSession, running_daemon
from support.network_lab import MTA_IP, SBL_IP, Lab

from pyspamd.config import load_config
from pyspamd.dns import resolver as resolver_module
from pyspamd.dns.resolver import DnsTimeout, Resolver
from pyspamd.dns_settings import DnsConfig
from pyspamd.milter.master import Master
from pyspamd.scanner import Scanner

REPO = Path(__file__).resolve().parent.parent
MESSAGE = (b"From: Alice <alice@example.test>\r\nTo: bob@example.net\r\n"
           b"Subject: quarterly figures\r\nMessage-ID: <probe.1@example.test>\r\n"
           b"Date: Mon, 07 Dec 2026 09:00:00 +0000\r\n\r\nThe figures are attached.\r\n")


@pytest.fixture
def silent() -> Iterator[str]:
    """A nameserver address where a UDP socket is bound and nothing ever replies."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{sock.getsockname()[1]}"


def _configtest(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pyspamd.cli.pyspamd", "--config",
                           str(config), "configtest"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)


def test_configtest_says_whether_the_local_resolver_answers(
        lab: Lab, silent: str, tmp_path: Path) -> None:
    config = tmp_path / "pyspamd.toml"
    config.write_text(f'[dns]\nnameservers = ["{lab.server.nameserver}"]\n')
    out = _configtest(config)
    assert out.returncode == 0, out.stdout
    assert ("note: network checks (DNSBL, SPF, DKIM, DMARC) on: the resolver 127.0.0.1 "
            "([dns] nameservers) is local") in out.stdout
    config.write_text(f'[dns]\nnameservers = ["{silent}"]\n')
    out = _configtest(config)
    assert out.returncode == 0, out.stdout
    assert (f"note: network checks (DNSBL, SPF, DKIM, DMARC) off: the local resolver {silent} "
            "did not answer (no answer within 0.5s)") in out.stdout
    # Turned on by hand, they stay on, and configtest warns.
    config.write_text(f'[dns]\nenabled = true\nnameservers = ["{silent}"]\n')
    out = _configtest(config)
    assert f"warning: the resolver {silent} did not answer" in out.stdout


def test_a_silent_local_resolver_costs_a_message_nothing(
        lab: Lab, silent: str, tmp_path: Path) -> None:
    with running_daemon(tmp_path, f'[dns]\nnameservers = ["{silent}"]\n', workers=1) as daemon:
        assert f"off: the local resolver {silent} did not answer" in daemon.log()
        for queue_id in ("4PROBE1", "4PROBE2"):
            session = MtaSession(daemon.port, client_ip=MTA_IP)
            try:
                started = time.monotonic()
                result = session.send(MESSAGE, mail_from="alice@example.test",
                                      queue_id=queue_id)
                elapsed = time.monotonic() - started
            finally:
                session.close()
            assert elapsed < 1.0, elapsed  # was the DNS budget, 5 s, on every message
            assert "DNS_TIMEOUT" not in result.added["X-Spamd-Result"]
        # On reload the resolver is asked again: the lab's answers, and the checks go on.
        assert daemon.proc is not None
        config = tmp_path / "pyspamd.toml"
        config.write_text(config.read_text().replace(silent, lab.server.nameserver))
        os.kill(daemon.proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 60
        while "is local" not in daemon.log() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "network checks (DNSBL, SPF, DKIM, DMARC) on: the resolver 127.0.0.1" \
            in daemon.log()
        # The master's log is not the workers' scan: they reload too, and check SPF now.
        verdict = ""
        while "R_SPF_ALLOW" not in verdict and time.monotonic() < deadline:
            session = MtaSession(daemon.port, client_ip=MTA_IP)
            try:
                verdict = session.send(MESSAGE, mail_from="alice@example.test",
                                       queue_id="4PROBE3").added["X-Spamd-Result"]
            finally:
                session.close()
            time.sleep(0.2)
        assert "R_SPF_ALLOW" in verdict, daemon.log()[-3000:]


def test_a_worker_stops_asking_a_silent_nameserver_and_asks_it_again(
        lab: Lab, silent: str, monkeypatch: pytest.MonkeyPatch) -> None:
    config = DnsConfig(enabled=True, nameservers=[silent], timeout=0.3, retries=0, budget=1.0)
    resolver = Resolver(config)

    async def lookup(name: str) -> float:
        started = time.monotonic()
        with pytest.raises(DnsTimeout):
            await resolver.for_message().query(name, "A")
        return time.monotonic() - started

    waits = [asyncio.run(lookup(f"{i}.example.test")) for i in range(resolver_module.SILENT_AFTER)]
    assert all(w >= 0.25 for w in waits), waits  # each waited its timeout
    assert asyncio.run(lookup("next.example.test")) < 0.05  # not asked: silent
    queries = resolver.stats.queries
    # Back (here: the lab's resolver at the address), it is asked once the retry time came.
    resolver.servers = [("127.0.0.1", lab.server.port)]
    monkeypatch.setattr(resolver, "_retry_at", 0.0)

    listed = ".".join(reversed(SBL_IP.split("."))) + ".zen.spamhaus.org"

    async def answered() -> bool:
        return (await resolver.for_message().query(listed, "A")).found

    assert asyncio.run(answered())
    assert resolver.stats.queries == queries + 1


def test_the_master_asks_a_silent_resolver_again_and_reloads_once_it_answers(
        lab: Lab, default_scanner: Scanner, tmp_path: Path) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config_path = tmp_path / "pyspamd.toml"
    config_path.write_text(f'[dns]\nnameservers = ["127.0.0.1:{port}"]\n'
                           '[model]\nenabled = false\n')
    # A child of the master's: the signals it is sent are what the master's children get,
    # and SIGHUP, which pyspamd's children handle, ends this one.
    child = subprocess.Popen(["sleep", "300"])
    try:
        config = load_config(config_path)
        assert config.dns.enabled is False and config.dns.unanswered == f"127.0.0.1:{port}"
        master = Master(config_path, config, default_scanner, pools={child.pid: "child"})
        master._reprobe_resolver()  # due: asked, still silent
        assert not master.reload_requested
        assert master.next_dns_probe > time.monotonic() + 30  # next time in a minute
        with pytest.raises(subprocess.TimeoutExpired):  # nothing changed: no child reloads
            child.wait(1.0)
        sock.close()
        # The resolver comes up at that address (here: a relay to the lab's).
        with delayed_udp(lab.server.port, 0.0, port=port):
            master._reprobe_resolver()  # not due yet
            assert not master.reload_requested
            master.next_dns_probe = 0.0
            master._reprobe_resolver()
            assert master.reload_requested
            master._reload()  # what the main loop does next: the children reload too
        assert master.config.dns.enabled is True and master.config.dns.unanswered == ""
        assert child.wait(10) == -signal.SIGHUP
    finally:
        sock.close()
        child.kill()
        child.wait()
