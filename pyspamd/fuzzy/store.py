"""Adding, deleting and matching a message's fuzzy hashes against the store."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pyspamd.config import Config
from pyspamd.fuzzy.hashing import EXACT, TEXT, FuzzyHash, message_hashes, similarity
from pyspamd.fuzzy.settings import FuzzyConfig
from pyspamd.storage.base import FuzzyEntry, FuzzyStore
from pyspamd.task import Task


@dataclass(frozen=True, slots=True)
class FuzzyMatch:
    flag: int
    kind: str  # TEXT or EXACT
    similarity: float  # 1.0 for an exact hash
    weight: float  # the stored hash's summed weight


def hashes_of(task: Task, config: FuzzyConfig) -> list[FuzzyHash]:
    return message_hashes(task, config.min_shingles, config.min_bytes)


def entries(hashes: list[FuzzyHash], flag: int, weight: float) -> list[FuzzyEntry]:
    return [FuzzyEntry(h.id, flag, weight,
                       h.signature.astype("<u4").tobytes() if h.signature is not None else b"",
                       h.buckets) for h in hashes]


def fuzzy_add(storage: FuzzyStore, task: Task, config: FuzzyConfig, flag: int,
              weight: float = 1.0) -> tuple[int, int]:
    """(hashes the message has, of which new to the store)."""
    hashes = hashes_of(task, config)
    if not hashes:
        return 0, 0
    added = storage.fuzzy_add(entries(hashes, flag, weight), config.expire_days * 86400.0)
    return len(hashes), added


def fuzzy_delete(storage: FuzzyStore, task: Task, config: FuzzyConfig,
                 flag: int) -> tuple[int, int]:
    """(hashes the message has, of which were stored with `flag` and are now gone)."""
    hashes = hashes_of(task, config)
    if not hashes:
        return 0, 0
    return len(hashes), storage.fuzzy_delete([h.id for h in hashes], flag)


def find_matches(storage: FuzzyStore, hashes: list[FuzzyHash],
                 min_similarity: float) -> list[FuzzyMatch]:
    """The best match per flag among the stored hashes like `hashes`."""
    if not hashes:
        return []
    buckets = [b for h in hashes for b in h.buckets]
    exact = {h.id for h in hashes if h.kind == EXACT}
    texts = [h.signature for h in hashes if h.kind == TEXT and h.signature is not None]
    best: dict[int, FuzzyMatch] = {}
    for stored in storage.fuzzy_find(buckets, sorted(exact)):
        if stored.id in exact:
            match = FuzzyMatch(stored.flag, EXACT, 1.0, stored.weight)
        elif stored.signature and texts:
            theirs = np.frombuffer(stored.signature, dtype="<u4")
            if len(theirs) != len(texts[0]):
                continue  # written by another signature size: not comparable
            score = max(similarity(ours, theirs) for ours in texts)
            if score < min_similarity:
                continue
            match = FuzzyMatch(stored.flag, TEXT, score, stored.weight)
        else:
            continue
        if stored.flag not in best or match.similarity > best[stored.flag].similarity:
            best[stored.flag] = match
    return sorted(best.values(), key=lambda m: m.flag)


def learned_spam_hook(config: Config, storage: FuzzyStore) -> Callable[[Task], object] | None:
    """What learn_spam calls with each message it learns, when [fuzzy] learn_spam is on:
    a message reported as spam is also a campaign whose variants should match."""
    settings = config.fuzzy
    if not settings.learn_spam:
        return None
    return lambda task: fuzzy_add(storage, task, settings, settings.learn_flag)
