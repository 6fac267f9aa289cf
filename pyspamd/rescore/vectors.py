"""Symbol vectors: for one labelled message, each symbol that fired and the factor its score
was multiplied by (1 for most; the Bayes confidence weight; the count of `multiple` rules).

They are what the score fit reads: from a scan (eval, rescore), from a JSON-lines cache, or
from the store, where each learn_spam/learn_ham and autolearn leaves one (bounded lists).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pyspamd.result import ScanResult
from pyspamd.storage.base import HAM, SPAM, StateStore, Storage
from pyspamd.symbols import is_hidden

# Store lists (Storage.list_push) holding the vectors of learned messages, one per class.
STORE_KEYS = {SPAM: "rescore:vectors:spam", HAM: "rescore:vectors:ham"}


@dataclass(slots=True)
class SymbolVector:
    spam: bool
    factors: dict[str, float]
    name: str = ""  # file label, for the reader of a cache
    digest: str = ""  # the Bayes message digest (hex), for vectors kept in the store

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"spam": self.spam, "symbols": self.factors}
        if self.name:
            out["name"] = self.name
        if self.digest:
            out["digest"] = self.digest
        return out

    @classmethod
    def from_json(cls, data: dict[str, object]) -> SymbolVector:
        factors = data.get("symbols")
        if not isinstance(factors, dict) or not isinstance(data.get("spam"), bool):
            raise ValueError("a vector needs \"spam\": true/false and \"symbols\": {...}")
        return cls(bool(data["spam"]), {str(k): float(v) for k, v in factors.items()},
                   str(data.get("name", "")), str(data.get("digest", "")))


def factors_of(result: ScanResult) -> dict[str, float]:
    return {s.name: round(s.factor, 4) for s in result.symbols.values()
            if not is_hidden(s.name)}


def write_jsonl(path: Path, vectors: Iterable[SymbolVector]) -> None:
    with path.open("w", encoding="utf-8") as out:
        for vector in vectors:
            out.write(json.dumps(vector.to_json(), sort_keys=True) + "\n")


def read_jsonl(path: Path) -> list[SymbolVector]:
    """Raises ValueError naming file:line for a line that is not a vector."""
    out: list[SymbolVector] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                out.append(SymbolVector.from_json(json.loads(line)))
            except (ValueError, TypeError, AttributeError) as exc:
                raise ValueError(f"{path}:{number}: not a symbol vector: {exc}") from exc
    return out


# --- the store's vectors of learned messages ---

def store_item(digest: bytes, factors: dict[str, float]) -> bytes:
    return json.dumps({"d": digest.hex(), "t": round(time.time(), 3), "s": factors},
                      sort_keys=True).encode()


def push_vectors(storage: StateStore, label: str, items: list[bytes], keep: int) -> None:
    """Add vectors (store_item) of messages learned as `label`, keeping the newest `keep`
    of the class ([bayes] max_fit_messages, as for the Bayes model's fit messages)."""
    storage.list_push(STORE_KEYS[label], items, keep or 1_000_000)


def keep_vector(storage: StateStore, label: str, digest: bytes, result: ScanResult,
                keep: int) -> None:
    """Keep one learned message's vector (autolearn, the controller's learn)."""
    push_vectors(storage, label, [store_item(digest, factors_of(result))], keep)


def stored_vectors(storage: Storage, limit: int) -> Iterator[SymbolVector]:
    """The vectors of the messages the store holds as learned, each under the class it is
    learned as now: a message learned again as the other class, or unlearned, left its
    old vector in the list, and that one is skipped."""
    seen: set[str] = set()
    entries: list[tuple[float, str, SymbolVector]] = []
    for label, key in STORE_KEYS.items():
        for raw in storage.list_recent(key, limit or 1_000_000):
            try:
                data = json.loads(raw)
                vector = SymbolVector(label == SPAM, {str(k): float(v)
                                                      for k, v in data["s"].items()},
                                      digest=str(data["d"]))
                entries.append((float(data.get("t", 0.0)), label, vector))
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # not ours; a vector is a hint, not a record to fail on
    entries.sort(key=lambda e: (-e[0], e[2].digest))  # newest first wins a digest
    for _, label, vector in entries:
        if vector.digest in seen:
            continue
        seen.add(vector.digest)
        if storage.learned_as(bytes.fromhex(vector.digest)) == label:
            yield vector
