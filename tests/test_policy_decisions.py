"""What the policy service answers, decided in-process on real parts: a SQLite store, map
files, the DNS lab (Knot behind Unbound) for SPF and the blocklists. The protocol and the
daemon around it: test_policy_protocol.py; with Postfix: test_policy_postfix.py."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from support.network_lab import MTA_IP, PUBLIC_RESOLVER_IP, SBL_IP, UNLISTED_IP, Lab

from pyspamd.config import load_config
from pyspamd.policy_service.decide import Connection
from pyspamd.policy_service.server import PolicyServer

pytestmark = pytest.mark.dns


def attrs(ip: str = UNLISTED_IP, sender: str = "a@example.org",
          rcpt: str = "bob@example.test", instance: str = "1", **more: str) -> dict[str, str]:
    return {"request": "smtpd_access_policy", "protocol_state": "RCPT", "client_address": ip,
            "client_name": "unknown", "helo_name": "mx.example.org", "sender": sender,
            "recipient": rcpt, "instance": instance, **more}


def server(tmp_path: Path, lab: Lab, policy: str, extra: str = "") -> PolicyServer:
    path = tmp_path / "pyspamd.toml"
    path.write_text(lab.config(extra=f'[storage]\npath = "{tmp_path / "s.sqlite"}"\n'
                               f'[policy_service]\nlisten = ["inet:1@127.0.0.1"]\n{policy}\n'
                               f'{extra}').replace("[greylist]\nenabled = false\n", ""))
    return PolicyServer(path, load_config(path))


def ask(srv: PolicyServer, *requests: dict[str, str]) -> list[str]:
    async def go() -> list[str]:
        conn = Connection()
        return [await srv._decide(r, conn) for r in requests]

    return asyncio.run(go())


def test_greylist_once_per_message_and_auto_whitelist(tmp_path: Path, lab: Lab) -> None:
    srv = server(tmp_path, lab, "auto_whitelist_clients = 1", "[greylist]\ndelay = 0\n")
    first = ask(srv, attrs(), attrs(rcpt="carol@example.test"))
    assert all(a.startswith("DEFER_IF_PERMIT Greylisted") for a in first)
    # The retry of a two-recipient message: X-Greylist once, on its first recipient.
    retry = ask(srv, attrs(instance="2"), attrs(rcpt="carol@example.test", instance="2"))
    assert retry[0].startswith("PREPEND X-Greylist: delayed 0 seconds by pyspamd-")
    assert retry[1] == "DUNNO"
    # One pass made the client auto-whitelisted: a new triplet from it is not deferred.
    assert ask(srv, attrs(sender="new@example.org", instance="3")) == ["DUNNO"]
    # Another client of the same /24 is not (postgrey keys the count by address).
    assert ask(srv, attrs(ip="192.0.2.9", sender="new@example.org"))[0].startswith("DEFER")
    # SASL users are never greylisted.
    assert ask(srv, attrs(ip="198.51.100.1", sasl_username="bob")) == ["DUNNO"]


def test_spf_as_policyd_spf(tmp_path: Path, lab: Lab) -> None:
    srv = server(tmp_path, lab, "greylist = false\nspf = true",
                 '[milter]\ntrusted_networks = ["10.9.0.0/16"]\n')
    fail, passed, none, trusted = ask(
        srv, attrs(ip="192.0.2.99", sender="x@example.test"),
        attrs(ip=MTA_IP, sender="x@example.test", instance="2"),
        attrs(sender="x@nospf.example.test", instance="3"),
        attrs(ip="10.9.1.1", sender="x@example.test", instance="4"))
    assert fail.startswith("550 5.7.23 Message rejected due to: SPF fail - not authorized")
    assert passed.startswith("prepend Received-SPF: Pass (mailfrom) identity=mailfrom; "
                             f"client-ip={MTA_IP};")
    assert none.startswith("prepend Received-SPF: None (mailfrom)")
    assert trusted == "DUNNO"  # our own network: not judged


def test_maps_at_rcpt(tmp_path: Path, lab: Lab) -> None:
    access = tmp_path / "sender_access"
    access.write_text("spammer@example.org REJECT go away\nfriend@example.org OK\n"
                      "later@example.org 451 4.7.1 not now\n")
    srv = server(tmp_path, lab, "maps = true", f"""
