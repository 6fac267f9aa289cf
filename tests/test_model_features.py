"""The content model's features and the tokens behind them are the same as a straightforward
reference computes them: the scan's faster paths (joined digests, sort-and-compare instead
of np.unique, ASCII shortcuts and RE2 for the character features, the verdict in Python
floats, Received dates parsed on demand) must not change one hash, index or weight, or the
shipped model would score mail differently from how it was trained and calibrated."""

from __future__ import annotations

import re
from collections.abc import Iterator
from email.utils import parsedate_to_datetime

import numpy as np
import pytest
import xxhash
from support.messages import make_message
from support.paths import CORPUS

from pyspamd.checks.model import Thresholds, verdict_symbol, weights_for
from pyspamd.classifiers import tokenizer
from pyspamd.classifiers.tokenizer import TokenizerLimits, Tokens, tokenize
from pyspamd.config import ModelConfig
from pyspamd.model import features
from pyspamd.model.linear import feature_index, load_model
from pyspamd.task import Task

SHIPPED = load_model(ModelConfig().path)
HASH_BITS = SHIPPED.meta.hash_bits


def _ref_hashes(texts: list[str]) -> np.ndarray:
    return np.array([xxhash.xxh64_intdigest(t.encode("utf-8", "surrogatepass")) for t in texts],
                    dtype=np.uint64)


def _ref_shape(value: str) -> str:
    shape = re.sub(r"[0-9]", "9", re.sub(r"[a-z]", "a", re.sub(r"[A-Z]", "A", value.strip())))
    return re.sub(r"(.)\1+", r"\1+", shape)[:40]


def _ref_tokenize(task: Task, limits: TokenizerLimits) -> Tokens:
    """tokenize as first written: one xxh64 per text, np.unique for the distinct tokens."""
    body_words, extra = tokenizer.words(task.body_text, limits)
    features_ = [tokenizer.BIAS_TOKEN, *extra, *tokenizer.header_tokens(task),
                 *tokenizer.url_tokens(task)]
    word_hashes = _ref_hashes(body_words)
    parts = [_ref_hashes(features_), word_hashes]
    weights = [np.full(len(word_hashes) + len(features_), tokenizer.UNIGRAM_WEIGHT)]
    for distance in range(1, min(limits.osb_window, len(tokenizer.OSB_WEIGHTS) + 1)):
        if len(word_hashes) <= distance:
            break
        pairs = tokenizer._mix(word_hashes[:-distance], word_hashes[distance:], distance)
        parts.append(pairs)
        weights.append(np.full(len(pairs), tokenizer.OSB_WEIGHTS[distance - 1]))
    all_weights = np.concatenate(weights)
    unique, first = np.unique(np.concatenate(parts), return_index=True)
    if len(unique) > limits.max_tokens:
        keep = np.sort(np.argsort(first, kind="stable")[: limits.max_tokens])
        unique, first = unique[keep], first[keep]
    return Tokens(unique, all_weights[first])


def _ref_char_tokens(text: str) -> list[str]:
    """The character features with Python's regex engine over every text."""
    out: list[str] = []
    found = {"latin"} if re.search(r"[A-Za-z]", text) else set()
    for char in set(re.findall(r"[^\x00-\x7f]", text)):
        for name, low, high in features._SCRIPT_RANGES:
            if low <= ord(char) <= high:
                found.add(name)
                break
    scripts = [name for name in features._SCRIPT_ORDER if name in found]
    out.append(f"scripts:{'+'.join(scripts) or 'none'}")
    if len(scripts) > 1:
        out.append("scripts:mixed")
        if ("cyrillic" in scripts or "greek" in scripts) and features._MIXED_WORD.search(text):
            out.append("text:mixed-script-word")
    invisible = len(features._INVISIBLE.findall(text))
    if invisible:
        out.append(f"text:invisible:{features.bucket(invisible, (1, 5, 20))}")
    caps = len(re.findall("[A-Z]{4,}", text))
    out.append(f"text:capswords:{features.bucket(caps, (1, 3, 10, 30))}")
    if text:
        digits = len(re.findall(r"\d", text)) / len(text)
        out.append(f"text:digits:{features.bucket(digits, (0.02, 0.06, 0.15))}")
    out.append(f"text:excl:{features.bucket(text.count('!'), (1, 3, 10))}")
    for pattern, token in ((features._MONEY, "text:money"), (features._PERCENT, "text:percent"),
                           (features._BTC, "text:btc-address"), (features._PHONE, "text:phone")):
        if pattern.search(text):
            out.append(token)
    return out


def _ref_feature_index(tokens: Tokens, task: Task) -> np.ndarray:
    hashes = tokens.hashes
    site = _ref_hashes(tokenizer.receiving_side_tokens(task))
    if len(site) and len(hashes):
        at = np.minimum(np.searchsorted(hashes, site), len(hashes) - 1)
        hashes = np.delete(hashes, at[hashes[at] == site])
    hashes = np.concatenate([hashes, _ref_hashes(features.structure_tokens(task))])
    return np.unique(hashes & np.uint64((1 << HASH_BITS) - 1)).astype(np.intp)


