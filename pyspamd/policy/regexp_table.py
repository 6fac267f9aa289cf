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

from pyspamd.policy.keyed import LoadProblems, checked_result
from pyspamd.policy.verbs import Entry
from pyspamd.ruleset.regex import re2_options

_OPTIONS = re2_options()
_FLAG_RUN = re.compile(r"[A-Za-z]*")
_GROUP_REF = re.compile(r"\$(?:\{(\d+)\}|(\d+))")
_MAX_DEPTH = 100  # nested if blocks; deeper is almost certainly a missing endif
# Patterns per re2.Set: one set of 10,000 patterns is slower to match than 40 of 256
# (measured: 9.5 ms vs 1.4 ms per line), as its DFA outgrows its memory budget.
_SET_CHUNK = 256


class PatternError(ValueError):
    pass


@dataclass(slots=True)
class Pattern:
    source: str  # as written, for messages and `pyspamc maps check`
    regex: Any  # Python re pattern for the few RE2 rejects; an RE2 one is made on first use
    negate: bool
    expr: str = ""  # the RE2 expression, flags inline; "" when on Python's re
    index: int = -1  # position in the table's re2 sets

    def search(self, text: str) -> Any:
        if self.regex is None:
            self.regex = re2.compile(self.expr, options=_OPTIONS)
        found = self.regex.search(text)
        if self.negate:
            return None if found else True
        return found


class SetBuilder:
    """Adds each pattern to an RE2 set as it is read: adding both checks that RE2 accepts
    the pattern and builds the matcher, so a 100,000-line table compiles each pattern once
    (compiling every pattern on its own as well took 5 s of a 6 s load)."""

    def __init__(self) -> None:
        self.sets: list[tuple[Any, int]] = []  # (compiled re2.Set, index of its first pattern)
        self.current: Any = None
        self.offset = 0
        self.count = 0

    def add(self, expr: str) -> int | None:
        """The pattern's index, or None when RE2 cannot compile it."""
        if self.current is None:
            self.current, self.offset = re2.Set.SearchSet(_OPTIONS), self.count
        try:
            self.current.Add(expr)
        except re2.error:
            return None
        index = self.count
        self.count += 1
        if self.count - self.offset >= _SET_CHUNK:
            self.finish()
        return index

    def finish(self) -> list[tuple[Any, int]]:
        if self.current is not None and self.count > self.offset:
            self.current.Compile()
            self.sets.append((self.current, self.offset))
        self.current = None
        return self.sets


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
    flags_match = _FLAG_RUN.match(rest)
    flags = flags_match.group(0) if flags_match else ""
    return pattern, negate, flags, rest[len(flags) :].strip(), delim


def compile_pattern(line: str, builder: SetBuilder) -> tuple[Pattern, str]:
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
    source = ("!" if negate else "") + f"{delim}{pattern}{delim}{flags}"
    index = builder.add(full)
    if index is not None:
        return Pattern(source, None, negate, full, index), rest
    try:
        regex = re.compile(full)
    except re.error as exc:
        raise PatternError(f"bad regular expression /{pattern}/: {exc}") from exc
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
    """Look-ups match the value against every pattern at once (RE2 sets, one pass each),
    then walk the table in file order using those results, as Postfix would line by line."""

    kind = "regexp"

    def __init__(self) -> None:
        self.rules: list[Rule | Block] = []
        self.count = 0
        self.sets: list[tuple[Any, int]] = []  # (re2.Set, index of its first pattern)
        self.flat = True  # no if blocks, no !/re/, no fallback patterns: first hit wins
        # Set index -> its line. A pattern whose line was then refused (a bad action) is
        # in a set but not here, and is never reported.
        self.by_index: dict[int, Rule | Block] = {}

    def _register(self, item: Rule | Block) -> None:
        if item.pattern.expr:
            self.by_index[item.pattern.index] = item
        if isinstance(item, Block) or item.pattern.negate or not item.pattern.expr:
            self.flat = False

    @classmethod
    def parse(cls, lines: Iterable[tuple[str, str]], header_checks: bool,
              problems: LoadProblems) -> RegexpTable:
        table = cls()
        builder = SetBuilder()
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
                    pattern, rest = compile_pattern(line[2:].strip(), builder)
                    if rest:
                        raise PatternError(f"text after an if pattern: {rest!r}")
                except PatternError as exc:
                    problems.errors.append(f"{where}: {exc}; the lines up to its endif are "
                                           "skipped")
                    skipping = 1
                    continue
                block = Block(pattern, where)
                table._register(block)
                (stack[-1].body if stack else table.rules).append(block)
                stack.append(block)
                continue
            if skipping:
                continue
            try:
                pattern, rest = compile_pattern(line, builder)
            except PatternError as exc:
                problems.errors.append(f"{where}: {exc}")
                continue
            entry = checked_result(rest, where, header_checks, problems)
            if entry is None:
                continue
            rule = Rule(pattern, entry)
            table._register(rule)
            (stack[-1].body if stack else table.rules).append(rule)
            table.count += 1
        for block in stack:
            problems.errors.append(f"{block.where}: if without an endif (the block runs to "
                                   "the end of the file)")
        if skipping:
            problems.errors.append("missing endif after a skipped if block")
        table.sets = builder.finish()
        return table

    def lookup(self, value: str) -> tuple[str, Entry] | None:
        try:
            data = value.encode("utf-8")
        except UnicodeEncodeError:  # raw 8-bit bytes kept as surrogates: match them as U+FFFD
            data = value.encode("utf-8", "replace")
            value = data.decode("utf-8")
        matched: set[int] = set()
        for matcher, offset in self.sets:
            found = matcher.Match(data)
            if found:
                matched.update(i + offset for i in found)
        if self.flat:
            for index in sorted(matched):
                rule = self.by_index.get(index)
                if isinstance(rule, Rule):
                    return self._hit(rule, value)
            return None
        return self._walk(self.rules, value, matched)

    def _walk(self, rules: list[Rule | Block], value: str,
              matched: set[int]) -> tuple[str, Entry] | None:
        for item in rules:
            pattern = item.pattern
            if pattern.expr:
                hit = (pattern.index in matched) != pattern.negate
            else:
                hit = bool(pattern.search(value))
            if not hit:
                continue
            if isinstance(item, Block):
                inner = self._walk(item.body, value, matched)
                if inner is not None:
                    return inner
                continue
            return self._hit(item, value)
        return None

    @staticmethod
    def _hit(rule: Rule, value: str) -> tuple[str, Entry]:
        entry = rule.entry
        if entry.text and "$" in entry.text:
            # Only the line that decided runs its regex again, for the groups.
            found = rule.pattern.search(value)
            entry = Entry(entry.verb, entry.action, _expand(entry.text, found), entry.where,
                          entry.stop)
        return rule.pattern.source, entry

    def __len__(self) -> int:
        return self.count
