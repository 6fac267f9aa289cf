"""Redis backend, Bayes part: token counts, learned messages and the logistic model in
hashes under one {bayes} hash tag (key layout: redis_store.py), learned by one Lua script per
message; the portable backup records."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import redis

from pyspamd.storage.base import (
    HAM,
    SPAM,
    BatchError,
    BayesStats,
    BayesStore,
    LearnOutcome,
    ModelSnapshot,
    TokenCounts,
    check_label,
    new_model_generation,
    pack_tokens,
    sorted_model,
    unpack_tokens,
)
from pyspamd.storage.redis_conn import RedisConnection

_RECORD = np.dtype([("spam", "<u4"), ("ham", "<u4"), ("day", "<u2")])
_EMPTY = bytes(_RECORD.itemsize)
_NO_WEIGHT = bytes(8)
MODEL_CHUNK = 5000  # model fields per HSET while a new model is written
TRIM_CHUNK = 5000  # messages' tokens dropped per script run when the limit was lowered


def _token_bytes(tokens: np.ndarray) -> list[bytes]:
    raw = tokens.astype(">u8").tobytes()
    return [raw[i : i + 8] for i in range(0, len(raw), 8)]


class RedisBayes(RedisConnection, BayesStore):
    def _prepare(self) -> None:
        super()._prepare()
        tag = f"{self.prefix}:{{bayes}}"
        self.k_tokens, self.k_learned, self.k_totals = (
            f"{tag}:tokens", f"{tag}:learned", f"{tag}:totals")
        self.k_messages, self.k_model = f"{tag}:messages", f"{tag}:model"
        self.k_fit = {SPAM: f"{tag}:fit:spam", HAM: f"{tag}:fit:ham"}
        self.k_seq = f"{tag}:seq"
        self._learn_keys = [self.k_tokens, self.k_learned, self.k_totals, self.k_messages,
                            self.k_fit[SPAM], self.k_fit[HAM], self.k_seq]
        # A batch's connection and the message whose learn script awaits its reply.
        self._inflight: tuple[Any, str | None] | None = None
        self._learn = self._script("learn")
        self._expire = self._script("expire")
        self._limit_fit = self._script("limit_fit")
        self._swap_model = self._script("swap_model")
        self._snapshot = self._script("snapshot")
        self._read = self._script("read_tokens")

    def token_counts(self, tokens: np.ndarray, model_only: bool = False) -> TokenCounts:
        self._settle()
        # One script: totals, counts and weights from the same moment, never between two
        # learns, and the counts are skipped when model_only and a model exists.
        reply = self._call("reading token counts", self._read,
                           keys=[self.k_totals, self.k_tokens, self.k_model],
                           args=["1" if model_only else "0", pack_tokens(tokens)])
        nspam, nham, model = (int(v) if v else 0 for v in reply[0])
        n = len(tokens)
        spam = np.zeros(n, dtype=np.int64)
        ham = np.zeros(n, dtype=np.int64)
        if n and reply[1]:
            records = np.frombuffer(b"".join(v or _EMPTY for v in reply[1]), dtype=_RECORD)
            spam, ham = records["spam"].astype(np.int64), records["ham"].astype(np.int64)
        weights = np.frombuffer(b"".join(v or _NO_WEIGHT for v in reply[2]), dtype="<f8") \
            if n and reply[2] else np.zeros(n)
        return TokenCounts(spam, ham, nspam, nham, weights.astype(np.float64), model)

    def model_snapshot(self, known: int) -> ModelSnapshot:
        self._settle()
        totals, flat = self._call("reading the model", self._snapshot,
                                  keys=[self.k_totals, self.k_model], args=[str(known)])
        nspam, nham, model, generation = (int(v) if v else 0 for v in totals)
        if not model:
            return ModelSnapshot(nspam, nham, 0)
        if not flat:
            return ModelSnapshot(nspam, nham, generation)
        tokens = np.frombuffer(b"".join(flat[0::2]), dtype=">u8").astype(np.uint64)
        weights = np.frombuffer(b"".join(flat[1::2]), dtype="<f8")
        return ModelSnapshot(nspam, nham, generation, *sorted_model(tokens, weights))

    def _run_learn(self, digest: bytes, tokens: np.ndarray, label: str, day: int,
                   keep: int = 0) -> str:
        reply = self._call("learning", self._learn, keys=self._learn_keys,
                           args=[digest, label, day, pack_tokens(tokens), keep])
        return reply.decode() if isinstance(reply, bytes) else str(reply)

    @contextmanager
    def batch(self) -> Iterator[RedisBayes]:
        # In a batch each learn script is sent without waiting for its reply, which is read
        # at the next call: the server runs it while the client parses the next message (a
        # third of a learn's time saved on two cores). The outcome is worked out from the
        # learned-digest look-up beforehand, as the SQLite batch does. Not on Redis Cluster,
        # whose client has no single connection to hold.
        client = self.client
        if self._inflight is not None or not isinstance(client, redis.Redis):
            yield self  # Redis Cluster
            return
        connection = self._call("learning", client.connection_pool.get_connection)
        self._inflight = (connection, None)
        try:
            self._call("loading the learn script", self.client.script_load,
                       self._learn.script)
            yield self
            self._settle()
        finally:
            self._inflight = None
            client.connection_pool.release(connection)

    def _settle(self, then: str | None = None) -> None:
        """Read the reply of the learn script in flight, if any. `then` is the message
        whose learn is waiting behind it: if this fails, it is not learned either."""
        if self._inflight is None:
            return
        connection, name = self._inflight
        if name is None:
            return
        self._inflight = (connection, None)
        try:
            connection.read_response()
        except (redis.RedisError, OSError) as exc:
            connection.disconnect()
            names = [name] + ([then] if then is not None else [])
            raise BatchError(f"Redis store {self.url}: learning {name} failed: {exc}",
                             names) from exc

    def learn(self, digest: bytes, tokens: np.ndarray, label: str, day: int,
              name: str = "", keep: int = 0) -> LearnOutcome:
        check_label(label)
        if self._inflight is None:
            return LearnOutcome(self._run_learn(digest, tokens, label, day, keep))
        self._settle(then=name)
        previous = self.learned_as(digest)
        if previous == label:
            return LearnOutcome.ALREADY
        connection = self._inflight[0]
        self._call("learning", connection.send_command, "EVALSHA", self._learn.sha,
                   len(self._learn_keys), *self._learn_keys,
                   digest, label, day, pack_tokens(tokens), keep)
        self._inflight = (connection, name)
        return LearnOutcome.LEARNED if previous is None else LearnOutcome.MOVED

    def unlearn(self, digest: bytes, tokens: np.ndarray) -> LearnOutcome:
        self._settle()
        return LearnOutcome(self._run_learn(digest, tokens, "", 0))

    def learned_as(self, digest: bytes) -> str | None:
        self._settle()
        value = self._call("reading", self.client.hget, self.k_learned, digest)
        return value.decode() if value else None

    def learned_messages(self) -> list[tuple[bytes, str, np.ndarray]]:
        self._settle()
        self._adopt_unordered()
        # The fit sets, not the learned hash: that one holds every digest ever learned.
        pipe = self.client.pipeline(transaction=True)
        pipe.zrange(self.k_fit[SPAM], 0, -1)
        pipe.zrange(self.k_fit[HAM], 0, -1)
        pipe.hgetall(self.k_messages)
        spam, ham, packed = self._call("reading learned messages", pipe.execute)
        labels = {**{d: SPAM for d in spam}, **{d: HAM for d in ham}}
        return [(digest, labels[digest], unpack_tokens(packed[digest]))
                for digest in sorted(labels) if digest in packed]

    def _adopt_unordered(self) -> None:
        """A store written before the fit sets existed has stored tokens in no set: put
        them in their class's set as older than anything learned since (score 0; Redis
        orders equal scores by digest)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hlen(self.k_messages)
        pipe.zcard(self.k_fit[SPAM])
        pipe.zcard(self.k_fit[HAM])
        stored, nspam, nham = self._call("reading learned messages", pipe.execute)
        if stored <= nspam + nham:
            return
        digests = self._call("reading learned messages", self.client.hkeys, self.k_messages)
        labels = self._call("reading learned messages", self.client.hmget, self.k_learned,
                            digests)
        pipe = self.client.pipeline(transaction=False)
        for digest, label in zip(digests, labels, strict=True):
            if label in (SPAM.encode(), HAM.encode()):
                pipe.zadd(self.k_fit[label.decode()], {digest: 0}, nx=True)
        self._call("ordering learned messages", pipe.execute)

    def limit_fit_messages(self, keep: int) -> int:
        self._settle()
        self._adopt_unordered()
        dropped = 0
        for label in (SPAM, HAM):
            while True:
                n = int(self._call("dropping old messages' tokens", self._limit_fit,
                                   keys=[self.k_fit[label], self.k_messages],
                                   args=[keep, TRIM_CHUNK]))
                dropped += n
                if n < TRIM_CHUNK:
                    break
        return dropped

    def set_model(self, tokens: np.ndarray, weights: np.ndarray) -> None:
        # Written under a new key, then renamed over the old one: scans read the old model
        # until the RENAME, the new one after it. Same hash tag, so same cluster slot.
        fresh = f"{self.k_model}:new"
        keys = _token_bytes(tokens)
        values = weights.astype("<f8").tobytes()
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(fresh)
        for start in range(0, len(keys), MODEL_CHUNK):
            pipe.hset(fresh, mapping={key: values[8 * i : 8 * i + 8] for i, key in enumerate(
                keys[start : start + MODEL_CHUNK], start)})
        self._call("writing the model", pipe.execute)
        self._call("writing the model", self._swap_model,
                   keys=[fresh, self.k_model, self.k_totals],
                   args=[len(keys), new_model_generation()])

    def bayes_stats(self) -> BayesStats:
        self._settle()
        pipe = self.client.pipeline(transaction=False)
        pipe.hmget(self.k_totals, [SPAM, HAM])
        pipe.hlen(self.k_tokens)
        pipe.zcard(self.k_fit[SPAM])
        pipe.zcard(self.k_fit[HAM])
        for key in (self.k_tokens, self.k_learned, self.k_messages, self.k_model,
                    self.k_fit[SPAM], self.k_fit[HAM]):
            pipe.memory_usage(key)
        (spam, ham), tokens, fit_spam, fit_ham, *sizes = self._call("reading stats",
                                                                    pipe.execute)
        return BayesStats(self.backend, self.url,
                          {SPAM: int(spam or 0), HAM: int(ham or 0)}, int(tokens),
                          sum(int(size or 0) for size in sizes),
                          {SPAM: int(fit_spam), HAM: int(fit_ham)})

    def expire_tokens(self, before_day: int, max_hits: int = 1) -> int:
        dropped = 0
        cursor = 0
        while True:
            cursor, chunk = self._call("expiring", self.client.hscan, self.k_tokens, cursor,
                                       count=2000)
            candidates = []
            for token, value in chunk.items():
                record = np.frombuffer(value, dtype=_RECORD)[0]
                if record["day"] < before_day and record["spam"] + record["ham"] <= max_hits:
                    candidates.append(token)
            if candidates:
                dropped += int(self._call("expiring", self._expire, keys=[self.k_tokens],
                                          args=[before_day, max_hits, *candidates]))
            if cursor == 0:
                return dropped

    # --- Bayes backup, restore and clear (records: pyspamd/storage/portable.py) ---
    def _hscan(self, key: str) -> Iterator[tuple[bytes, bytes]]:
        cursor = 0
        while True:
            cursor, chunk = self._call("reading for a backup", self.client.hscan, key,
                                       cursor, count=5000)
            yield from chunk.items()
            if cursor == 0:
                return

    def bayes_records(self) -> Iterator[tuple]:
        self._settle()
        self._adopt_unordered()
        totals = self._call("reading for a backup", self.client.hgetall, self.k_totals)
        for name, value in totals.items():
            yield ("totals", name.decode(), int(value))
        for token, value in self._hscan(self.k_tokens):
            record = np.frombuffer(value, dtype=_RECORD)[0]
            yield ("token", int.from_bytes(token, "big"), int(record["spam"]),
                   int(record["ham"]), int(record["day"]))
        for digest, label in self._hscan(self.k_learned):
            yield ("learned", digest, label.decode(), 0)  # Redis keeps no learn day
        order: dict[bytes, tuple[str, int]] = {}
        for cls in (SPAM, HAM):
            members = self._call("reading for a backup", self.client.zrange, self.k_fit[cls],
                                 0, -1, withscores=True)
            order.update({digest: (cls, int(seq)) for digest, seq in members})
        for digest, packed in self._hscan(self.k_messages):
            if digest in order:
                yield ("message", digest, *order[digest], packed)
        for token, weight in self._hscan(self.k_model):
            yield ("model", int.from_bytes(token, "big"), float(np.frombuffer(weight, "<f8")[0]))

    def bayes_replace(self, records: Iterable[tuple]) -> None:
        """Not atomic as SQLite's is: restore into a daemon that is not learning."""
        self._settle()
        self._call("clearing", self.client.delete, self.k_tokens, self.k_learned,
                   self.k_totals, self.k_messages, self.k_model, self.k_fit[SPAM],
                   self.k_fit[HAM], self.k_seq)
        pipe = self.client.pipeline(transaction=False)
        pending = top_seq = 0
        for record in records:
            kind = record[0]
            if kind == "totals":
                pipe.hset(self.k_totals, record[1], record[2])
            elif kind == "token":
                value = np.array([record[2:5]], dtype=_RECORD).tobytes()
                pipe.hset(self.k_tokens, record[1].to_bytes(8, "big"), value)
            elif kind == "learned":
                pipe.hset(self.k_learned, record[1], record[2])
            elif kind == "message":
                _, digest, label, seq, packed = record
                pipe.hset(self.k_messages, digest, packed)
                pipe.zadd(self.k_fit[label], {digest: seq})
                top_seq = max(top_seq, seq)
            elif kind == "model":
                pipe.hset(self.k_model, record[1].to_bytes(8, "big"),
                          np.array(record[2], "<f8").tobytes())
            pending += 1
            if pending >= MODEL_CHUNK:
                self._call("restoring", pipe.execute)
                pending = 0
        pipe.set(self.k_seq, top_seq)
        self._call("restoring", pipe.execute)

    def bayes_clear(self) -> None:
        self.bayes_replace(())
