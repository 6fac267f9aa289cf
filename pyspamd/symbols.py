"""Symbols: what checks report, and the table of scores and descriptions they are scored by."""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_OPTIONS = 10  # per symbol; a header line of 500 options helps nobody
MAX_OPTION_LEN = 32
# Added by the scanner, or by a check that stops early, when the scan's time budget ran out.
SCAN_TIMEOUT = "SCAN_TIMEOUT"


@dataclass(slots=True)
class SymbolDef:
    score: float = 0.0
    description: str = ""
    group: str = ""
    multiple: bool = False  # each hit adds the score (up to MAX_OPTIONS hits)
    show_options: bool = True
    source: str = ""  # "FILE:LINE" or "check:NAME", for configtest and the web page


def is_hidden(name: str) -> bool:
    """Sub-rules (`__NAME`) feed metas and never show up in results."""
    return name.startswith("__")


@dataclass(slots=True)
class Hit:
    count: int = 0
    options: list[str] = field(default_factory=list)
    weight: float = 1.0  # share of the symbol's score, for checks with a confidence (Bayes)


@dataclass(frozen=True, slots=True)
class ForcedAction:
    action: str
    message: str
    symbol: str
    priority: int = 0


def shorten(text: str, limit: int = MAX_OPTION_LEN) -> str:
    squeezed = " ".join(text.split())
    return squeezed if len(squeezed) <= limit else squeezed[: limit - 1] + "…"


class Hits:
    """Symbols collected during one scan, before scoring."""

    __slots__ = ("forced", "hits")

    def __init__(self) -> None:
        self.hits: dict[str, Hit] = {}
        self.forced: list[ForcedAction] = []

    def add(self, name: str, *options: str, weight: float = 1.0) -> None:
        hit = self.hits.get(name)
        if hit is None:
            hit = self.hits[name] = Hit(weight=weight)
        hit.count += 1
        for option in options:
            if len(hit.options) >= MAX_OPTIONS:
                break
            short = shorten(option)
            if short and short not in hit.options:
                hit.options.append(short)

    def __contains__(self, name: str) -> bool:
        return name in self.hits

    def count(self, name: str) -> int:
        hit = self.hits.get(name)
        return hit.count if hit else 0

    def force_action(self, action: str, message: str, symbol: str, priority: int = 0) -> None:
        """Used by admin maps: a hit that decides the action whatever the score."""
        self.forced.append(ForcedAction(action, message, symbol, priority))
