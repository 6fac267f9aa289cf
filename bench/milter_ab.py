"""Milter CPU per message, this checkout against another (A/B, alternating in one run).

    python bench/milter_ab.py BASE_CHECKOUT [DIR ...] [--messages N] [--rounds N]

Speed drifts by 2x within an hour on a shared machine, so the two are measured in turns
(A B B A A B ...) and compared by ratio: the milter protocol with one connection (no MTA,
as row (a) of bench/milter.py), each daemon with its own port, directory and empty store.
BASE_CHECKOUT is e.g. a `git worktree add --detach ../base main`.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]
sys.path.insert(0, str(REPO / "tests"))

from support.mta import Daemon  # noqa: E402
from support.paths import corpus_dirs  # noqa: E402

# bench/milter.py imported under another name: as `milter` it would stand in for pymilter's
# C module of that name.
_spec = importlib.util.spec_from_file_location("bench_milter", REPO / "bench" / "milter.py")
assert _spec is not None and _spec.loader is not None
bench_milter = importlib.util.module_from_spec(_spec)
sys.modules["bench_milter"] = bench_milter  # its dataclasses look their module up
_spec.loader.exec_module(bench_milter)
CpuMeter, load_messages, milter_direct = (bench_milter.CpuMeter, bench_milter.load_messages,
                                          bench_milter.milter_direct)


@dataclass
class CheckoutDaemon(Daemon):
    """A daemon running the pyspamd of `checkout` (its package and shipped rules)."""

    checkout: Path = REPO

    def start(self) -> None:
        saved = os.environ.get("PYTHONPATH"), os.environ.get("PYSPAMD_DATA_DIR")
        os.environ["PYSPAMD_DATA_DIR"] = str(self.workdir)
        try:
            # Daemon puts tests' REPO on PYTHONPATH; run the other checkout's code instead.
            import mta

            mta_repo, mta.REPO = mta.REPO, self.checkout
            try:
                super().start()
            finally:
                mta.REPO = mta_repo
        finally:
            for key, value in zip(("PYTHONPATH", "PYSPAMD_DATA_DIR"), saved, strict=True):
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def measure(checkout: Path, messages: list[bytes]) -> float:
    workdir = Path(tempfile.mkdtemp(prefix="pyspamd-ab-"))
    # Reject off too: the one-connection client stops at a rejected message.
    daemon = CheckoutDaemon(workdir, "[actions]\ngreylist = false\nreject = false\n", workers=1,
                            checkout=checkout)
    daemon.start()
    assert daemon.proc is not None
    try:
        milter_direct(daemon.port, messages[:50], 1)  # warm up
        meter = CpuMeter(os.getpid(), daemon.proc.pid)
        meter.start()
        milter_direct(daemon.port, messages, 1)
        return meter.per_message(len(messages))[1]
    finally:
        daemon.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", type=Path)
    parser.add_argument("dirs", nargs="*")
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    dirs = corpus_dirs(args.dirs)
    messages = load_messages(dirs, args.messages)
    sides = {"A (base)": args.base.resolve(), "B (this)": REPO}
    cpu: dict[str, list[float]] = {name: [] for name in sides}
    order = list(sides)
    for round_number in range(args.rounds):
        for name in order if round_number % 2 == 0 else order[::-1]:
            cpu[name].append(measure(sides[name], messages))
    print(f"{len(messages)} messages, {args.rounds} rounds A/B alternating, 1 worker, "
          "milter protocol, 1 connection")
    print("| checkout | milter CPU ms/msg, each round | median |\n|---|---|---:|")
    for name, values in cpu.items():
        print(f"| {name} | {' / '.join(f'{v:.2f}' for v in values)} | "
              f"{statistics.median(values):.2f} |")
    ratio = statistics.median(cpu["B (this)"]) / statistics.median(cpu["A (base)"])
    print(f"| B / A | | {ratio:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
