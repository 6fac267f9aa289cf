"""The regex rule check: header, body, rawbody, full, uri and mime rules from the rule files.

Rules reading the same text ("target") are matched together: all RE2 patterns of a target
go into one re2.Set, so each text is read once however many rules look at it (measured:
0.01 ms for 60 body patterns on a typical message, against 0.5 ms one pattern at a time).
Only the rules the Set reports are searched again, to get the matched text as option.

Body, rawbody and uri patterns that RE2 can compile for Latin-1 (ASCII patterns, the common case)
run on the text encoded as Latin-1, characters beyond it replaced by "?": case folding
then stays one byte per letter, which made the DFA of 150 phrase patterns four times faster
on the SpamAssassin corpus than on UTF-8 (0.16 against 0.66 ms a message). Patterns that
name characters beyond Latin-1 (look-alike scripts, zero-width characters) run on UTF-8.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import re2

from pyspamd.checks.base import Check
from pyspamd.ruleset.loader import PSEUDO_HEADERS, Rule, RuleSet
from pyspamd.ruleset.regex import CompiledRegex, RegexError, compile_spec, re2_options
from pyspamd.symbols import SCAN_TIMEOUT, Hits, SymbolDef, is_hidden, shorten
from pyspamd.task import Task

_SET_CHUNK = 32  # patterns per re2.Set, keeps each DFA well inside its memory budget
# Latin-1 text sets hold more: their DFA states are smaller, and 64 phrase patterns a set
# ran in 0.10-0.15 ms a message against 0.17 for 32 (SpamAssassin corpus; 200 a set
# overflowed the budget and took 2.6 ms). bench/regex_sets.py checks that no set misses.
_SET_CHUNK_LATIN1_TEXT = 64
# Patterns with a long counted repeat or .* (`a\b.{0,200}\bb`) keep many positions alive
# at once, and in a Set with others they multiply the DFA's states: the 42 such body
# patterns spread among 167 made the body DFAs grow past 65 MiB over the SpamAssassin
# corpus, still growing. Four a set, apart from the phrase patterns, they took 22 MiB in
# all and ran a quarter faster (bench/rules_profile.py, docs/performance.md).
_HEAVY = re.compile(rb"\{\d*,\d{2,}\}|\.\*|\.\+")
_SET_CHUNK_HEAVY = 4
# URL patterns (host and path shapes) make DFAs of many states however short the text: 64 a
# set needed ~24 MiB and thrashed at 16; 16 a set ran the corpus in half the time of 64 at
# 64 MiB (0.05 against 0.13 ms a message, first pass) in 2 MiB.
_SET_CHUNK_URI = 16
# A Set's DFA cache grows to its budget and then starts again. At 16 MiB a Set the 29
# body and URL Sets held 44 MiB after two passes over the SpamAssassin corpus and a worker
# reached 166 MiB after 50,000 messages; at 4 MiB (URL Sets 2) the scan took no more CPU.
# Less thrashes: 2 MiB for all, or 1 for the heavy Sets, cost 0.3 ms a message
# (bench/memory.py, bench/ab_scan.py; docs/performance.md). A Set whose program alone
# needs more than its budget compiles with more (doubling, up to the cap).
_SET_MAX_MEM = 4 << 20
_SET_MAX_MEM_URI = 2 << 20
_SET_MAX_MEM_CAP = 64 << 20
_MAX_MULTIPLE = 10
_MATCHED_TEXT_KINDS = frozenset(("body", "rawbody", "full"))
_LATIN1_TEXT_KINDS = frozenset(("body", "rawbody", "uri"))
_MEMO_KINDS = frozenset(("header", "mime"))
_UNMEMOISED = frozenset(("all",))  # the whole header block: never the same twice
_MEMO_ENTRIES = 512  # per group; a full memo starts again
_MEMO_MAX_CHARS = 256  # values longer than this (together) are matched, not remembered

TargetKey = tuple[str, str, str]  # (kind, target, variant)


@dataclass(slots=True)
class _Group:
    key: TargetKey
    latin1: bool
    rules: list[Rule] = field(default_factory=list)
    # the regex each rule runs with here (its Latin-1 compilation in a Latin-1 text group)
    regexes: dict[str, CompiledRegex] = field(default_factory=dict)
    encode_text: bool = False  # str values are encoded as Latin-1 for this group
    # each Set, its rules, and their places in `rules` (hits are added in rule order)
    sets: list[tuple[re2.Set, list[Rule], list[int]]] = field(default_factory=list)
    # the !~ rules and their places: a hit when their Set does not report them
    negated: list[tuple[int, Rule]] = field(default_factory=list)
    fallback_rules: list[Rule] = field(default_factory=list)
    # The hits (name, options, weight) a header or mime group adds for a tuple of values: the same
    # values come back message after message (counts, MIME types, mailers, relays).
    memo: dict[tuple[str, ...], list[tuple[str, tuple[str, ...], float]]] | None = None

    def build(self) -> None:
        re2_rules = [r for r in self.rules if r.regex is not None and not r.regex.uses_fallback]
        self.fallback_rules = [r for r in self.rules if r.regex and r.regex.uses_fallback]
        for rule in re2_rules:
            assert rule.regex is not None
            self.regexes.setdefault(rule.name, rule.regex)
        size = _SET_CHUNK_LATIN1_TEXT if self.encode_text else _SET_CHUNK
        if self.key[0] == "uri":
            size = _SET_CHUNK_URI
        light: list[int] = []
        heavy: list[int] = []
        for place, rule in enumerate(re2_rules):
            pattern = self.regexes[rule.name].re2_pattern
            assert pattern is not None
            (heavy if _HEAVY.search(pattern) else light).append(place)
        max_mem = _SET_MAX_MEM_URI if self.key[0] == "uri" else _SET_MAX_MEM
        chunks = [(light[i : i + size], max_mem) for i in range(0, len(light), size)]
        chunks += [(heavy[i : i + _SET_CHUNK_HEAVY], max_mem)
                   for i in range(0, len(heavy), _SET_CHUNK_HEAVY)]
        for places, max_mem in chunks:
            patterns = [self.regexes[re2_rules[p].name].re2_pattern for p in places]
            self.sets.append((_compiled_set(patterns, self.latin1, max_mem),
                              [re2_rules[p] for p in places], places))
        self.negated = [(place, rule) for place, rule in enumerate(re2_rules) if rule.negate]
        if self.key[0] in _MEMO_KINDS and not self.fallback_rules \
                and self.key[1] not in _UNMEMOISED:
            self.memo = {}


def _compiled_set(patterns: list[bytes | None], latin1: bool, max_mem: int) -> re2.Set:
    """An RE2 Set of the patterns with the budget max_mem, doubled while too small for the
    Set's program."""
    while True:
        matcher = re2.Set.SearchSet(re2_options(latin1, max_mem))
        for pattern in patterns:
            matcher.Add(pattern)
        try:
            matcher.Compile()
            return matcher
        except re2.error:
            if max_mem >= _SET_MAX_MEM_CAP:
                raise
            max_mem *= 2


