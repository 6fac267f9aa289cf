"""Per-message verdicts of two source trees compared: tokens, content-model features and
probability, and the whole scan's score, symbols and action.

    python bench/model_equiv.py OTHER_TREE [DIR ...] [--config PATH] [--limit N]

Each tree scans every message in its own process (its own virtualenv, as bench/ab_scan.py
runs them) and records per message: a digest of the Bayes tokens (hashes and weights), a
digest of the content model's weight indices, the model's probability of spam, and the
scan's score, action and symbols with their scores. The table counts the messages on which
the trees differ and the largest difference of probability and score: a change that is
meant to make the scan cheaper without changing a verdict shows 0 differences.

--config gives both trees the same pyspamd config, e.g. one whose [storage] is a trained
Bayes store, so that Bayes votes (its tokens are then the ones the model reuses).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE / "tests"))

from support.paths import corpus_dirs  # noqa: E402
from tables import print_measures  # noqa: E402

TOLERANCE = 1e-9


def dump(dirs: list[str], config: str | None, limit: int, out: Path) -> None:
    """One JSON line per message, from the pyspamd on this interpreter's path."""
    import xxhash

    from pyspamd.classifiers.tokenizer import tokenize
    from pyspamd.config import load_config
    from pyspamd.model.linear import feature_index
    from pyspamd.scanner import Scanner
    from pyspamd.sources import iter_messages

    scanner = Scanner.from_config(load_config(config))
    check = next(c for c in scanner.checks if c.name == "model")
    model = check.model  # type: ignore[attr-defined]
    sources = [s for s in iter_messages(dirs) if s.data is not None][: limit or None]
    with out.open("w") as handle:
        for source in sources:
            assert source.data is not None
            task = scanner.task(source.data)
            result = scanner.scan_task(task)
            tokens = tokenize(scanner.task(source.data), model.meta.limits)
            index = feature_index(tokens, scanner.task(source.data), model.meta.hash_bits)
            row = {
                "label": source.label,
                "tokens": xxhash.xxh3_64_hexdigest(tokens.hashes.tobytes()
                                                   + tokens.weights.tobytes()),
                "index": xxhash.xxh3_64_hexdigest(index.astype("<i8").tobytes()),
                "p": model.probability(tokens, scanner.task(source.data)),
                "score": result.score,
                "action": result.action,
                "symbols": sorted((s.name, round(s.score, 9)) for s in result.symbols.values()),
            }
            handle.write(json.dumps(row) + "\n")


def run_tree(tree: Path, dirs: list[str], config: str | None, limit: int, out: Path) -> None:
    venv = tree / ".venv" / "bin" / "python"
    python = str(venv) if venv.exists() else sys.executable
    env = dict(os.environ, PYTHONPATH=str(tree))
    command = [python, str(Path(__file__).resolve()), "--dump", str(out), "--limit", str(limit),
               *dirs]
    if config:
        command += ["--config", config]
    subprocess.run(command, cwd=tree, env=env, check=True)


def compare(a_rows: list[dict], b_rows: list[dict]) -> list[tuple[str, str]]:
    counts = {"tokens": 0, "index": 0, "p": 0, "score": 0, "action": 0, "symbols": 0}
    max_p = max_score = 0.0
    first: list[str] = []
    for a, b in zip(a_rows, b_rows, strict=True):
        assert a["label"] == b["label"], (a["label"], b["label"])
        dp, ds = abs(a["p"] - b["p"]), abs(a["score"] - b["score"])
        max_p, max_score = max(max_p, dp), max(max_score, ds)
        differs = {
            "tokens": a["tokens"] != b["tokens"], "index": a["index"] != b["index"],
            "p": dp > TOLERANCE, "score": ds > TOLERANCE, "action": a["action"] != b["action"],
            "symbols": [n for n, _ in a["symbols"]] != [n for n, _ in b["symbols"]]
            or any(abs(x - y) > TOLERANCE for (_, x), (_, y) in zip(a["symbols"], b["symbols"],
                                                                     strict=False)),
        }
        for key, bad in differs.items():
            counts[key] += bad
        if any(differs.values()) and len(first) < 5:
            first.append(a["label"])
    rows = [("messages", str(len(a_rows)))]
    rows += [(f"differ: {key}", str(n)) for key, n in counts.items()]
    rows += [("max |p A - p B|", f"{max_p:.3g}"), ("max |score A - score B|", f"{max_score:.3g}")]
    if first:
        rows.append(("first differing", ", ".join(first)))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("other", nargs="?", type=Path, help="the tree to compare with (A)")
    parser.add_argument("dirs", nargs="*", help="message folders (default: the corpus)")
    parser.add_argument("--config", help="pyspamd config for both trees")
    parser.add_argument("--limit", type=int, default=0, help="the first N messages only")
    parser.add_argument("--dump", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_intermixed_args()
    if args.dump:  # the child: `other` is the first folder then
        dirs = [str(args.other), *args.dirs] if args.other else corpus_dirs([])
        dump(dirs, args.config, args.limit, args.dump)
        return 0
    if args.other is None:
        parser.error("OTHER_TREE is required")
    dirs = corpus_dirs(args.dirs)
    config = str(Path(args.config).resolve()) if args.config else None
    with tempfile.TemporaryDirectory() as tmp:
        outs = {"A": Path(tmp) / "a.jsonl", "B": Path(tmp) / "b.jsonl"}
        run_tree(args.other.resolve(), dirs, config, args.limit, outs["A"])
        run_tree(HERE, dirs, config, args.limit, outs["B"])
        rows = [[json.loads(line) for line in outs[k].open()] for k in ("A", "B")]
    print_measures([("corpus", ", ".join(dirs)), *compare(rows[0], rows[1])])
    print(f"\nA = {args.other.resolve()}, B = {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
