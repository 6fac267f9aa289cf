"""Message to tokens: 64-bit hashes of words, sparse bigrams, header and URL features.

Every token is an unsigned 64-bit xxh64 hash, so the store keeps eight bytes per token
whatever the word, and lookups are by integer. Word pairs are combined from the words'
hashes with numpy, so a message's few thousand bigrams cost one vectorised pass instead of
one hash call each.
"""

from __future__ import annotations

import itertools
import re
import string
import unicodedata
from dataclasses import dataclass

import numpy as np
import xxhash

from pyspamd.task import Task

# A word: letters/digits, with inner apostrophes, dots, dashes, $ and @ kept, so that
# "don't", "3.99", "e-mail", "$100" and "joe@host" each stay one word.
_WORD = re.compile(r"[^\W_][\w'’$€£@.\-]*", re.UNICODE)
_TRIM = ".'’-@"

# OSB: word i is paired with each of the next (window - 1) words, the pair keyed by its
# distance. A closer pair says more about the phrase than a distant one, so its vote counts
# for more. The default window is 1 (single words): on the SpamAssassin corpus pairs did not
# beat single words under chi-square combining (they are correlated, which makes it
# overconfident both ways: more ham false positives) and cost 2-3x the look-ups; see the
# README's table. `[bayes] osb_window` turns pairs on.
OSB_WINDOW = 1
UNIGRAM_WEIGHT = 1.0
OSB_WEIGHTS = (1.0, 0.85, 0.7, 0.55)

# Headers not tokenized: those added after the message left the MTA (delivery, the reader's
# mail client: X-Keywords, Status), other filters' verdicts (a label, not evidence), and
# unique ids and dates, which never recur (a duplicate's Message-ID would only teach the
# filter that one message). Subject and Received have tokens of their own.
SKIP_HEADERS = frozenset({
    "subject", "received", "date", "message-id", "references", "in-reply-to",
    "resent-message-id", "x-message-id", "thread-index", "delivered-to", "delivery-date",
    "x-original-date", "x-keywords", "x-status", "status", "x-uid", "x-razor-id",
    "x-spamadvice", "x-mailscanner-spamcheck", "x-spamcop-disposition", "x-spamcop-checked",
    "x-mailman-version",
})
SKIP_HEADER_PREFIXES = ("x-spam",)
HEADER_VALUE_WORDS = 40  # per header value; the start says what it is
# Header values split on spaces and address punctuation, so "Joe <joe@x.org>" gives the
# display-name words and the whole address as tokens.
_HEADER_WORD = re.compile(r"[^\s<>\"'(),;:]+")
# ASCII letters and digits to their class, as _shape's three substitutions did one by one
_SHAPE_CLASSES = str.maketrans({
    **dict.fromkeys(string.ascii_uppercase, "A"), **dict.fromkeys(string.ascii_lowercase, "a"),
    **dict.fromkeys(string.digits, "9"),
})
_RUN = re.compile(r"(.)\1+")
# Every message has this token: its learned weight is the logistic model's bias.
BIAS_TOKEN = "bias:"
# Raised whenever a message's tokens change. A store learned by another version does not
# recognise its messages again (a digest is of the tokens) and fits old and new tokens
# together, so `pyspamc learn_*` and `stat` tell the admin to relearn. 2: header layout.
TOKENIZER_VERSION = 2

_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)
_K1 = np.uint64(0x9E3779B97F4A7C15)
_K2 = np.uint64(0xC2B2AE3D27D4EB4F)
_K3 = np.uint64(0xFF51AFD7ED558CCD)
_K4 = np.uint64(0xC4CEB9FE1A85EC53)


@dataclass(frozen=True, slots=True)
class TokenizerLimits:
    max_words: int = 1500  # body words used for unigrams and bigrams
    max_text_chars: int = 200_000  # decoded text looked at, so a 2 MiB part costs no more
    max_word_len: int = 20  # longer "words" become skip tokens (base64 junk, hashes)
    max_tokens: int = 8000  # distinct tokens per message, whatever the input
    osb_window: int = OSB_WINDOW  # 1: single words only


