"""The first untrusted relay: from the milter's client macros, or from the Received chain
of a scanned file; trusted, loopback and authenticated clients are never judged."""

from __future__ import annotations

import pytest
from support.messages import make_message

from pyspamd.checks.relay import RelayAnalysis, looks_dynamic, parse_hop
from pyspamd.config import Config, MilterConfig
from pyspamd.symbols import Hits
from pyspamd.task import Envelope, Task

CHECK = RelayAnalysis(Config(milter=MilterConfig(trusted_networks=["203.0.113.0/24"])))
BOT = ("from 198-51-100-7.dsl.example.net (unknown [198.51.100.7]) by mx.example.net "
       "(Postfix) with ESMTP id 4A1B2C; Mon, 6 Jan 2003 10:00:05 +0000")


def symbols(raw: bytes, **env: object) -> set[str]:
    hits = Hits()
    CHECK.run(Task(raw, Envelope(**env)), hits)  # type: ignore[arg-type]
    return set(hits.hits)


def received(*lines: str) -> bytes:
    """A message whose Received chain is `lines` (newest first) and nothing else."""
    raw = make_message()
    head, _, body = raw.partition(b"\n\n")
    kept = [line for line in head.split(b"\n") if not line.startswith(b"Received:")]
    return b"\n".join([b"Received: " + line.encode() for line in lines] + kept) + \
        b"\n\n" + body


@pytest.mark.parametrize(("name", "ip", "dynamic"), [
    ("dsl-198-51-100-7.pool.example.net", "198.51.100.7", True),
    ("7.100.51.198.static.example.net", "198.51.100.7", True),  # reversed octets
    ("c6336407.example.net", "198.51.100.7", True),  # the address in hex
    ("ppp123.example.net", "198.51.100.7", True),
    ("host.dynamic.example.com", "198.51.100.7", True),
    ("mail.example.org", "198.51.100.7", False),
    ("smtp-198-51-100-7.example.net", "198.51.100.7", False),  # a provider's mail server
    ("example.net", "198.51.100.7", False),
    ("lists.example.org", "198.51.100.7", False),
])
def test_generic_names(name: str, ip: str, dynamic: bool) -> None:
    assert looks_dynamic(name, ip) is dynamic


def test_received_dialects() -> None:
    assert parse_hop(BOT)[:3] == ("198.51.100.7", "", "198-51-100-7.dsl.example.net")
    exim = ("from [198.51.100.7] (helo=PC1) by mx.example.net with esmtp (Exim 4.96) id 1x; "
            "Mon, 6 Jan 2003 10:00:05 +0000")
    assert parse_hop(exim)[:3] == ("198.51.100.7", "", "pc1")
    exim_named = ("from mail.example.org ([198.51.100.7]) by mx.example.net with esmtp "
                  "(Exim 4.96) id 1x; Mon, 6 Jan 2003 10:00:05 +0000")
    assert parse_hop(exim_named)[:3] == ("198.51.100.7", "mail.example.org",
                                         "mail.example.org")
    sendmail = "from pc1 ([198.51.100.7]) by mx.example.net (8.13.1/8.13.1) with SMTP id x"
    assert parse_hop(sendmail)[:3] == ("198.51.100.7", None, "pc1")  # no name, or same
    zmailer = ('from mail.example.org ([198.51.100.7]:48364 "EHLO pc1" rhost-flags-OK) by '
               'list.example.net with ESMTP id S14; Mon, 17 Jan 2011 13:18:42 +0100')
    assert parse_hop(zmailer)[:3] == ("198.51.100.7", "mail.example.org", "pc1")
    qmail = "from unknown (HELO 198.51.100.7) (198.51.100.7) by mx.example.net with SMTP"
    assert parse_hop(qmail)[:3] == ("198.51.100.7", "", "198.51.100.7")
    exchange = "from PC1 (198.51.100.7) by mx.example.net with Microsoft SMTP Server"
    assert parse_hop(exchange)[:3] == ("198.51.100.7", None, "pc1")
    assert parse_hop("by mx.example.net with LMTP id x; Mon, 6 Jan 2003 10:00:05") is None


def test_milter_client_is_judged() -> None:
    raw = make_message()
    assert symbols(raw, client_ip="198.51.100.7", client_hostname="[198.51.100.7]",
                   helo="198.51.100.7") == {"RDNS_NONE", "HELO_BARE_IP",
                                            "DIRECT_FROM_DYNAMIC"}
    assert symbols(raw, client_ip="198.51.100.7",
                   client_hostname="adsl-198-51-100-7.example.net", helo="mypc") == {
        "RDNS_DYNAMIC", "HELO_NOT_FQDN", "DIRECT_FROM_DYNAMIC"}
    assert symbols(raw, client_ip="198.51.100.7", client_hostname="mail.example.org",
                   helo="mail.example.org") == set()
    # no host name given at all (a controller request without one): nothing to say on rDNS
    assert symbols(raw, client_ip="198.51.100.7", helo="mail.example.org") == set()


@pytest.mark.parametrize("env", [
    {"client_ip": "127.0.0.1", "client_hostname": "[127.0.0.1]", "helo": "127.0.0.1"},
    {"client_ip": "::1", "client_hostname": "unknown", "helo": "localhost"},
    {"client_ip": "203.0.113.9", "client_hostname": "[203.0.113.9]", "helo": "pc"},  # trusted
    {"client_ip": "192.168.1.20", "client_hostname": "unknown", "helo": "laptop"},
    {"client_ip": "198.51.100.7", "client_hostname": "ppp7.example.net", "helo": "pc",
     "user": "alice"},  # logged in with SASL
])
def test_own_users_are_never_judged(env: dict[str, str]) -> None:
    # even a message whose Received chain shows a bot: the client decides in the milter
    assert symbols(received(BOT), **env) == set()


def test_received_chain_of_a_file() -> None:
    internal = ("from mx.example.net (mx.example.net [10.1.2.3]) by store.example.net "
                "(Postfix) with ESMTP id 1; Mon, 6 Jan 2003 10:00:06 +0000")
    assert symbols(received(internal, BOT)) == {"RDNS_NONE", "HELO_DYNAMIC",
                                                "DIRECT_FROM_DYNAMIC"}
    # a relay with a proper name: the hops below it are not ours to believe
    good = ("from mail.example.org (mail.example.org [198.51.100.20]) by mx.example.net "
            "(Postfix) with ESMTP id 2; Mon, 6 Jan 2003 10:00:05 +0000")
    assert symbols(received(good, BOT)) == set()
    # no earlier hop and no name: straight from a home computer
    assert "DIRECT_FROM_DYNAMIC" in symbols(received(
        "from mail.example.org (unknown [198.51.100.7]) by mx.example.net (Postfix) with "
        "ESMTP id 3; Mon, 6 Jan 2003 10:00:05 +0000"))
    # an authenticated submission is the sender's own provider taking mail from its user
    submission = ("from pc1 (ppp7.example.net [198.51.100.7]) by smtp.example.net "
                  "(Postfix) with ESMTPSA id 4; Mon, 6 Jan 2003 10:00:05 +0000")
    assert symbols(received(submission)) == set()
    # a trusted network's hop is skipped like an internal one
    trusted = ("from relay.example.net (relay.example.net [203.0.113.5]) by mx.example.net "
               "(Postfix) with ESMTP id 5; Mon, 6 Jan 2003 10:00:06 +0000")
    assert "RDNS_NONE" in symbols(received(trusted, BOT))
