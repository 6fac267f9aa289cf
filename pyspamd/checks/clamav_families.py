"""Third-party ClamAV signature families: a clamd finding's name -> class -> symbol.

The table is a TOML file (shipped: rules/clamav-families.toml) of classes (spam, phish,
malware, each with its symbol and score) and signature-name prefixes, each naming a class.
The admin's [antivirus.families] (symbol -> prefixes) is laid over it. The longest matching
prefix decides; a name no prefix matches is malware.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from pyspamd.config_schema import SYMBOL, shipped_path

SHIPPED_TABLE = "rules/clamav-families.toml"
MALWARE = "malware"
VIRUS_SYMBOL = "CLAM_VIRUS"
ADMIN_SCORE = 5.0  # an [antivirus.families] symbol of the admin's own, unless [scores] says


class FamilyTableError(ValueError):
    """A table that cannot be used; the message starts with the file (and line)."""


@dataclass(frozen=True, slots=True)
class Family:
    prefix: str
    klass: str  # "spam", "phish", "malware", or "" for an admin symbol outside the classes
    symbol: str
    origin: str  # "table" or "config"


@dataclass(frozen=True, slots=True)
class FamilyTable:
    path: Path
    classes: dict[str, tuple[str, float]]  # class -> (symbol, score)
    families: tuple[Family, ...]  # longest prefix first

    def classify(self, name: str) -> Family:
        for family in self.families:
            if name.startswith(family.prefix):
                return family
        symbol = self.classes.get(MALWARE, (VIRUS_SYMBOL, 10.0))[0]
        return Family("", MALWARE, symbol, "default")

    def scores(self) -> dict[str, float]:
        """Each symbol's score: the class's, or ADMIN_SCORE for the admin's own symbols."""
        out = {symbol: score for symbol, score in self.classes.values()}
        for family in self.families:
            out.setdefault(family.symbol, ADMIN_SCORE)
        return out

    def listing(self, reject_classes: list[str]) -> list[str]:
        """What configtest prints: the classes, then each prefix with its class."""
        lines = [f"antivirus families from {self.path}:"]
        for klass, (symbol, score) in self.classes.items():
            verdict = "rejected" if klass in reject_classes else "scored"
            lines.append(f"  class {klass}: {symbol} ({score:g}), {verdict}")
        for family in sorted(self.families, key=lambda f: f.prefix.lower()):
            mark = " (config)" if family.origin == "config" else ""
            lines.append(f"  {family.prefix}* -> {family.klass or '-'} {family.symbol}{mark}")
        return lines


def _line_of(text: str, needle: str) -> int:
    for number, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return number
    return 0


def read_table(path: Path) -> tuple[dict[str, tuple[str, float]], list[Family]]:
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except OSError as exc:
        raise FamilyTableError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise FamilyTableError(f"{path}: {exc}") from exc
    classes: dict[str, tuple[str, float]] = {}
    for klass, spec in (data.get("classes") or {}).items():
        at = f"{path}:{_line_of(text, klass)}"
        if not isinstance(spec, dict) or not SYMBOL.match(str(spec.get("symbol", ""))) \
                or not isinstance(spec.get("score"), int | float):
            raise FamilyTableError(f"{at}: class {klass!r} needs symbol = \"NAME\" and "
                                   "score = NUMBER")
        classes[klass] = (spec["symbol"], float(spec["score"]))
    if MALWARE not in classes:
        raise FamilyTableError(f"{path}: [classes] needs a malware class (names no prefix "
                               "claims are malware)")
    families = []
    for prefix, klass in (data.get("prefixes") or {}).items():
        if klass not in classes:
            raise FamilyTableError(f"{path}:{_line_of(text, prefix)}: prefix {prefix!r} names "
                                   f"class {klass!r}; known: {', '.join(classes)}")
        families.append(Family(prefix, klass, classes[klass][0], "table"))
    unknown = set(data) - {"classes", "prefixes"}
    if unknown:
        raise FamilyTableError(f"{path}: unknown table(s) {', '.join(sorted(unknown))}; "
                               "known: classes, prefixes")
    return classes, families


def load_families(table_file: str, admin: dict[str, list[str]]) -> FamilyTable:
    """The table at `table_file` ("" the shipped one) with the admin's prefixes over it."""
    path = Path(table_file) if table_file else shipped_path(SHIPPED_TABLE)
    classes, families = read_table(path)
    by_symbol = {symbol: klass for klass, (symbol, _) in classes.items()}
    merged = {f.prefix: f for f in families}
    for symbol, prefixes in admin.items():
        for prefix in prefixes:
            merged[prefix] = Family(prefix, by_symbol.get(symbol, ""), symbol, "config")
    ordered = tuple(sorted(merged.values(), key=lambda f: -len(f.prefix)))
    return FamilyTable(path, classes, ordered)
