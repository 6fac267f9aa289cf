"""Storage: the same behaviour from SQLite and from a real Redis server."""

from __future__ import annotations

import itertools
import sqlite3
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import redis
from support.redis_server import RedisServer, free_port

from pyspamd.config import StorageConfig
from pyspamd.storage import open_storage
from pyspamd.storage.base import HAM, SPAM, BatchError, LearnOutcome, Storage, StorageError
from pyspamd.storage.redis_store import RedisStorage
from pyspamd.storage.sqlite_store import SqliteStorage

_prefixes = itertools.count()


def toks(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.uint64)


BIG = 2**64 - 5  # above 2**63: must survive the signed SQLite integer round trip


def test_learn_counts_and_totals(store: Storage) -> None:
    assert store.learn(b"d1" * 8, toks(1, 2, BIG), SPAM, 100) is LearnOutcome.LEARNED
    assert store.learn(b"d2" * 8, toks(2, 3), HAM, 100) is LearnOutcome.LEARNED
    assert store.learn(b"d3" * 8, toks(2, BIG), SPAM, 100) is LearnOutcome.LEARNED
    counts = store.token_counts(toks(BIG, 2, 3, 1, 99))
    assert counts.spam.tolist() == [2, 2, 0, 1, 0]
    assert counts.ham.tolist() == [0, 1, 1, 0, 0]
    assert (counts.nspam, counts.nham) == (2, 1)
    stats = store.bayes_stats()
    assert stats.learned == {SPAM: 2, HAM: 1} and stats.tokens == 4 and stats.size_bytes > 0


def test_relearn_is_skipped_and_other_class_moves(store: Storage) -> None:
    digest = b"m" * 16
    store.learn(digest, toks(5, 6), SPAM, 100)
    assert store.learn(digest, toks(5, 6), SPAM, 100) is LearnOutcome.ALREADY
    assert store.token_counts(toks(5)).spam.tolist() == [1]  # counted once
    assert store.learn(digest, toks(5, 6), HAM, 100) is LearnOutcome.MOVED
    counts = store.token_counts(toks(5, 6))
    assert counts.spam.tolist() == [0, 0] and counts.ham.tolist() == [1, 1]
    assert (counts.nspam, counts.nham) == (0, 1)
    assert store.learned_as(digest) == HAM
    assert store.unlearn(digest, toks(5, 6)) is LearnOutcome.UNLEARNED
    assert store.unlearn(digest, toks(5, 6)) is LearnOutcome.NOT_LEARNED
    assert store.learned_as(digest) is None
    assert store.bayes_stats().tokens == 0  # rows at zero are removed, not kept
    assert store.token_counts(toks(5)).nham == 0


def test_batch_gives_the_same_counts(store: Storage) -> None:
    rng = np.random.default_rng(1)
    messages = [np.unique(rng.integers(0, 50, 20).astype(np.uint64)) for _ in range(30)]
    with store.batch():
        for n, tokens in enumerate(messages):
            label = SPAM if n % 3 else HAM
            assert store.learn(bytes([n]) * 16, tokens, label, 7) is LearnOutcome.LEARNED
        # the same message twice within one batch is still counted once
        assert store.learn(bytes([1]) * 16, messages[1], SPAM, 7) is LearnOutcome.ALREADY
    counts = store.token_counts(np.arange(50, dtype=np.uint64))
    expected_spam = np.zeros(50, dtype=int)
    expected_ham = np.zeros(50, dtype=int)
    for n, tokens in enumerate(messages):
        (expected_spam if n % 3 else expected_ham)[tokens.astype(int)] += 1
    assert counts.spam.tolist() == expected_spam.tolist()
    assert counts.ham.tolist() == expected_ham.tolist()
    assert (counts.nspam, counts.nham) == (20, 10)


def test_redis_batch_reports_a_learn_that_failed_in_flight(redis_proc: RedisServer) -> None:
    """In a batch the learn script's reply is read at the next call: a failure then names
    the message it was for and the one waiting behind it, and the rest goes on."""
    store = RedisStorage(redis_proc.url, prefix=f"t{next(_prefixes)}")
    with pytest.raises(BatchError) as failed, store.batch():
        assert store.learn(b"a" * 16, toks(1), SPAM, 1, name="a.eml") is LearnOutcome.LEARNED
        assert store.learn(b"b" * 16, toks(2), HAM, 1, name="b.eml") is LearnOutcome.LEARNED
        assert store.learn(b"b" * 16, toks(2), HAM, 1, name="b.eml") is LearnOutcome.ALREADY
        store.client.set(store.k_tokens, b"not a hash")  # the next script fails
        store.learn(b"c" * 16, toks(3), SPAM, 1, name="c.eml")
        store.learn(b"d" * 16, toks(4), SPAM, 1, name="d.eml")
    assert failed.value.labels == ["c.eml", "d.eml"] and "c.eml" in str(failed.value)
    assert store.learned_as(b"c" * 16) is None and store.learned_as(b"d" * 16) is None
    assert store.learned_as(b"b" * 16) == HAM
    store.close()


