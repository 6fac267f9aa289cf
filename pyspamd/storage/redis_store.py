"""Redis backend (also Valkey and Redis Cluster): Bayes in three hashes under one hash tag,
generic state in plain keys with Redis' own TTLs.

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

import itertools
import struct
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import redis
from redis.cluster import RedisCluster

from pyspamd.storage.base import (
    HAM,
    SPAM,
    BatchError,
    BayesStats,
    FuzzyEntry,
    FuzzyStored,
    LearnOutcome,
    ModelSnapshot,
    Storage,
    StorageError,
    TokenCounts,
    bucket_ttl,
    check_label,
    new_model_generation,
    pack_tokens,
    sorted_model,
    unpack_tokens,
)

_RECORD = np.dtype([("spam", "<u4"), ("ham", "<u4"), ("day", "<u2")])
_EMPTY = bytes(_RECORD.itemsize)
_NO_WEIGHT = bytes(8)
MODEL_CHUNK = 5000  # model fields per HSET while a new model is written
TRIM_CHUNK = 5000  # messages' tokens dropped per script run when the limit was lowered

# The tokens travel as one argument, packed 8 bytes each (big-endian, as stored), and the
# scripts cut it up: one argument instead of hundreds costs the client a fraction of the
# encoding time, a third of a learn's cost before.
_SPLIT = """
local sub = string.sub
local function split(blob)
  local out, n = {}, 0
  for i = 1, #blob, 8 do
    n = n + 1
    out[n] = sub(blob, i, i + 7)
  end
  return out
end
"""

# Pops the oldest members of a fit set past `keep` and drops their stored tokens from the
# messages hash; at most `limit` per call, so a lowered limit cannot make one script run
# for long. Returns how many were dropped.
_TRIM_FIT = """
local function trim(fitset, messages, keep, limit)
  local extra = math.min(redis.call('ZCARD', fitset) - keep, limit)
  if extra <= 0 then return 0 end
  local old = redis.call('ZPOPMIN', fitset, extra)
  for i = 1, #old, 2 do redis.call('HDEL', messages, old[i]) end
  return extra
end
"""

# KEYS: tokens, learned, totals, messages, fit:spam, fit:ham, seq. ARGV: digest, label
# ("" = unlearn), day, the message's packed tokens, keep (max_fit_messages, 0 = all).
# Lua scripts run atomically, so a message's tokens, its digest and the totals change
# together or not at all.
_LEARN = _SPLIT + _TRIM_FIT + """
local function fitset(cls)
  if cls == 'spam' then return KEYS[5] end
  return KEYS[6]
