"""The storage interfaces, one per purpose, and what they exchange:

- BayesStore: token counts, learn/unlearn, the learned model, Bayes stats and backups
  (checks/bayes.py, classifiers/, cli learn);
- StateStore: counters, token buckets, values with a time to live and bounded lists
  (greylisting, rate limits, scan statistics and history);
- FuzzyStore: fuzzy hashes of reported messages (pyspamd/fuzzy);
- Storage: all three, which each backend implements in one class over one connection
  handling; pyspamd.services.Services opens it once per process.

Callers type against the narrow interface they use. Two backends implement them with the
same results: SQLite (embedded, the default) and Redis (pyspamd/storage/backends.py lists
them). Token hashes travel as numpy uint64 arrays; counts come back as int64 arrays in the
same order, so the classifier never loops in Python over tokens.
"""

from __future__ import annotations

import secrets
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from enum import Enum
from typing import Self

import numpy as np

from pyspamd.storage.errors import BatchError, StorageError, StorageMissing

__all__ = ["BatchError", "StorageError", "StorageMissing"]  # re-exported: callers import them here

SPAM = "spam"
HAM = "ham"
CLASSES = (SPAM, HAM)


class LearnOutcome(Enum):
    LEARNED = "learned"
    ALREADY = "already learned"
    MOVED = "moved"  # it was learned as the other class; now it counts as this one
    UNLEARNED = "unlearned"
    NOT_LEARNED = "not learned"  # unlearn of a message never learned


@dataclass(frozen=True, slots=True)
class BayesStats:
    backend: str  # "sqlite3" or "redis", as rspamc stat names statfile types
    location: str
    learned: dict[str, int]  # messages per class
    tokens: int  # distinct tokens stored
    size_bytes: int  # file size (SQLite) or memory used (Redis)
    # Messages per class whose tokens are stored, which the logistic model is fitted from:
    # at most [bayes] max_fit_messages each, the newest learned.
    fit_messages: dict[str, int]


MODEL = "model"  # the totals entry that holds the number of tokens in the learned model


@dataclass(frozen=True, slots=True)
class TokenCounts:
    spam: np.ndarray  # int64, per token, in the order asked
    ham: np.ndarray
    nspam: int  # messages learned per class
    nham: int
    weights: np.ndarray | None = None  # float64, the learned model's weight per token
    model_tokens: int = 0  # tokens in the learned model; 0: no model fitted yet


@dataclass(frozen=True, slots=True)
class ModelSnapshot:
    """Totals and the learned model's identity from one read; the model itself only when
    the caller's copy is not of that generation."""

    nspam: int
    nham: int
    generation: int  # a new random id at every fit; 0: no model fitted yet
    tokens: np.ndarray | None = None  # uint64, sorted ascending
    weights: np.ndarray | None = None  # float64, per token


# token_counts(NO_TOKENS): the class totals (and the model's size) alone, one small read.
NO_TOKENS = np.zeros(0, dtype=np.uint64)
MODEL_GENERATION = "model_gen"  # the totals entry that holds the model's generation


def new_model_generation() -> int:
    """An id for a freshly fitted model: random rather than a counter, so a store that was
    emptied and fitted again can never repeat an id a worker still holds."""
    return secrets.randbits(62) + 1


