"""Rate limits: token buckets on SQLite and on a real Redis (same results), atomic under
four concurrent processes, and the ratelimit check through the scanner."""

from __future__ import annotations

import itertools
import multiprocessing
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.messages import make_message
from support.redis_server import RedisCluster, RedisServer

from pyspamd.config import Config, ConfigError, RatelimitConfig, StorageConfig, load_config
from pyspamd.policy.ratelimit import RateError, parse_limit
from pyspamd.scanner import Scanner
from pyspamd.services import Services
from pyspamd.storage import open_storage
from pyspamd.task import Envelope

_prefixes = itertools.count()


@pytest.fixture(params=["sqlite", "redis", "redis-cluster"])
def storage_config(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StorageConfig]:
    if request.param == "sqlite":
        yield StorageConfig(backend="sqlite", path=str(tmp_path / "rl.sqlite"))
    elif request.param == "redis-cluster":
        cluster: RedisCluster = request.getfixturevalue("redis_cluster_proc")
        yield StorageConfig(backend="redis", redis_url=cluster.url, redis_cluster=True,
                            redis_prefix=f"rl{next(_prefixes)}")
    else:
        server: RedisServer = request.getfixturevalue("redis_proc")
        yield StorageConfig(backend="redis", redis_url=server.url,
                            redis_prefix=f"rl{next(_prefixes)}")


def test_parse_limits() -> None:
    limit = parse_limit("ip", "100 / 1h")
    assert (limit.count, limit.period, limit.text) == (100, 3600.0, "100 / 1h")
    assert parse_limit("rcpt", "5/m").period == 60.0
    assert parse_limit("user", " 20 / 2d ").rate == pytest.approx(20 / 172800)
    for bad in ("100", "100 / 1w", "0 / 1h", "x / 1h", "100 / 0h"):
        with pytest.raises(RateError):
            parse_limit("ip", bad)
    with pytest.raises(RateError, match="unknown key type"):
        parse_limit("helo", "1 / 1h")


def test_bucket_refills_at_its_rate(storage_config: StorageConfig) -> None:
    now = 1_800_000_000.0
    with open_storage(storage_config) as store:
        # 3 / 30s: a burst of three, then one token every ten seconds.
        results = [store.take_token("b", 3, 0.1, now)[0] for _ in range(4)]
        assert results == [True, True, True, False]
        assert store.take_token("b", 3, 0.1, now + 5)[0] is False
        taken, left = store.take_token("b", 3, 0.1, now + 10)
        assert taken and left == pytest.approx(0.0)
        assert store.take_token("b", 3, 0.1, now + 9)[0] is False  # the clock went back
        _, left = store.take_token("b", 3, 0.1, now + 1000)  # refilled to the cap, not more
        assert left == pytest.approx(2.0)
        assert store.take_token("other", 3, 0.1, now) == (True, 2.0)


def _hammer(config: StorageConfig, attempts: int, start: multiprocessing.synchronize.Barrier,
            out: multiprocessing.Queue) -> None:  # type: ignore[name-defined]
    store = open_storage(config)
    taken = 0
    try:
        start.wait(timeout=60)
        for _ in range(attempts):
            # 100 per 1,000 days: nothing refills while the test runs.
            if store.take_token("shared", 100, 100 / (1000 * 86400), time.time())[0]:
                taken += 1
        out.put((taken, None))
    except Exception as exc:
        out.put((taken, repr(exc)))
    finally:
        store.close()


