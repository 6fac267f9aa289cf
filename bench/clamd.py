"""What the antivirus check costs, apart: clamd's own CPU (it runs in clamd, not in our
workers), our worker's CPU for sending, and the wait it adds to a scan.

    python bench/clamd.py [DIR ...] [--limit N]

Starts a private clamd (as the tests do: tests/clamd_server.py) whose database holds only
the test signatures: no network here for freshclam. With the official and third-party
databases (millions of signatures, about 1 GiB of clamd memory) clamd's per-message CPU is
higher; the worker's share stays what this prints, since it only streams the bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from scan import default_dirs  # noqa: E402
from support.clamd_server import start_clamd  # noqa: E402
from tables import print_measures  # noqa: E402

from pyspamd.checks.antivirus import items_to_send  # noqa: E402
from pyspamd.clamd import Clamd  # noqa: E402
from pyspamd.config import load_config  # noqa: E402
from pyspamd.scanner import Scanner  # noqa: E402
from pyspamd.sources import iter_messages  # noqa: E402
from pyspamd.symbols import Hits  # noqa: E402
from pyspamd.task import Task  # noqa: E402

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _ms(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (f"mean {statistics.fmean(values) * 1000:.2f}, p50 "
            f"{statistics.median(values) * 1000:.2f}, p99 {p99 * 1000:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="*", help="folders, Maildirs or mbox files")
    parser.add_argument("--limit", type=int, default=500, help="messages (default 500)")
    args = parser.parse_args()
    dirs = args.dirs or default_dirs()
    messages = [s.data for s in iter_messages(dirs) if s.data is not None][: args.limit]
    with tempfile.TemporaryDirectory(prefix="pyspamd-bench-clamd-") as tmp:
        server = start_clamd(Path(tmp) / "clamd")
        try:
            clamd = Clamd(str(server.socket_path))
            rows: list[tuple[str, str]] = [
                ("corpus", ", ".join(dirs)),
                ("messages", f"{len(messages)}, mean "
                             f"{sum(map(len, messages)) / len(messages) / 1024:.1f} KiB"),
            ]
            for mode in ("message", "attachments"):
                waits: list[float] = []
                ours = clamd_cpu = 0.0
                sent = 0
                for raw in messages:
                    items = [data for _, data in items_to_send(Task(raw), mode, 25 << 20,
                                                               Hits())]
                    if not items:
                        continue
                    sent += 1
                    before_ours, before_clamd = time.process_time(), cpu_seconds(server.proc.pid)
                    start = time.perf_counter()

                    async def scan_all(items: list[bytes] = items) -> None:
                        await asyncio.gather(*(clamd.instream(d, 10.0) for d in items))

                    asyncio.run(scan_all())
                    waits.append(time.perf_counter() - start)
                    ours += time.process_time() - before_ours
                    clamd_cpu += cpu_seconds(server.proc.pid) - before_clamd
                if not waits:
                    rows.append((f"{mode}: sent", "no message had such parts"))
                    continue
                rows += [
                    (f"{mode}: messages sent", str(sent)),
                    (f"{mode}: wait per message, ms", _ms(waits)),
                    (f"{mode}: clamd CPU per message, ms", f"{clamd_cpu / sent * 1000:.2f}"),
                    (f"{mode}: worker CPU per message, ms", f"{ours / sent * 1000:.2f}"),
                ]
            rows += _scan_ab(messages, str(server.socket_path), Path(tmp))
        finally:
            server.stop()
    print_measures(rows)
    return 0


def _scan_ab(messages: list[bytes], socket_path: str, tmp: Path) -> list[tuple[str, str]]:
    """Whole scans without (A) and with (B) the antivirus check, alternating."""
    scanners = {}
    for name, enabled in (("A", "false"), ("B", "true")):
        path = tmp / f"{name}.toml"
        path.write_text(f'[storage]\npath = "{tmp / "s.sqlite"}"\n[fuzzy]\nenabled = false\n'
                        f'[greylist]\nenabled = false\n[antivirus]\nenabled = {enabled}\n'
                        f'address = "{socket_path}"\n')
        scanners[name] = Scanner.from_config(load_config(path))
    times: dict[str, list[float]] = {"A": [], "B": []}
    for index, raw in enumerate(messages):
        for name in (("A", "B") if index % 2 == 0 else ("B", "A")):
            start = time.perf_counter()
            scanners[name].scan(raw)
            times[name].append(time.perf_counter() - start)
    added = [b - a for a, b in zip(times["A"], times["B"], strict=True)]
    return [("scan without antivirus (A), ms", _ms(times["A"])),
            ("scan with antivirus (B), ms", _ms(times["B"])),
            ("B - A per message, ms", _ms(added))]


if __name__ == "__main__":
    sys.exit(main())
