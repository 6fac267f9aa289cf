"""Milter load patterns shared by the accept tests and bench/accept.py: connection churn,
a steady load over long-lived connections, and one message per connection (as Postfix opens
one milter connection per SMTP session)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from support.mta import MtaSession


@dataclass
class Figures:
    verdicts: int = 0
    failures: list[str] = field(default_factory=list)
    optneg: list[float] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def failed(self, what: str) -> None:
        with self.lock:
            self.failures.append(what)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else 0.0


def run_threads(count: int, target: Callable[[int], None]) -> None:
    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def churn(port: int, connections: int, threads: int = 8) -> int:
    """Open and close connections as fast as possible; returns how many connected."""
    done = [0] * threads

    def work(index: int) -> None:
        for _ in range(index, connections, threads):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 5):
                done[index] += 1

    run_threads(threads, work)
    return sum(done)


def load(port: int, messages: list[bytes], connections: int, figures: Figures) -> None:
    def work(index: int) -> None:
        try:
            session = MtaSession(port)
        except OSError as exc:
            figures.failed(f"load connect: {exc}")
            return
        try:
            for raw in messages[index::connections]:
                start = time.perf_counter()
                session.send(raw)
                with figures.lock:
                    figures.latency.append(time.perf_counter() - start)
                    figures.verdicts += 1
        except (OSError, AssertionError) as exc:
            figures.failed(f"load: {type(exc).__name__}: {exc}")
        finally:
            session.close()

    run_threads(connections, work)


def one_per_connection(port: int, messages: list[bytes], count: int, parallel: int,
                       figures: Figures) -> None:
    def work(index: int) -> None:
        for n in range(index, count, parallel):
            raw = messages[n % len(messages)]
            start = time.perf_counter()
            try:
                session = MtaSession(port)  # connect, OPTNEG, CONNECT, HELO
            except (OSError, AssertionError) as exc:
                figures.failed(f"connect: {type(exc).__name__}: {exc}")
                continue
            negotiated = time.perf_counter()
            try:
                session.send(raw)
                end = time.perf_counter()
                with figures.lock:
                    figures.optneg.append(negotiated - start)
                    figures.latency.append(end - negotiated)
                    figures.verdicts += 1
            except (OSError, AssertionError) as exc:
                figures.failed(f"message: {type(exc).__name__}: {exc}")
            finally:
                session.close()

    run_threads(parallel, work)