def test_learned_messages_keep_their_tokens_and_follow_moves(store: Storage) -> None:
    with store.batch():
        store.learn(b"b" * 16, toks(3, BIG), SPAM, 5)
        store.learn(b"a" * 16, toks(1, 2), HAM, 5)
    store.learn(b"c" * 16, toks(7), SPAM, 5)
    store.learn(b"b" * 16, toks(3, BIG), HAM, 5)  # moved
    store.unlearn(b"c" * 16, toks(7))
    got = [(d, label, t.tolist()) for d, label, t in store.learned_messages()]
    assert got == [(b"a" * 16, HAM, [1, 2]), (b"b" * 16, HAM, [3, BIG])]  # by digest


def _stored_token_blobs(store: Storage) -> int:
    """Messages whose tokens the backend really holds, read past the Storage interface."""
    if isinstance(store, SqliteStorage):
        return store.conn.execute("SELECT count(*) FROM bayes_messages").fetchone()[0]
    assert isinstance(store, RedisStorage)
    return int(store.client.hlen(store.k_messages))


def _fit_set(store: Storage) -> list[tuple[bytes, str]]:
    return [(d, label) for d, label, _ in store.learned_messages()]


def test_only_the_newest_messages_of_a_class_keep_their_tokens(store: Storage) -> None:
    # Digests fall as learning goes on, so learn order and digest order disagree.
    spam = [bytes([100 - n]) * 16 for n in range(8)]
    ham = [b"h" * 15 + bytes([n]) for n in range(2)]
    for digest in spam[:3]:
        assert store.learn(digest, toks(1, 2), SPAM, 5, keep=5) is LearnOutcome.LEARNED
    with store.batch():  # the batched path keeps the same bound
        for digest in spam[3:]:
            assert store.learn(digest, toks(1, 3), SPAM, 5, keep=5) is LearnOutcome.LEARNED
        for digest in ham:
            store.learn(digest, toks(2, 4), HAM, 5, keep=5)
    assert _fit_set(store) == sorted([(d, SPAM) for d in spam[3:]] + [(d, HAM) for d in ham])
    assert _stored_token_blobs(store) == 7
    stats = store.bayes_stats()
    assert stats.learned == {SPAM: 8, HAM: 2} and stats.fit_messages == {SPAM: 5, HAM: 2}
    counts = store.token_counts(toks(1, 2, 3))  # the counts of dropped messages stay
    assert counts.spam.tolist() == [8, 3, 5] and counts.ham.tolist() == [0, 2, 0]
    # a dropped message is still known: learned again, it is not counted twice
    assert store.learn(spam[0], toks(1, 2), SPAM, 6, keep=5) is LearnOutcome.ALREADY
    assert store.token_counts(toks(1)).spam.tolist() == [8]
    # unlearning a dropped message takes its counts back (its tokens come from the message)
    assert store.unlearn(spam[0], toks(1, 2)) is LearnOutcome.UNLEARNED
    assert store.token_counts(toks(1, 2)).spam.tolist() == [7, 2]
    assert store.learned_as(spam[0]) is None and _stored_token_blobs(store) == 7
    # moving a dropped message makes it the newest of the other class, tokens and all
    assert store.learn(spam[1], toks(1, 2), HAM, 6, keep=5) is LearnOutcome.MOVED
    assert (spam[1], HAM) in _fit_set(store)
    assert store.bayes_stats().fit_messages == {SPAM: 5, HAM: 3}
    # unlearning a kept one leaves room; the next spam learned takes it, none is dropped
    assert store.unlearn(spam[7], toks(1, 3)) is LearnOutcome.UNLEARNED
    newest = b"n" * 16
    store.learn(newest, toks(9), SPAM, 7, keep=5)
    assert [d for d, label in _fit_set(store) if label == SPAM] == sorted(
        [*spam[3:7], newest])
    # a lowered limit applies to both classes at once, oldest first
    assert store.limit_fit_messages(2) == 3 + 1
    assert _fit_set(store) == sorted([(spam[6], SPAM), (newest, SPAM), (ham[1], HAM),
                                      (spam[1], HAM)])
    assert _stored_token_blobs(store) == 4
    assert store.bayes_stats().learned == {SPAM: 6, HAM: 3}  # all still counted
    # keep = 0: no bound
    for n in range(4):
        store.learn(b"z" * 15 + bytes([n]), toks(5), HAM, 8)
    assert store.bayes_stats().fit_messages == {SPAM: 2, HAM: 6}


