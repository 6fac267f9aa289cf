"""Controller and scan-statistics benchmark; prints one table.

    python bench/controller.py [--messages DIR] [--requests N]

1. What recording a scan costs a milter worker: `record()` on the scanning path, and the
   batched write per message (one per flush interval) on SQLite and on Redis (a private
   redis-server on a free port, as the tests start).
2. What it adds to a message over the milter protocol: a daemon with one worker, one
   connection, the same messages with record_scans on and off (p50 per message).
3. POST /checkv2 requests/s and latency against a `pyspamd controller` process, with 1 and
   8 keep-alive connections.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# bench/ itself off the path: its milter.py would hide pymilter's `milter` module.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]
sys.path.insert(0, str(REPO / "tests"))

import http.client  # noqa: E402

from support.controller_proc import running_controller  # noqa: E402
from support.mta import MtaSession, running_daemon  # noqa: E402

from pyspamd.config import load_config  # noqa: E402
from pyspamd.scanner import Scanner  # noqa: E402
from pyspamd.sources import iter_messages  # noqa: E402
from pyspamd.stats.recorder import ScanRecorder  # noqa: E402
from pyspamd.storage.base import Storage  # noqa: E402
from pyspamd.storage.redis_store import RedisStorage  # noqa: E402
from pyspamd.storage.sqlite_store import SqliteStorage  # noqa: E402
from pyspamd.task import Envelope  # noqa: E402


def load(directory: str, limit: int) -> list[bytes]:
    out = [s.data for s in iter_messages([directory]) if s.data and s.data.strip()]
    return out[:limit]


def recording_cost(messages: list[bytes], make: dict[str, Storage]) -> list[tuple[str, str]]:
    scanner = Scanner.from_config(load_config(None))
    results = [scanner.scan(m) for m in messages]
    envelope = Envelope(client_ip="192.0.2.1", mail_from="a@example.org",
                        rcpts=("b@example.net", "c@example.net"), queue_id="4ABCDEF")
    rows = []
    recorder = ScanRecorder(next(iter(make.values())), flush_interval=3600)
    rounds = 200_000
    start = time.perf_counter()
    for n in range(rounds):
        recorder.record(results[n % len(results)], envelope, 5000)
    per_call = (time.perf_counter() - start) / rounds * 1e6
    recorder._scans.clear()  # not written: this part measured the append only
    rows.append(("record() on the scanning path", f"{per_call:.2f} µs per message"))
    for name, storage in make.items():
        recorder = ScanRecorder(storage, history_size=1000, flush_interval=3600)
        # One flush interval's worth of mail at a busy site, then one write.
        for batch in (100, 1000):
            times = []
            for _ in range(5):
                for n in range(batch):
                    recorder.record(results[n % len(results)], envelope, 5000)
                start = time.perf_counter()
                assert recorder.flush()
                times.append(time.perf_counter() - start)
            cost = statistics.median(times) / batch * 1e6
            rows.append((f"flush of {batch} scans, {name}",
                         f"{statistics.median(times) * 1000:.1f} ms = {cost:.1f} µs per message "
                         "(background thread)"))
    return rows


def milter_latency(messages: list[bytes], workdir: Path) -> list[tuple[str, str]]:
    """Two daemons side by side, recording on and off, fed alternately message by message,
    so load from other processes on the machine hits both the same."""
    with ExitStack() as stack:
        sessions = {}
        for record in (False, True):
            sub = workdir / f"milter-{record}"
            sub.mkdir()
            config = (f"[storage]\npath = \"{sub / 'store.sqlite'}\"\n[greylist]\n"
                      f"enabled = false\n[controller]\nenabled = false\n"
                      f"record_scans = {str(record).lower()}\n")
            daemon = stack.enter_context(running_daemon(sub, config, workers=1))
            session = MtaSession(daemon.port)
            stack.callback(session.close)
            sessions[record] = session
        times: dict[bool, list[float]] = {False: [], True: []}
        for round_number in range(4):
            for m in messages:
                for record, session in sessions.items():
                    start = time.perf_counter()
                    session.send(m)
                    if round_number:  # the first round warms up
                        times[record].append(time.perf_counter() - start)
    p50 = {record: statistics.median(t) for record, t in times.items()}
    rows = [(f"milter, 1 connection, record_scans = {str(record).lower()}",
             f"p50 {p50[record] * 1000:.3f} ms, mean {statistics.fmean(times[record]) * 1000:.3f}"
             f" ms over {len(times[record])} messages") for record in (False, True)]
    rows.append(("milter: added by recording (p50 difference)",
                 f"{(p50[True] - p50[False]) * 1e6:+.0f} µs per message"))
    return rows


def checkv2_rate(messages: list[bytes], requests: int, workdir: Path) -> list[tuple[str, str]]:
    rows = []
    workdir.mkdir()
    with running_controller(workdir, "scan_threads = 4\n[greylist]\nenabled = false\n") as c:
        for connections in (1, 8):
            def worker(index: int, connections: int = connections) -> list[float]:
                conn = http.client.HTTPConnection("127.0.0.1", c.port, timeout=60)
                times = []
                for n in range(index, requests, connections):
                    body = messages[n % len(messages)]
                    start = time.perf_counter()
                    conn.request("POST", "/checkv2", body, {"IP": "192.0.2.1",
                                                           "Rcpt": "b@example.net"})
                    response = conn.getresponse()
                    answer = response.read()
                    assert response.status == 200, (response.status, answer[:300])
                    times.append(time.perf_counter() - start)
                conn.close()
                return times

            start = time.perf_counter()
            with ThreadPoolExecutor(connections) as pool:
                times = [t for ts in pool.map(worker, range(connections)) for t in ts]
            elapsed = time.perf_counter() - start
            times.sort()
            rows.append((f"POST /checkv2, {connections} connection(s)",
                         f"{len(times) / elapsed:.0f} requests/s, p50 "
                         f"{times[len(times) // 2] * 1000:.1f} ms, p99 "
                         f"{times[int(len(times) * 0.99)] * 1000:.1f} ms"))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", default=str(REPO / "corpus"), metavar="DIR")
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    messages = load(args.messages, 400)
    rows: list[tuple[str, str]] = [("messages", f"{len(messages)} from {args.messages}")]
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-ctl-")))
        from support.redis_server import redis_server

        url = stack.enter_context(redis_server()).url
        stores: dict[str, Storage] = {"SQLite": SqliteStorage(workdir / "stats.sqlite"),
                                      "Redis": RedisStorage(url, prefix="bench")}
        rows += recording_cost(messages, stores)
        rows += milter_latency(messages, workdir)
        rows += checkv2_rate(messages, args.requests, workdir / "controller")
    width = max(len(r[0]) for r in rows)
    print(f"| {'measure':<{width}} | value |")
    print(f"|{'-' * (width + 2)}|-------|")
    for name, value in rows:
        print(f"| {name:<{width}} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
