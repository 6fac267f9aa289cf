"""Redis backend (also Valkey and Redis Cluster): Bayes in hashes under one hash tag,
generic state in plain keys with Redis' own TTLs. The parts live in redis_conn.py (client,
errors, the Lua scripts of lua/), redis_bayes.py, redis_state.py and redis_fuzzy.py.

Key layout (prefix from `[storage] redis_prefix`, default "pyspamd"):

    {prefix}:{bayes}:tokens   HASH  8-byte token (big-endian) -> 10 bytes: spam u32,
                                    ham u32, last-learned day u16 (little-endian)
    {prefix}:{bayes}:learned  HASH  16-byte message digest -> "spam" | "ham"
    {prefix}:{bayes}:messages HASH  16-byte message digest -> its tokens (8 bytes each,
                                    big-endian), to fit the logistic model from: only
                                    the newest max_fit_messages of each class
    {prefix}:{bayes}:fit:spam ZSET  digest -> learn order, of the messages whose tokens
    {prefix}:{bayes}:fit:ham  ZSET  are stored; the lowest scores are dropped first
    {prefix}:{bayes}:seq      STRING the learn order counter for those scores
    {prefix}:{bayes}:model    HASH  8-byte token -> its weight in the logistic model
                                    (8-byte little-endian double)
    {prefix}:{bayes}:totals   HASH  "spam" | "ham" -> messages learned; "model" -> tokens
                                    in the model; "model_gen" -> its generation (random,
                                    new at each fit: workers reload the model when it
                                    changes)
    {prefix}:{fuzzy}:h:{id}   STRING a fuzzy hash (8-byte id, big-endian): flag u32, weight
                                    f64 (little-endian), then its signature; expires by TTL
    {prefix}:{fuzzy}:b:{key}  SET   ids of the fuzzy hashes with this LSH bucket key
    {prefix}:{fuzzy}:ids      ZSET  id -> expiry time, for counting and expiring
    {prefix}:kv:{key}         STRING counters and values of greylisting, rate limits, ...
    {prefix}:list:{key}       LIST   bounded logs (the scan history), newest first

The `{bayes}` hash tag puts all Bayes keys in one cluster slot, so on Redis Cluster too
(`redis_cluster = true`) a learn is one atomic Lua script and a look-up one MULTI/EXEC:
one round trip per message either way.
"""

from __future__ import annotations

from pyspamd.storage.base import Storage
from pyspamd.storage.redis_bayes import RedisBayes
from pyspamd.storage.redis_conn import redacted
from pyspamd.storage.redis_fuzzy import RedisFuzzy
from pyspamd.storage.redis_state import RedisState


class RedisStorage(RedisBayes, RedisState, RedisFuzzy, Storage):
    """Bayes, state and fuzzy hashes in one Redis (or Redis Cluster)."""


__all__ = ["RedisStorage", "redacted"]
