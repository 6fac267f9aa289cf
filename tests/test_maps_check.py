"""The multimap check through the scanner, map reloads, configtest and `pyspamc maps check`."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
from support.messages import make_message
from support.paths import REPO

from pyspamd.cli.pyspamc import main as pyspamc_main
from pyspamd.cli.pyspamd import main as pyspamd_main
from pyspamd.config import ConfigError, MapConfig, load_config
from pyspamd.policy.maps import MapSource
from pyspamd.scanner import Scanner
from pyspamd.task import Envelope

HEADER_CHECKS = '/adsgreece\\.com/ REJECT "Plz stop sending SPAM id=8"\n'


def write_config(tmp_path: Path, maps: str, extra: str = "") -> Path:
    path = tmp_path / "pyspamd.toml"
    path.write_text(f'[rules]\ndirs = ["{REPO / "rules"}"]\n[greylist]\nenabled = false\n'
                    f"{extra}\n{maps}")
    return path


def scanner_for(tmp_path: Path, maps: str) -> Scanner:
    return Scanner.from_config(load_config(write_config(tmp_path, maps)))


def test_header_checks_file_rejects_with_the_admins_text(tmp_path: Path) -> None:
    (tmp_path / "header_checks").write_text(HEADER_CHECKS)
    scanner = scanner_for(tmp_path, '[[maps]]\nname = "header_checks"\ntype = "regexp"\n'
                                    'match = "headers"\nfile = "header_checks"\n'
                                    'symbol = "POSTFIX_HEADER_CHECKS"\nscore = 2.0\n')
    result = scanner.scan(make_message({"From": "Deals <promo@adsgreece.com>"}))
    assert result.action == "reject"
    assert result.message == '"Plz stop sending SPAM id=8"'
    assert result.forced_by == "POSTFIX_HEADER_CHECKS"
    symbol = result.symbols["POSTFIX_HEADER_CHECKS"]
    assert symbol.score == 2.0 and symbol.options == ["/adsgreece\\.com/"]
    clean = scanner.scan(make_message())
    assert clean.action == "no action" and "POSTFIX_HEADER_CHECKS" not in clean.symbols


def test_envelope_maps_ip_sender_null_sender_rcpt_helo_and_urls(tmp_path: Path) -> None:
    (tmp_path / "sender_access").write_text(
        "bad@example.org REJECT This account is not allowed to send\n"
        "<> DEFER no bounces here today\n"
        "friend.example OK\n")
    scanner = scanner_for(tmp_path, """
