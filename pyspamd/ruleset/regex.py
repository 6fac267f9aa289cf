"""Rule regexes: parsing `/re/flags` literals and compiling them for RE2 or, rarely, a
backtracking engine.

RE2 runs in time linear in the input whatever the pattern, so neither a careless rule nor a
hostile message can hang a worker. Patterns RE2 rejects (look-around, back-references,
repeats over 1,000) can take exponential time on a backtracking engine: the loader refuses
them unless the rule opts in (`tflags NAME backtracking`), and they run on the `regex`
module, whose searches take a timeout, over input cut to a configured length.
"""

from __future__ import annotations

from dataclasses import dataclass

import re2
import regex

_PAIRS = {"{": "}", "(": ")", "[": "]", "<": ">"}
_FLAGS = frozenset("ims")


class RegexError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class RegexSpec:
    pattern: str
    flags: str  # subset of "ims", sorted

    @property
    def inline(self) -> str:
        return f"(?{self.flags}){self.pattern}" if self.flags else self.pattern

    def __str__(self) -> str:
        return f"/{self.pattern}/{self.flags}"


def parse_literal(text: str) -> RegexSpec:
    """`/pat/flags`, or `m{pat}flags` with any punctuation delimiter; nothing may follow."""
    text = text.strip()
    if text.startswith("/"):
        close, body_start = "/", 1
    elif len(text) > 2 and text[0] == "m" and not text[1].isalnum() and not text[1].isspace():
        close, body_start = _PAIRS.get(text[1], text[1]), 2
    else:
        raise RegexError("expected a regex like /pattern/flags")
    end = text.rfind(close)
    if end < body_start:
        raise RegexError(f"regex is not closed with {close!r}")
    pattern, flags = text[body_start:end], text[end + 1 :].strip()
    if not pattern:
        raise RegexError("empty regex matches everything; write the rule without it")
    bad = set(flags) - _FLAGS
    if bad:
        raise RegexError(
            f"unknown regex flag(s) {''.join(sorted(bad))!r} after {close!r}; "
            "allowed: i, m, s (or text after the regex that does not belong there)"
        )
    return RegexSpec(pattern, "".join(sorted(set(flags))))


def re2_options(latin1: bool = False, max_mem: int = 64 << 20) -> re2.Options:
    options = re2.Options()
    options.log_errors = False
    options.max_mem = max_mem  # DFA memory; sets of many patterns need more than the default
    if latin1:
        options.encoding = re2.Options.Encoding.LATIN1
    return options


_UTF8_OPTIONS = re2_options()
_LATIN1_OPTIONS = re2_options(latin1=True)


@dataclass(slots=True)
class CompiledRegex:
    spec: RegexSpec
    re2_pattern: bytes | None  # what goes into an re2.Set; None when on the fallback
    re2_regex: object | None  # re2 compiled regex (bytes in, bytes out)
    fallback: regex.Pattern[str] | regex.Pattern[bytes] | None

    @property
    def uses_fallback(self) -> bool:
        return self.fallback is not None


def compile_spec(spec: RegexSpec, latin1: bool = False) -> CompiledRegex:
    """Compile for RE2 on bytes; on failure for the backtracking engine. Raises RegexError."""
    encoding = "latin-1" if latin1 else "utf-8"
    try:
        pattern = spec.inline.encode(encoding)
    except UnicodeEncodeError as exc:
        raise RegexError(f"regex has characters that cannot match raw bytes: {exc}") from exc
    try:
        compiled = re2.compile(pattern, options=_LATIN1_OPTIONS if latin1 else _UTF8_OPTIONS)
        return CompiledRegex(spec, pattern, compiled, None)
    except re2.error:
        pass
    flags = 0
    for flag, value in (("i", regex.IGNORECASE), ("m", regex.MULTILINE), ("s", regex.DOTALL)):
        if flag in spec.flags:
            flags |= value
    try:
        # The pattern must mean what it means in Python's re (VERSION0); `regex` adds the
        # timeout that lets the scan's time budget hold.
        fallback: regex.Pattern[str] | regex.Pattern[bytes] = (
            regex.compile(pattern, flags | regex.VERSION0) if latin1
            else regex.compile(spec.pattern, flags | regex.VERSION0)
        )
    except regex.error as exc:
        raise RegexError(f"bad regex {spec}: {exc}") from exc
    return CompiledRegex(spec, None, None, fallback)
