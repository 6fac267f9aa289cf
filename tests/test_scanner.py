"""The pipeline: forced actions, failing and async checks, subject rewriting."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

import pytest
from support.messages import make_message

from pyspamd.checks.base import Check
from pyspamd.cli.pyspamc import main as pyspamc_main
from pyspamd.config import Config, ModelConfig, RulesConfig
from pyspamd.scanner import Scanner
from pyspamd.symbols import Hits, SymbolDef
from pyspamd.task import Task


class ForceReject(Check):
    """Stands in for an admin map entry such as `/adsgreece\\.com/ REJECT text`."""

    name = "test_map"
    symbols: ClassVar[Mapping[str, SymbolDef]] = {"MAP_REJECT": SymbolDef(0.0, "map hit")}

    def run(self, task: Task, hits: Hits) -> None:
        if "adsgreece.com" in task.from_address:
            hits.add("MAP_REJECT", task.from_address)
            hits.force_action("reject", "Plz stop sending SPAM id=8", "MAP_REJECT")


class Broken(Check):
    name = "broken"

    def run(self, task: Task, hits: Hits) -> None:
        raise RuntimeError("database went away")


class SlowLookup(Check):
    name = "slow_lookup"
    is_async = True
    symbols: ClassVar[Mapping[str, SymbolDef]] = {"ASYNC_HIT": SymbolDef(2.0, "async")}

    async def _lookup(self, hits: Hits) -> None:
        await asyncio.sleep(0.01)
        hits.add("ASYNC_HIT", "looked up")

    def run(self, task: Task, hits: Hits):  # type: ignore[no-untyped-def]
        return self._lookup(hits)


def _scanner(tmp_path: Path, checks: list[Check], rules: str = "") -> Scanner:
    (tmp_path / "r.rules").write_text(rules + "body NEVER /zzzneverzzz/\n")
    # The pipeline's own behaviour, with exact scores: the content model's vote would add to
    # them (its tests are in test_model.py).
    config = Config(rules=RulesConfig(dirs=[str(tmp_path)]), model=ModelConfig(enabled=False))
    return Scanner.from_config(config, checks)


def test_map_forces_action_with_its_text(tmp_path: Path) -> None:
    scanner = _scanner(tmp_path, [ForceReject()])
    result = scanner.scan(make_message({"From": "Promo <deals@adsgreece.com>"}))
    assert result.action == "reject" and result.score < 1
    assert result.message == "Plz stop sending SPAM id=8" and result.forced_by == "MAP_REJECT"
    assert scanner.scan(make_message()).action == "no action"


def test_failing_check_costs_nothing_but_its_symbols(tmp_path: Path) -> None:
    scanner = _scanner(tmp_path, [Broken()], "body CASH /cash/\nscore CASH 7\n")
    result = scanner.scan(make_message(body="cash\n"))
    assert result.action == "add header" and "CASH" in result.symbols
    assert result.errors == ["broken: RuntimeError: database went away"]


def test_async_checks_run_sync_and_async(tmp_path: Path) -> None:
    scanner = _scanner(tmp_path, [SlowLookup()], "meta BOTH ASYNC_HIT && MIME_GOOD\n")
    result = scanner.scan(make_message())
    assert result.symbols["ASYNC_HIT"].options == ["looked up"]
    assert "BOTH" in result.symbols  # metas see symbols of async checks
    result = asyncio.run(scanner.scan_task_async(scanner.task(make_message())))
    assert "ASYNC_HIT" in result.symbols


def test_rewrite_subject_action(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "r.rules").write_text("body CASH /cash/\nscore CASH 9\n")
    config = tmp_path / "pyspamd.toml"
    config.write_text('[rules]\ndirs = ["r.rules"]\n[model]\nenabled = false\n'
                      '[actions]\nrewrite_subject = 8.0\nsubject_template = "[SPAM] %s"\n')
    message = tmp_path / "m.eml"
    message.write_bytes(make_message({"Subject": "Quick cash"}, "cash\n"))
    assert pyspamc_main(["--config", str(config), "symbols", "--headers", str(message)]) == 0
    out = capsys.readouterr().out
    assert "Action: rewrite subject" in out
    assert "\nSubject: [SPAM] Quick cash\n" in out


class NeverAnswers(Check):
    name = "never_answers"
    is_async = True

    async def _wait(self) -> None:
        await asyncio.sleep(3600)

    def run(self, task: Task, hits: Hits):  # type: ignore[no-untyped-def]
        return self._wait()


def test_budget_bounds_async_checks_and_keeps_the_rest(tmp_path: Path) -> None:
    scanner = _scanner(tmp_path, [NeverAnswers(), SlowLookup()], "body CASH /cash/\n")
    # The budget covers the sync checks too: room for them on a loaded machine.
    result = scanner.scan_task(scanner.task(make_message(body="cash\n")), budget=2.0)
    assert "CASH" in result.symbols and "ASYNC_HIT" in result.symbols
    assert result.symbols["SCAN_TIMEOUT"].options == ["never_answers"]
    assert result.errors[0].startswith("never_answers: timed out after the scan budget of ")