end
local toks = split(ARGV[4])
local prev = redis.call('HGET', KEYS[2], ARGV[1])
local label = ARGV[2]
if label ~= '' and prev == label then return 'already learned' end
if label == '' and not prev then return 'not learned' end
local day = tonumber(ARGV[3])
-- Tokens go in chunks of 500: one HMGET, one HSET and at most one HDEL per chunk instead
-- of a call per token (2-3x faster learning), and unpack() stays far below Lua's limit.
local pack, unpack_record = struct.pack, struct.unpack
local function adjust(cls, delta)
  local is_spam = cls == 'spam'
  for first = 1, #toks, 500 do
    local last = math.min(first + 499, #toks)
    local values = redis.call('HMGET', KEYS[1], unpack(toks, first, last))
    local set, gone, ns, ng = {}, {}, 0, 0
    for i = first, last do
      local v = values[i - first + 1]
      local s, h, d = 0, 0, 0
      if v then s, h, d = unpack_record('<I4I4I2', v) end
      if is_spam then s = s + delta else h = h + delta end
      if s < 0 then s = 0 end
      if h < 0 then h = 0 end
      if delta > 0 and day > d then d = day end
      if s == 0 and h == 0 then
        if v then
          ng = ng + 1
          gone[ng] = toks[i]
        end
      else
        set[ns + 1] = toks[i]
        set[ns + 2] = pack('<I4I4I2', s, h, d)
        ns = ns + 2
      end
    end
    if ns > 0 then redis.call('HSET', KEYS[1], unpack(set)) end
    if ng > 0 then redis.call('HDEL', KEYS[1], unpack(gone)) end
  end
  if redis.call('HINCRBY', KEYS[3], cls, delta) < 0 then
    redis.call('HSET', KEYS[3], cls, 0)
  end
end
if prev then
  adjust(prev, -1)
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('HDEL', KEYS[4], ARGV[1])
  redis.call('ZREM', fitset(prev), ARGV[1])
end
if label ~= '' then
  adjust(label, 1)
  redis.call('HSET', KEYS[2], ARGV[1], label)
  redis.call('HSET', KEYS[4], ARGV[1], ARGV[4])
  redis.call('ZADD', fitset(label), redis.call('INCR', KEYS[7]), ARGV[1])
  local keep = tonumber(ARGV[5])
  if keep > 0 then trim(fitset(label), KEYS[4], keep, 1000000) end
  if prev then return 'moved' end
  return 'learned'
end
return 'unlearned'
"""

# KEYS: fit set, messages. ARGV: keep, limit.
_LIMIT_FIT = _TRIM_FIT + """
return trim(KEYS[1], KEYS[2], tonumber(ARGV[1]), tonumber(ARGV[2]))
"""

# KEYS: tokens. ARGV: before_day, max_hits, token... Re-checked inside the script so a
# token learned again between the scan and the delete survives.
_EXPIRE = """
local before, maxhits, n = tonumber(ARGV[1]), tonumber(ARGV[2]), 0
for i = 3, #ARGV do
  local v = redis.call('HGET', KEYS[1], ARGV[i])
  if v then
    local s, h, d = struct.unpack('<I4I4I2', v)
    if d < before and s + h <= maxhits then
      redis.call('HDEL', KEYS[1], ARGV[i])
      n = n + 1
    end
  end
end
return n
"""

# KEYS: totals, tokens, model. ARGV: model_only ("1"/"0"), packed tokens. Returns the totals
# (spam, ham, model), the token records (empty when skipped) and the weights (empty without
# a model). Lua's unpack() has a stack limit, so tokens go 1000 at a time.
_READ = _SPLIT + """
local toks = split(ARGV[2])
local totals = redis.call('HMGET', KEYS[1], 'spam', 'ham', 'model')
local has_model = tonumber(totals[3] or '0') > 0
local records, weights = {}, {}
local function fetch(key, out)
  for first = 1, #toks, 1000 do
    local part = redis.call('HMGET', key, unpack(toks, first, math.min(first + 999, #toks)))
    for i = 1, #part do out[#out + 1] = part[i] end
  end
end
if not (has_model and ARGV[1] == '1') then fetch(KEYS[2], records) end
if has_model then fetch(KEYS[3], weights) end
return {totals, records, weights}
"""

# KEYS: new model, model, totals. ARGV: tokens in the new model, its generation. A script,
# because Redis Cluster pipelines refuse RENAME; the keys share the {bayes} slot.
_SWAP_MODEL = """
if tonumber(ARGV[1]) > 0 then
  redis.call('RENAME', KEYS[1], KEYS[2])
else
  redis.call('DEL', KEYS[1], KEYS[2])
end
redis.call('HSET', KEYS[3], 'model', ARGV[1], 'model_gen', ARGV[2])
return 1
"""

# KEYS: totals, model. ARGV: the generation the caller holds. Returns the totals (spam, ham,
# model, model_gen) and, when a model of another generation is stored, all of it.
_SNAPSHOT = """
local totals = redis.call('HMGET', KEYS[1], 'spam', 'ham', 'model', 'model_gen')
if tonumber(totals[3] or '0') > 0 and (totals[4] or '0') ~= ARGV[1] then
  return {totals, redis.call('HGETALL', KEYS[2])}
end
return {totals, {}}
"""

# KEYS: counter. ARGV: amount, ttl in ms (0 = none). The TTL starts with the first hit.
_INCR = """
local fresh = redis.call('EXISTS', KEYS[1]) == 0
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
if fresh and tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return v
"""


# KEYS: bucket. ARGV: capacity, rate per second, now, ttl in ms. The same arithmetic as
# storage.base.bucket_after, inside one script so concurrent workers cannot interleave.
_TAKE = """
local cap, rate, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tokens, last = cap, now
local v = redis.call('GET', KEYS[1])
if v then
  local sep = string.find(v, '|', 1, true)
  local t, l = nil, nil
  if sep then
    t, l = tonumber(string.sub(v, 1, sep - 1)), tonumber(string.sub(v, sep + 1))
  end
  if t and l then tokens, last = t, l end
end
if now > last then
  tokens = math.min(cap, tokens + (now - last) * rate)
  last = now
end
local taken = 0
if tokens >= 1 then
  tokens = tokens - 1
  taken = 1
end
redis.call('SET', KEYS[1], string.format('%.17g|%.17g', tokens, last), 'PX', ARGV[4])
return {taken, string.format('%.17g', tokens)}
"""


# KEYS: the hash, the ids set, then its bucket sets. ARGV: id, flag, weight, signature,
# ttl in ms, expiry time. One script, so two hosts adding the same hash add both weights.
_FUZZY_ADD = """
local old = redis.call('GET', KEYS[1])
local flag, weight = tonumber(ARGV[2]), tonumber(ARGV[3])
if old then
  local oflag, oweight = struct.unpack('<I4d', string.sub(old, 1, 12))
  if oflag == flag then weight = weight + oweight end
end
redis.call('SET', KEYS[1], struct.pack('<I4d', flag, weight) .. ARGV[4], 'PX', ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[6], ARGV[1])
for i = 3, #KEYS do
  redis.call('SADD', KEYS[i], ARGV[1])
  if redis.call('PTTL', KEYS[i]) < tonumber(ARGV[5]) then
    redis.call('PEXPIRE', KEYS[i], ARGV[5])
  end
end
if old then return 0 end
return 1
"""

# KEYS: the hash, the ids set. ARGV: id, flag. Bucket sets keep the id until they expire:
# a look-up ignores ids whose hash is gone.
_FUZZY_DEL = """
local old = redis.call('GET', KEYS[1])
if not old then return 0 end
local oflag = struct.unpack('<I4', string.sub(old, 1, 4))
if oflag ~= tonumber(ARGV[2]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""


def _id_bytes(value: int) -> bytes:
    return (value & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big")


def _id_int(raw: bytes) -> int:
    return int.from_bytes(raw, "big", signed=True)


def redacted(url: str) -> str:
    """The URL without its password, for messages and `pyspamc stat`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _token_bytes(tokens: np.ndarray) -> list[bytes]:
    raw = tokens.astype(">u8").tobytes()
    return [raw[i : i + 8] for i in range(0, len(raw), 8)]


class RedisStorage(Storage):
    backend = "redis"

    def __init__(self, url: str, prefix: str = "pyspamd", timeout: float = 5.0,
                 cluster: bool = False) -> None:
        self.url = redacted(url)  # for messages; the client keeps the real one
        self.prefix = prefix
        try:
            # redis-py reconnects after fork by itself (its pool checks the pid).
            client_class = RedisCluster if cluster else redis.Redis
            self.client = client_class.from_url(url, socket_timeout=timeout,
                                                socket_connect_timeout=timeout)
        except redis.RedisError as exc:
            raise StorageError(f"Redis store {self.url}: cannot reach the cluster: {exc}") \
                from exc
        except ValueError as exc:
            raise StorageError(f"Redis store {self.url!r}: bad redis_url: {exc} (use "
                               "redis://HOST:PORT/DB or unix:///path/to/redis.sock?db=0)"
                               ) from exc
        tag = f"{prefix}:{{bayes}}"
        self.k_tokens, self.k_learned, self.k_totals = (
            f"{tag}:tokens", f"{tag}:learned", f"{tag}:totals")
        self.k_messages, self.k_model = f"{tag}:messages", f"{tag}:model"
        self.k_fit = {SPAM: f"{tag}:fit:spam", HAM: f"{tag}:fit:ham"}
        self.k_seq = f"{tag}:seq"
        self._learn_keys = [self.k_tokens, self.k_learned, self.k_totals, self.k_messages,
                            self.k_fit[SPAM], self.k_fit[HAM], self.k_seq]
        self.cluster = cluster
        # A batch's connection and the message whose learn script awaits its reply.
        self._inflight: tuple[Any, str | None] | None = None
        self._learn = self.client.register_script(_LEARN)
        self._expire = self.client.register_script(_EXPIRE)
        self._limit_fit = self.client.register_script(_LIMIT_FIT)
        self._incr = self.client.register_script(_INCR)
        self._take = self.client.register_script(_TAKE)
        self._swap_model = self.client.register_script(_SWAP_MODEL)
        self._snapshot = self.client.register_script(_SNAPSHOT)
        self._read = self.client.register_script(_READ)
        self._fuzzy_add = self.client.register_script(_FUZZY_ADD)
        self._fuzzy_del = self.client.register_script(_FUZZY_DEL)
        self.k_fuzzy = f"{prefix}:{{fuzzy}}"

    def _call(self, doing: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except redis.ConnectionError as exc:
            raise StorageError(f"Redis store {self.url}: cannot connect while {doing}: {exc} "
                               "(is redis-server running, and is redis_url right?); "
                               "nothing was changed") from exc
        except redis.TimeoutError as exc:
            raise StorageError(f"Redis store {self.url}: timed out while {doing}: {exc}") \
                from exc
        except redis.RedisError as exc:
            raise StorageError(f"Redis store {self.url}: {doing} failed: {exc}") from exc

    # --- Bayes ---
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
    def batch(self) -> Iterator[RedisStorage]:
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
            self._call("loading the learn script", self.client.script_load, _LEARN)
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

    # --- generic keyed state ---
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

    # --- fuzzy hashes ---
    def _fuzzy_hash_key(self, ident: int) -> bytes:
        return f"{self.k_fuzzy}:h:".encode() + _id_bytes(ident)

    def _fuzzy_bucket_key(self, bucket: int) -> bytes:
        return f"{self.k_fuzzy}:b:".encode() + _id_bytes(bucket)

    def _run_scripts(self, doing: str, script: Any, calls: list[tuple[list, list]]) -> int:
        """Run `script` once per (keys, args), pipelined; one by one on Redis Cluster, whose
        client refuses scripts in pipelines. Returns the sum of their replies."""
        if not calls:
            return 0
        if self.cluster:
            return sum(int(self._call(doing, script, keys=keys, args=args))
                       for keys, args in calls)
        pipe = self.client.pipeline(transaction=False)
        for keys, args in calls:
            script(keys=keys, args=args, client=pipe)
        return sum(int(r) for r in self._call(doing, pipe.execute))

    def fuzzy_add(self, entries: list[FuzzyEntry], ttl: float) -> int:
        expires = time.time() + ttl
        ms = max(1, int(ttl * 1000))
        return self._run_scripts("adding fuzzy hashes", self._fuzzy_add, [
            ([self._fuzzy_hash_key(e.id), f"{self.k_fuzzy}:ids",
              *(self._fuzzy_bucket_key(b) for b in e.buckets)],
             [_id_bytes(e.id), e.flag, repr(float(e.weight)), e.signature, ms, repr(expires)])
            for e in entries])

    def fuzzy_delete(self, ids: list[int], flag: int) -> int:
        return self._run_scripts("deleting fuzzy hashes", self._fuzzy_del, [
            ([self._fuzzy_hash_key(ident), f"{self.k_fuzzy}:ids"], [_id_bytes(ident), flag])
            for ident in ids])

    def fuzzy_find(self, buckets: list[int], ids: list[int]) -> list[FuzzyStored]:
        found = {_id_bytes(i) for i in ids}
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
                out.append(FuzzyStored(_id_int(raw), flag, weight, bytes(value[12:])))
        return out

    def fuzzy_expire(self) -> int:
        # The hashes expire by their own TTL; this drops them from the ids set.
        return int(self._call("expiring fuzzy hashes", self.client.zremrangebyscore,
                              f"{self.k_fuzzy}:ids", "-inf", time.time()))

    def fuzzy_count(self) -> int:
        return int(self._call("counting fuzzy hashes", self.client.zcount,
                              f"{self.k_fuzzy}:ids", f"({time.time()!r}", "+inf"))

    def close(self) -> None:
        self.client.close()

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
