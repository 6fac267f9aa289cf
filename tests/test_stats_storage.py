"""Statistics on both backends: batched counters, the bounded history list, and the
recorder/reader pair that the milter workers and the controller share."""

from __future__ import annotations

import threading
import time

import pytest
from support.messages import make_message
from support.mta import free_port

from pyspamd.config import load_config
from pyspamd.scanner import Scanner
from pyspamd.stats import keys
from pyspamd.stats.reader import StatsReader
from pyspamd.stats.recorder import ScanRecorder, count_event
from pyspamd.storage.base import Storage
from pyspamd.storage.redis_store import RedisStorage
from pyspamd.task import Envelope


def test_incr_many_is_incr(store: Storage) -> None:
    store.incr("stat:a", 2)
    store.incr_many([("stat:a", 3, None), ("stat:b", 1, None), ("stat:b", 4, None),
                     ("graph:x", 7, 60.0)])
    assert store.get("stat:a") == b"5" and store.get("stat:b") == b"5"
    assert store.get("graph:x") == b"7"
    store.incr_many([("gone", 1, 0.05)])
    time.sleep(0.15)
    assert store.get("gone") is None  # the ttl applies
    store.incr_many([])  # nothing to do is fine


def test_list_keeps_the_newest(store: Storage) -> None:
    store.list_push("h", [b"1", b"2", b"3"], keep=4)
    store.list_push("h", [b"4", b"5"], keep=4)
    assert store.list_recent("h", 10) == [b"5", b"4", b"3", b"2"]
    assert store.list_recent("h", 2) == [b"5", b"4"]
    assert store.list_recent("other", 5) == []
    store.list_push("h", [], keep=4)
    assert len(store.list_recent("h", 10)) == 4


def test_list_push_from_many_threads(store: Storage) -> None:
    def push(n: int) -> None:
        for i in range(20):
            store.list_push("t", [f"{n}-{i}".encode()], keep=50)

    threads = [threading.Thread(target=push, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    items = store.list_recent("t", 100)
    assert len(items) == 50 and len(set(items)) == 50


@pytest.fixture(scope="module")
def scanner() -> Scanner:
    return Scanner.from_config(load_config(None))


def test_recorder_totals_over_two_writers(store: Storage, scanner: Scanner) -> None:
    """Two recorders (two workers) on one store: the reader sees the sum."""
    ham = scanner.scan(make_message())
    spam = scanner.scan(b"Subject: x\n\nXJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-"
                        b"TEST-EMAIL*C.34X\n")
    envelope = Envelope(client_ip="192.0.2.7", mail_from="a@example.org",
                        rcpts=tuple(f"r{i}@example.net" for i in range(30)), queue_id="Q1")
    first = ScanRecorder(store, history_size=3, flush_interval=60)
    second = ScanRecorder(store, history_size=3, flush_interval=60)
    for _ in range(2):
        first.record(ham, envelope, 100)
    second.record(spam, envelope, 200)
    first.event("dns_timeouts")
    assert first.flush() and second.flush()
    reader = StatsReader(store)
    scans = reader.scans()
    assert scans["scanned"] == 3
    assert scans["actions"][ham.action] == 2 and scans["actions"]["reject"] == 1
    assert scans["spam_count"] == 1
    assert reader.symbol_hits()["GTUBE"] == 1
    assert reader.counters()[keys.EVENT + "dns_timeouts"] == 1
    buckets, total = reader.time_histogram()
    assert sum(n for _, n in buckets) == 3 and total > 0
    history = reader.history(10)
    assert [h["action"] for h in history] == ["reject", ham.action, ham.action]
    assert history[0]["rcpt_count"] == 30 and len(history[0]["rcpts"]) == 20
    assert history[0]["symbols"][0][0] == "GTUBE" and history[0]["queue_id"] == "Q1"
    graph = reader.graph("minute")
    assert sum(graph["actions"]["reject"]) == 1 and len(graph["starts"]) == 60
    for _ in range(5):
        first.record(spam, envelope, 1)
    first.flush()
    assert len(reader.history(10)) == 3  # bounded by history_size


def test_recorder_keeps_counts_while_the_store_is_down(
        store: Storage, scanner: Scanner) -> None:
    """A Redis that does not answer (nothing listens on its port): the counts wait in
    memory and reach the store once it is back."""
    result = scanner.scan(make_message())
    recorder = ScanRecorder(RedisStorage(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5),
                            history_size=5, flush_interval=60)
    recorder.record(result, Envelope(), 10)
    assert recorder.flush() is False
    recorder.record(result, Envelope(), 10)
    recorder.storage = store
    assert recorder.flush() is True
    assert StatsReader(store).scans()["scanned"] == 2
    assert len(StatsReader(store).history()) == 2


def test_count_event_reaches_the_running_recorder(store: Storage) -> None:
    count_event("dns_timeouts")  # no recorder: nothing happens, nothing fails
    recorder = ScanRecorder(store, flush_interval=0.05).start()
    try:
        count_event("dns_timeouts", 2)
    finally:
        recorder.stop()
    assert StatsReader(store).counters()[keys.EVENT + "dns_timeouts"] == 2
