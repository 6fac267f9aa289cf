"""Why a message got its verdict (`pyspamc explain`): each symbol with its score, where the
rule is written (file:line and the line itself), what it matched, where its score comes
from (a rule file, a fitted scores file, the config), and for Bayes the tokens that pushed
most to spam and to ham. Runs the normal scan and then looks again; never on the scan path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pyspamd.checks.bayes import BayesCheck
from pyspamd.checks.regex_rules import matched_text
from pyspamd.classifiers.tokenizer import token_texts
from pyspamd.rescore.scores_file import is_fitted
from pyspamd.result import ScanResult
from pyspamd.ruleset.loader import rule_files
from pyspamd.scanner import Scanner
from pyspamd.task import Task

BAYES_SYMBOLS = ("BAYES_SPAM", "BAYES_HAM")


@dataclass(slots=True)
class SymbolWhy:
    name: str
    score: float
    factor: float  # the share of the symbol's score it got (Bayes confidence, count)
    description: str
    source: str  # FILE:LINE of the rule, or check:NAME
    rule: str = ""  # the rule's line as written
    matched: str = ""
    matched_in: str = ""
    score_from: str = ""  # where the score in force is set
    options: list[str] = field(default_factory=list)
    tokens_spam: list[tuple[str, float]] = field(default_factory=list)
    tokens_ham: list[tuple[str, float]] = field(default_factory=list)


@dataclass(slots=True)
class Explanation:
    result: ScanResult
    symbols: list[SymbolWhy]

    def to_json(self, label: str | None = None) -> dict[str, Any]:
        out = self.result.to_json(label)
        out["symbols"] = [
            {k: getattr(s, k) for k in SymbolWhy.__dataclass_fields__} for s in self.symbols]
        return out


def _line_at(source: str) -> str:
    path, _, number = source.rpartition(":")
    if not number.isdigit():
        return ""
    try:
        with open(path, encoding="utf-8") as handle:
            for at, line in enumerate(handle, 1):
                if at == int(number):
                    return line.strip()
    except OSError:
        return ""
    return ""


def score_sources(scanner: Scanner) -> dict[str, str]:
    """Where each symbol's score in force is set: the last `score` line for it in the rule
    files (a fitted scores file is named as such), or the config's [scores]."""
    out: dict[str, str] = {}
    for path in rule_files([Path(d) for d in scanner.config.rules.dirs]):
        fitted = " (fitted)" if is_fitted(path) else ""
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            continue
        for number, line in enumerate(lines, 1):
            parts = line.split()
            if len(parts) >= 3 and parts[0].lower() == "score":
                out[parts[1]] = f"{path}:{number}{fitted}"
    for name in scanner.config.scores:
        where = scanner.config.path or "config"
        out[name] = f"{where} [scores]"
    return out


def _bayes_tokens(scanner: Scanner, task: Task,
                  top: int) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    check = next((c for c in scanner.checks if isinstance(c, BayesCheck)), None)
    bayes = check.classifier() if check is not None else None
    if bayes is None or bayes.classifier != "logistic":
        return [], []
    snapshot = bayes.storage.model_snapshot(-1)
    if snapshot.tokens is None or snapshot.weights is None:
        return [], []
    from pyspamd.classifiers import logistic

    tokens = bayes.tokens(task)
    weights = logistic.lookup(snapshot.tokens, snapshot.weights, tokens.hashes)
    texts = token_texts(task, bayes.limits)
    order = np.argsort(weights, kind="stable")

    def named(i: int) -> tuple[str, float]:
        return texts.get(int(tokens.hashes[i]), "(a pair of words)"), round(float(weights[i]), 3)

    spam = [named(i) for i in order[::-1][:top] if weights[i] > 0]
    ham = [named(i) for i in order[:top] if weights[i] < 0]
    return spam, ham


def explain(scanner: Scanner, task: Task, top: int = 10) -> Explanation:
    result = scanner.scan_task(task, after_scan=False)
    sources = score_sources(scanner)
    out: list[SymbolWhy] = []
    for symbol in result.sorted_symbols():
        d = scanner.defs.get(symbol.name)
        rule = scanner.ruleset.rules.get(symbol.name)
        why = SymbolWhy(symbol.name, round(symbol.score, 2), symbol.factor,
                        symbol.description, d.source if d is not None else "",
                        score_from=sources.get(symbol.name, d.source if d else ""),
                        options=symbol.options)
        if rule is not None:
            why.source = rule.source
            why.rule = _line_at(rule.source)
            found = matched_text(task, rule)
            if found is not None:
                why.matched, why.matched_in = found
        if symbol.name in BAYES_SYMBOLS:
            why.tokens_spam, why.tokens_ham = _bayes_tokens(scanner, task, top)
        out.append(why)
    return Explanation(result, out)


def render_text(data: dict[str, Any]) -> list[str]:
    """The text of `pyspamc explain`, from Explanation.to_json (in-process, or as the
    controller's /explain answers)."""
    lines = [f"{data.get('file', '')}: {data['action']}, score {data['score']:.2f} (reject at "
             f"{data['required_score']:.2f})"]
    for s in data["symbols"]:
        factor = s["factor"]
        share = (f" = {factor:g} x {s['score'] / factor:.2f}" if factor not in (0, 1) else "")
        lines.append(f"\n{s['name']} {s['score']:+.2f}{share}  {s['description']}".rstrip())
        if s["rule"]:
            lines.append(f"  rule:    {s['source']}: {s['rule']}")
        else:
            lines.append(f"  from:    {s['source']}")
        if s["score_from"]:
            lines.append(f"  score:   {s['score_from']}")
        if s["matched"]:
            place = f" in {s['matched_in']!r}" if s["matched_in"] != s["matched"] else ""
            lines.append(f"  matched: {s['matched']!r}{place}")
        elif s["options"]:
            lines.append(f"  options: {', '.join(s['options'])}")
        if s["tokens_spam"]:
            lines.append("  tokens toward spam: " + ", ".join(
                f"{t!r} {w:+.2f}" for t, w in s["tokens_spam"]))
        if s["tokens_ham"]:
            lines.append("  tokens toward ham:  " + ", ".join(
                f"{t!r} {w:+.2f}" for t, w in s["tokens_ham"]))
    return lines