def _place(item: tuple[int, Rule]) -> int:
    return item[0]


class _Recorder(Hits):
    """A Hits that keeps the calls made to it, to replay them from a group's memo."""

    __slots__ = ("calls",)

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, tuple[str, ...], float]] = []

    def add(self, name: str, *options: str, weight: float = 1.0) -> None:
        self.calls.append((name, options, weight))


class _OutOfTime(Exception):
    """The scan's time budget ran out in a backtracking search."""


class RegexRules(Check):
    name = "regex_rules"
    symbols: ClassVar[Mapping[str, SymbolDef]] = {
        "REGEX_TIMEOUT": SymbolDef(
            0.0, "A rule on the backtracking engine ran out of [scan] fallback_regex_timeout "
            "(options: the rules)", "scan"),
    }

    def __init__(
        self, ruleset: RuleSet, fallback_max_bytes: int = 65536, fallback_timeout: float = 0.1
    ) -> None:
        self.ruleset = ruleset
        self.fallback_max_bytes = fallback_max_bytes
        self.fallback_timeout = fallback_timeout
        self.presence: list[Rule] = []  # exists:/missing: header rules
        # sub-rules counted once: their hit needs no matched text
        self.quiet = frozenset(
            name for name in ruleset.rules if is_hidden(name)
            and not ((d := ruleset.defs.get(name)) is not None and d.multiple))
        groups: dict[tuple[str, ...], _Group] = {}
        for rule in ruleset.rules.values():
            if rule.kind == "meta":
                continue
            if rule.variant in ("exists", "missing"):
                self.presence.append(rule)
                continue
            latin1 = _latin1_regex(rule) if rule.kind in _LATIN1_TEXT_KINDS else None
            key = (rule.kind, rule.target, rule.variant)
            group_key = (*key, "latin1") if latin1 is not None else key
            group = groups.get(group_key)
            if group is None:
                group = groups[group_key] = _Group(
                    key, latin1=rule.kind == "full" or latin1 is not None,
                    encode_text=latin1 is not None)
            if latin1 is not None:
                group.regexes[rule.name] = latin1
            group.rules.append(rule)
        for group in groups.values():
            group.build()
        self.groups = list(groups.values())
        # What each header group adds when its header is absent (it reads as ""): most
        # messages lack most of the headers rules look at, and this skips their matching.
        self.absent_hits: dict[int, list[str]] = {}
        for group in self.groups:
            kind, target, variant = group.key
            if kind == "header" and variant != "count" and target not in PSEUDO_HEADERS \
                    and not group.fallback_rules:
                found = Hits()
                self._match_sets(group, [""], found)
                self.absent_hits[id(group)] = list(found.hits)

    def run(self, task: Task, hits: Hits) -> None:
        headers = task.headers
        for rule in self.presence:
            if rule.target in PSEUDO_HEADERS:
                present = bool(_pseudo_header(task, rule.target))
            else:
                present = rule.target in headers
            if present == (rule.variant == "exists"):
                hits.add(rule.name)
        # Every RE2 set first (linear time), then the opted-in backtracking rules, so a
        # budget that the slow ones spend never costs a rule RE2 would have run.
        values_of: dict[TargetKey, list[str] | list[bytes]] = {}
        for group in self.groups:
            absent = self.absent_hits.get(id(group))
            if absent is not None and group.key[1] not in headers:
                for name in absent:
                    hits.add(name)
                continue
            values = values_of.get(group.key)
            if values is None:
                values = values_of[group.key] = _target_values(task, group.key)
            if group.memo is None:
                self._match_sets(group, values, hits)
            else:
                self._match_memo(group, values, hits)  # type: ignore[arg-type]
        for group in self.groups:
            if not group.fallback_rules:
                continue
            values = values_of.get(group.key)
            if values is None:
                values = values_of[group.key] = _target_values(task, group.key)
            try:
                self._match_fallback(group, values, hits, task)
            except _OutOfTime as exc:
                hits.add(SCAN_TIMEOUT, f"{self.name}:{exc}")
                return

    def _match_memo(self, group: _Group, values: list[str], hits: Hits) -> None:
        """_match_sets for a header or mime group, whose hits depend on its values alone."""
        memo = group.memo
        assert memo is not None
        key = tuple(values)
        found = memo.get(key)
        if found is None:
            recorder = _Recorder()
            self._match_sets(group, values, recorder)
            found = recorder.calls
            if sum(map(len, key)) <= _MEMO_MAX_CHARS:
                if len(memo) >= _MEMO_ENTRIES:
                    memo.clear()
                memo[key] = found
        for name, options, weight in found:
            hits.add(name, *options, weight=weight)

    def _match_sets(self, group: _Group, values: list[str] | list[bytes], hits: Hits) -> None:
        codec = "latin-1" if group.encode_text else "utf-8"
        encoded: list[bytes] = [
            v if isinstance(v, bytes) else v.encode(codec, "replace") for v in values
        ]
        hit: list[tuple[int, Rule]] = []
        for matcher, rules, places in group.sets:
            if len(encoded) == 1:
                matched = matcher.Match(encoded[0]) or ()
            else:
                matched = set()
                for data in encoded:
                    found = matcher.Match(data)
                    if found:
                        matched.update(found)
            hit += [(places[index], rules[index]) for index in matched]
        if group.negated:  # a !~ rule hits where the Set reports nothing
            reported = {place for place, _ in hit}
            hit = [(place, rule) for place, rule in hit if not rule.negate]
            hit += [(place, rule) for place, rule in group.negated if place not in reported]
        if len(hit) > 1:
            hit.sort(key=_place)
        quiet = self.quiet
        for _, rule in hit:
            if rule.negate or rule.name in quiet:
                hits.add(rule.name)  # a sub-rule shows no option: no second search
            else:
                self._report(rule, group.regexes[rule.name], encoded, hits, group.latin1)

    def _match_fallback(
        self, group: _Group, values: list[str] | list[bytes], hits: Hits, task: Task
    ) -> None:
        for rule in group.fallback_rules:
            try:
                found_text = self._search_fallback(rule, values, task)
            except TimeoutError:  # neither a hit nor, for a !~ rule, a miss
                hits.add("REGEX_TIMEOUT", rule.name)
                continue
            if rule.negate:
                if found_text is None:
                    hits.add(rule.name)
            elif found_text is not None:
                hits.add(rule.name, found_text)

    def _search_fallback(
        self, rule: Rule, values: list[str] | list[bytes], task: Task
    ) -> str | None:
        """The text a backtracking rule matched in the first value it matches, or None.

        Raises TimeoutError when one search ran out of fallback_regex_timeout, and
        _OutOfTime when the scan's budget is spent."""
        assert rule.regex is not None and rule.regex.fallback is not None
        pattern = rule.regex.fallback
        for value in values:
            left = task.time_left()
            timeout = self.fallback_timeout if left is None else min(left, self.fallback_timeout)
            if timeout <= 0.0:
                raise _OutOfTime(rule.name)
            try:
                # The regex module counts the timeout in CPU time of the process, and
                # concurrent=True lets the worker's other sessions run meanwhile.
                # value is str or bytes, as the pattern was compiled for this target
                m = pattern.search(value[: self.fallback_max_bytes],  # type: ignore[arg-type]
                                   timeout=timeout, concurrent=True)
            except TimeoutError:
                if task.time_left() == 0.0:
                    raise _OutOfTime(rule.name) from None
                raise
            if m:
                g = m.group(0) if rule.kind in _MATCHED_TEXT_KINDS else value
                return g.decode("latin-1") if isinstance(g, bytes) else g
        return None

    def _report(self, rule: Rule, compiled: CompiledRegex, encoded: list[bytes], hits: Hits,
                latin1: bool) -> None:
        """Add a hit with its option: the matched text for body-like rules (the value may be
        a whole message), the whole value for header, uri and mime rules (a URL or a file
        name says more than the fragment that matched)."""
        regex = compiled.re2_regex
        symbol_def = self.ruleset.defs.get(rule.name)
        multiple = symbol_def is not None and symbol_def.multiple
        codec = "latin-1" if latin1 else "utf-8"
        whole_value = rule.kind not in _MATCHED_TEXT_KINDS
        reported = 0
        for data in encoded:
            for m in regex.finditer(data):  # type: ignore[attr-defined]
                hits.add(rule.name, (data if whole_value else m.group(0)).decode(codec, "replace"))
                reported += 1
                if not multiple or reported >= _MAX_MULTIPLE:
                    return
                if whole_value:
                    break
        if not reported:  # the Set and the single regex disagree only on empty matches
            hits.add(rule.name)