@dataclass(slots=True)
class Tokens:
    """Distinct tokens of one message, sorted, each with its weight (0 < w <= 1)."""

    hashes: np.ndarray  # uint64
    weights: np.ndarray  # float64, same length

    def __len__(self) -> int:
        return len(self.hashes)

    def digest(self) -> bytes:
        """Identity of the message for learning: the same tokens are the same message, so a
        re-learn is recognised, and an unlearn removes exactly what the learn added."""
        return xxhash.xxh3_128_digest(self.hashes.tobytes())


def _h(text: str) -> int:
    return xxhash.xxh64_intdigest(text.encode("utf-8", "surrogatepass"))


def hash_texts(texts: list[str]) -> np.ndarray:
    """_h of each text, in order. The 8-byte digests are joined and read as one array,
    which is cheaper than numpy converting 64-bit Python ints one at a time; hashing a word
    each time it recurs costs less than finding the recurrences first."""
    h = xxhash.xxh64_digest
    digests = b"".join([h(text.encode("utf-8", "surrogatepass")) for text in texts])
    return np.frombuffer(digests, dtype=">u8").astype(np.uint64)


def _starts(ordered: np.ndarray) -> np.ndarray:
    """Where each run of equal values of a sorted array starts."""
    new = np.empty(len(ordered), dtype=bool)
    new[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=new[1:])
    return new


def distinct(values: np.ndarray) -> np.ndarray:
    """np.unique(values): numpy 2's hash-table way costs three times a sort on a message's
    few hundred tokens."""
    ordered = np.sort(values)
    return ordered[_starts(ordered)]


