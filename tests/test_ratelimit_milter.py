"""A rate limit enforced by a real pyspamd daemon whose four workers share the bucket in
SQLite or in Redis: four concurrent milter connections, exactly the limit gets through."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from support.messages import make_message
from support.mta import MtaSession, running_daemon
from support.paths import REPO
from support.redis_server import RedisServer

LIMIT = 25
PER_CONNECTION = 12


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_four_workers_share_one_limit(tmp_path: Path, backend: str,
                                      request: pytest.FixtureRequest) -> None:
    if backend == "redis":
        server: RedisServer = request.getfixturevalue("redis_proc")
        storage = f'[storage]\nbackend = "redis"\nredis_url = "{server.url}"\n' \
                  f'redis_prefix = "rlm{tmp_path.name}"\n'
    else:
        storage = f'[storage]\npath = "{tmp_path / "store.sqlite"}"\n'
    config = (f'[rules]\ndirs = ["{REPO / "rules"}"]\n[greylist]\nenabled = false\n{storage}'
              f'[ratelimit.limits]\nip = "{LIMIT} / 1d"\n')
    with running_daemon(tmp_path, config, workers=4) as daemon:
        replies: list[str] = []
        lock = threading.Lock()

        def client(index: int) -> None:
            session = MtaSession(daemon.port, client_ip="192.0.2.44")
            try:
                for n in range(PER_CONNECTION):
                    result = session.send(make_message({"Subject": f"m {index} {n}"}))
                    with lock:
                        replies.append(result.reply)
            finally:
                session.close()

        threads = [threading.Thread(target=client, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert len(replies) == 4 * PER_CONNECTION
        deferred = [r for r in replies if r]
        assert len(replies) - len(deferred) == LIMIT
        assert set(deferred) == {"451 4.7.1 Rate limit exceeded: 25 messages per 1d from "
                                 "client 192.0.2.44"}
        assert len({line.split("]")[0] for line in daemon.log().splitlines()
                     if "pyspamd.task" in line}) >= 2  # more than one worker did the work
