"""A/B CPU and memory of the regex rules alone, two source trees alternating in one run.

    python bench/ab_rules.py OTHER_TREE [--rounds N] [DIR ...]

Each round runs, for OTHER_TREE (A) and this tree (B), one process with the tree's own
virtualenv that parses every message (default: the corpus of bench/scan.py), builds the
views the rules read (headers decoded, text, URLs: other checks share them), then times
RegexRules.run alone over the corpus twice (CPU ms per message): the first pass starts
with empty RE2 DFA caches, as a new worker does, the second runs on warm ones. It prints
the process's peak RSS after both passes less the peak before the first rule ran (the DFA
caches grow as they meet new text; the memos of header values too).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def measure(dirs: list[str]) -> None:
    from scan import default_dirs

    from pyspamd.checks.regex_rules import RegexRules, _target_values
    from pyspamd.config import load_config
    from pyspamd.scanner import Scanner
    from pyspamd.sources import iter_messages
    from pyspamd.symbols import Hits

    scanner = Scanner.from_config(load_config(None))
    rules = next(c for c in scanner.checks if isinstance(c, RegexRules))
    tasks = []
    for source in iter_messages(dirs or default_dirs()):
        if source.data:
            task = scanner.task(source.data)
            for group in rules.groups:  # decodes the headers the rules read, once
                _target_values(task, group.key)
            tasks.append(task)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cpu = []
    for _ in range(2):
        start = time.process_time()
        for task in tasks:
            rules.run(task, Hits())
        cpu.append((time.process_time() - start) * 1000 / len(tasks))
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    print(f"{cpu[0]:.4f} {cpu[1]:.4f} {grown / 1024:.1f}")


def run_tree(tree: Path, dirs: list[str]) -> tuple[float, float, float]:
    venv = tree / ".venv" / "bin" / "python"
    python = str(venv) if venv.exists() else sys.executable
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run([python, __file__, "--measure", *dirs], cwd=tree, env=env,
                         capture_output=True, text=True, check=True).stdout.split()
    return float(out[-3]), float(out[-2]), float(out[-1])


def main() -> int:
    if sys.argv[1:2] == ["--measure"]:
        measure(sys.argv[2:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("other", type=Path)
    parser.add_argument("dirs", nargs="*")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_intermixed_args()
    print("| round | A ms/msg 1st | B ms/msg 1st | B / A | A 2nd | B 2nd | B / A "
          "| A RSS growth MiB | B RSS growth MiB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    ratios = []
    for number in range(1, args.rounds + 1):
        a_ms, a_warm, a_mib = run_tree(args.other.resolve(), args.dirs)
        b_ms, b_warm, b_mib = run_tree(HERE, args.dirs)
        ratios.append(b_ms / a_ms)
        print(f"| {number} | {a_ms:.3f} | {b_ms:.3f} | {b_ms / a_ms:.2f} | {a_warm:.3f} "
              f"| {b_warm:.3f} | {b_warm / a_warm:.2f} | {a_mib:.0f} | {b_mib:.0f} |",
              flush=True)
    print(f"\nmedian B / A, first pass: {statistics.median(ratios):.2f}; "
          f"A = {args.other.resolve()}, B = {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
