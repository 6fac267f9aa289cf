"""Reading rule files (format: docs/rules.md) into a RuleSet, collecting every error with
its file and line instead of stopping at the first."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from pyspamd.ruleset.meta import MetaError, MetaExpr, parse_meta
from pyspamd.ruleset.regex import CompiledRegex, RegexError, compile_spec, parse_literal
from pyspamd.symbols import SymbolDef, is_hidden

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_HEADER_TEST = re.compile(r"(?P<target>[^\s=!~]+)\s*(?P<op>=~|!~)\s*(?P<regex>.+)\Z")
_HEADER_NAME = re.compile(r"[!-9;-~]+\Z")  # RFC 5322 field name characters
_HEADER_VARIANTS = frozenset(("", "raw", "addr", "name", "count"))
_RULE_KINDS = frozenset(("header", "body", "rawbody", "full", "uri", "mime", "meta"))
_META_KINDS = frozenset(("score", "describe", "group", "tflags"))
_TFLAGS = frozenset(("nooptions", "multiple", "backtracking"))
# Envelope data readable with `header` rules like real headers (lower case).
PSEUDO_HEADERS = frozenset(
    ("envelopefrom", "envelopercpt", "helo", "clientip", "clienthostname",
     "authuser", "all", "tocc")
)
DEFAULT_SCORE = 1.0


@dataclass(slots=True)
class Rule:
    name: str
    kind: str
    source: str  # FILE:LINE
    target: str = ""  # header name (lower case) or mime field
    variant: str = ""  # header: raw/addr/name/count/exists/missing
    negate: bool = False
    regex: CompiledRegex | None = None
    expr: MetaExpr | None = None


@dataclass(slots=True)
class RuleSet:
    rules: dict[str, Rule] = field(default_factory=dict)
    defs: dict[str, SymbolDef] = field(default_factory=dict)  # every scorable symbol
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    meta_order: list[str] = field(default_factory=list)  # dependencies first
    # Rules whose admin accepted a pattern only a backtracking engine runs (tflags).
    backtracking: set[str] = field(default_factory=set)


def rule_files(dirs: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for directory in dirs:
        if directory.is_file():
            files.append(directory)
        elif directory.is_dir():
            files.extend(sorted(directory.glob("*.rules")))
    return files


def load_rules(
    dirs: Iterable[Path], builtin: Mapping[str, SymbolDef] | None = None
) -> RuleSet:
    """Load every *.rules file under `dirs`. `builtin` are the symbols of code checks."""
    rs = RuleSet(files=rule_files(dirs))
    for name, symbol_def in (builtin or {}).items():
        rs.defs[name] = replace(symbol_def)
    metadata: list[tuple[str, str, str, str]] = []  # (kind, name, value, source)
    for path in rs.files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            rs.errors.append(f"{path}: cannot read rule file: {exc}")
            continue
        _parse_file(path, text, rs, metadata)
    for kind, name, value, source in metadata:
        _apply_metadata(rs, kind, name, value, source)
    _check_backtracking(rs)
    _check_metas(rs)
    return rs


def _check_backtracking(rs: RuleSet) -> None:
    """Refuse patterns that need the backtracking engine unless their rule opts in.

    Such a pattern can take time exponential in the input ((a+)+b on 40 letters "a" runs
    for minutes), so a hostile message could stall the worker; opted in, it runs with a
    timeout, and the scan's time budget holds either way.
    """
    for name, rule in rs.rules.items():
        if rule.regex is None or not rule.regex.uses_fallback:
            continue
        if name in rs.backtracking:
            rs.warnings.append(
                f"{rule.source}: {name}: RE2 cannot run {rule.regex.spec}; it runs on a "
                "backtracking engine (tflags backtracking) over the first [scan] "
                "fallback_regex_max_bytes bytes, for at most [scan] fallback_regex_timeout"
            )
        else:
            rs.errors.append(
                f"{rule.source}: {name}: RE2 cannot run {rule.regex.spec} (look-around, "
                "back-references or a repeat over 1000); a backtracking engine can take "
                "exponential time on hostile mail. Rewrite it for RE2, or accept that with "
                f"`tflags {name} backtracking` (see docs/rules.md)"
            )


def _logical_lines(text: str) -> Iterable[tuple[int, str]]:
    pending, start = "", 0
    for number, line in enumerate(text.splitlines(), 1):
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield start, pending + line
        pending = ""
    if pending:
        yield start, pending


def _parse_file(
    path: Path, text: str, rs: RuleSet, metadata: list[tuple[str, str, str, str]]
) -> None:
    defined_here: set[str] = set()
    for number, line in _logical_lines(text):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        source = f"{path}:{number}"
        parts = stripped.split(None, 2)
        kind = parts[0].lower()
        if kind not in _RULE_KINDS and kind not in _META_KINDS:
            rs.errors.append(
                f"{source}: unknown statement {parts[0]!r}; expected one of "
                f"{', '.join(sorted(_RULE_KINDS | _META_KINDS))}"
            )
            continue
        if len(parts) < 3:
            rs.errors.append(f"{source}: {kind} needs a rule name and a value")
            continue
        name, rest = parts[1], parts[2].strip()
        if not _NAME.match(name):
            rs.errors.append(
                f"{source}: bad rule name {name!r}; use letters, digits and _ (not first digit)"
            )
            continue
        if kind in _META_KINDS:
            metadata.append((kind, name, rest, source))
            continue
        if name in defined_here:
            rs.errors.append(f"{source}: rule {name} is defined twice in this file; rename one")
            continue
        try:
            rule = _parse_rule(kind, name, rest, source)
        except (RegexError, MetaError) as exc:
            rs.errors.append(f"{source}: {name}: {exc}")
            continue
        defined_here.add(name)
        rs.rules[name] = rule  # a later file replaces a rule of the same name
        previous = rs.defs.get(name)
        score = 0.0 if is_hidden(name) else DEFAULT_SCORE
        rs.defs[name] = replace(previous, source=source) if previous else SymbolDef(
            score=score, source=source
        )


def _parse_rule(kind: str, name: str, rest: str, source: str) -> Rule:
    if kind == "meta":
        return Rule(name, kind, source, expr=parse_meta(rest))
    if kind in ("body", "rawbody", "full", "uri"):
        return Rule(name, kind, source, regex=compile_spec(parse_literal(rest), kind == "full"))
    lowered = rest.lower()
    if kind == "header" and lowered.startswith(("exists:", "missing:")):
        variant, _, header = rest.partition(":")
        header = header.strip()
        if not _HEADER_NAME.match(header):
            raise RegexError(f"bad header name {header!r} after {variant}:")
        return Rule(name, kind, source, target=header.lower(), variant=variant.lower())
    m = _HEADER_TEST.match(rest)
    if not m:
        what = "Header-Name =~ /regex/" if kind == "header" else "type|filename|Header =~ /re/"
        raise RegexError(f"expected {what!r}, got {rest[:40]!r}")
    target, _, variant = m.group("target").partition(":")
    if not _HEADER_NAME.match(target):
        raise RegexError(f"bad header name {target!r}")
    variant = variant.lower()
    if kind == "header" and variant not in _HEADER_VARIANTS:
        raise RegexError(
            f"unknown header variant :{variant}; use :raw, :addr, :name or :count"
        )
    if kind == "mime" and variant:
        raise RegexError("mime rules take no :variant")
    spec = parse_literal(m.group("regex"))
    return Rule(
        name, kind, source, target=target.lower(), variant=variant,
        negate=m.group("op") == "!~", regex=compile_spec(spec),
    )


def _apply_metadata(rs: RuleSet, kind: str, name: str, value: str, source: str) -> None:
    symbol_def = rs.defs.get(name)
    if symbol_def is None:
        rs.warnings.append(f"{source}: {kind} for {name}, which no rule or check defines")
        symbol_def = rs.defs[name] = SymbolDef(score=0.0, source=source)
    if kind == "score":
        try:
            symbol_def.score = float(value.split()[0])
        except ValueError:
            rs.errors.append(f"{source}: score of {name} must be a number, got {value!r}")
    elif kind == "describe":
        symbol_def.description = value
    elif kind == "group":
        symbol_def.group = value.split()[0]
    elif kind == "tflags":
        for flag in value.split():
            if flag not in _TFLAGS:
                rs.errors.append(
                    f"{source}: unknown tflags {flag!r} for {name}; "
                    f"allowed: {', '.join(sorted(_TFLAGS))}"
                )
            elif flag == "multiple":
                symbol_def.multiple = True
            elif flag == "backtracking":
                rs.backtracking.add(name)
            else:
                symbol_def.show_options = False


def _check_metas(rs: RuleSet) -> None:
    metas = {n: r for n, r in rs.rules.items() if r.kind == "meta" and r.expr is not None}
    for name, rule in metas.items():
        assert rule.expr is not None
        for ref in sorted(rule.expr.names):
            if ref not in rs.defs:
                rs.errors.append(
                    f"{rule.source}: meta {name} uses {ref}, which no rule or check defines"
                )
    order: list[str] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = " -> ".join([*path[path.index(name):], name])
            rs.errors.append(f"{metas[name].source}: meta rules form a cycle: {cycle}")
            return
        state[name] = 1
        expr = metas[name].expr
        assert expr is not None
        for ref in sorted(expr.names):
            if ref in metas:
                visit(ref, [*path, name])
        state[name] = 2
        order.append(name)

    for name in metas:
        visit(name, [])
    rs.meta_order = order
