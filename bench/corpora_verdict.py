"""The verdict on held-out mail of other years and sources, with an empty or trained Bayes.

    python bench/corpora_verdict.py [--config PATH] [--jobs N] [--json FILE] [--trained]
                                    [--corpora DIR] [--shared DIR]

Scans the seed-42 test part of the SpamAssassin corpus (../shared/corpus) and the held-out
lists of every corpus under ../corpora (corpus/gather/gather.py; --corpora) through the real
Scanner, built from the config (built-in defaults if none) with its Bayes store pointed
at a new empty file, as on a new install; with --trained, Bayes first learns every train
list (the seed-42 train part and each corpus's split/train_*.txt, phishing as spam) as
`pyspamc learn_spam`/`learn_ham` would. A spam or phish counts as caught when the
action is `add header`, `rewrite subject` or `reject`; a ham with one of those is a false
positive. Prints one row per corpus and year, ham false positives beside every recall,
and the share of each label that got MODEL_SPAM (the content model alone); then the spread
of the held-out ham's scores per set (how far under `add header` it stays).
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


def train_lists(shared: Path, corpora: Path) -> dict[str, list[str]]:
    """Label ("spam"/"ham") -> every message path of the train parts."""
    out: dict[str, list[str]] = {"spam": [], "ham": []}
    roots = [(shared / "split-42", shared / "spamassassin")]
    roots += [(folder / "split", folder) for folder in sorted(corpora.glob("*"))
              if (folder / "split").is_dir()]
    for split, root in roots:
        for label in LABELS:
            lst = split / f"train_{label}.txt"
            if lst.exists():
                out["ham" if label == "ham" else "spam"] += [
                    str(root / line) for line in lst.read_text().split()]
    return out


def learn(config_text: str, lists: dict[str, list[str]]) -> None:
    from pyspamd.checks.bayes import bayes_on
    from pyspamd.cli.learn import LEARN_ORDER, run_learn
    from pyspamd.config import load_config
    from pyspamd.storage import open_storage

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pyspamd.toml"
        path.write_text(config_text)
        config = load_config(path)
    storage = open_storage(config.storage, create=True)
    try:
        bayes = bayes_on(config, storage)
        for label, paths in lists.items():
            summary = run_learn(bayes, storage, paths, label)
            print(f"learned {label}: {summary.line(LEARN_ORDER)}", file=sys.stderr)
    finally:
        storage.close()


def _init(config_text: str) -> None:
    global _scanner
    from pyspamd.config import load_config
    from pyspamd.scanner import Scanner

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "pyspamd.toml"
        path.write_text(config_text)
        _scanner = Scanner.from_config(load_config(path))


def _scan(paths: list[str]) -> list[tuple[str, bool, float, str]]:
    assert _scanner is not None
    out = []
    for path in paths:
        result = _scanner.scan(Path(path).read_bytes())
        out.append((result.action, "MODEL_SPAM" in result.symbols, result.score,
                    " ".join(f"{n}={s.score:.2f}" for n, s in result.symbols.items()
                             if s.score)))
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
    ap.add_argument("--trained", action="store_true",
                    help="Bayes learns every train part first (default: empty store)")
    ap.add_argument("--store", type=Path,
                    help="keep the Bayes store in this file; with --trained, an existing "
                         "one is used as it is (to compare code on the same training)")
    ap.add_argument("--list-fp", action="store_true",
                    help="also print each ham false positive with its symbols")
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
        store = args.store or Path(tmp) / "bayes.sqlite"
        text = config_text(args.config, store.resolve())
        if args.trained and not (args.store and args.store.exists()):
            learn(text, train_lists(args.shared, args.corpora))
        with ProcessPoolExecutor(args.jobs, initializer=_init, initargs=(text,)) as pool:
            chunks = [work[i:i + 100] for i in range(0, len(work), 100)]
            results = pool.map(_scan, [[w[3] for w in chunk] for chunk in chunks])
            flat = [r for chunk in results for r in chunk]
    # (corpus, year) -> label -> [n, caught, model_spam]
    table: dict[tuple[str, str], dict[str, list[int]]] = defaultdict(
        lambda: {lab: [0, 0, 0] for lab in LABELS})
    totals: dict[str, dict[str, list[int]]] = defaultdict(
        lambda: {lab: [0, 0, 0] for lab in LABELS})
    ham_scores: dict[str, list[float]] = defaultdict(list)
    for (corpus, label, year, path), (action, model, score, syms) in zip(work, flat,
                                                                          strict=True):
        if label == "ham":
            ham_scores[corpus].append(score)
            if args.list_fp and action in CAUGHT:
                print(f"FP {corpus} {path} {score:.2f} {syms}")
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
    print()
    # How far under `add header` the held-out ham stays: one vote more must not tip it.
    spread = ["ham set", "n", "median", "90%", "99%", "99.9%", "max", ">= 3", ">= 4", ">= 5"]
    spread_rows = []
    for corpus, scores in sorted(ham_scores.items()):
        ordered = sorted(scores)

        def q(share: float, ordered: list[float] = ordered) -> str:
            return f"{ordered[min(len(ordered) - 1, int(share * len(ordered)))]:.2f}"

        spread_rows.append([corpus, str(len(ordered)), q(0.5), q(0.9), q(0.99), q(0.999),
                            f"{ordered[-1]:.2f}",
                            *(str(sum(x >= t for x in ordered)) for t in (3, 4, 5))])
    print_markdown(spread, spread_rows)
    if args.json:
        args.json.write_text(json.dumps({"header": header, "rows": rows, "ham_spread": {
            "header": spread, "rows": spread_rows}}, indent=1) + "\n")
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
