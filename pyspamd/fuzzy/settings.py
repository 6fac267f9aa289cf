"""`[fuzzy]`: fuzzy hashes of reported messages, their flags and symbols, and their checks."""

from __future__ import annotations

from dataclasses import dataclass, field

from pyspamd.config_schema import SYMBOL, Locator


@dataclass
class FuzzyFlagConfig:
    symbol: str = ""
    score: float = 0.0
    description: str = ""


def _default_fuzzy_flags() -> dict[str, FuzzyFlagConfig]:
    return {
        "1": FuzzyFlagConfig("FUZZY_DENIED", 12.0, "Like a message reported as spam"),
        "2": FuzzyFlagConfig("FUZZY_PROB", 5.0, "Like a message reported as probable spam"),
        "3": FuzzyFlagConfig("FUZZY_WHITE", -2.0, "Like a message reported as good mail"),
    }


@dataclass
class FuzzyConfig:
    """`[fuzzy]`: fuzzy hashes of reported messages (pyspamc fuzzy_add), in the store."""

    enabled: bool = True
    flags: dict[str, FuzzyFlagConfig] = field(default_factory=_default_fuzzy_flags)
    min_similarity: float = 0.7  # share of equal MinHash values for a text part to match
    min_shingles: int = 10  # distinct word 3-shingles a text part needs to be hashed
    min_bytes: int = 4096  # attachments and images smaller than this get no exact hash
    expire_days: float = 90.0  # a hash is forgotten this long after it was last added
    learn_spam: bool = False  # learn_spam (CLI and controller) also fuzzy_adds, flag 1
    learn_flag: int = 1


def check_fuzzy(f: FuzzyConfig, loc: Locator) -> list[str]:
    errors: list[str] = []

    def bad(key: str, what: str, at: tuple[str, ...] = ("fuzzy",)) -> None:
        errors.append(f"{loc.where((*at, key))}: {'.'.join(at)}.{key} {what}")

    for flag, spec in f.flags.items():
        if not flag.isdigit() or not 0 < int(flag) < 1 << 31:
            bad(flag, "must be named by a flag number (1, 2, ...)", ("fuzzy", "flags"))
        elif not SYMBOL.match(spec.symbol):
            bad("symbol", f"{spec.symbol!r} is not a symbol name (letters, digits, _)",
                ("fuzzy", "flags", flag))
    if not 0.3 <= f.min_similarity <= 1.0:
        bad("min_similarity", "must be between 0.3 and 1.0")
    if f.min_shingles < 3 or f.min_bytes < 0 or f.expire_days <= 0:
        bad("min_shingles", "must be at least 3, min_bytes >= 0 and expire_days positive")
    if f.learn_spam and str(f.learn_flag) not in f.flags:
        bad("learn_flag", f"is {f.learn_flag}, which [fuzzy.flags] does not define")
    return errors

