"""Redis backend, state part: counters and values in plain keys with Redis' own TTLs, token
buckets (a script), and bounded lists (key layout: redis_store.py)."""

from __future__ import annotations

import itertools

from pyspamd.storage.base import StateStore, bucket_ttl
from pyspamd.storage.redis_conn import RedisConnection


class RedisState(RedisConnection, StateStore):
    def _prepare(self) -> None:
        super()._prepare()
        self._incr = self._script("incr")
        self._take = self._script("take_token")

    def _key(self, key: str) -> str:
        return f"{self.prefix}:kv:{key}"

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        ms = int(ttl * 1000) if ttl else 0
        return int(self._call("counting", self._incr, keys=[self._key(key)], args=[amount, ms]))

    def get(self, key: str) -> bytes | None:
        return self._call("reading", self.client.get, self._key(key))

    def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        self._call("writing", self.client.set, self._key(key), value,
                   px=int(ttl * 1000) if ttl else None)

    def delete(self, key: str) -> bool:
        return bool(self._call("deleting", self.client.delete, self._key(key)))

    def scan_prefix(self, prefix: str, limit: int = 10000) -> list[tuple[str, bytes]]:
        full = self._key(prefix)
        pattern = "".join("\\" + ch if ch in "*?[]\\" else ch for ch in full) + "*"
        # SCAN walks every node of a cluster in redis-py; fine for an admin listing.
        keys: list[bytes] = sorted(self._call("listing", lambda: list(itertools.islice(
            self.client.scan_iter(match=pattern, count=1000), limit))))
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.get(key)
        values = self._call("listing", pipe.execute) if keys else []
        skip = len(self._key(""))
        return [(k.decode()[skip:], v) for k, v in zip(keys, values, strict=True)
                if v is not None]

    def take_token(self, key: str, capacity: float, rate: float, now: float) -> tuple[bool, float]:
        ttl_ms = int(bucket_ttl(capacity, rate) * 1000)
        taken, tokens = self._call("rate limiting", self._take, keys=[self._key(key)],
                                   args=[repr(float(capacity)), repr(float(rate)),
                                         repr(float(now)), ttl_ms])
        return bool(int(taken)), float(tokens)

    # --- batched counters and bounded lists ---
    def incr_many(self, changes: list[tuple[str, int, float | None]]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for key, amount, ttl in changes:
            full = self._key(key)
            pipe.incrby(full, amount)
            if ttl:
                # NX (Redis 7): the time to live starts with the first write, as in SQLite.
                pipe.pexpire(full, int(ttl * 1000), nx=True)
        if changes:
            self._call("counting", pipe.execute)

    def list_push(self, key: str, items: list[bytes], keep: int) -> None:
        if not items:
            return
        full = f"{self.prefix}:list:{key}"
        pipe = self.client.pipeline(transaction=False)
        pipe.lpush(full, *items)
        pipe.ltrim(full, 0, keep - 1)
        self._call("adding to a list", pipe.execute)

    def list_recent(self, key: str, count: int) -> list[bytes]:
        return list(self._call("reading a list", self.client.lrange,
                               f"{self.prefix}:list:{key}", 0, count - 1))

