"""Shared test helpers: building raw messages and scanners over rule text."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from redis_server import RedisCluster, RedisServer, redis_cluster, redis_server

from pyspamd.config import Config, ModelConfig, RulesConfig, load_config
from pyspamd.scanner import Scanner

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "corpus"

# Tests that run on built-in defaults must not read (or write) a Bayes store the machine
# may have in /var/lib/pyspamd: point the default store at an empty directory of our own.
os.environ["PYSPAMD_DATA_DIR"] = tempfile.mkdtemp(prefix="pyspamd-test-data-")
atexit.register(shutil.rmtree, os.environ["PYSPAMD_DATA_DIR"], ignore_errors=True)


def make_message(
    headers: dict[str, str] | list[tuple[str, str]] | None = None,
    body: str = "Hello,\n\nsee you at lunch.\n",
) -> bytes:
    """A raw RFC 5322 message; default headers make it well-formed ham."""
    defaults = [
        ("Received", "from mail.example.org (mail.example.org [192.0.2.10]) by mx.example.net "
                     "with ESMTP id 4A1B2C; Mon, 6 Jan 2003 10:00:05 +0000"),
        ("From", "Alice Example <alice@example.org>"),
        ("To", "bob@example.net"),
        ("Subject", "Lunch on Friday"),
        ("Date", "Mon, 6 Jan 2003 10:00:00 +0000"),
        ("Message-ID", "<20030106100000.1234@mail.example.org>"),
        ("MIME-Version", "1.0"),
        ("Content-Type", "text/plain; charset=us-ascii"),
    ]
    items = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    names = {n.lower() for n, _ in items}
    merged = [(n, v) for n, v in defaults if n.lower() not in names] + items
    head = "".join(f"{n}: {v}\n" for n, v in merged if v is not None)
    return (head + "\n" + body).encode("utf-8")


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
    """One private redis-server for the session (see tests/redis_server.py)."""
    with redis_server() as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster_proc() -> Iterator[RedisCluster]:
    """A private three-node Redis Cluster for the session."""
    with redis_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A Knot DNS server with the network checks' test zones (tests/network_lab.py)."""
    from network_lab import network_lab

    with network_lab(tmp_path_factory.mktemp("lab")) as world:
        yield world