[[maps]]
name = "bad_clients"
type = "ip"
values = ["198.51.100.0/24", "2001:db8:bad::/48"]
score = 3.5
[[maps]]
name = "sender_access"
type = "address"
file = "sender_access"
[[maps]]
name = "vip_rcpt"
type = "address"
match = "rcpt"
values = ["ceo@example.net"]
score = -1.0
[[maps]]
name = "helo_is_us"
type = "regexp"
match = "helo"
values = ['/^mx\\.example\\.net$/ REJECT you are not me']
[[maps]]
name = "bad_urls"
type = "domain"
match = "url_hosts"
values = ["evil.test"]
score = 4.0
action = "soft reject"
message = "URL on our list"
""")
    with_url = make_message(body="see http://www.evil.test/x and http://fine.test/\n")

    def scan(raw: bytes = make_message(), **env: object) -> object:
        return scanner.scan(raw, Envelope(**env))  # type: ignore[arg-type]

    result = scan(with_url, client_ip="2001:db8:bad::1", mail_from="a@example.org",
                  rcpts=("bob@x.test",))
    assert result.symbols["BAD_CLIENTS"].score == 3.5  # type: ignore[attr-defined]
    assert result.action == "soft reject" and result.message == "URL on our list"  # type: ignore
    assert result.symbols["BAD_URLS"].options == ["evil.test"]  # type: ignore[attr-defined]
    result = scan(client_ip="192.0.2.1", mail_from="bad@example.org")
    assert result.action == "reject"  # type: ignore[attr-defined]
    assert result.message == "This account is not allowed to send"  # type: ignore
    result = scan(client_ip="192.0.2.1", mail_from="")  # the null sender
    assert result.action == "soft reject"  # type: ignore[attr-defined]
    assert result.message == "no bounces here today"  # type: ignore[attr-defined]
    assert result.symbols["SENDER_ACCESS"].options == ["<>"]  # type: ignore[attr-defined]
    result = scan(client_ip="192.0.2.1", mail_from="x@mx.friend.example",
                  rcpts=("CEO@example.net",), helo="mx.example.net")
    # OK (accept) and the HELO map's REJECT are both forced: the stronger one wins.
    assert result.action == "reject" and result.message == "you are not me"  # type: ignore
    assert result.symbols["VIP_RCPT"].score == -1.0  # type: ignore[attr-defined]
    result = scan(client_ip="192.0.2.1", mail_from="x@mx.friend.example", helo="other")
    assert result.action == "no action" and result.forced_by == "SENDER_ACCESS"  # type: ignore


def test_map_file_reloads_when_it_changes_and_keeps_old_map_on_errors(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "ips"
    path.write_text("192.0.2.1\n")
    source = MapSource(MapConfig(name="ips", type="ip", match="client_ip", file=str(path)))
    assert source.table().lookup("192.0.2.1") is not None
    path.write_text("192.0.2.2\n198.51.100.0/24\n")
    os.utime(path, ns=(1, 10**18))  # a changed mtime, even within the clock's granularity
    assert source.table().lookup("192.0.2.1") is None
    assert source.table().lookup("198.51.100.77") is not None
    caplog.set_level(logging.INFO, "pyspamd.maps")
    path.write_text("192.0.2.3\nnot-an-ip\n")
    table = source.table()
    assert table.lookup("192.0.2.3") is None and table.lookup("198.51.100.77") is not None
    assert f"{path}:2: 'not-an-ip' is not an IP address" in caplog.text
    assert "reload refused (1 error(s)); keeping the 2 entries" in caplog.text
    path.unlink()
    assert source.table().lookup("198.51.100.77") is not None
    assert "keeping the 2 entries loaded before" in caplog.text
    path.write_text("203.0.113.0/24\n")
    assert source.table().lookup("203.0.113.9") is not None  # the fixed file is taken


def test_first_load_keeps_the_good_lines_of_a_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "hc"
    path.write_text("/ok/ REJECT a\n/(/ REJECT b\n/fine/ DISCARD\n")
    loaded = MapSource(MapConfig(name="hc", type="regexp", match="headers",
                                 file=str(path))).loaded
    assert loaded.errors and loaded.errors[0].startswith(f"{path}:2: bad regular expression")
    assert len(loaded.table) == 2


def test_config_errors_for_maps_point_at_lines(tmp_path: Path) -> None:
    path = write_config(tmp_path, """
[[maps]]
name = "one"
type = "ip"
values = ["192.0.2.1"]

