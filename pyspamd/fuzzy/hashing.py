"""Fuzzy hashes of a message: what survives small edits of a reported campaign.

Each text part gives a MinHash signature of its word 3-shingles after normalisation
(lower case; URLs, addresses, anything with a digit dropped, so changed links, tracking
ids, prices and dates do not count). Two parts' signatures agree in a share of places that
estimates the Jaccard similarity of their shingle sets. The signature is cut into bands;
each band's hash is a bucket key (locality-sensitive hashing), so finding similar stored
parts is a look-up of a few keys, whatever the store's size.

Attachments and images get an exact hash of their decoded content instead.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import numpy as np
import xxhash

from pyspamd.mime import payload_bytes
from pyspamd.task import Task

HASHES = 64  # MinHash values per signature
BAND_ROWS = 4  # values per LSH band: 16 bands; Jaccard 0.7 is a candidate 98% of the time
BANDS = HASHES // BAND_ROWS
SHINGLE = 3  # words per shingle: one changed word changes at most three shingles
TEXT, EXACT = "txt", "bin"  # kinds, as options show them
MAX_EXACT_BYTES = 32 << 20  # decoded bytes hashed of one attachment at most

MAX_TOKENS = 1000  # whitespace-separated tokens read per part: a campaign shows early
_PUNCT = string.punctuation + "\u00ab\u00bb\u201c\u201d\u2018\u2019\u2026\u2013\u2014\u2022"
_TOKEN_CACHE_MAX = 300_000

# The permutations (xor, then multiply by an odd number, modulo 2**64): stored signatures
# are comparable only with these, so they come from xxh64 (fixed by its spec), not from a
# random generator whose stream a library update may change.
_XOR = np.array([xxhash.xxh64_intdigest(b"pyspamd-fuzzy-xor", seed=i) for i in range(HASHES)],
                dtype=np.uint64)
_MUL = np.array([xxhash.xxh64_intdigest(b"pyspamd-fuzzy-mul", seed=i) | 1
                 for i in range(HASHES)], dtype=np.uint64)
_XOR_COL, _MUL_COL = _XOR[:, None].copy(), _MUL[:, None].copy()
_K1, _K2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F)


@dataclass(frozen=True, slots=True)
class FuzzyHash:
    kind: str  # TEXT or EXACT
    id: int  # signed 64-bit: the signature's hash, or the content's hash
    signature: np.ndarray | None  # uint32 x HASHES for TEXT
    buckets: tuple[int, ...]  # signed 64-bit LSH band keys for TEXT; () for EXACT


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _word(token: str) -> str | None:
    """The word a lower-case token stands for, or None: a token with a digit, "/", "@" or
    an inner dot (a link, an address, a host name, a price, a tracking id) is dropped."""
    word = token.strip(_PUNCT)
    return word if 2 <= len(word) <= 24 and word.isalpha() else None


def words(text: str) -> list[str]:
    """The words of a text as the fuzzy hash sees them."""
    return [w for w in map(_word, text.lower().split()[:MAX_TOKENS]) if w is not None]


class _TokenHashes(dict[str, int]):
    """Token -> xxh64 of its word, 0 for a dropped token. Most tokens of a message were seen
    in earlier ones, so the per-token work is a dict look-up run in C (map over
    __getitem__); only a new token is normalised and hashed in Python."""

    def __missing__(self, token: str) -> int:
        if len(self) >= _TOKEN_CACHE_MAX:
            self.clear()
        word = _word(token)
        value = 0 if word is None else (
            xxhash.xxh64_intdigest(word.encode("utf-8", "surrogatepass")) or 1)
        self[token] = value
        return value


_token_hashes = _TokenHashes()


def shingles(text: str) -> np.ndarray:
    """Hashes (uint64) of the text's word 3-shingles, distinct."""
    tokens = text.lower().split()[:MAX_TOKENS]
    h = np.fromiter(map(_token_hashes.__getitem__, tokens), dtype=np.uint64,
                    count=len(tokens))
    h = h[h != 0]
    if len(h) < SHINGLE:
        return np.zeros(0, dtype=np.uint64)
    with np.errstate(over="ignore"):
        combined = (h[:-2] * _K1) ^ (h[1:-1] * _K2) ^ h[2:]
    combined.sort()
    return combined[np.concatenate(([True], combined[1:] != combined[:-1]))]


def signature(shingle_hashes: np.ndarray) -> np.ndarray:
    """HASHES MinHash values (uint32: the top half of each 64-bit minimum). One row per
    permutation, so each minimum runs over contiguous memory (3.5x faster than columns)."""
    mixed = np.bitwise_xor(_XOR_COL, shingle_hashes[None, :])
    np.multiply(mixed, _MUL_COL, out=mixed)  # wraps modulo 2**64, as intended
    return (mixed.min(axis=1) >> np.uint64(32)).astype(np.uint32)


def band_keys(sig: np.ndarray) -> tuple[int, ...]:
    raw = sig.astype("<u4").tobytes()
    step = BAND_ROWS * 4
    return tuple(_signed(xxhash.xxh64_intdigest(raw[i * step:(i + 1) * step], seed=i))
                 for i in range(BANDS))


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.count_nonzero(a == b)) / HASHES


def text_hash(text: str, min_shingles: int) -> FuzzyHash | None:
    """The part's fuzzy hash, or None when it has too little text to tell campaigns apart."""
    found = shingles(text)
    if len(found) < min_shingles:
        return None
    sig = signature(found)
    ident = _signed(xxhash.xxh64_intdigest(sig.astype("<u4").tobytes()))
    return FuzzyHash(TEXT, ident, sig, band_keys(sig))


def exact_hash(data: bytes) -> FuzzyHash:
    return FuzzyHash(EXACT, _signed(xxhash.xxh3_64_intdigest(data)), None, ())


def message_hashes(task: Task, min_shingles: int, min_bytes: int) -> list[FuzzyHash]:
    """Every fuzzy hash of a message: text parts, then attachments and images of at least
    `min_bytes` (smaller ones are logos and spacers that ham of the same sender shares)."""
    out: list[FuzzyHash] = []
    seen: set[int] = set()
    for part in task.text_parts:
        fh = text_hash(part.text, min_shingles)
        if fh is not None and fh.id not in seen:
            seen.add(fh.id)
            out.append(fh)
    for mime_part in task.parts:
        if mime_part.content_type.startswith(("multipart/", "message/")):
            continue
        if not (mime_part.is_attachment or mime_part.content_type.startswith("image/")):
            continue
        if mime_part.content_type in ("text/plain", "text/html") and not mime_part.is_attachment:
            continue
        data, _ = payload_bytes(mime_part, MAX_EXACT_BYTES)
        if len(data) < min_bytes:
            continue
        fh = exact_hash(data)
        if fh.id not in seen:
            seen.add(fh.id)
            out.append(fh)
    return out