[[maps]]
name = "senders"
type = "address"
match = "envelope_from"
file = "{access}"
[[maps]]
name = "bad_domains"
type = "domain"
match = "rcpt"
values = ["closed.test"]
action = "reject"
message = "Mailbox closed"
[[maps]]
name = "scored_only"
type = "ip"
values = ["{UNLISTED_IP}"]
score = 3.0
""")
    assert ask(srv, attrs(sender="spammer@example.org")) == ["REJECT go away"]
    assert ask(srv, attrs(sender="friend@example.org")) == ["OK"]
    assert ask(srv, attrs(sender="later@example.org")) == ["451 not now"]
    assert ask(srv, attrs(rcpt="x@closed.test")) == ["REJECT Mailbox closed"]
    # A score-only hit is the milter's; greylisting goes on.
    assert ask(srv, attrs(sender="other@example.org"))[0].startswith("DEFER_IF_PERMIT Grey")


def test_ratelimit_counts_a_message_once(tmp_path: Path, lab: Lab) -> None:
    srv = server(tmp_path, lab, "greylist = false\nratelimit = true",
                 '[ratelimit]\nlimits = { ip = "2 / 1h" }\n')
    answers = ask(srv, attrs(instance="1"), attrs(instance="1", rcpt="c@example.test"),
                  attrs(instance="2"), attrs(instance="3"))
    assert answers[:3] == ["DUNNO", "DUNNO", "DUNNO"]
    assert answers[3] == (f"DEFER_IF_PERMIT 4.7.1 Rate limit exceeded: 2 messages per 1h "
                          f"from client {UNLISTED_IP}")


def test_dnsbl_on_the_client(tmp_path: Path, lab: Lab) -> None:
    srv = server(tmp_path, lab, "greylist = false\nrbl = true")
    listed, clean, refused, sasl = ask(
        srv, attrs(ip=SBL_IP), attrs(ip=UNLISTED_IP), attrs(ip=PUBLIC_RESOLVER_IP),
        attrs(ip=SBL_IP, sasl_username="bob"))
    assert listed == (f"REJECT Service unavailable; client [{SBL_IP}] blocked using "
                      "zen.spamhaus.org")
    assert clean == refused == sasl == "DUNNO"


@pytest.mark.redis
@pytest.mark.parametrize("cluster", [False, True], ids=["redis", "redis-cluster"])
def test_two_mx_hosts_share_the_triplets(tmp_path: Path, lab: Lab, cluster: bool,
                                         request: pytest.FixtureRequest) -> None:
    proc = request.getfixturevalue("redis_cluster_proc" if cluster else "redis_proc")
    prefix = f"policy{time.monotonic_ns()}"
    store = (f'[storage]\nbackend = "redis"\nredis_url = "{proc.url}"\n'
             f'redis_prefix = "{prefix}"\nredis_cluster = {str(cluster).lower()}\n')
    hosts = []
    for name in ("mx1", "mx2"):
        (tmp_path / name).mkdir()
        path = tmp_path / name / "pyspamd.toml"
        path.write_text(lab.config(extra=f'{store}[greylist]\ndelay = 1\n[policy_service]\n'
                                   'listen = ["inet:1@127.0.0.1"]\n'
                                   ).replace("[greylist]\nenabled = false\n", ""))
        hosts.append(PolicyServer(path, load_config(path)))
    assert ask(hosts[0], attrs())[0].startswith("DEFER_IF_PERMIT")
    time.sleep(1.1)
    # The retry reaches the other MX: it knows the triplet.
    assert ask(hosts[1], attrs(instance="2"))[0].startswith("PREPEND X-Greylist: delayed 1 ")
    for host in hosts:
        host.decider.close()
