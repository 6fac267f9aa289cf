"""[[settings]]: options and their errors, the selectors, what an entry changes in a scan,
per-recipient map whitelists, pyspamc --rcpt, and the milter's decision at RCPT."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import Milter
import pytest
from support.messages import GTUBE, make_message
from support.paths import REPO
from support.slapd_server import SUFFIX, Slapd, slapd_server

from pyspamd import actions
from pyspamd.cli.pyspamc import main as pyspamc_main
from pyspamd.cli.pyspamd import configtest
from pyspamd.config import ConfigError, load_config
from pyspamd.milter.recipients import RecipientGate
from pyspamd.milter.session import MilterApp, session_class
from pyspamd.result import ScanResult, header_changes
from pyspamd.scanner import Scanner
from pyspamd.task import Envelope
from pyspamd.tasklog import task_log_line

BASE = (f'[rules]\ndirs = ["{REPO / "rules"}"]\n[bayes]\nenabled = false\n'
        "[greylist]\nenabled = false\n[fuzzy]\nenabled = false\n")
SETTINGS = """
[[settings]]
name = "abuse-desk"
rcpt = ["Abuse@Example.test", "postmaster@example.test"]
actions = { reject = false }
subject = "[SPAM] %s"

[[settings]]
name = "partners"
from = ["@partner.test"]
ip = ["192.0.2.0/24"]
scores = { GTUBE = 2.5 }

[[settings]]
name = "sales"
rcpt_domain = ["sales.example.test"]
symbols_disabled = ["MISSING_DATE", "MISSING_HEADERS_MANY"]
add_headers = false
quarantine_instead_of_reject = true
welcomelist = ["@friend.test"]
blocklist = ["boss@rival.test"]

[[settings]]
name = "staff"
user = ["alice"]
symbols_enabled = ["GTUBE"]
actions = { reject = 5000.0, add_header = 10.0 }
"""


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pyspamd.toml"
    path.write_text(BASE + text)
    return path


@pytest.fixture(scope="module")
def scanner(tmp_path_factory: pytest.TempPathFactory) -> Scanner:
    return Scanner.from_config(load_config(_config(tmp_path_factory.mktemp("settings"),
                                                   SETTINGS)))


def _gtube(sender: str = "someone@example.org") -> bytes:
    return make_message([("From", sender), ("Subject", "offer")], f"{GTUBE}\n")


def _scan(scanner: Scanner, *rcpts: str, raw: bytes | None = None, **envelope: str
          ) -> ScanResult:
    return scanner.scan(raw or _gtube(), Envelope(rcpts=rcpts, **envelope))  # type: ignore


def test_errors_name_the_line_and_what_to_write(tmp_path: Path) -> None:
    path = _config(tmp_path, """
[[settings]]
name = "a"
rcpt = ["example.test"]
actions = { reject = true, hold = 3.0 }

[[settings]]
name = "a"
subject = "no place"

