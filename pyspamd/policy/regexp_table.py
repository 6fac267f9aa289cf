"""Postfix regexp tables (regexp_table(5)), the format of header_checks and body_checks.

    /pattern/flags RESULT        first matching line wins
    !/pattern/flags RESULT       matches when the pattern does not
    if /pattern/flags            the lines up to the matching `endif` are tried only when
    ...                          the pattern matches (`if !/pattern/` when it does not);
    endif                        blocks nest

As in Postfix, matching ignores case unless the `i` flag toggles it off; `m` toggles
multi-line mode; `$1`, `${1}` in RESULT are replaced by the matched groups. Patterns run
on RE2 (linear time, POSIX classes like [[:alpha:]] work); the few RE2 cannot compile
fall back to Python's `re`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import re2

from pyspamd.policy.keyed import LoadProblems
from pyspamd.policy.verbs import Entry, VerbError, VerbUnsupported, parse_result
from pyspamd.ruleset.regex import re2_options

_OPTIONS = re2_options()
_GROUP_REF = re.compile(r"\$(?:\{(\d+)\}|(\d+))")
_MAX_DEPTH = 100  # nested if blocks; deeper is almost certainly a missing endif


class PatternError(ValueError):
    pass


@dataclass(slots=True)
class Pattern:
    source: str  # as written, for messages and `pyspamc maps check`
    regex: Any  # re2 or re compiled pattern
    negate: bool

    def search(self, text: str) -> Any:
        found = self.regex.search(text)
        if self.negate:
            return None if found else True
        return found


@dataclass(slots=True)
class Rule:
    pattern: Pattern
    entry: Entry


@dataclass(slots=True)
class Block:
    pattern: Pattern
    where: str
    body: list[Rule | Block] = field(default_factory=list)


def split_pattern(line: str) -> tuple[str, bool, str, str, str]:
    """(pattern, negate, flags, rest, delimiter) from `!/pattern/flags rest`."""
    negate = line.startswith("!")
    text = line[1:] if negate else line
    if not text or text[0].isalnum() or text[0].isspace() or text[0] == "\\":
        raise PatternError("expected /pattern/ (or !/pattern/) at the start of the line")
    delim = text[0]
    end = 1
    while True:
        end = text.find(delim, end)
        if end < 0:
            raise PatternError(f"pattern is not closed with {delim!r}")
        if text[end - 1] != "\\" or delim == "\\":
            break
        end += 1
    pattern = text[1:end]
    rest = text[end + 1 :]
    flags_match = re.match(r"[A-Za-z]*", rest)
    flags = flags_match.group(0) if flags_match else ""
    return pattern, negate, flags, rest[len(flags) :].strip(), delim


def compile_pattern(line: str) -> tuple[Pattern, str]:
    pattern, negate, flags, rest, delim = split_pattern(line)
    if not pattern:
        raise PatternError("empty pattern")
    if delim != "/":
        pattern = pattern.replace("\\" + delim, delim)
    ignore_case, multiline = True, False
    for flag in flags:
        if flag == "i":
            ignore_case = not ignore_case
        elif flag == "m":
            multiline = not multiline
        elif flag == "x":
            raise PatternError("flag x (POSIX basic syntax) is not supported; pyspamd reads "
                               "every pattern as an extended regular expression")
        else:
            raise PatternError(f"unknown flag {flag!r}; Postfix's flags are i, m, x")
    inline = ("i" if ignore_case else "") + ("m" if multiline else "")
    full = f"(?{inline}){pattern}" if inline else pattern
    try:
        regex: Any = re2.compile(full, options=_OPTIONS)
    except re2.error:
        try:
            regex = re.compile(full)
        except re.error as exc:
            raise PatternError(f"bad regular expression /{pattern}/: {exc}") from exc
    source = ("!" if negate else "") + f"{delim}{pattern}{delim}{flags}"
    return Pattern(source, regex, negate), rest


def _expand(text: str, found: Any) -> str:
    if found is True or "$" not in text:
        return text

    def group(m: re.Match[str]) -> str:
        index = int(m.group(1) or m.group(2))
        try:
            return found.group(index) or ""
        except Exception:  # no such group: Postfix puts nothing there, so do we
            return ""

    return _GROUP_REF.sub(group, text)


class RegexpTable:
    kind = "regexp"

    def __init__(self) -> None:
        self.rules: list[Rule | Block] = []
        self.count = 0

    @classmethod
    def parse(cls, lines: Iterable[tuple[str, str]], header_checks: bool,
              problems: LoadProblems) -> RegexpTable:
        table = cls()
        stack: list[Block] = []
        skipping = 0  # depth inside an `if` whose pattern was bad: its lines are dropped
        for where, line in lines:
            word = line.split(None, 1)[0].lower()
            if word == "endif":
                if skipping:
                    skipping -= 1
                elif stack:
                    stack.pop()
                else:
                    problems.errors.append(f"{where}: endif without an if")
                continue
            if word == "if":
                if skipping or len(stack) >= _MAX_DEPTH:
                    skipping += 1
                    continue
                try:
                    pattern, rest = compile_pattern(line[2:].strip())
                    if rest:
                        raise PatternError(f"text after an if pattern: {rest!r}")
                except PatternError as exc:
                    problems.errors.append(f"{where}: {exc}; the lines up to its endif are "
                                           "skipped")
                    skipping = 1
                    continue
                block = Block(pattern, where)
                (stack[-1].body if stack else table.rules).append(block)
                stack.append(block)
                continue
            if skipping:
                continue
            try:
                pattern, rest = compile_pattern(line)
                entry = parse_result(rest, where, header_checks)
            except PatternError as exc:
                problems.errors.append(f"{where}: {exc}")
                continue
            except VerbUnsupported as exc:
                problems.warnings.append(f"{where}: {exc}")
                continue
            except VerbError as exc:
                problems.errors.append(f"{where}: {exc}")
                continue
            (stack[-1].body if stack else table.rules).append(Rule(pattern, entry))
            table.count += 1
        for block in stack:
            problems.errors.append(f"{block.where}: if without an endif (the block runs to "
                                   "the end of the file)")
        if skipping:
            problems.errors.append("missing endif after a skipped if block")
        return table

    def lookup(self, value: str) -> tuple[str, Entry] | None:
        return self._walk(self.rules, value)

    def _walk(self, rules: list[Rule | Block], value: str) -> tuple[str, Entry] | None:
        for item in rules:
            found = item.pattern.search(value)
            if not found:
                continue
            if isinstance(item, Block):
                hit = self._walk(item.body, value)
                if hit is not None:
                    return hit
                continue
            entry = item.entry
            if entry.text and "$" in entry.text:
                entry = Entry(entry.verb, entry.action, _expand(entry.text, found),
                              entry.where, entry.stop)
            return item.pattern.source, entry
        return None

    def __len__(self) -> int:
        return self.count
