"""The outcome of one scan, and its renderings: rspamd-style headers, rspamc text, JSON."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pyspamd.actions import QUARANTINE, REJECT, REWRITE_SUBJECT, SPAM_ACTIONS
from pyspamd.config import Config, HeadersConfig


@dataclass(slots=True)
class Symbol:
    name: str
    score: float
    options: list[str] = field(default_factory=list)
    description: str = ""
    # What the symbol's score was multiplied by: the hit's weight (Bayes confidence) times
    # its count for `multiple` rules; `pyspamc rescore` fits scores against it.
    factor: float = 1.0

    def render(self) -> str:
        opts = f"[{','.join(self.options)}]" if self.options else ""
        return f"{self.name}({self.score:.2f}){opts}"


@dataclass(slots=True)
class ScanResult:
    action: str
    score: float
    required_score: float  # reject threshold
    spam_score: float  # threshold for "spam" in X-Spam-Status
    symbols: dict[str, Symbol]
    message: str = ""  # SMTP reply text for a forced action
    forced_by: str = ""  # symbol that forced the action
    # Every symbol that forced an action (the one that won first), score 0 or not: the log
    # line and the history always show them, so an admin sees why a map acted.
    forced_symbols: list[str] = field(default_factory=list)
    scan_time: float = 0.0
    errors: list[str] = field(default_factory=list)
    message_id: str = ""
    subject: str = ""
    queue_id: str = ""
    # The [[settings]] entry applied ("": none) and what it says about headers and subject.
    settings: str = ""
    add_headers: bool = True
    subject_template: str = ""  # "": [actions] subject_template, on rewrite subject only

    @property
    def is_spam(self) -> bool:
        return self.action in SPAM_ACTIONS

    def sorted_symbols(self) -> list[Symbol]:
        return sorted(self.symbols.values(), key=lambda s: (-abs(s.score), s.name))

    def logged_symbols(self) -> list[Symbol]:
        """The symbols a log line shows: those with a score, and those that forced an
        action whatever their score."""
        return [s for s in self.sorted_symbols() if s.score != 0
                or s.name in self.forced_symbols]

    def to_json(self, file: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if file is not None:
            out["file"] = file
        out.update(
            action=self.action,
            score=round(self.score, 2),
            required_score=round(self.required_score, 2),
            is_spam=self.is_spam,
            symbols={
                s.name: {"score": round(s.score, 2), "options": s.options}
                for s in self.sorted_symbols()
            },
            scan_time=round(self.scan_time, 6),
            message_id=self.message_id,
        )
        if self.settings:
            out["settings"] = self.settings
        if self.message:
            out["message"] = self.message
        if self.errors:
            out["errors"] = self.errors
        return out


def text_report(label: str, result: ScanResult) -> str:
    """rspamc's text for one scanned message (pyspamc symbols, in-process or with -h)."""
    lines = [f"Results for file: {label} ({result.scan_time:.3f} seconds)", "[Metric: default]",
             f"Action: {result.action}", f"Spam: {'true' if result.is_spam else 'false'}",
             f"Score: {result.score:.2f} / {result.required_score:.2f}"]
    if result.settings:
        lines.append(f"Settings: {result.settings}")
    for symbol in result.sorted_symbols():
        lines.append(f"Symbol: {symbol.name} ({symbol.score:.2f})"
                     + (f"[{','.join(symbol.options)}]" if symbol.options else ""))
    if result.message:
        lines.append(f"Message: {result.message}")
    if result.message_id:
        lines.append(f"Message-ID: {result.message_id}")
    lines.extend(f"Check error: {error}" for error in result.errors)
    return "\n".join(lines)


def spamd_result_header(result: ScanResult) -> str:
    """X-Spamd-Result, exactly rspamd's layout, folded one symbol per line."""
    verdict = "True" if result.action == REJECT else "False"
    items = [f"default: {verdict} [{result.score:.2f} / {result.required_score:.2f}]"]
    items.extend(s.render() for s in result.sorted_symbols())
    return ";\n\t".join(items)


def result_headers(result: ScanResult, config: HeadersConfig) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    # A message quarantined for what it carries (a banned file, a map's HOLD) is not spam
    # by its score: its flag says what the score says, X-Pyspamd-Quarantine says why.
    spam = result.is_spam and (result.action != QUARANTINE
                               or result.score >= result.spam_score)
    if config.spamd_result:
        headers.append(("X-Spamd-Result", spamd_result_header(result)))
    if config.spam_flag:
        headers.append(("X-Spam-Flag", "YES" if spam else "NO"))
    if config.spam_status:
        word = "Yes" if spam else "No"
        headers.append(
            ("X-Spam-Status", f"{word}, score={result.score:.1f} required={result.spam_score:.1f}")
        )
    points = int(abs(result.score))
    if config.spam_level:
        level = config.level_char * min(points, config.max_level) if result.score > 0 else ""
        headers.append(("X-Spam-Level", level))
    if config.spam_bar:
        if points == 0:
            bar = "/"
        else:
            bar = ("+" if result.score > 0 else "-") * min(points, config.max_level)
        headers.append(("X-Spam-Bar", bar))
    return headers


def rewrite_subject(subject: str, template: str) -> str:
    return template.replace("%s", subject)


@dataclass(slots=True)
class HeaderChanges:
    """What a delivered message's headers gain from its verdict: the milter applies these,
    pyspamc and /checkv2 show them, and all three get them from `header_changes`."""

    # At the top, as a receiving MTA adds them: the checks' Authentication-Results and
    # Received-SPF.
    insert: list[tuple[str, str]]
    add: list[tuple[str, str]]  # at the end: X-Spamd-Result and the X-Spam-* headers
    subject: str | None = None  # the new Subject, when the action rewrites it

    def listing(self) -> list[tuple[str, str]]:
        """Every header as a reader of the delivered message sees it, top first."""
        subject = [("Subject", self.subject)] if self.subject is not None else []
        return [*self.insert, *self.add, *subject]


def header_changes(result: ScanResult, check_headers: Sequence[tuple[str, str]],
                   config: Config) -> HeaderChanges:
    """`check_headers`: what the checks asked to add (Task.add_headers)."""
    subject = None
    if result.subject_template and result.is_spam:
        subject = rewrite_subject(result.subject, result.subject_template)
    elif result.action == REWRITE_SUBJECT:
        subject = rewrite_subject(result.subject, config.actions.subject_template)
    added = result_headers(result, config.headers) if result.add_headers else []
    return HeaderChanges(list(check_headers), added, subject)
