"""The scan pipeline, shared by the milter, the HTTP API and the CLI.

task -> checks (each adds symbols) -> meta rules -> scores (with group limits) -> action.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable
from dataclasses import replace
from pathlib import Path

from pyspamd import actions
from pyspamd.actions import Thresholds, strongest
from pyspamd.checks.base import Check, Decision
from pyspamd.checks.regex_rules import RegexRules
from pyspamd.checks.registry import build_checks
from pyspamd.config import Config, load_config
from pyspamd.faultlog import FaultLog
from pyspamd.policy import rcpt_policy
from pyspamd.policy.rcpt_policy import AppliedSettings, SettingsTable
from pyspamd.result import ScanResult, Symbol
from pyspamd.ruleset.loader import RuleSet, load_rules
from pyspamd.services import Services
from pyspamd.symbols import SCAN_TIMEOUT, Hits, SymbolDef, is_hidden
from pyspamd.task import Envelope, ParseLimits, Task

log = logging.getLogger("pyspamd.scan")
faults = FaultLog(log)


class RuleLoadError(Exception):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


# Symbols of the pipeline itself rather than of one check.
_SCANNER_SYMBOLS = {
    # Scored 0 so that a slow DNS day cannot push ham over a threshold; [scores] can score it.
    SCAN_TIMEOUT: SymbolDef(
        0.0, "The scan's time budget ran out; the verdict is from the checks that finished "
        "(options: those that did not)", "scan", source="scanner"),
    **rcpt_policy.SYMBOLS,
}


def builtin_symbols(checks: list[Check]) -> dict[str, SymbolDef]:
    sources: list[Check | type[Check]] = [*checks, RegexRules]
    out: dict[str, SymbolDef] = {
        name: replace(symbol_def) for name, symbol_def in _SCANNER_SYMBOLS.items()
    }
    for check in sources:
        for name, symbol_def in check.symbols.items():
            out[name] = replace(symbol_def, source=f"check:{check.name}")
    return out


def load_ruleset(config: Config, checks: list[Check]) -> RuleSet:
    return load_rules([Path(d) for d in config.rules.dirs], builtin_symbols(checks))


def _remaining(start: float, budget: float | None) -> float | None:
    return None if budget is None else max(0.0, budget - (time.perf_counter() - start))


class Scanner:
    def __init__(self, config: Config, ruleset: RuleSet, checks: list[Check],
                 services: Services | None = None) -> None:
        self.config = config
        self.ruleset = ruleset
        self.services = services or Services(config)
        # The rules run first: they are cheap (RE2) and carry GTUBE and most of the verdict,
        # so a scan whose time budget runs out still has them.
        self.checks = [RegexRules(ruleset, config.scan.fallback_regex_max_bytes,
                                  config.scan.fallback_regex_timeout),
                       *(c for c in checks if not c.runs_after_scoring)]
        self.post_checks = [c for c in checks if c.runs_after_scoring]
        # Only the checks that learn from results (autolearn) are called after each scan.
        self.learners = [c for c in checks if type(c).after_scan is not Check.after_scan]
        self.thresholds = Thresholds.from_config(config.actions)
        self.defs = {name: replace(d) for name, d in ruleset.defs.items()}
        for name, score in config.scores.items():
            self.defs.setdefault(name, SymbolDef()).score = score
        self.group_caps = {
            name: float(g.max_score) for name, g in config.groups.items()
            if g.max_score is not False
        }
        self.settings = SettingsTable(config.settings, config.actions, self.defs)
        self.limits: ParseLimits = config.scan
        self.metas = [ruleset.rules[name] for name in ruleset.meta_order]
        # What each meta is when none of its operands hit: most metas on most messages, so
        # only a set test is paid for them, not an evaluation.
        self.meta_idle = [bool(r.expr and r.expr.evaluate({})) for r in self.metas]
        # The metas reading each name, by place in meta_order: a scan evaluates those whose
        # operands hit. Testing every meta's names against the hits cost 0.2 ms a message.
        self.meta_readers: dict[str, list[int]] = {}
        for place, rule in enumerate(self.metas):
            for name in rule.expr.names if rule.expr else ():
                self.meta_readers.setdefault(name, []).append(place)

    @classmethod
    def from_config(cls, config: Config, extra_checks: list[Check] | None = None,
                    services: Services | None = None) -> Scanner:
        """Build the pipeline: the registry's checks for this config, then `extra_checks`;
        raises RuleLoadError when the rule files have errors."""
        services = services or Services(config)
        checks = build_checks(config, services) + list(extra_checks or [])
        ruleset = load_ruleset(config, checks)
        if ruleset.errors:
            raise RuleLoadError(ruleset.errors)
        return cls(config, ruleset, checks, services)

    def task(self, raw: bytes, envelope: Envelope | None = None) -> Task:
        return Task(raw, envelope, self.limits)

    def scan(self, raw: bytes, envelope: Envelope | None = None) -> ScanResult:
        return self.scan_task(self.task(raw, envelope))

    def scan_task(self, task: Task, budget: float | None = None,
                  after_scan: bool = True) -> ScanResult:
        """Synchronous entry; async checks, if any, run on a private event loop.

        `budget` (seconds; default [milter] scan_timeout) bounds the whole scan: checks not
        started when it runs out are skipped, a backtracking regex stops at it, async checks
        are no longer waited for, and the verdict is made from the symbols that are in, with
        SCAN_TIMEOUT naming what did not finish. The parse limits bound the rest of the CPU
        work (a check already running is not interrupted).
        `after_scan` False skips what checks do after the scan (autolearn): a scan that only
        looks, e.g. at a message being learned.
        """
        start = time.perf_counter()
        budget = self._start_clock(task, budget)
        hits, errors, pending = self._run_sync(task)
        if pending:
            asyncio.run(self._await_all(pending, hits, errors, _remaining(start, budget)))
        return self._finish(task, hits, errors, start, after_scan)

    async def scan_task_async(self, task: Task, budget: float | None = None) -> ScanResult:
        start = time.perf_counter()
        budget = self._start_clock(task, budget)
        hits, errors, pending = self._run_sync(task)
        if pending:
            await self._await_all(pending, hits, errors, _remaining(start, budget))
        return self._finish(task, hits, errors, start)

    def _start_clock(self, task: Task, budget: float | None) -> float:
        if self.settings and task.settings is None:
            task.settings = self.select_settings(task)
        if budget is None:
            budget = self.config.milter.scan_timeout
        task.deadline = time.monotonic() + budget
        return budget

    def _run_sync(
        self, task: Task
    ) -> tuple[Hits, list[str], list[tuple[str, Awaitable[None]]]]:
        hits = Hits()
        errors: list[str] = []
        pending: list[tuple[str, Awaitable[None]]] = []
        for index, check in enumerate(self.checks):
            if task.time_left() == 0.0:
                hits.add(SCAN_TIMEOUT, *(c.name for c in self.checks[index:]))
                break
            try:
                outcome = check.run(task, hits)
            except Exception as exc:  # one broken check must not cost the verdict
                errors.append(f"{check.name}: {type(exc).__name__}: {exc}")
                faults.report(f"check {check.name}", f"check {check.name} failed", exc)
                continue
            if inspect.isawaitable(outcome):
                pending.append((check.name, outcome))
        return hits, errors, pending

    @staticmethod
    async def _await_all(
        pending: list[tuple[str, Awaitable[None]]],
        hits: Hits,
        errors: list[str],
        timeout: float | None,
    ) -> None:
        tasks = [asyncio.ensure_future(aw) for _, aw in pending]
        _, late = await asyncio.wait(tasks, timeout=timeout)
        for (name, _), task in zip(pending, tasks, strict=True):
            if task in late:
                task.cancel()
                hits.add(SCAN_TIMEOUT, name)
                errors.append(f"{name}: timed out after the scan budget of {timeout:.1f}s")
                faults.report(f"check {name} timeout", f"check {name} timed out after the "
                              f"scan budget of {timeout:.1f}s", level=logging.WARNING)
            elif (exc := task.exception()) is not None:
                errors.append(f"{name}: {type(exc).__name__}: {exc}")
                faults.report(f"check {name}", f"check {name} failed", exc)
        if late:
            await asyncio.gather(*late, return_exceptions=True)

    def _score(self, hits: Hits, defs: dict[str, SymbolDef] | None = None
               ) -> tuple[dict[str, Symbol], float]:
        defs = self.defs if defs is None else defs
        symbols: dict[str, Symbol] = {}
        group_sums: dict[str, float] = {}
        total = 0.0
        for name, hit in hits.hits.items():
            if is_hidden(name):
                continue
            symbol_def = defs.get(name) or SymbolDef()
            factor = hit.weight * (min(hit.count, 10) if symbol_def.multiple else 1)
            score = symbol_def.score * factor
            options = hit.options if symbol_def.show_options else []
            symbols[name] = Symbol(name, score, options, symbol_def.description, factor)
            if symbol_def.group in self.group_caps:
                group_sums[symbol_def.group] = group_sums.get(symbol_def.group, 0.0) + score
            else:
                total += score
        for group, subtotal in group_sums.items():
            total += min(subtotal, self.group_caps[group])
        return symbols, total

    def select_settings(self, task: Task) -> AppliedSettings:
        env = task.envelope
        return self.settings.for_message(env.client_ip, env.mail_from, env.user, env.rcpts)

    @staticmethod
    def _filter(applied: AppliedSettings, hits: Hits) -> None:
        """Drop the hits the entry turns off, and the actions they force. Sub-rules stay for
        the metas unless named; the settings' own symbols always stay."""
        keep = applied.allowed
        for name in [n for n in hits.hits if n not in rcpt_policy.SYMBOLS and (
                n in applied.disabled or (keep is not None and n not in keep
                                          and not is_hidden(n)))]:
            del hits.hits[name]
        hits.forced = [f for f in hits.forced if f.symbol in hits.hits]

    def _apply_settings(self, applied: AppliedSettings, task: Task, hits: Hits) -> None:
        """The entry's symbol filters, its sender lists and its name, before the metas."""
        if applied.filters:
            self._filter(applied, hits)
        if applied.welcomelist or applied.blocklist:
            senders = [task.envelope.mail_from or "",
                       *(a for _, a in task.headers.addresses("from"))]
            if any(s in applied.blocklist for s in senders):
                hits.add(rcpt_policy.BLOCKLIST, applied.name)
                hits.force_action(actions.REJECT, rcpt_policy.BLOCKED_TEXT,
                                  rcpt_policy.BLOCKLIST)
            elif any(s in applied.welcomelist for s in senders):
                hits.add(rcpt_policy.WELCOMELIST, applied.name)
                hits.force_action(actions.NO_ACTION, "", rcpt_policy.WELCOMELIST)
        if applied.name:
            hits.add(rcpt_policy.SETTINGS, applied.name)

    def _finish(self, task: Task, hits: Hits, errors: list[str], start: float,
                after_scan: bool = True) -> ScanResult:
        applied = task.settings or self.settings.default
        self._apply_settings(applied, task, hits)
        counts = {name: hit.count for name, hit in hits.hits.items()}
        readers = self.meta_readers
        touched = {place for name in counts if name in readers for place in readers[name]}
        for place, (rule, idle) in enumerate(zip(self.metas, self.meta_idle, strict=True)):
            assert rule.expr is not None
            if rule.expr.evaluate(counts) if place in touched else idle:
                hits.add(rule.name)
                counts[rule.name] = 1
                touched.update(readers.get(rule.name, ()))  # metas come after what they read
        if applied.filters:  # a meta the entry turns off, or not on
            self._filter(applied, hits)
        symbols, total = self._score(hits, applied.defs)
        message = forced_by = ""
        if hits.forced:
            top = max(hits.forced, key=lambda f: f.priority)
            same = [f for f in hits.forced if f.priority == top.priority]
            action = strongest([f.action for f in same])
            chosen = next(f for f in same if f.action == action)
            message, forced_by = chosen.message, chosen.symbol
        else:
            action = applied.thresholds.choose(total)
        if self.post_checks:
            decision = Decision(action, total, message, forced_by)
            for check in self.post_checks:
                try:
                    check.after_scoring(task, hits, decision)
                except Exception as exc:  # as in _run_sync: the verdict stands without it
                    errors.append(f"{check.name}: {type(exc).__name__}: {exc}")
                    faults.report(f"check {check.name}", f"check {check.name} failed", exc)
            symbols, total = self._score(hits, applied.defs)
            action, message, forced_by = decision.action, decision.message, decision.forced_by
        if action == actions.REJECT and applied.quarantine_instead_of_reject:
            action = actions.QUARANTINE
        forced = [forced_by] if forced_by else []
        forced += [f.symbol for f in hits.forced if f.symbol and f.symbol not in forced]
        result = ScanResult(
            action=action,
            score=total,
            required_score=applied.thresholds.required_score,
            spam_score=applied.thresholds.spam_score,
            symbols=symbols,
            message=message,
            forced_by=forced_by,
            forced_symbols=forced,
            scan_time=time.perf_counter() - start,
            errors=errors,
            message_id=task.headers.first("message-id") if "message-id" in task.headers else "",
            subject=task.subject,
            queue_id=task.envelope.queue_id or "",
            settings=applied.name,
            add_headers=applied.add_headers,
            subject_template=applied.subject_template,
        )
        for check in self.learners if after_scan else ():
            try:
                check.after_scan(task, result)
            except Exception as exc:  # learning is a side effect; the verdict stands
                faults.report(f"after-scan {check.name}", f"check {check.name} failed after "
                              "the scan", exc)
        return result


def reload_pipeline(path: Path | None, log: logging.Logger) -> tuple[Config, Scanner] | None:
    """The config and scanner a SIGHUP asks for, or None when the new config or rules have
    errors: those are logged to `log`, and the caller keeps what it runs."""
    try:
        config = load_config(path)
        return config, Scanner.from_config(config)
    except Exception as exc:  # a bad new config must not stop the running one
        log.error("SIGHUP: new config refused, keeping the running one: %s", exc)
        return None
