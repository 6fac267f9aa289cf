"""Meta rule expressions: `(A && !B) || C + D + E >= 2`.

The expression is parsed here (so every error has a clear message) and turned into a fully
parenthesised Python expression over a mapping of hit counts, compiled once. Only names,
numbers and the listed operators get through the parser, so the compiled code can do
nothing but arithmetic on counts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import CodeType

_TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>&&|\|\||>=|<=|==|!=|[!()+\-*<>]))"
)
# Binary operators by precedence level, lowest first (C/Perl order, as in SpamAssassin).
_LEVELS: list[dict[str, str]] = [
    {"||": "or"},
    {"&&": "and"},
    {">=": ">=", "<=": "<=", "==": "==", "!=": "!=", ">": ">", "<": "<"},
    {"+": "+", "-": "-"},
    {"*": "*"},
]


class MetaError(ValueError):
    pass


@dataclass(slots=True)
class MetaExpr:
    source: str
    names: frozenset[str]
    code: CodeType

    def evaluate(self, counts: Mapping[str, int]) -> bool:
        return bool(eval(self.code, {"__builtins__": {}}, {"c": counts}))


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise MetaError(f"unexpected {text[pos:].strip()[:20]!r} in meta expression")
        kind = m.lastgroup or ""
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    return tokens


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.names: set[str] = set()

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def binary(self, level: int) -> str:
        if level == len(_LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        ops = _LEVELS[level]
        while (tok := self.peek()) is not None and tok[0] == "op" and tok[1] in ops:
            self.pos += 1
            right = self.binary(level + 1)
            left = f"({left} {ops[tok[1]]} {right})"
        return left

    def unary(self) -> str:
        tok = self.peek()
        if tok is None:
            raise MetaError("meta expression ends too early")
        self.pos += 1
        kind, value = tok
        if kind == "num":
            return value
        if kind == "name":
            self.names.add(value)
            return f"c.get({value!r}, 0)"
        if value == "!":
            return f"(0 if {self.unary()} else 1)"
        if value == "-":
            return f"(-{self.unary()})"
        if value == "(":
            inner = self.binary(0)
            close = self.peek()
            if close != ("op", ")"):
                raise MetaError("missing ')' in meta expression")
            self.pos += 1
            return inner
        raise MetaError(f"unexpected {value!r} in meta expression")


def parse_meta(text: str) -> MetaExpr:
    tokens = _tokenize(text)
    if not tokens:
        raise MetaError("empty meta expression")
    parser = _Parser(tokens)
    python = parser.binary(0)
    if parser.pos != len(tokens):
        raise MetaError(f"unexpected {tokens[parser.pos][1]!r} in meta expression")
    return MetaExpr(text.strip(), frozenset(parser.names), compile(python, "<meta>", "eval"))