[[maps]]
name = "two"
type = "ip"
match = "rcpt"
file = "x"
values = ["y"]
action = "explode"
""")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    errors = info.value.errors
    assert any(e.startswith(f"{path}:15: maps two: a map of type 'ip' cannot match rcpt")
               for e in errors), errors
    assert any(e.startswith(f"{path}:16: maps two: give either file") for e in errors)
    assert any(e.startswith(f"{path}:18: maps two: action must be one of") for e in errors)


def test_configtest_reports_map_file_errors(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "hc").write_text("/ok/ REJECT a\n/x/ FROB b\n")
    config = write_config(tmp_path, '[[maps]]\nname = "hc"\ntype = "regexp"\nfile = "hc"\n')
    assert pyspamd_main(["--config", str(config), "configtest"]) == 1
    out = capsys.readouterr().out
    assert f"{tmp_path / 'hc'}:2: unknown action 'FROB'" in out
    assert "map hc: 1 entries from" in out and "config test failed: 1 error(s)" in out
    (tmp_path / "hc").write_text("/ok/ REJECT a\n")
    assert pyspamd_main(["--config", str(config), "configtest"]) == 0
    (tmp_path / "hc").unlink()
    assert pyspamd_main(["--config", str(config), "configtest"]) == 1
    assert f"{tmp_path / 'hc'}: cannot read map hc: No such file" in capsys.readouterr().out


def test_pyspamc_maps_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "header_checks").write_text(HEADER_CHECKS)
    config = str(write_config(tmp_path, '[[maps]]\nname = "hc"\ntype = "regexp"\n'
                                        'file = "header_checks"\n'
                                        '[[maps]]\nname = "senders"\ntype = "address"\n'
                                        'values = ["example.org"]\naction = "reject"\n'
                                        'message = "go away"\nscore = 1.0\n'))
    assert pyspamc_main(["-c", config, "maps", "check", "hc", "Subject: adsgreece.com"]) == 0
    out = capsys.readouterr().out
    assert "matches /adsgreece\\.com/ -> REJECT \"Plz stop sending SPAM id=8\"" in out
    assert "action: reject" in out
    assert pyspamc_main(["-c", config, "maps", "check", "hc", "Subject: hello"]) == 1
    assert "no match for 'Subject: hello'" in capsys.readouterr().out
    assert pyspamc_main(["-c", config, "maps", "check", "senders", "a@mx.example.org"]) == 0
    out = capsys.readouterr().out
    assert "matches example.org" in out and "action: reject; text: go away" in out
    assert pyspamc_main(["-c", config, "maps", "check", "nope", "x"]) == 2
    assert "no map named 'nope' (maps: hc, senders)" in capsys.readouterr().err


def test_configtest_knows_the_symbols_of_configured_checks(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "local.rules").write_text("score HELO_IS_US 2.0\nscore GREYLIST 0.1\n"
                                       "score BAYES_SPAM 4\nscore BLOCKED 3\n"
                                       "score NO_SUCH_THING 1\n")
    config = tmp_path / "pyspamd.toml"
    config.write_text('[rules]\ndirs = ["rules"]\n[[maps]]\nname = "blocked"\ntype = "ip"\n'
                      'values = ["192.0.2.1"]\n')
    assert pyspamd_main(["--config", str(config), "configtest"]) == 0
    out = capsys.readouterr().out
    assert "score for NO_SUCH_THING, which no rule or check defines" in out
    for known in ("HELO_IS_US", "GREYLIST", "BAYES_SPAM", "BLOCKED"):
        assert f"score for {known}," not in out


def test_a_zero_score_map_that_acted_is_in_the_log_line_and_the_history(tmp_path: Path) -> None:
    from pyspamd.stats.recorder import history_entry, history_row
    from pyspamd.stats.render import history_lines
    from pyspamd.tasklog import task_log_line

    (tmp_path / "header_checks").write_text(HEADER_CHECKS)
    (tmp_path / "friends").write_text("friend.example OK\n")
    scanner = scanner_for(tmp_path, '[[maps]]\nname = "header_checks"\ntype = "regexp"\n'
                                    'match = "headers"\nfile = "header_checks"\n'
                                    'symbol = "POSTFIX_HEADER_CHECKS"\n'
                                    '[[maps]]\nname = "friends"\ntype = "domain"\n'
                                    'match = "envelope_from"\nfile = "friends"\n')
    envelope = Envelope(client_ip="192.0.2.7", mail_from="ann@friend.example",
                        rcpts=("bob@example.net",), queue_id="4QFORCED")
    for headers, action, symbol in (
            ({"From": "Deals <promo@adsgreece.com>"}, "reject", "POSTFIX_HEADER_CHECKS"),
            ({}, "no action", "FRIENDS")):
        raw = make_message(headers)
        task = scanner.task(raw, envelope if symbol == "FRIENDS" else Envelope(
            client_ip="192.0.2.7", mail_from="x@example.org", rcpts=("bob@example.net",)))
        result = scanner.scan_task(task)
        assert result.action == action and result.symbols[symbol].score == 0.0
        assert f"{symbol}(0.00)" in task_log_line(result, task.envelope, len(raw))
        entry = history_entry(json.dumps(history_row(result, task.envelope, len(raw), 0.0,
                                                     "milter", 1)).encode())
        assert entry is not None and entry["forced_by"] == [symbol]
        assert f"{symbol}(0.00)" in history_lines([entry])[0]