def test_four_processes_share_one_bucket_atomically(storage_config: StorageConfig) -> None:
    ctx = multiprocessing.get_context("fork")  # as the milter's pre-forked workers
    out: multiprocessing.Queue = ctx.Queue()
    start = ctx.Barrier(4)  # all four begin together, so their takes interleave
    procs = [ctx.Process(target=_hammer, args=(storage_config, 60, start, out))
             for _ in range(4)]
    for proc in procs:
        proc.start()
    results = [out.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
    assert [error for _, error in results] == [None] * 4
    # 240 attempts on a bucket of 100: exactly 100 succeed, however they interleave.
    assert sum(taken for taken, _ in results) == 100


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def _scanner(storage: StorageConfig, limits: dict[str, str],
             exempt: list[str] | None = None) -> tuple[Scanner, Clock]:
    config = Config(storage=storage,
                    ratelimit=RatelimitConfig(limits=limits, exempt_networks=exempt or []))
    config.greylist.enabled = False
    config.bayes.enabled = False
    clock = Clock()
    return Scanner.from_config(config, services=Services(config, clock=clock)), clock


def test_check_defers_over_the_limit_and_names_it(storage_config: StorageConfig) -> None:
    scanner, clock = _scanner(storage_config, {"ip": "2 / 1h", "rcpt": "3 / 1d",
                                               "sender_domain": "100 / 1h"},
                              exempt=["10.0.0.0/8"])
    raw = make_message()
    env = Envelope(client_ip="192.0.2.1", mail_from="a@example.org", rcpts=("b@x.test",))
    assert [scanner.scan(raw, env).action for _ in range(2)] == ["no action"] * 2
    third = scanner.scan(raw, env)
    assert third.action == "soft reject"
    assert third.message == "Rate limit exceeded: 2 messages per 1h from client 192.0.2.1"
    assert third.symbols["RATELIMITED"].options == ["ip:192.0.2.1"]
    clock.now += 1800  # half an hour refills one token of "2 / 1h"
    assert scanner.scan(raw, env).action == "no action"
    # Another client, same recipient: the rcpt bucket (3 / 1d) is now empty.
    other = scanner.scan(raw, Envelope(client_ip="2001:db8::1", mail_from="c@example.org",
                                       rcpts=("B@x.test",)))
    assert other.action == "soft reject"
    assert other.message == "Rate limit exceeded: 3 messages per 1d to recipient b@x.test"
    # An exempt network is not counted at all.
    exempt = [scanner.scan(raw, Envelope(client_ip="10.9.9.9", rcpts=("new@x.test",))).action
              for _ in range(5)]
    assert exempt == ["no action"] * 5
    # The null sender has no sender bucket; a missing client IP has no ip bucket.
    bounce = scanner.scan(raw, Envelope(mail_from="", rcpts=("z@x.test",)))
    assert bounce.action == "no action"


def test_config_errors_point_at_lines(tmp_path: Path) -> None:
    path = tmp_path / "r.toml"
    path.write_text('[ratelimit]\nexempt_networks = ["nope"]\n[ratelimit.limits]\n'
                    'ip = "100 per hour"\nhelo = "1 / 1h"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    errors = info.value.errors
    assert any(e.startswith(f"{path}:4: ratelimit.limits.ip: '100 per hour' is not a rate")
               for e in errors), errors
    assert any(e.startswith(f"{path}:5: ratelimit.limits.helo: unknown key type") for e in errors)
    assert any(e.startswith(f"{path}:2: ratelimit.exempt_networks has 'nope'") for e in errors)


def test_store_down_fails_open(tmp_path: Path) -> None:
    from support.mta import free_port

    down = StorageConfig(backend="redis", redis_url=f"redis://127.0.0.1:{free_port()}/0",
                         redis_timeout=0.5)
    scanner, _ = _scanner(down, {"ip": "1 / 1h"})
    env = Envelope(client_ip="192.0.2.1", rcpts=("b@x.test",))
    assert [scanner.scan(make_message(), env).action for _ in range(2)] == ["no action"] * 2


def test_pyspamc_ratelimit_reset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pyspamd.cli.pyspamc import main as pyspamc_main

    store_path = tmp_path / "s.sqlite"
    config_path = tmp_path / "p.toml"
    config_path.write_text(f'[storage]\npath = "{store_path}"\n[greylist]\nenabled = false\n'
                           '[ratelimit.limits]\nip = "1 / 1d"\n')
    config = load_config(config_path)
    config.bayes.enabled = False
    scanner = Scanner.from_config(config)
    env = Envelope(client_ip="2001:db8:5::7", rcpts=("b@x.test",))
    assert [scanner.scan(make_message(), env).action for _ in range(2)] == [
        "no action", "soft reject"]
    args = ["-c", str(config_path), "ratelimit", "reset", "ip", "2001:db8:5::1"]
    assert pyspamc_main(args) == 0  # another address of the same /64 is the same bucket
    assert "ratelimit:ip:2001:db8:5::/64: reset" in capsys.readouterr().out
    assert scanner.scan(make_message(), env).action == "no action"
    assert pyspamc_main(["-c", str(config_path), "ratelimit", "reset", "helo", "x"]) == 2


def test_scan_prefix_lists_live_keys_on_every_backend(storage_config: StorageConfig) -> None:
    with open_storage(storage_config) as store:
        store.set("list:b[1]*", b"two")
        store.set("list:a_%", b"one")
        store.set("list:gone", b"x", ttl=0.05)
        store.set("lister", b"not under list:")
        store.take_token("list:bucket", 5, 1.0, 1000.0)
        time.sleep(0.1)
        rows = store.scan_prefix("list:")
        assert [k for k, _ in rows] == ["list:a_%", "list:b[1]*", "list:bucket"]
        assert rows[0][1] == b"one" and rows[2][1] == b"4|1000"  # same bytes on every backend
        assert store.scan_prefix("list:b[") == [("list:b[1]*", b"two")]
        assert len(store.scan_prefix("list:", limit=1)) == 1


def test_pyspamc_lists(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pyspamd.cli.pyspamc import main as pyspamc_main
    from pyspamd.policy.greylist import Greylister, Timing, Triplet

    store_path = tmp_path / "s.sqlite"
    config_path = tmp_path / "p.toml"
    config_path.write_text(f'[storage]\npath = "{store_path}"\n')
    assert pyspamc_main(["-c", str(config_path), "greylist", "list"]) == 0
    assert "0 triplet(s)" in capsys.readouterr().out  # no store yet: nothing, no error
    with open_storage(StorageConfig(path=str(store_path))) as store:
        clock = [1_800_000_000.0]
        grey = Greylister(store, Timing(300, 86400, 86400 * 35), lambda: clock[0])
        waiting = Triplet.make("192.0.2.0/24", "a@x.test", "b@y.test")
        passed = Triplet.make("2001:db8::/64", "", "c@y.test")
        grey.check([waiting, passed])
        clock[0] += 400
        grey.check([passed])
        store.take_token("ratelimit:ip:192.0.2.1/32", 10, 0.01, 1_800_000_000.0)
    assert pyspamc_main(["-c", str(config_path), "greylist", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == ["192.0.2.0/24|a@x.test|b@y.test  waiting  first seen 2027-01-15 08:00:00 UTC",
                   "2001:db8::/64|<>|c@y.test  passed  last passed 2027-01-15 08:06:40 UTC",
                   "2 triplet(s)"]
    assert pyspamc_main(["-c", str(config_path), "ratelimit", "list"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "ip:192.0.2.1/32  9.00 tokens left at 2027-01-15 08:00:00 UTC", "1 bucket(s)"]


def test_sqlite_store_shared_by_threads(tmp_path: Path) -> None:
    # pymilter runs each SMTP session in its own thread of a worker; they share the check's
    # store object, so each thread must get its own connection and transaction.
    import threading

    with open_storage(StorageConfig(path=str(tmp_path / "t.sqlite"))) as store:
        taken: list[bool] = []
        errors: list[str] = []

        def worker() -> None:
            try:
                for _ in range(50):
                    taken.append(store.take_token("threads", 120, 1e-9, time.time())[0])
            except Exception as exc:
                errors.append(repr(exc))

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert errors == []
        assert len(taken) == 200 and taken.count(True) == 120