def test_sqlite_schema_2_file_gets_the_learn_order(tmp_path: Path) -> None:
    """A store written before the bound: its messages' tokens keep their learn order."""
    path = tmp_path / "v2.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema', '2');
        CREATE TABLE bayes_learned (digest BLOB PRIMARY KEY, label TEXT NOT NULL,
            day INTEGER NOT NULL) WITHOUT ROWID;
        CREATE TABLE bayes_messages (digest BLOB PRIMARY KEY, tokens BLOB NOT NULL);
    """)
    digests = [bytes([9 - n]) * 16 for n in range(4)]
    for n, digest in enumerate(digests):
        conn.execute("INSERT INTO bayes_learned VALUES (?, ?, 1)", (digest, SPAM))
        conn.execute("INSERT INTO bayes_messages VALUES (?, ?)",
                     (digest, toks(n).astype(">u8").tobytes()))
    conn.commit()
    conn.close()
    store = SqliteStorage(path)
    assert store.bayes_stats().fit_messages == {SPAM: 4, HAM: 0}
    store.learn(b"new" + bytes(13), toks(7), SPAM, 2, keep=3)
    assert _fit_set(store) == sorted([(digests[2], SPAM), (digests[3], SPAM),
                                      (b"new" + bytes(13), SPAM)])
    assert store.conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == (
        "3",)
    store.close()


def test_redis_store_from_before_the_fit_sets_is_adopted(redis_proc: RedisServer) -> None:
    """Stored tokens in no fit set (written by the version before the bound) are fitted,
    counted, and dropped first, as older than anything learned since."""
    store = RedisStorage(redis_proc.url, prefix=f"t{next(_prefixes)}")
    old = [b"o" * 15 + bytes([n]) for n in range(3)]
    for digest in old:
        store.learn(digest, toks(1), SPAM, 1)
    store.learn(b"h" * 16, toks(2), HAM, 1)
    store.client.delete(store.k_fit[SPAM], store.k_fit[HAM], store.k_seq)
    store.learn(b"a" * 16, toks(3), SPAM, 2)  # newer than the three, whatever its digest
    assert len(store.learned_messages()) == 5
    assert store.bayes_stats().fit_messages == {SPAM: 4, HAM: 1}
    assert store.limit_fit_messages(2) == 2
    assert _fit_set(store) == sorted([(b"a" * 16, SPAM), (old[2], SPAM), (b"h" * 16, HAM)])
    store.close()


def test_model_is_replaced_as_a_whole(store: Storage) -> None:
    store.learn(b"a" * 16, toks(1, 2), HAM, 5)
    assert store.token_counts(toks(1, 2)).model_tokens == 0
    store.set_model(toks(1, BIG), np.array([0.25, -1.5]))
    counts = store.token_counts(toks(BIG, 2, 1))
    assert counts.weights is not None and counts.weights.tolist() == [-1.5, 0.0, 0.25]
    assert counts.model_tokens == 2
    store.set_model(toks(2), np.array([3.0]))
    counts = store.token_counts(toks(BIG, 2, 1))
    assert counts.weights is not None and counts.weights.tolist() == [0.0, 3.0, 0.0]
    store.set_model(toks(), np.zeros(0))
    assert store.token_counts(toks(2)).model_tokens == 0


def test_expiry_drops_only_old_rare_tokens(store: Storage) -> None:
    store.learn(b"a" * 16, toks(1, 2), SPAM, 10)  # old
    store.learn(b"b" * 16, toks(2, 3), HAM, 10)  # token 2 now seen twice
    store.learn(b"c" * 16, toks(4), HAM, 50)  # recent
    assert store.expire_tokens(before_day=20) == 2  # 1 and 3: once, day 10
    counts = store.token_counts(toks(1, 2, 3, 4))
    assert (counts.spam + counts.ham).tolist() == [0, 2, 0, 1]
    assert store.bayes_stats().tokens == 2


def test_counters_and_values_with_ttl(store: Storage) -> None:
    assert store.incr("rate:alice", ttl=0.3) == 1
    assert store.incr("rate:alice", 4, ttl=0.3) == 5
    assert store.get("rate:alice") == b"5"
    store.set("grey:triplet", b"\x00seen", ttl=0.3)
    store.set("history:1", b"kept")
    assert store.get("grey:triplet") == b"\x00seen"
    time.sleep(0.5)  # past the TTL: the window is over
    assert store.get("rate:alice") is None and store.get("grey:triplet") is None
    assert store.incr("rate:alice", ttl=0.3) == 1  # a new window starts at 1
    assert store.get("history:1") == b"kept"
    assert store.delete("history:1") is True and store.delete("history:1") is False
    assert store.get("nope") is None


def test_sqlite_corrupt_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StorageError, match=rf"{path}.*(corrupt|not a database)"):
        SqliteStorage(path).token_counts(toks(1))


def test_sqlite_locked_file_is_a_clear_error_and_nothing_is_written(tmp_path: Path) -> None:
    path = tmp_path / "locked.sqlite"
    store = SqliteStorage(path, busy_timeout=0.2)
    store.learn(b"x" * 16, toks(1), SPAM, 1)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another learner holds the write lock
    try:
        with pytest.raises(StorageError, match=rf"{path}.*locked.*another process"):
            store.learn(b"y" * 16, toks(2), SPAM, 1)
        assert store.token_counts(toks(1, 2)).spam.tolist() == [1, 0]  # reads still work
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert store.learned_as(b"y" * 16) is None
    assert store.learn(b"y" * 16, toks(2), SPAM, 1) is LearnOutcome.LEARNED


def test_sqlite_unwritable_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StorageError, match="cannot create"):
        SqliteStorage(blocker / "sub" / "x.sqlite").token_counts(toks(1))


def test_redis_down_is_a_clear_error() -> None:
    store = RedisStorage(f"redis://127.0.0.1:{free_port()}/0", timeout=1)
    with pytest.raises(StorageError, match=r"cannot connect.*redis-server running"):
        store.learn(b"z" * 16, toks(1), SPAM, 1)
    with pytest.raises(StorageError, match="cannot connect"):
        store.token_counts(toks(1))


def test_redis_unix_socket_and_key_layout(redis_proc: RedisServer) -> None:
    store = open_storage(StorageConfig(backend="redis", redis_url=redis_proc.unix_url,
                                       redis_prefix="layout"))
    store.learn(b"q" * 16, toks(0x0102030405060708), HAM, 3)
    store.incr("rl:x", ttl=60)
    client = redis.Redis(port=redis_proc.port, db=1)  # the unix URL said db=1
    store.set_model(toks(0x0102030405060708), np.array([-0.5]))
    assert sorted(client.keys("layout:*")) == [
        b"layout:kv:rl:x", b"layout:{bayes}:fit:ham", b"layout:{bayes}:learned",
        b"layout:{bayes}:messages", b"layout:{bayes}:model", b"layout:{bayes}:seq",
        b"layout:{bayes}:tokens", b"layout:{bayes}:totals"]
    assert client.zrange("layout:{bayes}:fit:ham", 0, -1, withscores=True) == [
        (b"q" * 16, 1.0)]  # learn order 1: the first message learned
    record = client.hget("layout:{bayes}:tokens", bytes.fromhex("0102030405060708"))
    assert record == (0).to_bytes(4, "little") + (1).to_bytes(4, "little") + (3).to_bytes(
        2, "little")
    assert client.hget("layout:{bayes}:messages", b"q" * 16) == bytes.fromhex(
        "0102030405060708")
    assert client.hget("layout:{bayes}:model", bytes.fromhex("0102030405060708")) == (
        struct.pack("<d", -0.5))
    assert client.hget("layout:{bayes}:totals", "ham") == b"1"
    assert client.hget("layout:{bayes}:totals", "model") == b"1"
    assert 0 < client.ttl("layout:kv:rl:x") <= 60
    store.close()


def test_bad_backend_and_url() -> None:
    with pytest.raises(StorageError, match="unknown storage backend"):
        open_storage(StorageConfig(backend="mysql"))
    with pytest.raises(StorageError, match="bad redis_url"):
        RedisStorage("http://nope")


def test_scanning_never_creates_the_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "not-yet.sqlite"
    store = open_storage(StorageConfig(path=str(path)), create=False)
    with pytest.raises(StorageError, match="nothing learned yet"):
        store.token_counts(toks(1))
    assert not path.exists()


def test_redis_password_is_never_shown() -> None:
    store = RedisStorage(f"redis://admin:s3cret@127.0.0.1:{free_port()}/0", timeout=1)
    assert store.url.startswith("redis://admin:***@127.0.0.1:")
    with pytest.raises(StorageError) as info:
        store.token_counts(toks(1))
    assert "s3cret" not in str(info.value) and "admin:***@" in str(info.value)


def test_default_sqlite_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from pyspamd.storage import default_sqlite_path

    monkeypatch.setenv("PYSPAMD_DATA_DIR", str(tmp_path / "d"))
    assert default_sqlite_path() == tmp_path / "d" / "pyspamd.sqlite"
    monkeypatch.delenv("PYSPAMD_DATA_DIR")
    assert default_sqlite_path().name == "pyspamd.sqlite"