def _latin1_regex(rule: Rule) -> CompiledRegex | None:
    """The rule's regex compiled for Latin-1 text, or None when it must stay on UTF-8."""
    regex = rule.regex
    if regex is None or regex.uses_fallback or not regex.spec.pattern.isascii():
        return None
    try:
        latin1 = compile_spec(regex.spec, latin1=True)
    except RegexError:
        return None
    return None if latin1.uses_fallback else latin1


# Envelope data and composite views that `header` rules read like headers.
_PSEUDO: dict[str, Callable[[Task], Iterable[str | None]]] = {
    "envelopefrom": lambda t: [t.envelope.mail_from],
    "envelopercpt": lambda t: t.envelope.rcpts,
    "helo": lambda t: [t.envelope.helo],
    "clientip": lambda t: [t.envelope.client_ip],
    "clienthostname": lambda t: [t.envelope.client_hostname],
    "authuser": lambda t: [t.envelope.user],
    "all": lambda t: [t.headers.all_lines()],
    "tocc": lambda t: [", ".join(t.headers.decoded("to") + t.headers.decoded("cc"))],
}
assert _PSEUDO.keys() == PSEUDO_HEADERS


def _pseudo_header(task: Task, name: str) -> list[str]:
    getter = _PSEUDO.get(name)
    return [v for v in getter(task) if v] if getter else []


