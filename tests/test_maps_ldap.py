"""LDAP maps against a real slapd: the admin notes' sender restriction, escaping, several
values, binding, %u/%d, the cache, and slapd stopped mid-test (fail open or defer)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.messages import make_message
from support.paths import REPO
from support.slapd_server import READER_DN, READER_PASSWORD, SUFFIX, Slapd, slapd_server

from pyspamd.cli.pyspamc import main as pyspamc_main
from pyspamd.config import ConfigError, load_config
from pyspamd.policy.ldap_map import fill_query
from pyspamd.scanner import Scanner
from pyspamd.task import Envelope

pytestmark = pytest.mark.slapd

NOTES_TEXT = "This account is not allowed to send emails, plz talk to abuse@example.org"


@pytest.fixture(scope="module")
def slapd() -> Iterator[Slapd]:
    with slapd_server() as server:
        yield server


def ldap_map(slapd: Slapd, name: str = "sender_restrictions", **options: object) -> str:
    settings = {
        "server_url": slapd.url, "search_base": f"ou=people,{SUFFIX}",
        "query_filter": "(&(mail=%s)(smtpdSenderRestrictions=TRUE))",
        "result_format": f"REJECT {NOTES_TEXT}", "cache_ttl": 0.0, "timeout": 1.0,
        **options,
    }
    lines = []
    for key, value in settings.items():
        shown = str(value).lower() if isinstance(value, bool) else (
            value if isinstance(value, float) else f'"{value}"')
        lines.append(f"{key} = {shown}")
    return (f'[[maps]]\nname = "{name}"\ntype = "ldap"\nmatch = "envelope_from"\n'
            f"[maps.ldap]\n" + "\n".join(lines) + "\n")


def scanner(tmp_path: Path, maps: str) -> tuple[Scanner, Path]:
    path = tmp_path / "pyspamd.toml"
    path.write_text(f'[rules]\ndirs = ["{REPO / "rules"}"]\n[greylist]\nenabled = false\n'
                    f"[bayes]\nenabled = false\n{maps}")
    return Scanner.from_config(load_config(path)), path


def scan_from(scanner: Scanner, sender: str) -> object:
    return scanner.scan(make_message(), Envelope(client_ip="192.0.2.9", mail_from=sender,
                                                 rcpts=("bob@example.net",)))


def test_notes_sender_restriction_rejects_with_its_text(tmp_path: Path, slapd: Slapd) -> None:
    s, _ = scanner(tmp_path, ldap_map(slapd))
    result = scan_from(s, "Blocked@Example.org")
    assert result.action == "reject" and result.message == NOTES_TEXT  # type: ignore
    assert result.symbols["SENDER_RESTRICTIONS"].options == [  # type: ignore[attr-defined]
        "uid=blocked,ou=people,dc=exampl…"]
    assert scan_from(s, "alice@example.org").action == "no action"  # type: ignore
    assert scan_from(s, "nobody@example.org").action == "no action"  # type: ignore
    assert scan_from(s, "").action == "no action"  # the null sender  # type: ignore


def test_values_cannot_inject_into_the_filter(tmp_path: Path, slapd: Slapd) -> None:
    assert fill_query("(mail=%s)", "*)(uid=*") == "(mail=\\2a\\29\\28uid=\\2a)"
    s, _ = scanner(tmp_path, ldap_map(slapd))
    # Unescaped, each of these would have matched the blocked account (or every account).
    for sneaky in ("*", "*@example.org", "blocked@example.org)(|(mail=*",
                   "x)(smtpdSenderRestrictions=TRUE"):
        assert scan_from(s, sneaky).action == "no action", sneaky  # type: ignore


def test_several_values_local_part_and_bind(tmp_path: Path, slapd: Slapd) -> None:
    maps = ldap_map(slapd, "descriptions", query_filter="(uid=%u)",
                    result_attribute="description", result_format="%s",
                    bind_dn=READER_DN, bind_password=READER_PASSWORD)
    s, _ = scanner(tmp_path, maps)
    # "HOLD second value" and "REJECT first value": the first in sorted order decides.
    result = scan_from(s, "multi@anywhere.test")
    assert result.action == "quarantine" and result.message == "second value"  # type: ignore
    assert scan_from(s, "blocked@example.org").action == "no action"  # no description


def test_pyspamc_maps_check_asks_the_directory(tmp_path: Path, slapd: Slapd,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    _, path = scanner(tmp_path, ldap_map(slapd))
    assert pyspamc_main(["-c", str(path), "maps", "check", "sender_restrictions",
                         "blocked@example.org"]) == 0
    out = capsys.readouterr().out
    assert "matches uid=blocked,ou=people,dc=example,dc=org" in out
    assert f"action: reject; text: {NOTES_TEXT}" in out


def test_slapd_stopped_mid_test(tmp_path: Path, slapd: Slapd,
                                caplog: pytest.LogCaptureFixture) -> None:
    open_map = ldap_map(slapd, cache_ttl=300.0)
    closed_map = ldap_map(slapd, "strict", fail_open=False)
    s, _ = scanner(tmp_path, open_map + closed_map)
    assert scan_from(s, "blocked@example.org").action == "reject"  # type: ignore
    caplog.set_level(logging.WARNING, "pyspamd.maps")
    slapd.stop()
    try:
        # The fail-open map still answers from its cache; the strict one defers.
        result = scan_from(s, "blocked@example.org")
        assert result.action == "reject"  # type: ignore[attr-defined]
        assert result.forced_by == "SENDER_RESTRICTIONS"  # type: ignore[attr-defined]
        result = scan_from(s, "alice@example.org")
        assert result.action == "soft reject"  # type: ignore[attr-defined]
        assert result.message == "Temporary failure checking strict, try again later"  # type: ignore
        assert "map sender_restrictions skipped, directory unavailable" in caplog.text
        assert "map strict: directory unavailable, deferring" in caplog.text
    finally:
        slapd.start()
    result = scan_from(s, "alice@example.org")  # reconnects by itself
    assert result.action == "no action"  # type: ignore[attr-defined]


def test_ldap_map_config_errors(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('[[maps]]\nname = "l"\ntype = "ldap"\nvalues = ["x"]\n[maps.ldap]\n'
                    'server_url = "localhost:389"\nsearch_base = "dc=x"\n'
                    'query_filter = "(mail=x)"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    errors = info.value.errors
    assert any(e.startswith(f"{path}:6: maps l: ldap.server_url must be") for e in errors)
    assert any(e.startswith(f"{path}:8: maps l: ldap.query_filter needs %s") for e in errors)
    assert any(e.startswith(f"{path}:4: maps l: an ldap map takes neither") for e in errors)


def test_notes_sender_restriction_at_rcpt_through_the_policy_service(
        tmp_path: Path, slapd: Slapd) -> None:
    import asyncio

    from pyspamd.policy_service.decide import Connection
    from pyspamd.policy_service.server import PolicyServer

    path = tmp_path / "pyspamd.toml"
    path.write_text(f'[storage]\npath = "{tmp_path / "s.sqlite"}"\n[policy_service]\n'
                    'listen = ["inet:1@127.0.0.1"]\ngreylist = false\nmaps = true\n'
                    + ldap_map(slapd))
    server = PolicyServer(path, load_config(path))

    def answer(sender: str) -> str:
        request = {"request": "smtpd_access_policy", "protocol_state": "RCPT",
                   "client_address": "192.0.2.9", "sender": sender,
                   "recipient": "bob@example.net"}
        return asyncio.run(server._decide(request, Connection()))

    assert answer("Blocked@Example.org") == f"REJECT {NOTES_TEXT}"
    assert answer("alice@example.org") == "DUNNO"
    server.decider.close()
