"""Fixtures shared by the test files, and the markers of the suites that start servers.
Helpers (message builders, server starters) are in tests/support/."""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.network_lab import Lab, network_lab
from support.redis_server import RedisCluster, RedisServer, redis_cluster, redis_server

from pyspamd.config import Config, ModelConfig, RulesConfig, load_config
from pyspamd.scanner import Scanner
from pyspamd.storage.base import Storage
from pyspamd.storage.redis_store import RedisStorage
from pyspamd.storage.sqlite_store import SqliteStorage

# Tests that run on built-in defaults must not read (or write) a Bayes store the machine
# may have in /var/lib/pyspamd: point the default store at an empty directory of our own.
os.environ["PYSPAMD_DATA_DIR"] = tempfile.mkdtemp(prefix="pyspamd-test-data-")
atexit.register(shutil.rmtree, os.environ["PYSPAMD_DATA_DIR"], ignore_errors=True)
# Nor the machine's /etc/pyspamd/pyspamd.toml (a pyspamd installed there): commands run
# without --config read this empty file, which means the built-in defaults.
os.environ["PYSPAMD_CONFIG"] = str(Path(os.environ["PYSPAMD_DATA_DIR"]) / "defaults.toml")
Path(os.environ["PYSPAMD_CONFIG"]).write_text("")



@pytest.fixture(autouse=True)
def _pyspamd_logger_restored() -> Iterator[None]:
    """Commands run in-process (pyspamc quarantine release, pyspamd's start-up) point the
    "pyspamd" logger at syslog or a file; the next test must find it as pytest left it."""
    logger = logging.getLogger("pyspamd")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    for handler in logger.handlers:
        if handler not in saved[0]:
            handler.close()
    logger.handlers[:], logger.level, logger.propagate = saved


# The fixtures that start a server, and the marker (pyproject.toml) their tests get, so
# `pytest -m "not redis"` leaves them out. Suites that start their server inside the test
# mark themselves (pytestmark).
SERVER_FIXTURES = {"redis_proc": "redis", "redis_cluster_proc": "redis", "lab": "dns",
                   "postfix": "postfix"}
# Parameters that pick a Redis backend: their fixture asks for redis_proc only when it runs.
REDIS_PARAMS = {"redis", "redis-cluster"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        for fixture, marker in SERVER_FIXTURES.items():
            if fixture in fixtures:
                item.add_marker(marker)
        callspec = getattr(item, "callspec", None)
        if callspec is not None and any(isinstance(v, str) and v in REDIS_PARAMS
                                        for v in callspec.params.values()):
            item.add_marker("redis")


@pytest.fixture(scope="session")
def default_scanner() -> Scanner:
    """The scanner with built-in defaults: the shipped rules in rules/."""
    return Scanner.from_config(load_config(None))


@pytest.fixture
def rules_scanner(tmp_path: Path) -> Callable[[str], Scanner]:
    """Build a scanner that reads only the given rule text (plus built-in checks; not the
    content model, whose vote would move the scores these tests check)."""

    def build(text: str) -> Scanner:
        rule_dir = tmp_path / "rules"
        rule_dir.mkdir(exist_ok=True)
        (rule_dir / "test.rules").write_text(text, encoding="utf-8")
        return Scanner.from_config(Config(rules=RulesConfig(dirs=[str(rule_dir)]),
                                          model=ModelConfig(enabled=False)))

    return build


@pytest.fixture(scope="session")
def redis_proc() -> Iterator[RedisServer]:
    """One private redis-server for the session (see tests/support/redis_server.py)."""
    with redis_server() as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster_proc() -> Iterator[RedisCluster]:
    """A private three-node Redis Cluster for the session."""
    with redis_cluster() as cluster:
        yield cluster


_prefixes = itertools.count()


@pytest.fixture(params=["sqlite", "redis", "redis-cluster"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    """A store of each backend: SQLite, Redis, Redis Cluster."""
    if request.param == "sqlite":
        storage: Storage = SqliteStorage(tmp_path / "store.sqlite")
    elif request.param == "redis-cluster":
        cluster: RedisCluster = request.getfixturevalue("redis_cluster_proc")
        storage = RedisStorage(cluster.url, prefix=f"store{next(_prefixes)}", cluster=True)
    else:
        server: RedisServer = request.getfixturevalue("redis_proc")
        # A fresh prefix per test instead of FLUSHALL: tests never wipe a server.
        storage = RedisStorage(server.url, prefix=f"store{next(_prefixes)}")
    yield storage
    storage.close()


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A Knot DNS server with the network checks' test zones (tests/support/network_lab.py)."""
    with network_lab(tmp_path_factory.mktemp("lab")) as world:
        yield world
