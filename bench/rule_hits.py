"""Per-symbol hit rates and verdicts of the real Scanner, on labelled message sets.

    python bench/rule_hits.py --set spam=LIST_OR_DIR --set ham=LIST_OR_DIR [--set ...]
                              [--rules-file GLOB ...] [--min-hits N] [--config PATH]

Each --set is NAME=SOURCE, where SOURCE is a folder, Maildir or mbox (as `pyspamc`
reads them) or a text file listing message paths one a line, relative to the list's
folder, its parent or the parent's spamassassin/ (the layout of split-42/*.txt),
or absolute. A set whose name starts
with "ham" is ham; every other set is spam or phishing.

The Bayes store is a fresh, empty SQLite file in a temporary folder, so Bayes casts no
vote: the figures are what the rules and checks do alone, as on a new install.

Prints one table of verdicts per set (share of messages at `add header` or stronger,
and at `reject`), then one row per symbol: its score and the share of each set it hits.
--rules-file limits the symbol rows to rules defined in matching rule files (plus the
symbols of checks named with --check); a rule hitting more than 0.1% of any ham set is
flagged, as such a rule should carry no positive score on its own.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

from pyspamd.config import load_config
from pyspamd.scanner import Scanner
from pyspamd.sources import iter_messages

HAM_LIMIT = 0.001  # share of ham a positively scored rule may hit
_FLAGGING = ("add header", "rewrite subject", "reject")


def read_set(source: str) -> list[bytes]:
    path = Path(source)
    if path.is_file() and path.suffix == ".txt":
        out: list[bytes] = []
        for line in path.read_text().splitlines():
            if line.strip():
                out.append(_list_member(path, Path(line.strip())).read_bytes())
        return out
    return [s.data for s in iter_messages([source]) if s.data is not None]


def _list_member(listing: Path, member: Path) -> Path:
    """split-42 lists name paths below the corpus's `spamassassin/` folder; other lists
    are relative to their own folder or its parent."""
    if member.is_absolute():
        return member
    for base in (listing.parent, listing.parent.parent, listing.parent.parent / "spamassassin"):
        if (base / member).exists():
            return base / member
    raise FileNotFoundError(f"{listing}: {member} not found beside the list or above it")


def build_scanner(config_path: str | None, store_dir: str) -> Scanner:
    os.environ["PYSPAMD_DATA_DIR"] = store_dir  # an empty store: Bayes does not vote
    config = load_config(Path(config_path) if config_path else None)
    config.storage.path = str(Path(store_dir) / "empty.sqlite")
    return Scanner.from_config(config)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", required=True, metavar="NAME=SOURCE")
    parser.add_argument("--config")
    parser.add_argument("--rules-file", action="append", default=[],
                        help="only rows for rules from files matching this glob (repeatable)")
    parser.add_argument("--check", action="append", default=[],
                        help="also rows for the symbols of this built-in check (repeatable)")
    parser.add_argument("--min-hits", type=int, default=1, help="hide rows with fewer hits")
    parser.add_argument("--all-rows", action="store_true", help="rows for every symbol")
    args = parser.parse_args()

    sets: list[tuple[str, list[bytes]]] = []
    for spec in args.set:
        name, _, source = spec.partition("=")
        sets.append((name, read_set(source)))

    with tempfile.TemporaryDirectory() as store_dir:
        scanner = build_scanner(args.config, store_dir)
        counts: dict[str, Counter[str]] = {}
        verdicts: dict[str, Counter[str]] = {}
        for name, messages in sets:
            hit_count: Counter[str] = Counter()
            verdict: Counter[str] = Counter()
            for raw in messages:
                result = scanner.scan(raw)
                verdict[result.action] += 1
                hit_count.update(result.symbols.keys())
            counts[name], verdicts[name] = hit_count, verdict

    print("| set | messages | add header or more | reject |")
    print("|---|---:|---:|---:|")
    for name, messages in sets:
        v, n = verdicts[name], max(1, len(messages))
        flagged = sum(v[a] for a in _FLAGGING)
        print(f"| {name} | {len(messages)} | {flagged} ({100 * flagged / n:.2f}%) "
              f"| {v['reject']} ({100 * v['reject'] / n:.2f}%) |")
    print()

    wanted = _wanted_symbols(scanner, args.rules_file, args.check, args.all_rows)
    names = [n for n, _ in sets]
    print("| symbol | score | " + " | ".join(names) + " | flag |")
    print("|---|---:|" + "---:|" * len(names) + "---|")
    rows = sorted(wanted, key=lambda s: (scanner.defs[s].source if s in scanner.defs else "", s))
    for symbol in rows:
        total = sum(counts[n][symbol] for n in names)
        if total < args.min_hits:
            continue
        score = scanner.defs[symbol].score if symbol in scanner.defs else 0.0
        cells = []
        flag = ""
        for name, messages in sets:
            hit = counts[name][symbol]
            share = hit / max(1, len(messages))
            cells.append(f"{hit} ({100 * share:.1f}%)")
            if name.startswith("ham") and share > HAM_LIMIT and score > 0:
                flag = "HAM>0.1%"
        print(f"| {symbol} | {score:g} | " + " | ".join(cells) + f" | {flag} |")
    return 0


def _wanted_symbols(scanner: Scanner, globs: list[str], checks: list[str],
                    every: bool) -> list[str]:
    if every or not (globs or checks):
        return [n for n in scanner.defs if not n.startswith("__")]
    out = []
    for name, rule in scanner.ruleset.rules.items():
        if name.startswith("__"):
            continue
        path = rule.source.rsplit(":", 1)[0]
        if any(fnmatch.fnmatch(Path(path).name, g) for g in globs):
            out.append(name)
    for name, symbol_def in scanner.defs.items():
        if symbol_def.source.removeprefix("check:") in checks:
            out.append(name)
    return out


if __name__ == "__main__":
    sys.exit(main())
