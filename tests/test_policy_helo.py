"""HELO and envelope-sender sanity symbols (HELO_INVALID, HELO_IS_US, SENDER_NOT_FQDN)."""

from __future__ import annotations

import socket

import pytest
from support.messages import make_message

from pyspamd.checks.helo_sanity import HeloSanity, is_hostname
from pyspamd.config import Config, HeloConfig, MilterConfig
from pyspamd.symbols import Hits
from pyspamd.task import Envelope, Task


def symbols(check: HeloSanity, **env: object) -> dict[str, list[str]]:
    base = {"client_ip": "198.51.100.7", "mail_from": "a@example.org", **env}
    hits = Hits()
    check.run(Task(make_message(), Envelope(**base)), hits)  # type: ignore[arg-type]
    return {name: hit.options for name, hit in hits.hits.items()}


def test_hostname_syntax() -> None:
    assert is_hostname("mail.example.org") and is_hostname("a-b.c0.example.")
    for bad in ("", "mail_server.example", "-bad.example", "a..b", "x" * 64 + ".test",
                "host name", "ex ample.org"):
        assert not is_hostname(bad), bad


def test_helo_checks() -> None:
    config = Config(helo=HeloConfig(our_names=["mx.example.net"],
                                    our_addresses=["203.0.113.25", "2001:db8::25"]),
                    milter=MilterConfig(trusted_networks=["10.0.0.0/8"]))
    check = HeloSanity(config)
    assert symbols(check, helo="mail.example.org") == {}
    assert symbols(check, helo="MX.example.net.") == {"HELO_IS_US": ["MX.example.net."]}
    assert symbols(check, helo="[203.0.113.25]") == {"HELO_IS_US": ["[203.0.113.25]"]}
    assert symbols(check, helo="[IPv6:2001:db8::25]") == {"HELO_IS_US": ["[IPv6:2001:db8::25]"]}
    assert symbols(check, helo="mail_server.example") == {
        "HELO_INVALID": ["mail_server.example"]}
    assert symbols(check, helo="[198.51.100.7]") == {}  # an honest address literal
    # Our own machines, trusted networks and file scans may say anything.
    assert symbols(check, helo="mx.example.net", client_ip="10.2.3.4") == {}
    assert symbols(check, helo="mx.example.net", client_ip="::1") == {}
    assert symbols(check, helo="mx.example.net", client_ip=None) == {}


def test_default_name_is_this_hosts_fqdn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "getfqdn", lambda: "mx1.example.net")
    check = HeloSanity(Config())
    assert symbols(check, helo="mx1.example.net") == {"HELO_IS_US": ["mx1.example.net"]}
    # A host without a real name: "localhost" is not taken as our name.
    monkeypatch.setattr(socket, "getfqdn", lambda: "localhost.localdomain")
    assert HeloSanity(Config()).our_names == set()


def test_sender_domain_must_be_qualified() -> None:
    check = HeloSanity(Config())
    assert symbols(check, mail_from="root@localhost") == {"SENDER_NOT_FQDN": ["root@localhost"]}
    assert symbols(check, mail_from="bare-user") == {"SENDER_NOT_FQDN": ["bare-user"]}
    assert symbols(check, mail_from="x@bad_domain.test") == {
        "SENDER_NOT_FQDN": ["x@bad_domain.test"]}
    assert symbols(check, mail_from="x@[192.0.2.1]") == {}
    assert symbols(check, mail_from="") == {}  # the null sender
    assert symbols(check, mail_from="x@sub.example.org") == {}
