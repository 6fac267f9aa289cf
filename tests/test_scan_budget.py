"""Rules that only a backtracking engine runs, and the scan's wall-clock budget (issue 18).

A rule RE2 cannot run is refused unless the admin opts in; opted in, it cannot freeze a
worker: each search has a timeout, and the whole scan has a budget that yields a verdict
with SCAN_TIMEOUT when it runs out.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import messages
from support.messages import make_message
from support.mta import Daemon, MtaSession, running_daemon

from pyspamd.cli.pyspamd import main as pyspamd_main
from pyspamd.config import Config, RulesConfig
from pyspamd.scanner import RuleLoadError, Scanner

# The first eight run on RE2 (linear time); the last six need a backtracking engine, where
# each takes exponential time on a body of 20-40 letters "a".
CATASTROPHIC = r"""
body     CAT_NESTED_PLUS      /(a+)+$/
body     CAT_ALT_STAR         /(x|x)*y/
body     CAT_NESTED_PLUS_B    /(a+)+b/
body     CAT_STAR_STAR        /(a*)*b/
rawbody  CAT_RAW              /(a|aa)+c/
full     CAT_FULL             /(a+)+!/
header   CAT_SUBJ             Subject =~ /(a+)+z/
uri      CAT_URI              /(a+)+\.evil/
body     CAT_BACKREF          /(a+)\1b/
body     CAT_BACKREF_NESTED   /((a+)+)\2b/
body     CAT_LOOKBEHIND       /(?<=a)(a+)+b/
body     CAT_LOOKAHEAD        /(?=a)(a|aa)+$b/
body     CAT_NEG_LOOKAHEAD    /(a+)+(?!a)b/
body     CAT_BIG_REPEAT       /a{2000}b/
"""
BACKTRACKING = ["CAT_BACKREF", "CAT_BACKREF_NESTED", "CAT_LOOKBEHIND", "CAT_LOOKAHEAD",
                "CAT_NEG_LOOKAHEAD", "CAT_BIG_REPEAT"]
OPT_IN = "".join(f"tflags {name} backtracking\n" for name in BACKTRACKING)
A40 = make_message({"Subject": "a" * 40}, "a" * 40 + "\n")
SHIPPED = Path(__file__).resolve().parent.parent / "rules"


def _scanner(tmp_path: Path, text: str, **scan: float) -> Scanner:
    (tmp_path / "cat.rules").write_text(text)
    config = Config(rules=RulesConfig(dirs=[str(SHIPPED), str(tmp_path / "cat.rules")]))
    for key, value in scan.items():
        setattr(config.scan, key, value)
    return Scanner.from_config(config)


def test_backtracking_patterns_are_refused_with_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(RuleLoadError) as info:
        _scanner(tmp_path, CATASTROPHIC)
    errors = info.value.errors
    assert len(errors) == len(BACKTRACKING)
    for line, name in enumerate(BACKTRACKING, 10):
        assert any(e.startswith(f"{tmp_path / 'cat.rules'}:{line}: {name}: RE2 cannot run")
                   and f"tflags {name} backtracking" in e for e in errors), errors


def test_configtest_fails_on_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "rules.d").mkdir()
    (tmp_path / "rules.d" / "cat.rules").write_text(CATASTROPHIC)
    config = tmp_path / "pyspamd.toml"
    config.write_text(f'[rules]\ndirs = ["{SHIPPED}", "rules.d"]\n')
    assert pyspamd_main(["--config", str(config), "configtest"]) != 0
    out = capsys.readouterr().out
    assert f"{tmp_path / 'rules.d' / 'cat.rules'}:15: CAT_BIG_REPEAT: RE2 cannot run" in out
    assert "Traceback" not in out


def test_opted_in_rules_cannot_freeze_the_scan(tmp_path: Path) -> None:
    scanner = _scanner(tmp_path, CATASTROPHIC + OPT_IN)
    assert {n for n in BACKTRACKING if scanner.ruleset.rules[n].regex.uses_fallback} == set(
        BACKTRACKING)
    started = time.monotonic()
    result = scanner.scan(A40)
    # Unbounded, these searches run for minutes; each now stops at fallback_regex_timeout
    # (CPU time: on a loaded machine the wall time is longer).
    assert time.monotonic() - started < 30
    assert result.errors == [] and result.action
    assert "SCAN_TIMEOUT" not in result.symbols


def test_the_scan_budget_yields_a_verdict_with_scan_timeout(tmp_path: Path) -> None:
    rules = CATASTROPHIC + OPT_IN + "body CAT_GTUBE /GTUBE-STANDARD-ANTI-UBE/\n"
    scanner = _scanner(tmp_path, rules, fallback_regex_timeout=600.0)
    raw = make_message({"Subject": "a" * 40}, messages.GTUBE + "\n" + "a" * 40 + "\n")
    started = time.monotonic()
    result = scanner.scan_task(scanner.task(raw), budget=1.0)
    assert time.monotonic() - started < 30
    assert "SCAN_TIMEOUT" in result.symbols
    assert result.action == "reject" and "GTUBE" in result.symbols  # what ran still counts


def test_a_check_not_started_in_time_is_named(tmp_path: Path) -> None:
    scanner = _scanner(tmp_path, "body CASH /cash/\n")
    result = scanner.scan_task(scanner.task(make_message(body="cash\n")), budget=0.0)
    assert "CASH" not in result.symbols
    assert "regex_rules" in result.symbols["SCAN_TIMEOUT"].options


@pytest.fixture(scope="module")
def budget_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    workdir = tmp_path_factory.mktemp("budget")
    (workdir / "cat.rules").write_text(CATASTROPHIC + OPT_IN)
    config = ("scan_timeout = 1.0\n"  # in [milter]
              f'[rules]\ndirs = ["{SHIPPED}", "{workdir / "cat.rules"}"]\n'
              "[scan]\nfallback_regex_timeout = 600.0\n")
    with running_daemon(workdir, config, workers=1) as daemon:
        yield daemon


def test_worker_answers_within_the_budget_through_the_milter(budget_daemon: Daemon) -> None:
    for body in ("a" * 40 + "\n", messages.GTUBE + "\n" + "a" * 40 + "\n"):
        session = MtaSession(budget_daemon.port)
        try:
            started = time.monotonic()
            result = session.send(make_message({"Subject": "a" * 40}, body))
            elapsed = time.monotonic() - started
        finally:
            session.close()
        assert elapsed < 30  # unbounded: minutes (the regex timeout counts CPU time)
        if "GTUBE" in body:
            assert result.reply.startswith("554 5.7.1")  # type: ignore[attr-defined]
        else:
            assert "SCAN_TIMEOUT" in result.added["X-Spamd-Result"]  # type: ignore


def test_a_timed_out_negated_rule_does_not_hit(tmp_path: Path) -> None:
    scanner = _scanner(tmp_path, "header NEG Subject !~ /(?=a)(a|aa)+$b/\n"
                                 "tflags NEG backtracking\n", fallback_regex_timeout=0.05)
    result = scanner.scan(A40)
    assert "NEG" not in result.symbols
    assert result.symbols["REGEX_TIMEOUT"].options == ["NEG"]
    assert "NEG" in scanner.scan(make_message({"Subject": "hello"})).symbols
