"""pyspamc backup / restore / clear: the portable file restores into SQLite and into a real
Redis (tests/redis_server.py), and the restored store classifies exactly as the original."""

from __future__ import annotations

import gzip
import itertools
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.paths import CORPUS
from support.redis_server import RedisServer

from pyspamd.classifiers.bayes import Bayes
from pyspamd.cli.pyspamc import main as pyspamc
from pyspamd.config import Config, StorageConfig
from pyspamd.scanner import Scanner
from pyspamd.sources import iter_messages
from pyspamd.storage import Storage, open_storage

_prefixes = itertools.count()
MESSAGES = sorted(p for p in (CORPUS / "spam").rglob("*.eml"))[:40] + sorted(
    p for p in (CORPUS / "ham").rglob("*.eml"))[:40]


def _config_file(tmp_path: Path, storage: StorageConfig, name: str) -> Path:
    if storage.backend == "sqlite":
        text = f'[storage]\npath = "{storage.path}"\n'
    else:
        text = (f'[storage]\nbackend = "redis"\nredis_url = "{storage.redis_url}"\n'
                f'redis_prefix = "{storage.redis_prefix}"\n')
    path = tmp_path / f"{name}.toml"
    path.write_text(text + "[bayes]\nmin_learns = 5\n")
    return path


@pytest.fixture
def backends(tmp_path: Path, request: pytest.FixtureRequest) -> Callable[[str], StorageConfig]:
    def make(kind: str) -> StorageConfig:
        if kind == "sqlite":
            return StorageConfig(path=str(tmp_path / f"s{next(_prefixes)}.sqlite"))
        server: RedisServer = request.getfixturevalue("redis_proc")
        return StorageConfig(backend="redis", redis_url=server.url,
                             redis_prefix=f"bk{next(_prefixes)}")
    return make


def _probabilities(storage: Storage) -> list[float]:
    scanner = Scanner.from_config(Config())
    bayes = Bayes(storage, min_learns=5)
    out = []
    for source in iter_messages([str(p) for p in MESSAGES]):
        assert source.data is not None
        out.append(bayes.classify(scanner.task(source.data)).probability)
    return out


def _normal(storage: Storage) -> list[tuple]:
    records = storage.bayes_records()  # type: ignore[attr-defined]
    return sorted(r[:3] if r[0] == "learned" else r for r in records)


