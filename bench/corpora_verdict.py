"""The verdict on held-out mail of other years and sources, with an EMPTY Bayes store.

    python bench/corpora_verdict.py [--config PATH] [--jobs N] [--json FILE]

Scans the seed-42 test part of the SpamAssassin corpus (../shared/corpus) and the held-out
lists of every corpus under ../corpora (corpus/gather/gather.py; --corpora) through the real
Scanner, built from the config (built-in defaults if none) with its Bayes store pointed
at a new empty file, as on a new install. A spam or phish counts as caught when the
action is `add header`, `rewrite subject` or `reject`; a ham with one of those is a false
positive. Prints one row per corpus and year, ham false positives beside every recall,
and the share of each label that got MODEL_SPAM (the content model alone).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from tables import print_markdown

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "corpus"
CORPORA = REPO.parent / "corpora"
CAUGHT = ("add header", "rewrite subject", "reject")
LABELS = ("spam", "phish", "ham")

_scanner = None


def sets(shared: Path, corpora: Path) -> list[tuple[str, str, Path, Path]]:
    """(corpus, label, list file, root) of every held-out list found."""
    out = []
    split = shared / "split-42"
    for label in ("spam", "ham"):
        lst = split / f"test_{label}.txt"
        if lst.exists():
            out.append(("spamassassin-seed42", label, lst, shared / "spamassassin"))
    for folder in sorted(p for p in corpora.glob("*") if (p / "split").is_dir()):
        for label in LABELS:
            lst = folder / "split" / f"test_{label}.txt"
            if lst.exists():
                out.append((folder.name, label, lst, folder))
    return out


def _init(config_text: str) -> None:
    global _scanner
    from pyspamd.config import load_config
    from pyspamd.scanner import Scanner

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pyspamd.toml"
        path.write_text(config_text)
        _scanner = Scanner.from_config(load_config(path))


def _scan(paths: list[str]) -> list[tuple[str, bool]]:
    assert _scanner is not None
    out = []
    for path in paths:
        result = _scanner.scan(Path(path).read_bytes())
        out.append((result.action, "MODEL_SPAM" in result.symbols))
    return out


def config_text(config: str | None, store: Path) -> str:
    base = Path(config).read_text() if config else ""
    if "[storage]" in base:
        raise SystemExit("give a config without [storage]: the bench sets an empty store")
    return f"{base}\n[storage]\npath = \"{store}\"\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", help="pyspamd config without [storage] (default: built-in)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--shared", type=Path, default=SHARED,
                    help="the SpamAssassin corpus with split-42/ (default: ../shared/corpus)")
    ap.add_argument("--corpora", type=Path, default=CORPORA,
                    help="what corpus/gather/gather.py wrote (default: ../corpora)")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args()
    found = sets(args.shared, args.corpora)
    if not found:
        print("no held-out lists found", file=sys.stderr)
        return 1
    work: list[tuple[str, str, str, str]] = []  # corpus, label, year, path
    for corpus, label, lst, root in found:
        manifest: dict[str, str] = {}
        if (root / "MANIFEST.tsv").exists():
            for line in (root / "MANIFEST.tsv").read_text().splitlines()[1:]:
                cols = line.split("\t")
                manifest[cols[0]] = cols[2]
        for line in lst.read_text().split():
            path = root / line
            year = manifest.get(path.stem, "2002" if corpus.startswith("spamassassin") else "")
            work.append((corpus, label, year or "?", str(path)))
    with tempfile.TemporaryDirectory() as tmp:
        text = config_text(args.config, Path(tmp) / "empty-bayes.sqlite")
        with ProcessPoolExecutor(args.jobs, initializer=_init, initargs=(text,)) as pool:
            chunks = [work[i:i + 100] for i in range(0, len(work), 100)]
            results = pool.map(_scan, [[w[3] for w in chunk] for chunk in chunks])
            flat = [r for chunk in results for r in chunk]
    # (corpus, year) -> label -> [n, caught, model_spam]
    table: dict[tuple[str, str], dict[str, list[int]]] = defaultdict(
        lambda: {lab: [0, 0, 0] for lab in LABELS})
    totals: dict[str, dict[str, list[int]]] = defaultdict(
        lambda: {lab: [0, 0, 0] for lab in LABELS})
    for (corpus, label, year, _), (action, model) in zip(work, flat, strict=True):
        for cell in (table[(corpus, year)][label], totals[corpus][label]):
            cell[0] += 1
            cell[1] += action in CAUGHT
            cell[2] += model

    def pct(cell: list[int], i: int) -> str:
        return f"{cell[i] / cell[0]:.1%}" if cell[0] else ""

    header = ["corpus", "year", "spam n", "spam caught", "phish n", "phish caught", "ham n",
              "ham FP", "MODEL_SPAM on spam/phish/ham"]
    rows = []
    for (corpus, year), cells in sorted(table.items()):
        rows.append(_row(corpus, year, cells, pct))
    for corpus, cells in sorted(totals.items()):
        rows.append(_row(corpus, "all", cells, pct))
    print_markdown(header, rows)
    if args.json:
        args.json.write_text(json.dumps({"header": header, "rows": rows}, indent=1) + "\n")
    return 0


def _row(corpus: str, year: str, cells: dict[str, list[int]], pct) -> list[str]:
    s, p, h = cells["spam"], cells["phish"], cells["ham"]
    model = " / ".join(pct(c, 2) or "-" for c in (s, p, h))
    # The count beside the share: one ham in 3,214 would round to 0.0%.
    ham_fp = f"{h[1] / h[0]:.2%} ({h[1]})" if h[0] else ""
    return [corpus, year, str(s[0] or ""), pct(s, 1), str(p[0] or ""), pct(p, 1),
            str(h[0] or ""), ham_fp, model]


if __name__ == "__main__":
    sys.exit(main())
