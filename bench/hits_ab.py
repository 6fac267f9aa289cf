"""Do two source trees give every message the same symbols? A check for speed work.

    python bench/hits_ab.py OTHER_TREE [DIR ...]

Scans every message (default: the SpamAssassin corpus beside the repository, else corpus/)
with this tree's pyspamd and with OTHER_TREE's (e.g. ../main), each in its own process
with the tree's own virtualenv and a fresh, empty store (as bench/rule_hits.py), and
compares per message the symbols (in the order they were added), each with its options
(but those that read the clock) and score, and the action.
Prints the count of messages that differ and the first few differences; exits 1 if any.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
# Their options are hours from the Date header to the clock: the two runs' clocks differ.
_CLOCK_OPTIONS = frozenset(("DATE_IN_PAST", "DATE_IN_FUTURE"))


def dump(dirs: list[str], out: str) -> None:
    from rule_hits import build_scanner
    from scan import default_dirs

    from pyspamd.sources import iter_messages

    with tempfile.TemporaryDirectory() as store_dir, open(out, "w") as fh:
        scanner = build_scanner(None, store_dir)
        for source in iter_messages(dirs or default_dirs()):
            if source.data is None:
                continue
            result = scanner.scan(source.data)
            symbols = {n: [round(s.score, 6), [] if n in _CLOCK_OPTIONS else s.options]
                       for n, s in result.symbols.items()}
            fh.write(json.dumps([source.label, result.action, symbols]) + "\n")


def run_tree(tree: Path, dirs: list[str], out: str) -> None:
    venv = tree / ".venv" / "bin" / "python"
    python = str(venv) if venv.exists() else sys.executable
    env = dict(os.environ, PYTHONPATH=str(tree))
    subprocess.run([python, __file__, "--dump", out, *dirs], cwd=tree, env=env, check=True)


def main() -> int:
    if sys.argv[1:2] == ["--dump"]:
        dump(sys.argv[3:], sys.argv[2])
        return 0
    other, dirs = Path(sys.argv[1]).resolve(), sys.argv[2:]
    with tempfile.TemporaryDirectory() as tmp:
        a_file, b_file = f"{tmp}/a.jsonl", f"{tmp}/b.jsonl"
        run_tree(other, dirs, a_file)
        run_tree(HERE, dirs, b_file)
        a_lines = Path(a_file).read_text().splitlines()
        b_lines = Path(b_file).read_text().splitlines()
    differ = 0
    for a_line, b_line in zip(a_lines, b_lines, strict=True):
        if a_line != b_line:
            differ += 1
            if differ <= 5:
                a, b = json.loads(a_line), json.loads(b_line)
                only_a = {k: v for k, v in a[2].items() if b[2].get(k) != v}
                only_b = {k: v for k, v in b[2].items() if a[2].get(k) != v}
                print(f"{a[0]}: A {a[1]} {only_a} / B {b[1]} {only_b}")
    print(f"messages: {len(a_lines)}, with different symbols, options, scores or action: "
          f"{differ}\nA = {other}, B = {HERE}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
