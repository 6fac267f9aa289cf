"""bench/scan.py --dns: msgs/s with the network checks on, first pass (answers from the
local resolver) against second pass (answers from pyspamd's own DNS cache)."""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from support.network_lab import network_lab  # noqa: E402
from tables import print_measures  # noqa: E402

from pyspamd.checks.rbl import RblCheck, worth_looking_up  # noqa: E402
from pyspamd.config import load_config  # noqa: E402
from pyspamd.scanner import Scanner  # noqa: E402
from pyspamd.sources import iter_messages  # noqa: E402
from pyspamd.task import Envelope, Task  # noqa: E402


def envelope_of(scanner: Scanner, raw: bytes) -> Envelope:
    """What a milter would have known: the sending host and the envelope sender."""
    task = Task(raw)
    client = next((hop for hop in task.received if hop.ip and worth_looking_up(hop.ip)), None)
    sender = task.headers.first("return-path").strip().strip("<>") or task.from_address
    return Envelope(client_ip=client.ip if client else None,
                    helo=client.helo if client else None, mail_from=sender,
                    rcpts=("user@example.net",))


def _pass(scanner: Scanner, items: list[tuple[bytes, Envelope]]) -> tuple[float, list[float]]:
    times = []
    start = time.perf_counter()
    for raw, env in items:
        t0 = time.perf_counter()
        scanner.scan_task(scanner.task(raw, env))
        times.append(time.perf_counter() - t0)
    return time.perf_counter() - start, times


def run_dns_bench(dirs: list[str], limit: int, upstream_ms: float) -> int:
    messages = [s.data for s in iter_messages(dirs) if s.data is not None]
    if limit:
        messages = messages[:limit]
    with tempfile.TemporaryDirectory(prefix="pyspamd-bench-dns-") as tmp, \
            network_lab(Path(tmp), upstream_ms / 1000) as lab:
        config = Path(tmp) / "pyspamd.toml"
        config.write_text(lab.config(timeout=2.0, budget=5.0))
        scanner = Scanner.from_config(load_config(config))
        resolver = next(c for c in scanner.checks if isinstance(c, RblCheck)).resolver
        items = [(raw, envelope_of(scanner, raw)) for raw in messages]
        rows = [("corpus", ", ".join(dirs)), ("messages", str(len(items))),
                ("resolver's upstream round trip", f"{upstream_ms:g} ms"),
                ("with a client address", str(sum(1 for _, e in items if e.client_ip)))]
        walls = []
        for label in ("first pass (resolver)", "second pass (cache)"):
            before = resolver.stats.snapshot()
            wall, times = _pass(scanner, items)
            walls.append(wall)
            after = resolver.stats.snapshot()
            ms = sorted(t * 1000 for t in times)
            rows += [(f"{label} msgs/s", f"{len(items) / wall:.0f}"),
                     (f"{label} p50/p99 ms", f"{statistics.median(ms):.2f} / "
                                             f"{ms[min(len(ms) - 1, int(len(ms) * .99))]:.2f}"),
                     (f"{label} DNS queries sent", str(after["queries"] - before["queries"])),
                     (f"{label} cache hits", str(after["cache_hits"] - before["cache_hits"])),
                     (f"{label} timeouts/failures",
                      f"{after['timeouts'] - before['timeouts']} / "
                      f"{after['failures'] - before['failures']}")]
        rows.append(("second pass speed-up", f"{walls[0] / walls[1]:.1f}x"))
    print_measures(rows)
    return 0
