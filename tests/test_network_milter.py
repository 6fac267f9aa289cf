"""The network checks through the milter protocol (a pyspamd daemon, this test as the MTA)
and through a real Postfix: the same symbols, the Authentication-Results header, DKIM
signing of outbound mail, and slow DNS for one connection not holding up another."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from email import message_from_bytes
from email.policy import compat32
from email.utils import formatdate
from pathlib import Path

import aiosmtplib
import pytest
from support.controller_proc import running_controller
from support.messages import make_message
from support.mta import Daemon, MtaSession, running_daemon
from support.network_lab import ALL_ZEN_IP, MTA_IP, Lab
from support.postfix import MAILBOX, Postfix, running_postfix

from pyspamd.cli.pyspamc import main as pyspamc_main
from pyspamd.config import load_config
from pyspamd.scanner import Scanner
from pyspamd.task import Envelope

# Thresholds far above what the test messages score, so the symbols are what is compared.
ACTIONS = """
[actions]
greylist = 40.0
add_header = 60.0
reject = 150.0
"""
TRUSTED = "198.51.100.20"  # signed and not scanned: a host of ours relaying outbound mail


def _config(lab: Lab) -> str:
    # Daemon.start writes [milter] just before this text: the first line belongs to it.
    return (f'trusted_networks = ["{TRUSTED}/32"]\n' + lab.config(
        ACTIONS + f'[dkim_signing.keys."example.test"]\nselector = "sel"\n'
                  f'key = "{lab.key_path}"\n', budget=4.0))


def _message(domain: str = "example.test", body: str = "see you at noon\n") -> bytes:
    return make_message([("From", f"Alice <alice@{domain}>"), ("To", MAILBOX),
                         ("Date", formatdate())], body)


def dkimverify(lab: Lab, message: bytes) -> subprocess.CompletedProcess[bytes]:
    """dkimpy's dkimverify program with dnspython's resolver aimed at the lab."""
    program = ("import dns.resolver\nr = dns.resolver.Resolver(configure=False)\n"
               f"r.nameservers = ['127.0.0.1']; r.port = {lab.server.port}\n"
               "dns.resolver.default_resolver = r\n"
               "from dkim.dkimverify import main\nmain()\n")
    return subprocess.run([sys.executable, "-c", program], input=message,
                          capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def daemon(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with running_daemon(tmp_path_factory.mktemp("netmilter"), _config(lab),
                        workers=1) as running:
        yield running


def test_symbols_and_headers_over_the_milter_protocol(daemon: Daemon) -> None:
    session = MtaSession(daemon.port, client_ip=MTA_IP)
    try:
        result = session.send(_message(), mail_from="alice@example.test")
    finally:
        session.close()
    assert result.disposition == "a"  # SMFIR_ACCEPT
    auth = result.inserted["Authentication-Results"]
    assert auth.startswith("mx.example.net;")
    assert "spf=pass" in auth and "dmarc=pass" in auth and "dkim=none" in auth
    assert result.inserted["Received-SPF"].startswith("Pass ")
    spamd = result.added["X-Spamd-Result"]
    for symbol in ("R_SPF_ALLOW", "DMARC_POLICY_ALLOW", "R_DKIM_NA", "ARC_NA"):
        assert symbol in spamd



def test_milter_pyspamc_and_checkv2_give_the_same_headers(
        lab: Lab, daemon: Daemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """All three build the result headers with one function (result.header_changes); the
    /checkv2 reply used to lack the checks' Authentication-Results and Received-SPF."""
    raw = _message()
    session = MtaSession(daemon.port, client_ip=MTA_IP)
    try:
        sent = session.send(raw, mail_from="alice@example.test")
    finally:
        session.close()
    over_milter = {**sent.inserted, **sent.added}
    for name in ("X-Pyspamd-Queue-Id", "X-Pyspamd-Server"):  # which MTA queue and milter
        del over_milter[name]
    envelope = {"IP": MTA_IP, "From": "alice@example.test", "Helo": "client.example.org",
                "Hostname": "client.example.org", "Rcpt": "bob@example.net"}
    (tmp_path / "controller").mkdir()
    with running_controller(tmp_path / "controller", lab.config(ACTIONS)) as controller:
        reply = controller.call("POST", "/checkv2?headers=1", raw, envelope)
    assert reply.status == 200, reply.body
    over_http = reply.json()["headers"]
    config = tmp_path / "scan.toml"
    config.write_text(lab.config(ACTIONS))
    message = tmp_path / "message.eml"
    message.write_bytes(raw)
    assert pyspamc_main(["--config", str(config), "symbols", "--json", "--headers",
                         "--ip", MTA_IP, "--from", envelope["From"], "--helo", envelope["Helo"],
                         "--hostname", envelope["Hostname"], "--rcpt", envelope["Rcpt"],
                         str(message)]) == 0
    in_process = json.loads(capsys.readouterr().out)["headers"]
    assert {"Authentication-Results", "Received-SPF", "X-Spamd-Result",
            "X-Spam-Status"} <= set(over_milter)
    assert over_http == over_milter
    assert in_process == over_milter

