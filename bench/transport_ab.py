"""The milter transports side by side: pyspamd's asyncio protocol against libmilter.

    python bench/transport_ab.py [--corpus DIR] [--connections 8,32] [--pairs 3]
                                 [--messages N] [--workers N] [--cpu-competitor]

Two daemons of this tree, the same config but `[milter] transport`, played in turns by the
same MTA client as bench/vs_rspamd.py (persistent milter connections, split-42's
throughput_2000.txt mix). Prints per round throughput, CPU per message of the daemon's
process tree, p50/p99/max latency, and the slowest sessions (a stall shows as a max far
above the p99).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("vs_rspamd", REPO / "bench" / "vs_rspamd.py")
assert _spec is not None and _spec.loader is not None
vs = importlib.util.module_from_spec(_spec)
sys.modules["vs_rspamd"] = vs  # its dataclasses look their module up
_spec.loader.exec_module(vs)

from support.mta import Daemon  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=REPO.parent / "shared" / "corpus")
    parser.add_argument("--connections", default="8,32")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--messages", type=int, default=0)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--cpu-competitor", action="store_true")
    parser.add_argument("--slowest", type=int, default=3)
    args = parser.parse_args()
    corpus = args.corpus.resolve()
    messages = vs.read_list(corpus, "throughput_2000.txt", args.messages)
    workers = args.workers or os.cpu_count() or 1
    config = "[dns]\nenabled = false\n[actions]\ngreylist = false\n"
    daemons, sides = [], []
    tmp = Path(tempfile.mkdtemp(prefix="transport-ab-"))
    print(f"{len(messages)} messages; {workers} workers each; load average at start "
          f"{vs.load_average()}", flush=True)
    try:
        for transport in ("asyncio", "libmilter"):
            workdir = tmp / transport
            workdir.mkdir()
            daemon = Daemon(workdir, config, workers=workers,
                            milter_options=f'transport = "{transport}"')
            daemon.start()
            assert daemon.proc is not None
            daemons.append(daemon)
            sides.append(vs.Side(transport, daemon.port, [daemon.proc.pid]))
        for side in sides:
            vs.play(side.port, messages[:200], 4)
        rounds = []
        with vs.cpu_competitor(args.cpu_competitor):
            for conns in (int(c) for c in args.connections.split(",")):
                for pair in range(args.pairs):
                    order = sides if pair % 2 == 0 else sides[::-1]
                    got = {s.name: vs.measure(s, messages, conns) for s in order}
                    rounds += [got[s.name] for s in sides]
                    print(f"{conns} conn, pair {pair + 1}: " + ", ".join(
                        f"{r.side} {r.rate:.0f} msgs/s max {r.max_ms:.0f} ms"
                        for r in got.values()) + f"; load {vs.load_average()}", flush=True)
        print("\n| conns | transport | msgs/s | CPU ms/msg | p50 ms | p99 ms | max ms | errors |")
        print("|---:|---|---:|---:|---:|---:|---:|---:|")
        for r in rounds:
            print(f"| {r.connections} | {r.side} | {r.rate:.0f} | {r.cpu_ms:.2f} | "
                  f"{r.ms(0.5):.1f} | {r.ms(0.99):.1f} | {r.max_ms:.0f} | {r.errors} |")
        print(f"\nslowest {args.slowest} sessions of each round:")
        for r in rounds:
            worst = sorted(r.latencies, reverse=True)[:args.slowest]
            print(f"  {r.side} {r.connections} conn: " + "; ".join(
                f"{lat * 1000:.0f} ms @{at:.1f}s c{conn}" for lat, at, conn, _ in worst))
        print(f"\nload average at the end {vs.load_average()}"
              f"{'; one busy process per core' if args.cpu_competitor else ''}")
    finally:
        for daemon in daemons:
            daemon.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
