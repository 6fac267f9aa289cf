"""Learning speed of two source trees, alternating in one run.

    python bench/learn_ab.py OTHER_TREE [--corpus DIR] [--messages N] [--rounds N]

Each round learns split-42's train_spam.txt then train_ham.txt (the first N of each, default
all) with `pyspamc learn_spam` / `learn_ham` into a new, empty SQLite store, once with
OTHER_TREE's pyspamd (A) and once with this tree's (B), in turns (A B, B A, ...), each with
the tree's own virtualenv when it has one. Wall-clock msgs/s end to end: start-up, the symbol
vectors' scan pass, learning and the model fit, as a user's `pyspamc learn_*` run takes it.
"spam again" is learn_spam of the same spam list once more (every message already learned:
what a daily run over a whole folder meets most).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def learn(tree: Path, lists: dict[str, list[str]]) -> dict[str, float]:
    venv = tree / ".venv" / "bin" / "python"
    python = str(venv) if venv.exists() else sys.executable
    rates = {}
    with tempfile.TemporaryDirectory(prefix="learn-ab-") as tmp:
        config = Path(tmp) / "pyspamd.toml"
        config.write_text(f'[storage]\nbackend = "sqlite"\npath = "{tmp}/store.sqlite"\n'
                          '[dns]\nenabled = false\n')
        for kind, paths in [*lists.items(), ("spam again", lists["spam"])]:
            start, cpu = time.perf_counter(), _child_cpu()
            # cwd is the tree: `python -m` puts it first on sys.path
            subprocess.run([python, "-m", "pyspamd.cli.pyspamc", "--config", str(config),
                            f"learn_{kind.split()[0]}", *paths], cwd=tree, check=True,
                           env=dict(os.environ, PYTHONPATH=str(tree)),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            rates[kind] = len(paths) / (time.perf_counter() - start)
            rates[f"{kind} cpu"] = (_child_cpu() - cpu) * 1000 / len(paths)
    return rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("other", type=Path)
    parser.add_argument("--corpus", type=Path, default=HERE.parent / "shared" / "corpus")
    parser.add_argument("--messages", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    corpus = args.corpus.resolve()
    lists = {}
    for kind in ("spam", "ham"):
        rel = (corpus / "split-42" / f"train_{kind}.txt").read_text().split()
        lists[kind] = [str(corpus / "spamassassin" / r) for r in rel[:args.messages or None]]
    sides = {"A": args.other.resolve(), "B": HERE}
    got: dict[str, list[dict[str, float]]] = {"A": [], "B": []}
    print("| round | side | spam msgs/s | ham msgs/s | spam CPU ms/msg | ham CPU ms/msg | "
          "spam again msgs/s | load |\n|---:|---|---:|---:|---:|---:|---:|---|")
    for number in range(args.rounds):
        for side in ("A", "B") if number % 2 == 0 else ("B", "A"):
            rates = learn(sides[side], lists)
            got[side].append(rates)
            load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
            print(f"| {number + 1} | {side} | {rates['spam']:.0f} | {rates['ham']:.0f} | "
                  f"{rates['spam cpu']:.2f} | {rates['ham cpu']:.2f} | "
                  f"{rates['spam again']:.0f} | {load} |", flush=True)
    for side in ("A", "B"):
        med = {k: statistics.median(r[k] for r in got[side])
               for k in ("spam", "ham", "spam cpu", "ham cpu", "spam again")}
        print(f"| median | {side} | {med['spam']:.0f} | {med['ham']:.0f} | "
              f"{med['spam cpu']:.2f} | {med['ham cpu']:.2f} | {med['spam again']:.0f} | |")
    print(f"\nA = {sides['A']}, B = {sides['B']}; "
          f"{len(lists['spam'])} spam, {len(lists['ham'])} ham")
    return 0


if __name__ == "__main__":
    sys.exit(main())