def _target_values(task: Task, key: TargetKey) -> list[str] | list[bytes]:
    kind, target, variant = key
    if kind == "body":
        return [task.body_text]
    if kind == "rawbody":
        return [task.rawbody_text]
    if kind == "full":
        return [task.full_bytes]
    if kind == "uri":
        return [u.url for u in task.urls]
    if kind == "mime":
        if target == "type":
            return [p.content_type for p in task.parts]
        if target == "filename":
            return [p.filename for p in task.parts if p.filename]
        return [v for p in task.parts for v in p.header_values(target)]
    # header rules
    headers = task.headers
    if variant == "count":
        return [str(headers.count(target))]
    if target in PSEUDO_HEADERS:
        values: list[str] = _pseudo_header(task, target)
    elif target in headers:
        if variant == "raw":
            values = headers.raw(target)
        elif variant == "addr":
            values = [a for _, a in headers.addresses(target) if a]
        elif variant == "name":
            values = [n for n, _ in headers.addresses(target) if n]
        else:
            values = headers.decoded(target)
    else:
        values = []
    return values or [""]  # a missing header reads as "" (so !~ rules can hit it)


def matched_text(task: Task, rule: Rule, limit: int = 80) -> tuple[str, str] | None:
    """(the matched text, the value it was found in) for a hit of `rule`, or None (negated
    and presence rules match no text): for `pyspamc explain`, never on the scan path."""
    if rule.regex is None or rule.negate or rule.variant in ("exists", "missing"):
        return None
    values = _target_values(task, (rule.kind, rule.target, rule.variant))
    codec = "latin-1" if rule.kind == "full" else "utf-8"
    for value in values:
        data = value if isinstance(value, bytes) else value.encode("utf-8", "replace")
        if rule.regex.fallback is not None:
            m = rule.regex.fallback.search(value)  # type: ignore[arg-type]
            found = m.group(0) if m else None
            if isinstance(found, bytes):
                found = found.decode(codec, "replace")
        else:
            m = rule.regex.re2_regex.search(data)  # type: ignore[attr-defined]
            found = m.group(0).decode(codec, "replace") if m else None
        if found is not None:
            text = value.decode(codec, "replace") if isinstance(value, bytes) else value
            return shorten(found, limit), shorten(text, limit)
    return None