# Texts where the ASCII shortcuts and RE2 would go wrong if they were not exact: Unicode
# digits (Python's \d), whitespace RE2's \s lacks (\v), word boundaries next to non-ASCII
# letters, invisible characters, scripts mixed within a word.
EDGE_TEXTS = [
    "", "plain ascii words only", "Pay $\v5 now or 7\v% more", "price: \u0663\u0664\u0665 dinar",
    "wallet 1A1zP1eLZQefi2DMPTfTL5mDiv7DivfNa please", "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
    "x1A1zP1eLZQefi2DMPTfTL5mDiv7DivfNa", "é1A1zP1eLZQefi2DMPTfTL5mDiv7DivfNaé",
    "call +1 (555) 123-4567 today",
    "call \uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18\uff19\uff10",
    "PayPal аккаунт раураl", "zero\u200bwidth\u200bjoin", "ΑΒΓΔ ENORMOUS CAPS RUN AND MORE",
    "tab\tseparated\x1c\x1dcontrol 12%",
]


def _messages() -> Iterator[tuple[str, bytes]]:
    for folder in ("ham/cur", "spam/cur", "malformed"):
        for path in sorted((CORPUS / folder).iterdir()):
            yield path.name, path.read_bytes()
    for n, text in enumerate(EDGE_TEXTS):
        yield f"edge{n}", make_message({"Subject": f"Re: edge {text[:20]}"}, body=text)
    many = " ".join(f"w{i}" for i in range(9000))  # over max_tokens: the cut keeps the start
    yield "many", make_message(body=many)


@pytest.mark.parametrize("limits", [SHIPPED.meta.limits, TokenizerLimits(osb_window=3),
                                    TokenizerLimits(max_words=9000, max_tokens=500)])
def test_tokens_and_feature_index_match_the_reference(limits: TokenizerLimits) -> None:
    count = 0
    for name, raw in _messages():
        tokens, reference = tokenize(Task(raw), limits), _ref_tokenize(Task(raw), limits)
        assert np.array_equal(tokens.hashes, reference.hashes), name
        assert np.array_equal(tokens.weights, reference.weights), name
        index = feature_index(tokens, Task(raw), HASH_BITS)
        assert np.array_equal(index, _ref_feature_index(reference, Task(raw))), name
        count += 1
    assert count == 219 + len(EDGE_TEXTS) + 1


def test_character_features_match_python_regexes_on_every_text() -> None:
    texts = list(EDGE_TEXTS)
    for _, raw in _messages():
        texts.append(Task(raw).body_text[: features.TEXT_CHARS])
    for text in texts:
        assert features._char_tokens(text) == _ref_char_tokens(text), text[:80]
    found = {t for text in EDGE_TEXTS for t in features._char_tokens(text)}
    assert {"text:btc-address", "text:phone", "text:money", "text:percent",
            "text:mixed-script-word"} <= found


def test_message_id_and_date_shapes_match_the_substitutions() -> None:
    values = ["<20020822.ABC123@mail.example.com>", "Thu, 22 Aug 2002 18:26:25 +0700",
              "aa\n\nbb..--++", "", "ÉÉ éé 99 ++ \n\n", "x" * 60]
    for _, raw in _messages():
        headers = Task(raw).headers
        values += [headers.first("message-id"), " ".join(headers.first("date").split())]
    for value in values:
        assert tokenizer._shape(value) == _ref_shape(value), value


def test_received_dates_are_those_parsed_at_once() -> None:
    checked = 0
    for _, raw in _messages():
        task = Task(raw)
        for value, hop in zip(task.headers.raw("received"), task.received, strict=True):
            text = value[:2000].rpartition(";")[2] if ";" in value[:2000] else ""
            try:
                expected = parsedate_to_datetime(text.strip()) if text.strip() else None
            except (TypeError, ValueError, IndexError, OverflowError):
                expected = None
            assert hop.date == expected, value
            checked += expected is not None
    assert checked > 500


@pytest.mark.parametrize("thresholds", [
    Thresholds(0.995, 0.9999, 0.5, 0.2), Thresholds(0.9, 0.99, 0.1), Thresholds(0.9, 0.9, 0.1),
    Thresholds(0.5, 0.5, 0.5, 0.3),
])
def test_verdict_weights_are_weights_for(thresholds: Thresholds) -> None:
    rng = np.random.default_rng(7)
    probabilities = np.concatenate([rng.random(3000), 1 - rng.random(3000) ** 8,
                                    rng.random(3000) ** 8, np.linspace(0, 1, 2001)])
    for p in probabilities.tolist():
        spam_w, ham_w = weights_for(np.array([p]), thresholds)
        expected = (("MODEL_SPAM", float(spam_w[0])) if spam_w[0] > 0 else
                    ("MODEL_HAM", float(ham_w[0])) if ham_w[0] > 0 else None)
        if thresholds.ham < p < thresholds.spam:
            expected = None
        assert verdict_symbol(p, thresholds) == expected, p

