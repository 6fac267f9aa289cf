"""A/B scan cost of two source trees, measured alternately in one run.

    python bench/ab_scan.py OTHER_TREE [--rounds N] [--repeat N] [--config PATH] [DIR ...]

Runs this tree's bench/scan.py against the pyspamd (code and shipped rules) of this tree
and of OTHER_TREE (e.g. ../main) one after the other, N rounds, each in its own
process with the tree's own virtualenv (TREE/.venv, where pyspamd is installed from that
tree; else this interpreter with the tree on PYTHONPATH), on the same messages. Speed
here drifts 2x within an hour, so only neighbouring runs compare: the table shows each
round's CPU ms per message (process time of the scan loop over the message count, which
the other sessions on the machine disturb less than wall time; one core, no network), the
difference B - A, and each process's peak RSS after the corpus (corpus in memory included).
--config gives both trees the same pyspamd config, e.g. one whose [storage] is a trained
Bayes store, so that Bayes votes (and tokenizes) in both.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
_CPU = re.compile(r"CPU ms/msg\s*\|\s*([\d.]+)")
_RSS = re.compile(r"peak RSS MiB\s*\|\s*([\d.]+)")


def run_scan(tree: Path, args: list[str]) -> tuple[float, float]:
    """CPU ms per message of one bench/scan.py run on `tree`'s pyspamd (scan loop only),
    and the process's peak RSS in MiB after the corpus."""
    venv = tree / ".venv" / "bin" / "python"
    python = str(venv) if venv.exists() else sys.executable
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run(
        [python, str(HERE / "bench" / "scan.py"), *args],
        cwd=tree, env=env, capture_output=True, text=True, check=True,
    ).stdout
    found, rss = _CPU.search(out), _RSS.search(out)
    if not found or not rss:
        raise SystemExit(f"no CPU ms/msg or peak RSS in the output of bench/scan.py on "
                         f"{tree}:\n{out}")
    return float(found.group(1)), float(rss.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("other", type=Path, help="the tree to compare with (A)")
    parser.add_argument("dirs", nargs="*", help="message folders (default: scan.py's)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=1, help="passed to scan.py")
    parser.add_argument("--config", help="pyspamd config for both trees (scan.py --config)")
    args = parser.parse_intermixed_args()
    scan_args = [*args.dirs, "--repeat", str(args.repeat)]
    if args.config:
        scan_args += ["--config", str(Path(args.config).resolve())]
    a_times, b_times = [], []
    print("| round | A ms/msg | B ms/msg | B - A ms | A peak RSS MiB | B peak RSS MiB |")
    print("|---:|---:|---:|---:|---:|---:|")
    for number in range(1, args.rounds + 1):
        a, a_rss = run_scan(args.other.resolve(), scan_args)
        b, b_rss = run_scan(HERE, scan_args)
        a_times.append(a)
        b_times.append(b)
        print(f"| {number} | {a:.3f} | {b:.3f} | {b - a:+.3f} | {a_rss:.0f} | {b_rss:.0f} |",
              flush=True)
    diffs = [b - a for a, b in zip(a_times, b_times, strict=True)]
    print(f"| median | {statistics.median(a_times):.3f} | {statistics.median(b_times):.3f} "
          f"| {statistics.median(diffs):+.3f} | | |")
    print(f"\nA = {args.other.resolve()}, B = {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
