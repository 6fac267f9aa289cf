"""Redis backend, fuzzy part: hashes of reported messages under {prefix}:{fuzzy}: (key
layout: redis_store.py)."""

from __future__ import annotations

import struct
import time

from pyspamd.storage.base import FuzzyEntry, FuzzyStore, FuzzyStored
from pyspamd.storage.redis_conn import RedisConnection, id_bytes, id_int


class RedisFuzzy(RedisConnection, FuzzyStore):
    def _prepare(self) -> None:
        super()._prepare()
        self.k_fuzzy = f"{self.prefix}:{{fuzzy}}"
        self._fuzzy_add = self._script("fuzzy_add")
        self._fuzzy_del = self._script("fuzzy_delete")

    def _fuzzy_hash_key(self, ident: int) -> bytes:
        return f"{self.k_fuzzy}:h:".encode() + id_bytes(ident)

    def _fuzzy_bucket_key(self, bucket: int) -> bytes:
        return f"{self.k_fuzzy}:b:".encode() + id_bytes(bucket)

    def fuzzy_add(self, entries: list[FuzzyEntry], ttl: float) -> int:
        expires = time.time() + ttl
        ms = max(1, int(ttl * 1000))
        return self._run_scripts("adding fuzzy hashes", self._fuzzy_add, [
            ([self._fuzzy_hash_key(e.id), f"{self.k_fuzzy}:ids",
              *(self._fuzzy_bucket_key(b) for b in e.buckets)],
             [id_bytes(e.id), e.flag, repr(float(e.weight)), e.signature, ms, repr(expires)])
            for e in entries])

    def fuzzy_delete(self, ids: list[int], flag: int) -> int:
        return self._run_scripts("deleting fuzzy hashes", self._fuzzy_del, [
            ([self._fuzzy_hash_key(ident), f"{self.k_fuzzy}:ids"], [id_bytes(ident), flag])
            for ident in ids])

    def fuzzy_find(self, buckets: list[int], ids: list[int]) -> list[FuzzyStored]:
        found = {id_bytes(i) for i in ids}
        if buckets:
            pipe = self.client.pipeline(transaction=False)
            for bucket in buckets:
                pipe.smembers(self._fuzzy_bucket_key(bucket))
            for members in self._call("looking up fuzzy hashes", pipe.execute):
                found.update(members)
        if not found:
            return []
        order = sorted(found)
        values = self._call("looking up fuzzy hashes", self.client.mget,
                            [f"{self.k_fuzzy}:h:".encode() + raw for raw in order])
        out = []
        for raw, value in zip(order, values, strict=True):
            if value is not None and len(value) >= 12:
                flag, weight = struct.unpack("<Id", value[:12])
                out.append(FuzzyStored(id_int(raw), flag, weight, bytes(value[12:])))
        return out

    def fuzzy_expire(self) -> int:
        # The hashes expire by their own TTL; this drops them from the ids set.
        return int(self._call("expiring fuzzy hashes", self.client.zremrangebyscore,
                              f"{self.k_fuzzy}:ids", "-inf", time.time()))

    def fuzzy_count(self) -> int:
        return int(self._call("counting fuzzy hashes", self.client.zcount,
                              f"{self.k_fuzzy}:ids", f"({time.time()!r}", "+inf"))

