"""Soak: many messages through a real Postfix and the milter while workers die and Redis restarts.

    python bench/soak.py [--messages 20000] [--connections 8] [--per-connection 20]
                         [--kill-every 5] [--redis-every 40] [DIR ...]

A private Postfix (milter_default_action = tempfail, as docs/reliability-milter.md advises)
hands every message to pyspamd (2 workers, storage in a private Redis). Meanwhile the youngest
worker is killed with SIGKILL every --kill-every seconds (the oldest is left alone so its
memory can be followed) and Redis is stopped for 3 s every --redis-every seconds.

Every message carries X-Soak-Seq. Each SMTP answer is counted: 250 accepted, 5xx refused,
4xx deferred (the sender tries again up to 10 times, 1 s apart and on a new connection, as
an MTA would; what is still deferred then is counted as deferred). At the end the Maildir
is read: every accepted message must be there exactly once, and every delivered message must
carry a verdict header (X-Spamd-Result) or the header saying it was not scanned
(X-Pyspamd-Scan). The table shows
the counts, the messages lost or delivered without either header (both must be 0), and the
oldest worker's RSS and open files after 1,000 messages and at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Run as a script, this folder comes first on sys.path and bench/milter.py would stand in for
# pymilter's C module `milter`.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]
sys.path.insert(0, str(REPO / "tests"))

import aiosmtplib  # noqa: E402
from support import mta  # noqa: E402
from support.mta import Daemon  # noqa: E402
from support.paths import corpus_dirs  # noqa: E402
from support.ports import free_port  # noqa: E402
from support.postfix import MAILBOX, Postfix, running_postfix  # noqa: E402

from pyspamd.sources import iter_messages  # noqa: E402

RETRIES = 10


class Redis:
    """A private redis-server that can be stopped and started again on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="pyspamd-soak-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
             "--save", "", "--appendonly", "no", "--logfile", str(self.dir / "log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        mta.wait_for_port(self.port, timeout=10)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class Tally:
    accepted: set[int] = field(default_factory=set)
    refused: dict[int, int] = field(default_factory=dict)
    deferred: dict[int, int] = field(default_factory=dict)  # still 4xx after RETRIES
    deferrals: int = 0  # 4xx answers, retried
    disconnects: int = 0
    answered: int = 0


def worker_stats(pid: int) -> tuple[int, int] | None:
    """(RSS in KiB, open files) of a process; None once it has gone."""
    try:
        rss = 0
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
        return rss, len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def started_at(pid: int) -> int:
    """The process's start time in clock ticks since boot (pids wrap; this does not)."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return 0


def scanned_by(log: str, pid: int) -> int:
    return log.count(f"pyspamd[{pid}]: INFO pyspamd.task:")


def tag(raw: bytes, seq: int) -> bytes:
    head, _, body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
    lines = [line for line in head.split(b"\n")
             if not line.lower().startswith((b"to:", b"cc:", b"date:"))]
    lines += [f"To: {MAILBOX}".encode(), f"Date: {formatdate()}".encode(),
              f"X-Soak-Seq: {seq}".encode()]
    return b"\n".join(lines) + b"\n\n" + body


async def send_all(postfix: Postfix, corpus: list[bytes], total: int, connections: int,
                   per_connection: int, tally: Tally) -> None:
    queue: asyncio.Queue[tuple[int, int]] = asyncio.Queue()
    for seq in range(total):
        queue.put_nowait((seq, 0))
    pending = total

    async def sender() -> None:
        nonlocal pending
        smtp: aiosmtplib.SMTP | None = None
        sent = 0
        while pending > 0:
            if smtp is not None and sent >= per_connection:
                # SMTP sessions of a few messages, as clients send them: Postfix opens a
                # milter connection per session, so the workers see connections come and go.
                with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                    await smtp.quit()
                smtp, sent = None, 0
            try:
                seq, attempt = queue.get_nowait()
            except asyncio.QueueEmpty:
                await asyncio.sleep(0.1)
                continue
            raw = tag(corpus[seq % len(corpus)], seq)
            try:
                if smtp is None:
                    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=postfix.smtp_port,
                                           timeout=120)
                    await smtp.connect()
                sent += 1
                await smtp.sendmail("soak@example.org", [MAILBOX], raw)
                tally.accepted.add(seq)
            except aiosmtplib.SMTPResponseException as exc:
                if 400 <= exc.code < 500 and attempt + 1 < RETRIES:
                    # As an MTA does: try again later on a new connection (Postfix answers
                    # 4xx for the rest of an SMTP session whose milter connection broke).
                    tally.deferrals += 1
                    asyncio.get_running_loop().call_later(
                        1.0, queue.put_nowait, (seq, attempt + 1))
                    if smtp is not None:
                        smtp.close()
                    smtp = None
                    continue
                if 400 <= exc.code < 500:
                    tally.deferred[seq] = exc.code
                else:
                    tally.refused[seq] = exc.code
                if smtp is not None and smtp.is_connected:
                    try:
                        await smtp.rset()
                    except aiosmtplib.SMTPException:
                        smtp = None
            except (aiosmtplib.SMTPException, OSError):
                # No answer at all: the sender does not know, so it tries again.
                tally.disconnects += 1
                smtp = None
                asyncio.get_running_loop().call_later(1.0, queue.put_nowait, (seq, attempt))
                continue
            pending -= 1
            tally.answered += 1
        if smtp is not None and smtp.is_connected:
            await smtp.quit()

    await asyncio.gather(*(sender() for _ in range(connections)))


async def chaos(daemon: Daemon, redis: Redis, args: argparse.Namespace, done: asyncio.Event,
                kills: list[int]) -> None:
    next_kill = time.monotonic() + args.kill_every
    next_redis = time.monotonic() + args.redis_every
    while not done.is_set():
        await asyncio.sleep(0.2)
        now = time.monotonic()
        if args.kill_every and now >= next_kill:
            next_kill = now + args.kill_every
            workers = sorted(daemon.worker_pids(), key=started_at)
            if len(workers) > 1:
                victim = workers[-1]  # the youngest: the oldest is followed for memory
                os.kill(victim, signal.SIGKILL)
                kills.append(victim)
        if args.redis_every and now >= next_redis:
            next_redis = now + args.redis_every
            redis.stop()
            await asyncio.sleep(3)
            redis.start()
            redis.restarts += 1


async def run(postfix: Postfix, daemon: Daemon, redis: Redis, corpus: list[bytes],
              args: argparse.Namespace, tally: Tally) -> dict[str, object]:
    done = asyncio.Event()
    kills: list[int] = []
    memory: dict[str, object] = {}
    oldest = min(daemon.worker_pids(), key=started_at)

    async def watch() -> None:
        # The followed worker's last figures, kept in case it dies before the end.
        while not done.is_set():
            await asyncio.sleep(0.5)
            stats = worker_stats(oldest)
            if stats is None:
                continue
            if "at_1000" not in memory and tally.answered >= 1000:
                memory["at_1000"] = (stats, scanned_by(daemon.log(), oldest))
            memory["last"] = (stats, tally.answered)

    chaos_task = asyncio.create_task(chaos(daemon, redis, args, done, kills))
    watch_task = asyncio.create_task(watch())
    started = time.monotonic()
    await send_all(postfix, corpus, args.messages, args.connections, args.per_connection,
                   tally)
    memory["seconds"] = time.monotonic() - started
    done.set()
    await asyncio.gather(chaos_task, watch_task)
    memory["kills"] = len(kills)
    memory["oldest"] = oldest
    stats = worker_stats(oldest)
    memory["at_end"] = (stats or memory.get("last", ((0, 0), 0))[0],
                        scanned_by(daemon.log(), oldest))
    memory["followed_to_end"] = stats is not None
    return memory


def read_maildir(postfix: Postfix) -> tuple[Counter[int], int, int]:
    """How often each X-Soak-Seq arrived, how many arrived without a verdict header, and
    how many with the header saying they were not scanned."""
    seen: Counter[int] = Counter()
    bare = flagged = 0
    seq_re = re.compile(rb"^X-Soak-Seq: (\d+)", re.M)
    for sub in ("new", "cur"):
        folder = postfix.maildir / sub
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            data = path.read_bytes()
            head = data.split(b"\n\n", 1)[0]
            match = seq_re.search(head)
            if match:
                seen[int(match.group(1))] += 1
            if b"\nX-Pyspamd-Scan:" in head:
                flagged += 1
            elif b"\nX-Spamd-Result:" not in head:
                bare += 1
    return seen, bare, flagged


def wait_delivered(postfix: Postfix, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    folder = postfix.maildir / "new"
    while time.monotonic() < deadline:
        if folder.is_dir() and sum(1 for _ in folder.iterdir()) >= count:
            return
        time.sleep(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="*")
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--per-connection", type=int, default=20,
                        help="messages per SMTP session before the sender reconnects")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kill-every", type=float, default=5.0, help="seconds; 0: no kills")
    parser.add_argument("--redis-every", type=float, default=40.0,
                        help="seconds; 0: no Redis restarts")
    parser.add_argument("--corpus-size", type=int, default=3000)
    parser.add_argument("--repo", type=Path, help="run this checkout's pyspamd (A/B runs)")
    args = parser.parse_args()
    if args.repo:
        mta.REPO = args.repo.resolve()
    dirs = corpus_dirs(args.dirs)
    corpus = [s.data for s in iter_messages(dirs) if s.data][: args.corpus_size]
    random.Random(42).shuffle(corpus)

    redis = Redis()
    redis.start()
    workdir = Path(tempfile.mkdtemp(prefix="pyspamd-soak-"))
    config = (f'[storage]\nbackend = "redis"\nredis_url = "redis://127.0.0.1:{redis.port}/0"\n'
              "redis_timeout = 0.5\n[actions]\ngreylist = false\n")
    daemon = Daemon(workdir, config, workers=args.workers)
    tally = Tally()
    try:
        daemon.start()
        deadline = time.monotonic() + 10
        while len(daemon.worker_pids()) < args.workers and time.monotonic() < deadline:
            time.sleep(0.1)
        with running_postfix(daemon.port, default_action="tempfail") as postfix:
            memory = asyncio.run(run(postfix, daemon, redis, corpus, args, tally))
            wait_delivered(postfix, len(tally.accepted), timeout=600)
            seen, bare, flagged = read_maildir(postfix)
            log = daemon.log()
    finally:
        daemon.stop()
        redis.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)

    lost = sorted(tally.accepted - set(seen))
    twice = sorted(seq for seq, n in seen.items() if n > 1)
    unanswered = args.messages - len(tally.accepted) - len(tally.refused) - len(tally.deferred)
    (rss1, fds1), scanned1 = memory.get("at_1000", ((0, 0), 0))  # type: ignore[misc]
    (rss2, fds2), scanned2 = memory["at_end"]  # type: ignore[misc]
    seconds = float(memory["seconds"])  # type: ignore[arg-type]
    rows = [
        ("messages sent", str(args.messages), f"{seconds:.0f} s, "
         f"{args.messages / seconds:.0f} msgs/s, {args.connections} SMTP connections at a "
         f"time, {args.per_connection} messages each"),
        ("accepted (250)", str(len(tally.accepted)), ""),
        ("delivered to the Maildir", str(sum(seen.values())), ""),
        ("refused (5xx)", str(len(tally.refused)), "by verdict"),
        ("deferred (4xx) then accepted", str(tally.deferrals), "answers, retried 1 s later"),
        ("still deferred after retries", str(len(tally.deferred)), f"{RETRIES} tries"),
        ("no answer, retried", str(tally.disconnects), "SMTP connection lost"),
        ("LOST (accepted, not delivered)", str(len(lost)), "must be 0"),
        ("delivered twice", str(len(twice)), ""),
        ("never answered", str(unanswered), "must be 0"),
        ("delivered without verdict header", str(bare), "must be 0"),
        ("delivered marked not scanned", str(flagged), "X-Pyspamd-Scan (fail_action)"),
        ("workers killed (SIGKILL)", str(memory["kills"]), f"every {args.kill_every:g} s"),
        ("Redis restarts", str(redis.restarts), f"every {args.redis_every:g} s, 3 s down"),
        ("oldest worker RSS after ~1,000", f"{rss1 / 1024:.1f} MiB",
         f"{scanned1} scans by it, {fds1} open files"),
        ("oldest worker RSS at the end" if memory["followed_to_end"]
         else "oldest worker RSS, last seen", f"{rss2 / 1024:.1f} MiB",
         f"{scanned2} scans by it, {fds2} open files; ratio "
         f"{rss2 / rss1 if rss1 else 0:.2f}"),
        ("'died' lines in the log", str(log.count(" died (")), ""),
        ("health checks failed", str(log.count("health check of")),
         f"workers replaced {log.count('replacing its workers')} times"),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    print(f"pyspamd from {mta.REPO}; corpus {len(corpus)} messages from {', '.join(dirs)}")
    for row in rows:
        print(" | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
    return 0 if not lost and not bare and not unanswered else 1


if __name__ == "__main__":
    sys.exit(main())
