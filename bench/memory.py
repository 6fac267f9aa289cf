"""Worker memory and open files as messages go by, over the milter protocol.

    python bench/memory.py [--messages 21000] [--storage sqlite|redis] [--repo DIR] [DIR ...]

One worker (so every message goes through the process measured), corpus messages sent over
4 milter connections, each replaced by a new connection after 5 messages (as Postfix
reconnects per SMTP session). Prints the worker's RSS (anonymous and file-backed parts) and
open files (sockets among them) at the start and after 1,000, 5,000, 11,000 and --messages
messages. The store is a fresh one in the run's directory. --repo runs another
checkout's pyspamd (A/B).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]
sys.path.insert(0, str(REPO / "tests"))

from support import mta  # noqa: E402
from support.mta import Daemon, MtaSession  # noqa: E402
from support.paths import corpus_dirs  # noqa: E402
from support.ports import free_port, wait_for_port  # noqa: E402

from pyspamd.sources import iter_messages  # noqa: E402

PER_CONNECTION = 5


def process_stats(pid: int) -> tuple[float, float, float, int, int]:
    """(RSS, its anonymous and file-backed parts in MiB, open files, sockets among them).
    File-backed pages are mostly the SQLite store read through its memory map: shared with
    the page cache, they grow to the store's size and stop."""
    kib = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "RssAnon", "RssFile"):
            kib[name] = int(value.split()[0])
    fds = os.listdir(f"/proc/{pid}/fd")
    sockets = 0
    for fd in fds:
        with contextlib.suppress(OSError):
            sockets += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
    return (kib["VmRSS"] / 1024, kib["RssAnon"] / 1024, kib["RssFile"] / 1024, len(fds),
            sockets)


def send(port: int, messages: list[bytes], start: int, count: int, connections: int) -> int:
    failures = [0]

    def work(index: int) -> None:
        session = None
        sent = 0
        for n in range(start + index, start + count, connections):
            if session is None:
                session = MtaSession(port)
            try:
                session.send(messages[n % len(messages)])
            except (OSError, AssertionError):
                failures[0] += 1
                session.close()
                session = None
                continue
            sent += 1
            if sent % PER_CONNECTION == 0:
                session.close()
                session = None
        if session is not None:
            session.close()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return failures[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="*")
    parser.add_argument("--messages", type=int, default=21000)
    parser.add_argument("--storage", choices=("sqlite", "redis"), default="sqlite")
    parser.add_argument("--repo", type=Path)
    args = parser.parse_args()
    if args.repo:
        mta.REPO = args.repo.resolve()
    dirs = corpus_dirs(args.dirs)
    messages = [s.data for s in iter_messages(dirs) if s.data]
    workdir = Path(tempfile.mkdtemp(prefix="pyspamd-bench-memory-"))
    redis = None
    config = "[actions]\ngreylist = false\n"
    storage = f'[storage]\npath = "{workdir / "store.sqlite"}"\n'
    if args.storage == "redis":
        port = free_port()
        redis = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind",
             "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(port)
        storage = f'[storage]\nbackend = "redis"\nredis_url = "redis://127.0.0.1:{port}/0"\n'
    config += storage
    daemon = Daemon(workdir, config, workers=1)
    rows = []
    try:
        daemon.start()
        deadline = time.monotonic() + 10
        while not daemon.worker_pids() and time.monotonic() < deadline:
            time.sleep(0.1)
        (worker,) = daemon.worker_pids()
        send(daemon.port, messages, 0, 20, 1)  # warm: rules compiled, first connections
        rows.append(("20 (warm)", *process_stats(worker), 0, 0.0))
        done = 20
        for mark in sorted({m for m in (1000, 5000, 11000) if m < args.messages}
                           | {args.messages}):
            started = time.monotonic()
            failures = send(daemon.port, messages, done, mark - done, 4)
            rows.append((str(mark), *process_stats(worker), failures,
                         (mark - done) / (time.monotonic() - started)))
            done = mark
    finally:
        daemon.stop()
        if redis is not None:
            redis.kill()
            redis.wait()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"pyspamd from {mta.REPO}; storage {args.storage}; {len(messages)} corpus messages, "
          f"1 worker, 4 connections of {PER_CONNECTION} messages each at a time")
    print("messages  | RSS MiB | anon MiB | file MiB | open files | sockets | failures | msgs/s")
    for mark, rss, anon, mapped, fds, sockets, failures, rate in rows:
        print(f"{mark:>9} | {rss:7.1f} | {anon:8.1f} | {mapped:8.1f} | {fds:10d} | {sockets:7d} "
              f"| {failures:8d} | {rate:6.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