def _unique_first(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """np.unique(values, return_index=True): sorted distinct values and where each first
    occurs (a stable sort keeps the first of equals first), without np.unique's set-up."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    new = _starts(ordered)
    return ordered[new], order[new]


def _mix(a: np.ndarray, b: np.ndarray, distance: int) -> np.ndarray:
    """Order- and distance-sensitive combination of two word hashes (murmur3 finaliser)."""
    with np.errstate(over="ignore"):
        x = (a * _K1) ^ ((b << np.uint64(31)) | (b >> np.uint64(33))) * _K2
        x ^= np.uint64(distance) * _K4
        x ^= x >> np.uint64(33)
        x *= _K3
        x ^= x >> np.uint64(33)
        x *= _K4
        x ^= x >> np.uint64(33)
    return x & _MASK


def normalise(text: str) -> str:
    # NFKC folds full-width letters, ligatures and compatibility forms that spammers use to
    # dodge word matches; casefold is lower() that also handles ß and friends.
    return unicodedata.normalize("NFKC", text).casefold()


def words(text: str, limits: TokenizerLimits) -> tuple[list[str], list[str]]:
    """(words, extra tokens): the word sequence and skip tokens for over-long words."""
    out: list[str] = []
    extra: list[str] = []
    for raw in _WORD.findall(normalise(text[: limits.max_text_chars])):
        word = raw.rstrip(_TRIM)
        n = len(word)
        if n < 2:
            continue
        if n > limits.max_word_len:
            # Over-long strings are rarely the same twice; their shape is what recurs.
            extra.append(f"skip:{word[0]}:{n // 10 * 10}")
            continue
        out.append(word)
        if len(out) >= limits.max_words:
            break
    return out, extra


def _domain(address: str) -> str:
    return address.rpartition("@")[2].strip().strip(">").lower()


def header_tokens(task: Task) -> list[str]:
    out: list[str] = []
    headers = task.headers
    if task.from_address:
        out.append(f"from:{task.from_address}")
        out.append(f"fromdom:{_domain(task.from_address)}")
    for name, _address in headers.addresses("from")[:1]:
        out.extend(f"fromname:{w}" for w in normalise(name).split()[:5])
        if not name:
            out.append("fromname:<none>")
    reply = headers.addresses("reply-to")
    if reply:
        out.append(f"replyto:{_domain(reply[0][1])}")
        out.append("replyto:same" if reply[0][1] == task.from_address else "replyto:other")
    else:
        out.append("replyto:<none>")
    for name in ("x-mailer", "user-agent"):
        for value in headers.decoded(name)[:1]:
            out.append(f"mailer:{normalise(value)[:60]}")
    for part in task.parts[:20]:
        out.append(f"ctype:{part.content_type}")
        if part.charset:
            out.append(f"charset:{part.charset.lower()}")
        if part.transfer_encoding:
            out.append(f"cte:{part.transfer_encoding.lower()}")
        if part.filename:
            out.append(f"fileext:{part.filename.rpartition('.')[2].lower()[:10]}")
    subject_words, _ = words(task.subject, TokenizerLimits(max_words=30))
    out.extend(f"subj:{w}" for w in subject_words)
    out.extend(all_header_tokens(task))
    return out


def _shape(value: str) -> str:
    """A string's shape: A for upper, a for lower, 9 for digits, runs folded (A+a+9+@...):
    a mailer's Message-ID format recurs where the id itself never does."""
    shape = value.strip().translate(_SHAPE_CLASSES)
    # a function, not the template r"\1+", which Python 3.11 expands in Python per match
    return _RUN.sub(_fold_run, shape)[:40]


def _fold_run(run: re.Match[str]) -> str:
    return run.group(1) + "+"


def all_header_tokens(task: Task) -> list[str]:
    """SpamBayes-style: every header's name, and the words of its value prefixed by the name
    (mailing-list headers, Precedence, To, Organization, MIME headers...), plus the shape
    of the Message-ID and the structure of the Received chain. On the SpamAssassin corpus
    these took a third of a learned model's errors away, but not chi2's (README)."""
    out: list[str] = []
    headers = task.headers
    names = list(dict.fromkeys(name.lower() for name, _ in headers.items))
    kept = 0
    for name in names:
        if name in SKIP_HEADERS or name.startswith(SKIP_HEADER_PREFIXES):
            continue
        values = headers.decoded(name)[:5]
        kept += len(values)
        out.extend(header_value_tokens(name, values))
    out.append(f"nhdrs:{min(kept // 3, 20)}")
    out.extend(header_layout_tokens(task))
    message_id = headers.first("message-id")
    if message_id:
        out.append(f"msgidshape:{_shape(message_id)}")
        out.append(f"msgiddom:{message_id.rpartition('@')[2].strip('> ').lower()}")
    else:
        out.append("msgid:<none>")
    out.extend(received_tokens(task))
    return out


def header_value_tokens(name: str, values: list[str]) -> list[str]:
    """The header's name once per value, and the words of each value prefixed by the name."""
    out: list[str] = []
    for value in values:
        out.append(f"hdr:{name}")
        for word in _HEADER_WORD.findall(normalise(value[:500]))[:HEADER_VALUE_WORDS]:
            if len(word) <= 60:
                out.append(f"{name}:{word}")
    return out


def received_tokens(task: Task) -> list[str]:
    """The Received chain: hosts, networks, protocols and its length; made once per task
    (tokenize and the content model both ask)."""
    cached: list[str] | None = task.__dict__.get("_received_tokens")
    if cached is not None:
        return cached
    out: list[str] = []
    task.__dict__["_received_tokens"] = out
    for hop in task.received[:6]:
        for host in (hop.rdns, hop.helo, hop.by):
            if host:
                out.append(f"rcvd:{host}")
        if hop.ip:
            out.append(f"rcvdip:{'.'.join(hop.ip.split('.')[:3])}")
    out.append(f"nrcvd:{min(len(task.received), 10)}")
    for i, hop in enumerate(task.received[:8]):
        if hop.protocol:
            out.append(f"rcvdproto:{hop.protocol.lower()}")
        if hop.by:
            out.append(f"rcvdby{i}:{hop.by}")
        if hop.ip and not hop.rdns:
            out.append(f"rcvdnordns:{i}")
    return out


# Headers the receiving side writes: who the message was delivered to and what the
# receiving MTAs found. A site's own Bayes learns from them usefully; a model shipped from
# other people's mailboxes would only learn which collector each corpus came from.
RECEIVING_HEADERS = (
    "to", "cc", "bcc", "x-original-to", "envelope-to", "x-envelope-to", "return-path",
    "authentication-results", "arc-seal", "arc-message-signature",
    "arc-authentication-results", "received-spf", "x-received",
)


def receiving_side_tokens(task: Task) -> list[str]:
    """The tokens of the Received chain and of RECEIVING_HEADERS, as tokenize makes them."""
    out = list(received_tokens(task))
    headers = task.headers
    for name in RECEIVING_HEADERS:
        if name in headers:
            out.extend(header_value_tokens(name, headers.decoded(name)[:5]))
    return out


def header_layout_tokens(task: Task) -> list[str]:
    """How the headers are written rather than what they say: each pair of neighbouring
    header names (the order a mailer writes them in), each name as spelt ("X-mailer" is not
    what Outlook writes), and the Date's shape and zone. A bulk mailer that copies a
    well-known client's words rarely copies its layout. On the SpamAssassin corpus these
    cut the errors at the best threshold per split by a fifth (README)."""
    names = [name for name, _ in task.headers.items]
    out = [f"hcase:{name}" for name in dict.fromkeys(names)]
    lower = [name.lower() for name in names]
    out.extend(f"horder:{a}>{b}" for a, b in itertools.pairwise(lower))
    date = task.headers.first("date").split()
    if date:
        out.append(f"dateshape:{_shape(' '.join(date))}")
        out.append(f"datezone:{date[-1][:10]}")
    else:
        out.append("date:<none>")
    return out


def url_tokens(task: Task) -> list[str]:
    out: list[str] = []
    for url in task.urls[:100]:
        host = url.host
        out.append(f"url:{host}")
        labels = host.split(".")
        if len(labels) > 2:
            out.append(f"url:{'.'.join(labels[-2:])}")
        for segment in url.path.lower().split("/")[1:4]:
            if segment:
                out.append(f"urlpath:{segment[:30]}")
    return out


def tokenize(task: Task, limits: TokenizerLimits | None = None) -> Tokens:
    limits = limits or TokenizerLimits()
    body_words, extra = words(task.body_text, limits)
    features = [BIAS_TOKEN, *extra, *header_tokens(task), *url_tokens(task)]
    # Features and unigrams first, then bigrams by distance: np.unique keeps the first
    # occurrence of a hash, so a token that is both keeps its largest weight, and a cut at
    # max_tokens keeps the bias and header tokens.
    word_hashes = hash_texts(body_words)
    feature_hashes = hash_texts(features)
    parts = [feature_hashes, word_hashes]
    weights = [np.full(len(word_hashes) + len(feature_hashes), UNIGRAM_WEIGHT)]
    for distance in range(1, min(limits.osb_window, len(OSB_WEIGHTS) + 1)):
        if len(word_hashes) <= distance:
            break
        pairs = _mix(word_hashes[:-distance], word_hashes[distance:], distance)
        parts.append(pairs)
        weights.append(np.full(len(pairs), OSB_WEIGHTS[distance - 1]))
    all_hashes = np.concatenate(parts)
    all_weights = np.concatenate(weights)
    unique, first = _unique_first(all_hashes)
    if len(unique) > limits.max_tokens:
        # Keep the earliest tokens (headers, subject, first paragraphs) when cutting.
        keep = np.sort(np.argsort(first, kind="stable")[: limits.max_tokens])
        unique, first = unique[keep], first[keep]
    return Tokens(unique, all_weights[first])


def token_texts(task: Task, limits: TokenizerLimits | None = None) -> dict[int, str]:
    """The text behind each single-word and feature token of `tokenize` (pairs of words
    have none), by hash: for `pyspamc explain`, never on the scan path."""
    limits = limits or TokenizerLimits()
    body_words, extra = words(task.body_text, limits)
    texts = [BIAS_TOKEN, *extra, *header_tokens(task), *url_tokens(task), *body_words]
    return {int(h): text for h, text in zip(hash_texts(texts), texts, strict=True)}


def task_tokens(task: Task, limits: TokenizerLimits) -> Tokens:
    """The task's tokens for these limits, tokenized once per task: the Bayes check and the
    content model share them when their limits agree (the defaults do)."""
    cache = task.scratch.setdefault("tokens", {})
    assert isinstance(cache, dict)
    tokens = cache.get(limits)
    if tokens is None:
        tokens = cache[limits] = tokenize(task, limits)
    return tokens
