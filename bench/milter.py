"""Milter throughput and latency: straight over the milter protocol, and through Postfix.

    python bench/milter.py [DIR ...] [--messages N] [--workers N]

Prints one table: msgs/s, p50/p99/max per message and CPU milliseconds per message (Postfix's
processes, the milter's, this client's) for
  (a) the milter protocol with 1 and 8 connections (no MTA),
  (b) Postfix with the milter and (c) Postfix without it, 8 SMTP connections,
  and the latency the milter adds per message on one SMTP connection.
Needs Postfix and the test extras (`pip install -e '.[test]'`); runs as root, on loopback,
with its own ports and directories. DIR defaults to ../shared/corpus/spamassassin, else corpus/.
--repo runs another checkout's pyspamd with this script (A/B runs alternate the two).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Run as a script, this file's folder comes first on sys.path and this file, milter.py, would
# stand in for pymilter's C module `milter` (the name the issue gives the benchmark).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]
sys.path.insert(0, str(REPO / "tests"))

import aiosmtplib  # noqa: E402
from support import mta  # noqa: E402
from support.mta import Daemon, MtaSession, free_port  # noqa: E402
from support.paths import corpus_dirs  # noqa: E402
from support.postfix import MAILBOX, Postfix, running_postfix  # noqa: E402

from pyspamd.sources import iter_messages  # noqa: E402


def load_messages(dirs: list[str], limit: int) -> list[bytes]:
    out = []
    for source in iter_messages(dirs):
        if source.data:
            out.append(source.data)
        if len(out) >= limit:
            break
    return out


def for_smtp(raw: bytes) -> bytes:
    """Corpus messages as a client would send them today: To our mailbox, a fresh Date."""
    head, sep, body = raw.partition(b"\n\n")
    lines = [line for line in head.split(b"\n")
             if not line.lower().startswith((b"to:", b"date:", b"cc:"))]
    lines += [f"To: {MAILBOX}".encode(), f"Date: {formatdate()}".encode()]
    return b"\n".join(lines) + (sep or b"\n\n") + body


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def cpu_seconds(root_pid: int) -> float:
    """CPU time of a process tree: the root, its reaped children, and live descendants.
    Postfix and the milter fork and reap workers, so per-process figures would miss some."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, int, int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fields = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # after the command: state, ppid, ... utime(11) stime(12) cutime(13) cstime(14)
        stats[int(name)] = (int(fields[1]), int(fields[11]) + int(fields[12]),
                            int(fields[13]) + int(fields[14]))
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    if root_pid not in stats:
        return 0.0
    total = stats[root_pid][1] + stats[root_pid][2]
    stack = list(children.get(root_pid, []))
    while stack:
        pid = stack.pop()
        total += stats[pid][1]
        stack.extend(children.get(pid, []))
    return total / tick


@dataclass
class CpuMeter:
    """CPU milliseconds per message spent by Postfix, the milter and this client."""

    postfix_pid: int
    milter_pid: int | None = None
    marks: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def _now(self) -> tuple[float, float, float]:
        milter = cpu_seconds(self.milter_pid) if self.milter_pid else 0.0
        return cpu_seconds(self.postfix_pid), milter, time.process_time()

    def start(self) -> None:
        self.marks = self._now()

    def per_message(self, count: int) -> tuple[float, float, float]:
        now = self._now()
        return tuple((b - a) * 1000 / count for a, b in zip(self.marks, now, strict=True))


