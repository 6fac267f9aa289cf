"""Does the milter keep accepting? Connection churn, then load, then one message per connection.

    python bench/accept.py [--workers 1 2] [--churn 1000] [--messages 400] [--repo DIR]

For each worker count, against a fresh daemon (direct milter protocol, no MTA):
  1. churn: 1,000 connections opened and closed at once by 8 threads (no OPTNEG);
  2. load: corpus messages over 8 milter connections; each must get a verdict within 20 s;
  3. one-message connections: 300 connections, 4 at a time, each OPTNEG + one message + QUIT,
     as Postfix connects per SMTP session; an OPTNEG reply that takes over 1 s is a "wait"
     (libmilter's listener polls with a 5 s timeout, so a missed connection shows as ~5.0 s).
Prints one table: verdicts, failures, OPTNEG p50 / max, waits over 1 s, message p50 / p99 / max,
open connections per worker 0.3 s into the phase (how the kernel spread them), and the
listen queue (Recv-Q) left at the end. --repo runs another checkout's pyspamd (A/B).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Run as a script this folder comes first on sys.path, and bench/milter.py would stand in for
# pymilter's C module `milter`.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]
sys.path.insert(0, str(REPO / "tests"))

from support import mta  # noqa: E402
from support.milter_load import Figures, churn, load, one_per_connection, percentile  # noqa: E402
from support.mta import Daemon, MtaSession  # noqa: E402
from support.paths import corpus_dirs  # noqa: E402

from pyspamd.sources import iter_messages  # noqa: E402

WAIT = 1.0  # an OPTNEG reply slower than this counts as a wait


def spread(port: int) -> str:
    """Open milter connections per worker process, most first (e.g. "4+4")."""
    out = subprocess.run(["ss", "-Htnp", "state", "established", f"sport = :{port}"],
                         capture_output=True, text=True, check=False).stdout
    counts: dict[str, int] = {}
    for pid in re.findall(r"pid=(\d+)", out):
        counts[pid] = counts.get(pid, 0) + 1
    return "+".join(str(n) for n in sorted(counts.values(), reverse=True)) or "-"


def listen_queue(port: int) -> str:
    out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True,
                         check=False).stdout.split()
    return out[1] if len(out) > 1 else "?"


def run(workers: int, messages: list[bytes], args: argparse.Namespace) -> list[tuple[str, ...]]:
    rows = []
    workdir = Path(tempfile.mkdtemp(prefix="pyspamd-bench-accept-"))
    daemon = Daemon(workdir, "[actions]\ngreylist = false\n", workers=workers)
    daemon.start()
    try:
        MtaSession(daemon.port).close()
        connected = churn(daemon.port, args.churn)
        for name, fn in (
            (f"load after {connected} churned", lambda f: load(daemon.port, messages, 8, f)),
            (f"{args.single} one-message conns",
             lambda f: one_per_connection(daemon.port, messages, args.single, 4, f)),
        ):
            figures = Figures()
            thread = threading.Thread(target=fn, args=(figures,), daemon=True)
            thread.start()
            time.sleep(0.3)
            sessions = spread(daemon.port)
            thread.join(args.deadline)
            stuck = "STUCK" if thread.is_alive() else ""
            opt = figures.optneg
            rows.append((
                str(workers), name, str(figures.verdicts), str(len(figures.failures)) + stuck,
                f"{statistics.median(opt) * 1000:.1f} / {max(opt) * 1000:.0f}" if opt else "-",
                str(sum(1 for t in opt if t > WAIT)) if opt else "-",
                f"{percentile(figures.latency, 0.5) * 1000:.1f} / "
                f"{percentile(figures.latency, 0.99) * 1000:.1f} / "
                f"{max(figures.latency, default=0) * 1000:.0f}",
                sessions, listen_queue(daemon.port)))
            for failure in figures.failures[:3]:
                print(f"  workers={workers} {name}: {failure}", file=sys.stderr)
    finally:
        daemon.stop()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--churn", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--single", type=int, default=300, help="one-message connections")
    parser.add_argument("--deadline", type=float, default=120.0,
                        help="seconds a phase may take before it counts as stuck")
    parser.add_argument("--repo", type=Path, help="run this checkout's pyspamd instead")
    args = parser.parse_args()
    if args.repo:
        mta.REPO = args.repo.resolve()
    messages = [s.data for s in iter_messages(corpus_dirs([])) if s.data][: args.messages]
    rows: list[tuple[str, ...]] = []
    for workers in args.workers:
        rows += run(workers, messages, args)
    header = ("workers", "phase", "verdicts", "failures", "OPTNEG p50 / max ms",
              f"waits >{WAIT:.0f}s", "msg p50 / p99 / max ms", "conns per worker",
              "listen queue")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print(f"pyspamd from {mta.REPO}; {len(messages)} messages")
    for values in [header, tuple("-" * w for w in widths), *rows]:
        print(" | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
