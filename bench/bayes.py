"""Bayes speed and store size, SQLite and Redis: learn msgs/s, classify p50/p99, bytes/msg.

    python bench/bayes.py [--spam DIR] [--ham DIR] [--redis-url URL]

Defaults: the SpamAssassin corpus in ../shared/corpus/spamassassin when present, else
corpus/. Without --redis-url a private redis-server is started on a free port (as the
tests do) and stopped afterwards. Messages are held in memory; each backend starts empty.

Measured per backend:
  learn, end to end    parse + tokenize + store + fitting the logistic model at the end,
                       as `pyspamc learn_*` does it
  model fit            that last step alone: read every learned message, fit the
                       logistic model (liblinear), write it
  learn, store only    tokens given: what the backend itself sustains
  classify             tokenize + look up + combine on a parsed message (the scan engine
                       has parsed it already for the rules), p50 and p99
  look-up + combine    tokens given (one read of the totals; the model is held in
                       memory, as in a milter worker, after its first read)
  store size           per 1,000 messages learned
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

import numpy as np
from tables import print_markdown

from pyspamd.classifiers.bayes import Bayes
from pyspamd.classifiers.tokenizer import Tokens
from pyspamd.sources import iter_messages
from pyspamd.storage.base import HAM, SPAM, Storage
from pyspamd.storage.redis_store import RedisStorage
from pyspamd.storage.sqlite_store import SqliteStorage
from pyspamd.task import Task

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))


def default_dir(name: str) -> str:
    shared = REPO.parent / "shared" / "corpus" / "spamassassin"
    return str((shared if shared.is_dir() else REPO / "corpus") / name)


def parsed(raw: bytes) -> Task:
    task = Task(raw)
    # What the scan engine computes for its rules before Bayes runs.
    _ = task.body_text, task.urls, task.received, task.parts, task.from_address
    return task


def run_backend(name: str, make: Callable[[str], Storage],
                messages: list[tuple[bytes, str]]) -> list[str]:
    # 1. end to end, into an empty store
    storage = make("e2e")
    bayes = Bayes(storage, min_learns=0)
    start = time.perf_counter()
    with storage.batch():
        for raw, label in messages:
            bayes.learn(Task(raw), label)
    fit_start = time.perf_counter()
    bayes.fit_model()
    fit_time = time.perf_counter() - fit_start
    learn_e2e = len(messages) / (time.perf_counter() - start)
    storage.close()  # SQLite: folds the write-ahead log into the file, the size at rest
    storage = make("e2e")
    stats = storage.bayes_stats()
    learned = sum(stats.learned.values())
    storage.close()
    # 2. store only: the same, with tokens given, into another empty store
    tokens = [bayes.tokens(parsed(raw)) for raw, _ in messages]
    storage = make("store")
    bayes = Bayes(storage, min_learns=0)
    start = time.perf_counter()
    with storage.batch():
        for t, (_, label) in zip(tokens, messages, strict=True):
            bayes.learn_tokens(t, label)
    bayes.fit_model()
    learn_store = len(messages) / (time.perf_counter() - start)
    # 3. classify a sample of messages against the full store
    sample = messages[:: max(1, len(messages) // 1000)]
    tasks = [parsed(raw) for raw, _ in sample]
    with_tokenize = _timed(lambda i: bayes.classify(tasks[i]), len(tasks))
    sample_tokens: list[Tokens] = [bayes.tokens(t) for t in tasks]
    lookup_only = _timed(lambda i: bayes.classify_tokens(sample_tokens[i]), len(tasks))
    storage.close()
    per_1000 = stats.size_bytes / max(learned, 1) * 1000
    return [
        name,
        f"{learn_e2e:,.0f}",
        f"{learn_store:,.0f}",
        f"{fit_time:.1f}",
        f"{np.percentile(with_tokenize, 50):.2f} / {np.percentile(with_tokenize, 99):.2f}",
        f"{np.percentile(lookup_only, 50):.2f} / {np.percentile(lookup_only, 99):.2f}",
        f"{stats.tokens:,}",
        f"{per_1000 / 2**20:.1f} MiB",
    ]


def _timed(fn: Callable[[int], object], n: int) -> list[float]:
    fn(0)  # warm
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spam", default=default_dir("spam"))
    parser.add_argument("--ham", default=default_dir("ham"))
    parser.add_argument("--redis-url", help="use this Redis (keys under a bench-only prefix)")
    args = parser.parse_args()
    messages = [(s.data, label) for label, folder in ((SPAM, args.spam), (HAM, args.ham))
                for s in iter_messages([folder]) if s.data is not None]
    # Mixed classes, as a site learns them; the same order for both backends.
    order = np.random.default_rng(0).permutation(len(messages))
    messages = [messages[i] for i in order]
    if not messages:
        print("no messages", file=sys.stderr)
        return 1
    sizes = [len(raw) for raw, _ in messages]
    print(f"{len(messages):,} messages ({sum(1 for _, lab in messages if lab == SPAM):,} spam),"
          f" mean {statistics.mean(sizes) / 1024:.1f} KiB; one core")
    rows = []
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pyspamd-bench-")))
        rows.append(run_backend("SQLite", lambda run: SqliteStorage(tmp / f"{run}.sqlite"),
                                messages))
        url = args.redis_url
        if url is None:
            from support.redis_server import redis_server

            url = stack.enter_context(redis_server()).url
        prefix = f"bench{int(time.time())}"
        try:
            rows.append(run_backend("Redis", lambda run: RedisStorage(url, prefix=prefix + run),
                                    messages))
        finally:
            if args.redis_url:  # leave a shared server as it was
                client = RedisStorage(url).client
                for key in client.scan_iter(f"{prefix}*"):
                    client.delete(key)
    header = ["backend", "learn msgs/s, end to end", "learn msgs/s, store only", "model fit s",
              "classify p50 / p99 ms", "look-up + combine p50 / p99 ms", "tokens stored",
              "store per 1,000 msgs"]
    print_markdown(header, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