def sorted_model(tokens: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(tokens, kind="stable")
    return tokens[order], weights[order].astype(np.float64)


def pack_tokens(tokens: np.ndarray) -> bytes:
    """A learned message's tokens as stored with its digest (big-endian u64), so the
    logistic model can be fitted again from every learned message."""
    return tokens.astype(">u8").tobytes()


def unpack_tokens(raw: bytes | None) -> np.ndarray:
    return np.frombuffer(raw or b"", dtype=">u8").astype(np.uint64)


@dataclass(frozen=True, slots=True)
class FuzzyEntry:
    """One fuzzy hash to store (pyspamd/fuzzy): a text part's MinHash signature with its
    LSH bucket keys, or an attachment's exact hash (empty signature, no buckets)."""

    id: int  # signed 64-bit
    flag: int
    weight: float
    signature: bytes  # uint32 little-endian values; b"" for an exact hash
    buckets: tuple[int, ...] = ()  # signed 64-bit


@dataclass(frozen=True, slots=True)
class FuzzyStored:
    id: int
    flag: int
    weight: float  # summed over every fuzzy_add of this hash with this flag
    signature: bytes


def bucket_after(raw: bytes | None, capacity: float, rate: float,
                 now: float) -> tuple[bool, float, float]:
    """The token-bucket arithmetic, shared by the backends that run it in Python:
    (taken, tokens left, time of this use) from the stored "TOKENS|LAST" value."""
    tokens, last = capacity, now
    if raw:
        try:
            left, _, stamp = raw.decode().partition("|")
            tokens, last = float(left), float(stamp)
        except ValueError:  # damaged: start over with a full bucket
            tokens, last = capacity, now
    if now > last:  # a clock that went back adds nothing
        tokens = min(capacity, tokens + (now - last) * rate)
        last = now
    taken = tokens >= 1.0
    if taken:
        tokens -= 1.0
    return taken, tokens, last


def bucket_ttl(capacity: float, rate: float) -> float:
    """Seconds after which an unused bucket is full again and need not be kept."""
    return capacity / rate + 60.0 if rate > 0 else 400 * 86400.0


def other_class(label: str) -> str:
    return HAM if label == SPAM else SPAM


def check_label(label: str) -> None:
    if label not in CLASSES:
        raise ValueError(f"class must be one of {CLASSES}, got {label!r}")




class Handle(ABC):
    """What every store interface shares: closing, also as a context manager. Handles
    must be safe to use again after a fork (each process opens its own connection on
    first use)."""

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BayesStore(Handle):
    """Implementations must make each learn/unlearn atomic (all of a message's tokens and
    its digest, or nothing)."""

    backend: str

    @abstractmethod
    def token_counts(self, tokens: np.ndarray, model_only: bool = False) -> TokenCounts:
        """Counts, model weights and totals for `tokens`, from one snapshot. `model_only`:
        when a model is stored, leave the counts at zero and read only the weights (half
        the look-ups, for the logistic classifier); without a model, read the counts."""

    @abstractmethod
    def model_snapshot(self, known: int) -> ModelSnapshot:
        """Totals and the model's generation in one read, plus the whole model when its
        generation is not `known`: workers keep the model in memory and look tokens up
        there, so a scan costs one small read instead of one look-up per token."""

    @abstractmethod
    def learn(self, digest: bytes, tokens: np.ndarray, label: str, day: int,
              name: str = "", keep: int = 0) -> LearnOutcome:
        """Count a message as `label`; moves it if it was learned as the other class.
        `day` (days since the epoch) marks the tokens as recently seen, for expiry. The
        message's tokens are stored for the model fit as the newest of its class; `keep`
        > 0 then drops the stored tokens of all but the newest `keep` of that class (their
        digests and token counts stay). Within a batch that may happen when it is written."""

    @abstractmethod
    def unlearn(self, digest: bytes, tokens: np.ndarray) -> LearnOutcome: ...

    @abstractmethod
    def learned_as(self, digest: bytes) -> str | None: ...

    @abstractmethod
    def bayes_stats(self) -> BayesStats: ...

    @abstractmethod
    def learned_messages(self) -> list[tuple[bytes, str, np.ndarray]]:
        """(digest, class, tokens) of every learned message whose tokens are stored, sorted
        by digest, so a model fitted from them is the same on every backend."""

    @abstractmethod
    def limit_fit_messages(self, keep: int) -> int:
        """Drop the stored tokens of all but the newest `keep` messages of each class, as
        learn() does for the class it learns (needed when the limit was lowered); returns
        how many messages' tokens were dropped."""

    @abstractmethod
    def set_model(self, tokens: np.ndarray, weights: np.ndarray) -> None:
        """Replace the learned model (a weight per token) in one step: readers see the old
        model or the new one, never a mix."""

    @abstractmethod
    def expire_tokens(self, before_day: int, max_hits: int = 1) -> int:
        """Drop tokens seen at most `max_hits` times and last learned before `before_day`;
        returns how many were dropped."""

    @abstractmethod
    def bayes_marker(self, key: str) -> bytes | None:
        """A small value that describes what is stored (the tokenizer version learned
        with), kept beside the Bayes data."""

    @abstractmethod
    def set_bayes_marker(self, key: str, value: bytes) -> None: ...

    @abstractmethod
    def bayes_records(self) -> Iterator[tuple]:
        """Everything Bayes holds as portable records (pyspamd/storage/portable.py), from
        one snapshot where the backend has them."""

    @abstractmethod
    def bayes_replace(self, records: Iterable[tuple]) -> None:
        """Replace everything Bayes holds with `records` (a restore)."""

    def bayes_clear(self) -> None:
        self.bayes_replace(())

    def batch(self) -> AbstractContextManager[object]:
        """Context for many learns in a row; a backend may group them into one commit.
        A learn inside may be stored only when the batch ends (or fills up); if that commit
        fails, BatchError names what was lost (by the `name` given to learn())."""
        return nullcontext()


class StateStore(Handle):
    """Generic keyed state: greylist triplets, rate-limit buckets, counters, scan statistics
    and history. Keys are plain strings; values bytes."""

    backend: str

    @abstractmethod
    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Add to a counter and return the new value; `ttl` (seconds) is set when the key
        is created, so a window starts with its first hit."""

    @abstractmethod
    def get(self, key: str) -> bytes | None: ...

    @abstractmethod
    def set(self, key: str, value: bytes, ttl: float | None = None) -> None: ...

    @abstractmethod
    def delete(self, key: str) -> bool: ...

    @abstractmethod
    def scan_prefix(self, prefix: str, limit: int = 10000) -> list[tuple[str, bytes]]:
        """(key, value) of the generic state whose key starts with `prefix`, not expired,
        sorted by key, at most `limit`: for admin listings, not for the scan path."""

    @abstractmethod
    def take_token(self, key: str, capacity: float, rate: float, now: float) -> tuple[bool, float]:
        """A token bucket, atomically under any number of processes and hosts: refill
        `rate` tokens per second (up to `capacity`) since the bucket's last use, then take
        one token if there is a whole one. Returns (taken, tokens left). A bucket not seen
        before is full. `now` comes from the caller so tests can move the clock; the
        stored value is "TOKENS|LAST_TIME" on both backends."""

    @abstractmethod
    def incr_many(self, changes: list[tuple[str, int, float | None]]) -> None:
        """Many (key, amount, ttl) incr()s as one write: one transaction or one pipeline, so
        a worker's statistics for a second of mail cost one round trip."""

    @abstractmethod
    def list_push(self, key: str, items: list[bytes], keep: int) -> None:
        """Add `items` (oldest first) to the newest end of a list, then keep only the newest
        `keep` items: a bounded log shared by all processes and hosts."""

    @abstractmethod
    def list_recent(self, key: str, count: int) -> list[bytes]:
        """The newest `count` items of a list, newest first."""


class FuzzyStore(Handle):
    """Fuzzy hashes of reported messages (pyspamd/fuzzy)."""

    @abstractmethod
    def fuzzy_add(self, entries: list[FuzzyEntry], ttl: float) -> int:
        """Store hashes for `ttl` seconds (an existing one lives `ttl` from now). Adding a
        stored hash with its flag adds to its weight; with another flag it replaces flag
        and weight. Returns how many were not stored before."""

    @abstractmethod
    def fuzzy_delete(self, ids: list[int], flag: int) -> int:
        """Forget the hashes `ids` stored with `flag`; returns how many there were."""

    @abstractmethod
    def fuzzy_find(self, buckets: list[int], ids: list[int]) -> list[FuzzyStored]:
        """Unexpired stored hashes that share a bucket key with `buckets` or whose id is in
        `ids`: the candidates a scan compares itself with. Cost grows with the keys asked,
        not with the store's size."""

    @abstractmethod
    def fuzzy_expire(self) -> int:
        """Drop expired hashes and their bucket keys; returns how many hashes went."""

    @abstractmethod
    def fuzzy_count(self) -> int:
        """Unexpired hashes stored."""


class Storage(BayesStore, StateStore, FuzzyStore):
    """One backend's handle for every purpose: what Services opens once per process. The
    Bayes markers live in the generic state, under the key they are given."""

    def bayes_marker(self, key: str) -> bytes | None:
        return self.get(key)

    def set_bayes_marker(self, key: str, value: bytes) -> None:
        self.set(key, value)