def test_outbound_mail_is_signed(lab: Lab, daemon: Daemon, tmp_path: Path) -> None:
    raw = _message()
    session = MtaSession(daemon.port, client_ip="203.0.113.50")
    try:
        result = session.send(raw, mail_from="alice@example.test", user="alice")
    finally:
        session.close()
    signature = result.inserted["DKIM-Signature"]
    assert "d=example.test" in signature and "s=sel" in signature
    assert "c=relaxed/relaxed" in signature
    signed = f"DKIM-Signature: {signature}\n".encode() + raw
    done = dkimverify(lab, signed)
    assert done.returncode == 0 and b"signature ok" in done.stdout, done.stdout + done.stderr
    config = tmp_path / "pyspamd.toml"
    config.write_text(lab.config())
    verdict = Scanner.from_config(load_config(config)).scan(
        signed, Envelope(client_ip="203.0.113.50", mail_from="alice@example.test"))
    assert "R_DKIM_ALLOW" in verdict.symbols


def test_mail_of_other_domains_is_not_signed(daemon: Daemon) -> None:
    session = MtaSession(daemon.port, client_ip="203.0.113.50")
    try:
        result = session.send(_message("elsewhere.test"), mail_from="a@elsewhere.test",
                              user="alice")
    finally:
        session.close()
    assert result.disposition == "a" and "DKIM-Signature" not in result.inserted


def test_slow_dns_for_one_connection_does_not_hold_up_another(daemon: Daemon) -> None:
    """One worker: a session whose SPF lookups time out, and meanwhile another session."""
    slow_done: list[float] = []

    def slow() -> None:
        session = MtaSession(daemon.port, client_ip="203.0.113.60")
        try:
            start = time.monotonic()
            result = session.send(_message("x.timeout.test"), mail_from="a@x.timeout.test")
            slow_done.append(time.monotonic() - start)
            assert "DNS_TIMEOUT" in result.added["X-Spamd-Result"]
        finally:
            session.close()

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.3)  # the slow session is waiting on DNS now
    session = MtaSession(daemon.port, client_ip=MTA_IP)
    try:
        start = time.monotonic()
        fast = session.send(_message(), mail_from="alice@example.test")
        fast_time = time.monotonic() - start
    finally:
        session.close()
    thread.join(30)
    assert "R_SPF_ALLOW" in fast.added["X-Spamd-Result"]
    assert slow_done and slow_done[0] > 0.9  # it did wait for the timeouts
    # Blocked behind the slow one it would take its 2 s of timeouts; alone, milliseconds.
    assert fast_time < 1.0 and slow_done[0] > 1.5


# --- through Postfix --------------------------------------------------------------------

@pytest.fixture(scope="module")
def postfix(daemon: Daemon) -> Iterator[Postfix]:
    with running_postfix(daemon.port) as instance:
        # XCLIENT lets the test speak for the client addresses the zones know about.
        subprocess.run(["postconf", "-c", str(instance.conf), "-e",
                        "smtpd_authorized_xclient_hosts = 127.0.0.0/8"], check=True)
        instance.postfix("reload")
        time.sleep(1)
        yield instance


def _send_as(postfix: Postfix, client_ip: str, raw: bytes, sender: str) -> tuple[int, str]:
    async def go() -> tuple[int, str]:
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=postfix.smtp_port,
                                   timeout=30) as smtp:
            await smtp.ehlo(hostname="client.example.test")
            code, message = await smtp.execute_command(
                f"XCLIENT ADDR={client_ip} NAME=[UNAVAILABLE] HELO=mta.example.test".encode())
            assert code == 220, message
            await smtp.ehlo(hostname="mta.example.test")
            try:
                _, reply = await smtp.sendmail(sender, [MAILBOX], raw)
            except aiosmtplib.SMTPResponseException as exc:
                return exc.code, exc.message
            return 250, reply

    return asyncio.run(go())


