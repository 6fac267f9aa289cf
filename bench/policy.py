"""Cost per message of the policy checks' storage work: a rate-limit token, a greylist
triplet check, and the full scan of a greylist-band message with and without them.

    python bench/policy.py [--messages N] [--redis-url URL]

Runs on SQLite (a temp file) and on Redis (a private redis-server on a free port unless
--redis-url is given; keys under a bench-only prefix). One process, one core. Prints a table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the tests' private redis-server helper

from tables import print_markdown  # noqa: E402

from pyspamd.policy.greylist import Greylister, Timing, Triplet  # noqa: E402
from pyspamd.storage.base import Storage  # noqa: E402
from pyspamd.storage.redis_store import RedisStorage  # noqa: E402
from pyspamd.storage.sqlite_store import SqliteStorage  # noqa: E402


def timed(n: int, step: Callable[[int], object]) -> tuple[float, float]:
    times = []
    for i in range(n):
        start = time.perf_counter()
        step(i)
        times.append(time.perf_counter() - start)
    times.sort()
    return statistics.median(times) * 1000, times[int(len(times) * 0.99)] * 1000


def run(name: str, store: Storage, n: int) -> list[str]:
    token = timed(n, lambda i: store.take_token(f"bench:ip:{i % 500}", 1000, 1.0, time.time()))
    clock = [1_800_000_000.0]
    grey = Greylister(store, Timing(300, 86400, 86400 * 35), lambda: clock[0])
    first = timed(n, lambda i: grey.check([Triplet.make(f"10.{i >> 8 & 255}.{i & 255}.0/24",
                                                        f"s{i}@x.test", "r@y.test")]))
    clock[0] += 400
    retry = timed(n, lambda i: grey.check([Triplet.make(f"10.{i >> 8 & 255}.{i & 255}.0/24",
                                                        f"s{i}@x.test", "r@y.test")]))
    known = timed(n, lambda i: grey.check([Triplet.make(f"10.{i >> 8 & 255}.{i & 255}.0/24",
                                                        f"s{i}@x.test", "r@y.test")]))
    return [name, *(f"{p50:.3f} / {p99:.3f}" for p50, p99 in (token, first, retry, known))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--redis-url", help="use this Redis (keys under a bench-only prefix)")
    args = parser.parse_args()
    rows = []
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pyspamd-bench-")))
        with SqliteStorage(tmp / "policy.sqlite") as store:
            rows.append(run("SQLite", store, args.messages))
        url = args.redis_url
        if url is None:
            from support.redis_server import redis_server

            url = stack.enter_context(redis_server()).url
        prefix = f"benchpolicy{int(time.time())}"
        with RedisStorage(url, prefix=prefix) as store:
            try:
                rows.append(run("Redis", store, args.messages))
            finally:
                for key in store.client.scan_iter(f"{prefix}:*"):
                    store.client.delete(key)
    header = ["backend", "rate-limit token p50 / p99 ms", "greylist first sight",
              "greylist retry (pass)", "greylist known triplet"]
    print(f"{args.messages:,} operations each, one process")
    print_markdown(header, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
