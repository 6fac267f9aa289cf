"""The scan pipeline, shared by the milter, the HTTP API and the CLI.

task -> checks (each adds symbols) -> meta rules -> scores (with group limits) -> action.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

from pyspamd.actions import Thresholds, strongest
from pyspamd.checks.attachment_content import AttachmentContent
from pyspamd.checks.base import Check, Decision
from pyspamd.checks.bayes import BayesCheck
from pyspamd.checks.header_sanity import DateCheck, EnvelopeFrom, ReceivedCount
from pyspamd.checks.html_features import HtmlFeatures
from pyspamd.checks.mime_sanity import MimeSanity
from pyspamd.checks.network import network_checks
from pyspamd.checks.policy import policy_checks
from pyspamd.checks.regex_rules import RegexRules
from pyspamd.checks.sender_identity import SenderIdentity
from pyspamd.checks.url_features import UrlFeatures
from pyspamd.config import Config, load_config
from pyspamd.result import ScanResult, Symbol
from pyspamd.ruleset.loader import RuleSet, load_rules
from pyspamd.symbols import Hits, SymbolDef, is_hidden
from pyspamd.task import Envelope, ParseLimits, Task

log = logging.getLogger("pyspamd.scan")

BUILTIN_CHECKS: tuple[type[Check], ...] = (
    MimeSanity, ReceivedCount, DateCheck, EnvelopeFrom,
    # what phishing and today's spam show that one regex over one value cannot see
    UrlFeatures, HtmlFeatures, AttachmentContent, SenderIdentity,
)


class RuleLoadError(Exception):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


def builtin_symbols(checks: list[Check]) -> dict[str, SymbolDef]:
    out: dict[str, SymbolDef] = {}
    for check in checks:
        for name, symbol_def in check.symbols.items():
            out[name] = replace(symbol_def, source=f"check:{check.name}")
    return out


def load_ruleset(config: Config, checks: list[Check]) -> RuleSet:
    return load_rules([Path(d) for d in config.rules.dirs], builtin_symbols(checks))


def _remaining(start: float, budget: float | None) -> float | None:
    return None if budget is None else max(0.0, budget - (time.perf_counter() - start))


class Scanner:
    def __init__(self, config: Config, ruleset: RuleSet, checks: list[Check]) -> None:
        self.config = config
        self.ruleset = ruleset
        self.checks = [*(c for c in checks if not c.runs_after_scoring),
                       RegexRules(ruleset, config.scan.fallback_regex_max_bytes)]
        self.post_checks = [c for c in checks if c.runs_after_scoring]
        self.thresholds = Thresholds.from_config(config.actions)
        self.defs = {name: replace(d) for name, d in ruleset.defs.items()}
        for name, score in config.scores.items():
            self.defs.setdefault(name, SymbolDef()).score = score
        self.group_caps = {
            name: float(g.max_score) for name, g in config.groups.items()
            if g.max_score is not False
        }
        scan = config.scan
        self.limits = ParseLimits(
            max_parts=scan.max_parts, max_depth=scan.max_depth,
            max_part_text_bytes=scan.max_part_text_bytes,
            max_body_text_bytes=scan.max_body_text_bytes,
            max_full_bytes=scan.max_full_bytes, max_urls=scan.max_urls,
        )
        self.metas = [ruleset.rules[name] for name in ruleset.meta_order]
        # What each meta is when none of its operands hit: most metas on most messages, so
        # only a set test is paid for them, not an evaluation.
        self.meta_idle = [bool(r.expr and r.expr.evaluate({})) for r in self.metas]
        # Called with every finished result (autolearn); a failure is logged, not raised.
        self.after_scan: list[Callable[[Task, ScanResult], object]] = []

    @classmethod
    def from_config(cls, config: Config, extra_checks: list[Check] | None = None) -> Scanner:
        """Build the pipeline; raises RuleLoadError when the rule files have errors."""
        checks: list[Check] = [c() for c in BUILTIN_CHECKS] + list(extra_checks or [])
        checks += policy_checks(config)
        checks += network_checks(config)
        bayes = BayesCheck(config) if config.bayes.enabled else None
        if bayes is not None:
            checks.append(bayes)
        ruleset = load_ruleset(config, checks)
        if ruleset.errors:
            raise RuleLoadError(ruleset.errors)
        scanner = cls(config, ruleset, checks)
        if bayes is not None and config.bayes.autolearn.enabled:
            scanner.after_scan.append(bayes.autolearn)
        return scanner

    def task(self, raw: bytes, envelope: Envelope | None = None) -> Task:
        return Task(raw, envelope, self.limits)

    def scan(self, raw: bytes, envelope: Envelope | None = None) -> ScanResult:
        return self.scan_task(self.task(raw, envelope))

    def scan_task(self, task: Task, budget: float | None = None) -> ScanResult:
        """Synchronous entry; async checks, if any, run on a private event loop.

        `budget` (seconds) bounds the wait for async checks: when it runs out the verdict is
        made from the symbols that are in, and the result's errors say which checks timed
        out. CPU work is bounded by the parse limits and RE2, not by this.
        """
        start = time.perf_counter()
        hits, errors, pending = self._run_sync(task)
        if pending:
            asyncio.run(self._await_all(pending, errors, _remaining(start, budget)))
        return self._finish(task, hits, errors, start)

    async def scan_task_async(self, task: Task, budget: float | None = None) -> ScanResult:
        start = time.perf_counter()
        hits, errors, pending = self._run_sync(task)
        if pending:
            await self._await_all(pending, errors, _remaining(start, budget))
        return self._finish(task, hits, errors, start)

    def _run_sync(
        self, task: Task
    ) -> tuple[Hits, list[str], list[tuple[str, Awaitable[None]]]]:
        hits = Hits()
        errors: list[str] = []
        pending: list[tuple[str, Awaitable[None]]] = []
        for check in self.checks:
            try:
                outcome = check.run(task, hits)
            except Exception as exc:  # one broken check must not cost the verdict
                errors.append(f"{check.name}: {type(exc).__name__}: {exc}")
                log.exception("check %s failed", check.name)
                continue
            if inspect.isawaitable(outcome):
                pending.append((check.name, outcome))
        return hits, errors, pending

    @staticmethod
    async def _await_all(
        pending: list[tuple[str, Awaitable[None]]], errors: list[str], timeout: float | None
    ) -> None:
        tasks = [asyncio.ensure_future(aw) for _, aw in pending]
        _, late = await asyncio.wait(tasks, timeout=timeout)
        for (name, _), task in zip(pending, tasks, strict=True):
            if task in late:
                task.cancel()
                errors.append(f"{name}: timed out after the scan budget of {timeout:.1f}s")
                log.warning("check %s timed out", name)
            elif (exc := task.exception()) is not None:
                errors.append(f"{name}: {type(exc).__name__}: {exc}")
                log.error("check %s failed: %r", name, exc)
        if late:
            await asyncio.gather(*late, return_exceptions=True)

    def _score(self, hits: Hits) -> tuple[dict[str, Symbol], float]:
        symbols: dict[str, Symbol] = {}
        group_sums: dict[str, float] = {}
        total = 0.0
        for name, hit in hits.hits.items():
            if is_hidden(name):
                continue
            symbol_def = self.defs.get(name) or SymbolDef()
            score = symbol_def.score * (min(hit.count, 10) if symbol_def.multiple else 1)
            score *= hit.weight
            options = hit.options if symbol_def.show_options else []
            symbols[name] = Symbol(name, score, options, symbol_def.description)
            if symbol_def.group in self.group_caps:
                group_sums[symbol_def.group] = group_sums.get(symbol_def.group, 0.0) + score
            else:
                total += score
        for group, subtotal in group_sums.items():
            total += min(subtotal, self.group_caps[group])
        return symbols, total

    def _finish(self, task: Task, hits: Hits, errors: list[str], start: float) -> ScanResult:
        counts = {name: hit.count for name, hit in hits.hits.items()}
        for rule, idle in zip(self.metas, self.meta_idle, strict=True):
            assert rule.expr is not None
            if idle if rule.expr.names.isdisjoint(counts) else rule.expr.evaluate(counts):
                hits.add(rule.name)
                counts[rule.name] = 1
        symbols, total = self._score(hits)
        message = forced_by = ""
        if hits.forced:
            top = max(hits.forced, key=lambda f: f.priority)
            same = [f for f in hits.forced if f.priority == top.priority]
            action = strongest([f.action for f in same])
            chosen = next(f for f in same if f.action == action)
            message, forced_by = chosen.message, chosen.symbol
        else:
            action = self.thresholds.choose(total)
        if self.post_checks:
            decision = Decision(action, total, message, forced_by)
            for check in self.post_checks:
                try:
                    check.after_scoring(task, hits, decision)
                except Exception as exc:  # as in _run_sync: the verdict stands without it
                    errors.append(f"{check.name}: {type(exc).__name__}: {exc}")
                    log.exception("check %s failed", check.name)
            symbols, total = self._score(hits)
            action, message, forced_by = decision.action, decision.message, decision.forced_by
        result = ScanResult(
            action=action,
            score=total,
            required_score=self.thresholds.required_score,
            spam_score=self.thresholds.spam_score,
            symbols=symbols,
            message=message,
            forced_by=forced_by,
            scan_time=time.perf_counter() - start,
            errors=errors,
            message_id=task.headers.first("message-id") if "message-id" in task.headers else "",
            subject=task.subject,
            queue_id=task.envelope.queue_id or "",
        )
        for hook in self.after_scan:
            try:
                hook(task, result)
            except Exception:  # learning is a side effect; the verdict stands
                log.exception("after-scan hook %r failed", hook)
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