def test_postfix_delivers_with_authentication_results(lab: Lab, postfix: Postfix) -> None:
    postfix.clear_mailbox()
    code, _ = _send_as(postfix, MTA_IP, _message(), "alice@example.test")
    assert code == 250
    code, _ = _send_as(postfix, ALL_ZEN_IP, _message(body="http://www.spammy-domain.test/\n"),
                       "alice@example.test")
    assert code == 250
    # Maildir names start with the second of delivery: find each message by its body.
    delivered = postfix.wait_delivered(2)
    (second,) = [m for m in delivered if "spammy-domain" in m.get_payload()]
    (first,) = [m for m in delivered if m is not second]
    auth = " ".join(first["Authentication-Results"].split())
    assert auth.startswith("mx.example.net; spf=pass smtp.mailfrom=alice@example.test")
    assert "dmarc=pass header.from=example.test" in auth
    assert first["Received-SPF"].startswith("Pass (mx.example.net: domain of example.test")
    assert "R_SPF_ALLOW" in first["X-Spamd-Result"]
    assert "DMARC_POLICY_ALLOW" in first["X-Spamd-Result"]
    listed = second["X-Spamd-Result"]
    for symbol in ("RBL_SPAMHAUS_SBL", "RBL_SPAMHAUS_XBL", "RBL_SPAMHAUS_PBL",
                   "DBL_SPAMHAUS_SPAM", "R_SPF_FAIL", "DMARC_POLICY_REJECT"):
        assert symbol in listed, listed
    assert "dmarc=fail" in " ".join(second["Authentication-Results"].split())
    # the same message scanned in-process gives the same network symbols
    config = postfix.root / "scan.toml"
    config.write_text(lab.config(ACTIONS))
    direct = Scanner.from_config(load_config(config)).scan(
        _message(body="http://www.spammy-domain.test/\n"),
        Envelope(client_ip=ALL_ZEN_IP, mail_from="alice@example.test", helo="mta.example.test"))
    network = {s for s in direct.symbols if s.startswith(("RBL_", "DBL_", "R_SPF", "R_DKIM",
                                                          "DMARC_", "ARC_"))}
    assert network and all(s in listed for s in network)


def test_postfix_relays_outbound_mail_signed(lab: Lab, postfix: Postfix) -> None:
    postfix.clear_mailbox()
    code, _ = _send_as(postfix, TRUSTED, _message(), "alice@example.test")
    assert code == 250
    (delivered,) = postfix.wait_delivered(1)
    assert delivered["X-Pyspamd-Scan"].startswith("skipped; trusted network")
    assert "d=example.test" in delivered["DKIM-Signature"]
    raw = (postfix.maildir / "new").iterdir().__next__().read_bytes()
    done = dkimverify(lab, raw)
    assert done.returncode == 0 and b"signature ok" in done.stdout, done.stdout + done.stderr
    assert message_from_bytes(raw, policy=compat32)["From"] == "Alice <alice@example.test>"


def test_forged_authentication_results_are_removed(daemon: Daemon) -> None:
    raw = make_message([
        ("Authentication-Results", "relay.example.org; spf=pass smtp.mailfrom=example.org"),
        ("Authentication-Results", "MX.example.net; dkim=pass header.d=bank.example"),
        ("From", "Alice <alice@example.test>"), ("To", MAILBOX)])
    session = MtaSession(daemon.port, client_ip=MTA_IP)
    try:
        result = session.send(raw, mail_from="alice@example.test")
    finally:
        session.close()
    assert result.changed == [("Authentication-Results", 2, "")]  # ours by name: forged
    assert "dkim=none" in result.inserted["Authentication-Results"]


def test_dns_counters_of_the_workers_reach_metrics(lab: Lab, tmp_path: Path) -> None:
    """The resolver's timeouts in a worker show in the controller's /metrics."""
    from support.controller_proc import call, eventually
    from support.mta import free_port

    port = free_port()
    config = _config(lab) + (f'[controller]\nlisten = "127.0.0.1:{port}"\n'
                             "flush_interval = 0.2\n")
    with running_daemon(tmp_path, config, workers=1) as running:
        session = MtaSession(running.port, client_ip="203.0.113.61")
        try:
            session.send(_message("y.timeout.test"), mail_from="a@y.timeout.test")
        finally:
            session.close()

        def counts() -> dict[str, float]:
            text = call(port, "GET", "/metrics").body.decode()
            found = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
                     if line.startswith("pyspamd_dns_")}
            assert found.get("pyspamd_dns_timeouts_total", 0) >= 1, found
            return found

        found = eventually(counts, timeout=15)
    assert found["pyspamd_dns_queries_total"] >= found["pyspamd_dns_timeouts_total"]