[[settings]]
name = "c"
from = ["bad address@x"]
ip = ["10.0.0.300"]
[settings.ldap_group]
server_url = "http://x"
""")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    errors = caught.value.errors
    text = "\n".join(errors)
    assert f"{path}:12: settings a: rcpt has 'example.test'; write whole addresses" in text
    assert f"{path}:13: settings a: actions.reject must be a score threshold" in text
    assert "actions has 'hold'; known: reject, quarantine, soft_reject, rewrite_subject" in text
    assert f"{path}:16: settings a: name is defined twice" in text
    assert "settings a: selects nothing: give rcpt, rcpt_domain, from, ip, user" in text
    assert f"{path}:17: settings a: subject needs %s" in text
    assert f"{path}:21: settings c: from has 'bad address@x'" in text
    assert "ip has '10.0.0.300', which is not an address or CIDR network" in text
    assert "settings c: ldap_group.server_url must be ldap://HOST:PORT" in text
    path.write_text(BASE + '[[settings]]\nname = "x"\nrcpt = ["a@b.test"]\nfrm = ["x"]\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "unknown option 'settings.0.frm'; known here: " in caught.value.errors[0]
    assert " from, " in caught.value.errors[0]  # the TOML key, not the Python name


def test_configtest_names_the_entries(tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert configtest(str(_config(tmp_path, SETTINGS))) == 0
    assert ("settings: 4 entries, first match wins: abuse-desk, partners, sales, staff; "
            "recipients of different settings: defer") in capsys.readouterr().out


def test_first_match_wins_and_kinds_must_all_match(scanner: Scanner) -> None:
    table = scanner.settings

    def name(rcpt: str | None, ip: str | None = None, sender: str | None = None,
             user: str | None = None) -> str:
        return table.for_recipient(ip, sender, user, rcpt).name

    assert name("<ABUSE@example.test>") == "abuse-desk"
    assert name("ceo@example.test") == ""
    assert name("x@sales.example.test") == "sales"
    assert name("x@eu.sales.example.test") == "sales"  # subdomains too
    assert name("x@notsales.example.test") == ""
    # from AND ip: both needed.
    assert name("ceo@example.test", "192.0.2.7", "a@partner.test") == "partners"
    assert name("ceo@example.test", "198.51.100.7", "a@partner.test") == ""
    assert name("ceo@example.test", "192.0.2.7", "a@other.test") == ""
    # An earlier entry wins over a later one that also matches.
    assert name("abuse@example.test", "192.0.2.7", "a@partner.test") == "abuse-desk"
    assert name("ceo@example.test", user="alice") == "staff"
    # Without recipients only the entries that select no recipient can apply.
    assert table.for_message("192.0.2.7", "a@partner.test", None, ()).name == "partners"
    assert table.for_message(None, None, None, ()).name == ""


def test_thresholds_subject_and_symbol_of_the_entry(scanner: Scanner) -> None:
    ceo = _scan(scanner, "ceo@example.test")
    assert ceo.action == actions.REJECT and ceo.settings == "" and "SETTINGS" not in ceo.symbols
    abuse = _scan(scanner, "abuse@example.test")
    assert abuse.action == actions.ADD_HEADER  # reject = false for this entry
    assert abuse.symbols["SETTINGS"].options == ["abuse-desk"]
    assert abuse.to_json()["settings"] == "abuse-desk"
    changes = header_changes(abuse, [], scanner.config)
    assert changes.subject == "[SPAM] offer"
    assert ("X-Spam-Flag", "YES") in changes.add
    line = task_log_line(abuse, Envelope(rcpts=("abuse@example.test",)), 100)
    assert "settings: abuse-desk" in line


def test_different_recipients_get_the_strictest(scanner: Scanner) -> None:
    both = _scan(scanner, "abuse@example.test", "ceo@example.test")
    assert both.action == actions.REJECT and both.settings == ""
    assert _scan(scanner, "abuse@example.test", "postmaster@example.test").settings == (
        "abuse-desk")


def test_scores_filters_headers_quarantine_and_sender_lists(scanner: Scanner) -> None:
    partner = _scan(scanner, "ceo@example.test", client_ip="192.0.2.1",
                    mail_from="x@partner.test")
    assert partner.symbols["GTUBE"].score == 2.5 and partner.action != actions.REJECT
    sales = _scan(scanner, "bob@sales.example.test", raw=make_message(
        [("From", "x@example.org"), ("Date", None), ("Message-ID", None), ("Subject", None)],
        f"{GTUBE}\n"))
    assert {"MISSING_MID", "MISSING_SUBJECT"} <= set(sales.symbols)
    assert "MISSING_DATE" not in sales.symbols
    assert "MISSING_HEADERS_MANY" not in sales.symbols  # a meta turned off too
    assert sales.action == actions.QUARANTINE  # instead of reject
    assert header_changes(sales, [], scanner.config).add == []  # add_headers = false
    friend = _scan(scanner, "bob@sales.example.test", raw=_gtube("Pal <pal@mail.friend.test>"))
    assert friend.action == actions.NO_ACTION and "SETTINGS_WELCOMELIST" in friend.symbols
    rival = _scan(scanner, "bob@sales.example.test", mail_from="boss@rival.test",
                  raw=make_message([("Subject", "hello")], "hello\n"))
    assert rival.action == actions.QUARANTINE  # a reject, and this entry quarantines
    assert rival.forced_by == "SETTINGS_BLOCKLIST"
    staff = _scan(scanner, "ceo@example.test", user="alice")
    assert set(staff.symbols) == {"GTUBE", "SETTINGS"}  # only the enabled symbols
    assert staff.action == actions.ADD_HEADER


def test_a_recipient_maps_ok_binds_only_that_recipient(tmp_path: Path) -> None:
    path = _config(tmp_path, '[[maps]]\nname = "rcpt_access"\ntype = "address"\n'
                   'match = "rcpt"\nvalues = ["abuse@example.test OK"]\n')
    scanner = Scanner.from_config(load_config(path))
    alone = _scan(scanner, "abuse@example.test")
    assert alone.action == actions.NO_ACTION and alone.forced_by == "RCPT_ACCESS"
    both = _scan(scanner, "abuse@example.test", "ceo@example.test")
    assert both.action == actions.REJECT and both.forced_by == ""
    assert both.symbols["RCPT_ACCESS"].options == ["abuse@example.test"]


def test_milter_gate_defers_a_recipient_unlike_the_first(tmp_path: Path,
                                                         scanner: Scanner) -> None:
    gate = RecipientGate(scanner)
    assert gate.active
    first, take = gate.admit(None, "198.51.100.1", "x@example.org", None, "abuse@example.test")
    assert take and first is not None and first.settings == "abuse-desk"
    assert gate.admit(first, "198.51.100.1", "x@example.org", None, "postmaster@example.test")[1]
    assert not gate.admit(first, "198.51.100.1", "x@example.org", None, "ceo@example.test")[1]
    # A recipient an rcpt map accepts with OK differs from one it does not.
    path = _config(tmp_path, '[[maps]]\nname = "rcpt_access"\ntype = "address"\n'
                   'match = "rcpt"\nvalues = ["abuse@example.test OK"]\n')
    gate = RecipientGate(Scanner.from_config(load_config(path)))
    first, _ = gate.admit(None, None, "x@example.org", None, "ceo@example.test")
    assert not gate.admit(first, None, "x@example.org", None, "abuse@example.test")[1]
    # "strictest", or nothing to tell recipients apart: every recipient is taken, unanswered.
    path = _config(tmp_path, SETTINGS + '[milter]\nmixed_settings = "strictest"\n')
    assert not RecipientGate(Scanner.from_config(load_config(path))).active
    assert not RecipientGate(Scanner.from_config(load_config(_config(tmp_path, "")))).active


def test_rcpt_is_answered_only_when_recipients_can_differ(tmp_path: Path,
                                                         scanner: Scanner) -> None:
    # protocol_mask(): the no-reply bits pymilter clears from the MTA's offer, i.e. the
    # stages the session answers.
    answered = session_class(MilterApp(scanner, "mx.example.test"))
    assert answered.protocol_mask() & Milter.P_NR_RCPT
    plain = Scanner.from_config(load_config(_config(tmp_path, "")))
    unanswered = session_class(MilterApp(plain, "mx.example.test"))
    assert not unanswered.protocol_mask() & Milter.P_NR_RCPT


def test_pyspamc_rcpt_applies_settings_and_json_names_them(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _config(tmp_path, SETTINGS)
    message = tmp_path / "gtube.eml"
    message.write_bytes(_gtube())
    assert pyspamc_main(["-c", str(path), "symbols", "--rcpt", "abuse@example.test",
                         "--json", str(message)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["settings"] == "abuse-desk" and out["action"] == "add header"
    assert out["symbols"]["SETTINGS"]["options"] == ["abuse-desk"]
    assert pyspamc_main(["-c", str(path), "-r", "abuse@example.test", "-r",
                         "ceo@example.test", "symbols", "-j", str(message)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "settings" not in out and out["action"] == "reject"
    assert pyspamc_main(["-c", str(path), "--rcpt", "x@sales.example.test", str(message)]) == 0
    assert "Settings: sales" in capsys.readouterr().out


@pytest.fixture(scope="module")
def slapd() -> Iterator[Slapd]:
    with slapd_server() as server:
        yield server


@pytest.mark.slapd
def test_ldap_group_selects_members(tmp_path: Path, slapd: Slapd) -> None:
    path = _config(tmp_path, f"""
[[settings]]
name = "restricted"
actions = {{ add_header = 1.0 }}
[settings.ldap_group]
server_url = "{slapd.url}"
search_base = "ou=people,{SUFFIX}"
query_filter = "(&(mail=%s)(smtpdSenderRestrictions=TRUE))"
timeout = 1.0
""")
    scanner = Scanner.from_config(load_config(path))
    assert scanner.settings.for_recipient(None, None, None, "Blocked@example.org").name == (
        "restricted")
    assert scanner.settings.for_recipient(None, None, None, "alice@example.org").name == ""
    slapd.stop()
    try:  # a directory that does not answer: not selected, the message goes on
        assert scanner.settings.for_recipient(None, None, None, "x@example.org").name == ""
    finally:
        slapd.start()