@pytest.fixture(scope="module")
def learned_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A SQLite store that learned some corpus spam and ham (and fitted its model)."""
    directory = tmp_path_factory.mktemp("learned")
    config = _config_file(directory, StorageConfig(path=str(directory / "s.sqlite")), "c")
    assert pyspamc(["-c", str(config), "learn_spam", *map(str, MESSAGES[:30])]) == 0
    assert pyspamc(["-c", str(config), "learn_ham", *map(str, MESSAGES[40:70])]) == 0
    yield config


@pytest.mark.parametrize(("source_kind", "target_kind"),
                         [("sqlite", "redis"), ("redis", "sqlite"), ("sqlite", "sqlite")])
def test_round_trip_classifies_the_same(
        tmp_path: Path, learned_sqlite: Path, backends: Callable[[str], StorageConfig],
        source_kind: str, target_kind: str) -> None:
    source_config = learned_sqlite
    if source_kind == "redis":  # Redis filled by a restore, then backed up from Redis
        redis = _config_file(tmp_path, backends("redis"), "src")
        assert pyspamc(["-c", str(learned_sqlite), "backup", str(tmp_path / "seed.gz")]) == 0
        assert pyspamc(["-c", str(redis), "restore", str(tmp_path / "seed.gz")]) == 0
        source_config = redis
    backup = tmp_path / "bayes.jsonl.gz"
    assert pyspamc(["-c", str(source_config), "backup", str(backup)]) == 0
    target = backends(target_kind)
    target_config = _config_file(tmp_path, target, "dst")
    assert pyspamc(["-c", str(target_config), "restore", str(backup)]) == 0

    from pyspamd.config import load_config

    with open_storage(load_config(source_config).storage) as a, open_storage(target) as b:
        before, after = _probabilities(a), _probabilities(b)
        assert a.bayes_stats().learned == b.bayes_stats().learned
        assert a.bayes_stats().tokens == b.bayes_stats().tokens
        # Every record comes back (Redis keeps no learn day: compared without it).
        assert _normal(a) == _normal(b)
    assert after == pytest.approx(before, abs=1e-12)
    # Bayes really votes here: spam and ham are told apart, so "the same" is not trivial.
    assert max(before[:30]) > 0.5 > min(before[40:70])


def test_file_format_is_documented_json_lines(tmp_path: Path, learned_sqlite: Path) -> None:
    backup = tmp_path / "b.jsonl.gz"
    assert pyspamc(["-c", str(learned_sqlite), "backup", str(backup)]) == 0
    lines = [json.loads(line) for line in gzip.decompress(backup.read_bytes()).splitlines()]
    assert lines[0]["format"] == "pyspamd-bayes-backup" and lines[0]["version"] == 1
    assert lines[0]["tokenizer"] == 2
    kinds = {next(iter(obj)) for obj in lines[1:-1]}
    assert kinds == {"totals", "token", "learned", "message", "model"}
    assert lines[-1]["end"]["learned"] == 60


def test_truncated_or_foreign_file_restores_nothing(
        tmp_path: Path, learned_sqlite: Path, capsys: pytest.CaptureFixture[str]) -> None:
    backup = tmp_path / "b.jsonl.gz"
    assert pyspamc(["-c", str(learned_sqlite), "backup", str(backup)]) == 0
    lines = gzip.decompress(backup.read_bytes()).decode().splitlines()
    cut = tmp_path / "cut.jsonl.gz"
    with gzip.open(cut, "wt") as out:
        out.write("\n".join(lines[:-5]) + "\n")
    target = _config_file(tmp_path, StorageConfig(path=str(tmp_path / "t.sqlite")), "t")
    assert pyspamc(["-c", str(target), "learn_spam", str(MESSAGES[0])]) == 0
    capsys.readouterr()
    assert pyspamc(["-c", str(target), "restore", str(cut)]) == 1
    assert "truncated (no end line); nothing restored" in capsys.readouterr().err
    foreign = tmp_path / "x.gz"
    with gzip.open(foreign, "wt") as out:
        out.write('{"hello": 1}\n')
    assert pyspamc(["-c", str(target), "restore", str(foreign)]) == 1
    assert "not a pyspamd Bayes backup" in capsys.readouterr().err
    # Not gzip, gzip of other text, compressed data cut short, a record that is not JSON:
    # one line each saying so, never Python's own words.
    plain, other, short, damaged = (tmp_path / n for n in ("p.txt", "o.gz", "s.gz", "d.gz"))
    plain.write_text("a mail message, not a backup\n")
    other.write_bytes(gzip.compress(b"\x00\xff not text at all"))
    short.write_bytes(backup.read_bytes()[:200])
    damaged.write_bytes(gzip.compress(("\n".join([lines[0], "{broken"]) + "\n").encode()))
    for path, said in ((plain, "not a pyspamd Bayes backup (not gzip-compressed)"),
                       (other, "not a pyspamd Bayes backup (no pyspamd-bayes-backup header)"),
                       (short, "damaged or cut short"),
                       (damaged, ":2: damaged record (not JSON)")):
        assert pyspamc(["-c", str(target), "restore", str(path)]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"pyspamc: {path}") and said in err, err
    # The store kept what it had.
    with open_storage(StorageConfig(path=str(tmp_path / "t.sqlite"))) as store:
        assert store.bayes_stats().learned["spam"] == 1


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_clear_needs_yes_and_empties_the_store(
        tmp_path: Path, learned_sqlite: Path, backends: Callable[[str], StorageConfig],
        kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    backup = tmp_path / "b.jsonl.gz"
    assert pyspamc(["-c", str(learned_sqlite), "backup", str(backup)]) == 0
    config = _config_file(tmp_path, backends(kind), "c")
    assert pyspamc(["-c", str(config), "restore", str(backup)]) == 0
    assert pyspamc(["-c", str(config), "clear"]) == 2
    assert "--yes" in capsys.readouterr().err
    assert pyspamc(["clear", "--yes", "-c", str(config)]) == 0
    from pyspamd.config import load_config

    with open_storage(load_config(config).storage) as store:
        stats = store.bayes_stats()
        assert stats.learned == {"spam": 0, "ham": 0} and stats.tokens == 0
        assert list(store.bayes_records()) == []  # type: ignore[attr-defined]