def milter_direct(port: int, messages: list[bytes], connections: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    lock = threading.Lock()
    chunks = [messages[i::connections] for i in range(connections)]

    def run(chunk: list[bytes]) -> None:
        session = MtaSession(port)
        try:
            for raw in chunk:
                start = time.perf_counter()
                session.send(raw)
                with lock:
                    latencies.append(time.perf_counter() - start)
        finally:
            session.close()

    threads = [threading.Thread(target=run, args=(c,)) for c in chunks]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(messages) / (time.perf_counter() - start), latencies


def through_postfix(postfix: Postfix, messages: list[bytes], connections: int
                    ) -> tuple[float, list[float], int]:
    """Send over `connections` SMTP sessions; wait until the queue has delivered them."""
    latencies: list[float] = []
    refused = 0

    async def sender(chunk: list[bytes]) -> None:
        nonlocal refused
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=postfix.smtp_port,
                                   timeout=120) as smtp:
            for raw in chunk:
                start = time.perf_counter()
                try:
                    await smtp.sendmail("sender@example.org", [MAILBOX], raw)
                except aiosmtplib.SMTPResponseException:
                    refused += 1
                    await smtp.rset()
                latencies.append(time.perf_counter() - start)

    async def run() -> None:
        chunks = [messages[i::connections] for i in range(connections)]
        await asyncio.gather(*(sender(c) for c in chunks))

    postfix.clear_mailbox()
    start = time.perf_counter()
    asyncio.run(run())
    postfix.wait_delivered(len(messages) - refused, timeout=600)
    return len(messages) / (time.perf_counter() - start), latencies, refused


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="*")
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=0, help="milter workers (0: per CPU)")
    parser.add_argument("--repo", type=Path, help="run this checkout's pyspamd (A/B runs)")
    args = parser.parse_args()
    if args.repo:
        mta.REPO = args.repo.resolve()
    dirs = corpus_dirs(args.dirs)
    raw_messages = load_messages(dirs, args.messages)
    smtp_messages = [for_smtp(m) for m in raw_messages]
    rows: list[tuple[str, ...]] = []

    def row(name: str, rate: float, latencies: list[float], cpu: tuple[float, ...] = (),
            note: str = "") -> None:
        rows.append((name, f"{rate:.0f}", f"{statistics.median(latencies) * 1000:.2f} / "
                     f"{percentile(latencies, 0.99) * 1000:.2f} / {max(latencies) * 1000:.0f}",
                     " / ".join(f"{c:.2f}" for c in cpu), note))

    workdir = Path(tempfile.mkdtemp(prefix="pyspamd-bench-"))
    # No greylisting: loopback SMTP of 2002 mail scores a few points on its own, and every
    # message refused is delivery work the "with milter" run would skip. Rejects stay on.
    daemon = Daemon(workdir, "[actions]\ngreylist = false\n",
                    workers=args.workers or os.cpu_count() or 1)
    daemon.start()
    assert daemon.proc is not None
    try:
        milter_direct(daemon.port, raw_messages[:50], 1)  # warm up
        for connections in (1, 8):
            meter = CpuMeter(os.getpid(), daemon.proc.pid)
            meter.start()
            rate, lat = milter_direct(daemon.port, raw_messages, connections)
            _, milter_cpu, client_cpu = meter.per_message(len(raw_messages))
            row(f"(a) milter protocol, {connections} conn", rate, lat, (0, milter_cpu, client_cpu),
                "Postfix column: none")
        with running_postfix(daemon.port) as postfix:
            meter = CpuMeter(postfix.master_pid(), daemon.proc.pid)
            meter.start()
            rate, lat, refused = through_postfix(postfix, smtp_messages, 8)
            with_cpu = meter.per_message(len(smtp_messages))
            with_rate = rate
            row("(b) Postfix + milter, 8 SMTP conn", rate, lat, with_cpu,
                f"{refused} refused by verdict")
            _, one_with, _ = through_postfix(postfix, smtp_messages[:300], 1)
    finally:
        daemon.stop()
    with running_postfix(free_port(), default_action="accept") as postfix:
        postfix_no_milter(postfix)
        meter = CpuMeter(postfix.master_pid())
        meter.start()
        rate, lat, _ = through_postfix(postfix, smtp_messages, 8)
        alone_cpu = meter.per_message(len(smtp_messages))
        row("(c) Postfix alone, 8 SMTP conn", rate, lat, alone_cpu)
        _, one_without, _ = through_postfix(postfix, smtp_messages[:300], 1)
    added = statistics.median(one_with) - statistics.median(one_without)
    rows.append(("Postfix + milter vs alone", f"{with_rate / rate * 100:.0f}%", "", "",
                 "throughput"))
    rows.append(("added p50 latency, 1 SMTP conn", "", f"{added * 1000:.2f}", "",
                 f"{statistics.median(one_with) * 1000:.2f} vs "
                 f"{statistics.median(one_without) * 1000:.2f} ms"))
    # When the run is CPU-bound, throughput falls as CPU per message rises: this is the
    # milter CPU that would keep 80% of Postfix-alone throughput, given the other two.
    budget = sum(alone_cpu) / 0.8 - with_cpu[0] - with_cpu[2]
    rows.append(("milter CPU for 80% (CPU-bound)", "", "", f"{budget:.2f}",
                 f"used {with_cpu[1]:.2f} ms per message"))

    header = ("run", "msgs/s", "p50 / p99 / max ms", "CPU ms/msg Postfix / milter / client", "note")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print(f"pyspamd from {mta.REPO}; {len(raw_messages)} messages from {', '.join(dirs)}; "
          "milter workers: "
          f"{daemon.workers}; {os.cpu_count()} CPUs")
    for values in [header, tuple("-" * w for w in widths), *rows]:
        print(" | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)))
    return 0


def postfix_no_milter(postfix: Postfix) -> None:
    """The same instance with the milter lines taken out, so only the milter differs."""
    postfix.postfix("stop")
    main_cf = postfix.conf / "main.cf"
    lines = [line for line in main_cf.read_text().splitlines()
             if not line.startswith(("smtpd_milters", "non_smtpd_milters"))]
    main_cf.write_text("\n".join(lines) + "\n")
    postfix.postfix("start")
    time.sleep(1)


if __name__ == "__main__":
    sys.exit(main())
