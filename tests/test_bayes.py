"""Tokenizer, chi-square combining, and the Bayes check on both backends."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support.messages import make_message
from support.paths import CORPUS
from support.redis_server import RedisServer

from pyspamd.checks.bayes import BayesCheck, bayes_from_config, verdict_symbol
from pyspamd.classifiers.bayes import Bayes, Verdict
from pyspamd.classifiers.chi2 import Chi2Params, chi2_combine, classify_counts
from pyspamd.classifiers.logistic import LogisticParams, fit, probability
from pyspamd.classifiers.tokenizer import (
    BIAS_TOKEN,
    TokenizerLimits,
    Tokens,
    _h,
    _mix,
    tokenize,
    words,
)
from pyspamd.config import BayesConfig, Config, StorageConfig
from pyspamd.scanner import Scanner
from pyspamd.sources import iter_messages
from pyspamd.storage.base import HAM, SPAM
from pyspamd.storage.sqlite_store import SqliteStorage
from pyspamd.task import Task

SPAM_TEXT = ("Dear friend, CLAIM your FREE prize now! Click http://win.prize.example/claim "
             "to get cash today. Limited offer, act now!")
OSB3 = TokenizerLimits(osb_window=3)
HAM_TEXT = "Hi Bob, the build is green again; can we review the patch at lunch tomorrow?"


def task_of(body: str, **headers: str) -> Task:
    return Task(make_message({k.replace("_", "-"): v for k, v in headers.items()}, body))


# --- tokenizer ---

def test_words_are_normalised_and_long_ones_become_skip_tokens() -> None:
    found, extra = words("ＦＲＥＥ Mon€y ÉTÉ don't e-mail 3.99 a " + "x" * 45,
                         TokenizerLimits())
    assert found == ["free", "mon€y", "été", "don't", "e-mail", "3.99"]
    assert extra == ["skip:x:40"]


def test_tokens_cover_words_pairs_headers_and_urls() -> None:
    task = task_of(SPAM_TEXT, From="Prize Team <win@prize.example>",
                   Reply_To="other@elsewhere.example", X_Mailer="MassMailer 5")
    tokens = tokenize(task, OSB3)
    hashes = set(tokens.hashes.tolist())
    for feature in ("claim", "fromdom:prize.example", "replyto:elsewhere.example",
                    "replyto:other", "mailer:massmailer 5", "url:win.prize.example",
                    "url:prize.example", "urlpath:claim", "ctype:text/plain",
                    "charset:us-ascii", "subj:lunch", "rcvd:mail.example.org"):
        assert _h(feature) in hashes, feature
    assert len(tokens.hashes) == len(np.unique(tokens.hashes))  # distinct, sorted
    assert np.all(np.diff(tokens.hashes.astype(np.float64)) >= 0)
    assert tokens.weights.max() == 1.0 and 0 < tokens.weights.min() < 1.0  # pairs weigh less


def test_every_header_gives_tokens_but_ids_dates_and_delivery_headers_do_not() -> None:
    task = task_of(HAM_TEXT, List_Id="Fork list <fork.xent.com>", Precedence="bulk",
                   X_Keywords="spam", Delivered_To="trap@example.net",
                   X_Spam_Status="Yes, hits=9")
    hashes = set(tokenize(task).hashes.tolist())
    for feature in (BIAS_TOKEN, "hdr:list-id", "list-id:fork", "list-id:fork.xent.com",
                    "precedence:bulk", "to:bob@example.net", "hdr:mime-version",
                    "msgidshape:<9+.9+@a+.a+.a+>", "msgiddom:mail.example.org", "nrcvd:1",
                    "rcvdby0:mx.example.net", "rcvdproto:esmtp"):
        assert _h(feature) in hashes, feature
    # what the reader's client or delivery added, other filters' verdicts, unique ids
    for feature in ("hdr:x-keywords", "x-keywords:spam", "hdr:delivered-to",
                    "hdr:x-spam-status", "x-spam-status:yes", "hdr:message-id",
                    "message-id:20030106100000.1234@mail.example.org", "hdr:date"):
        assert _h(feature) not in hashes, feature


def _layout(raw: bytes) -> set[int]:
    return set(tokenize(Task(raw)).hashes.tolist())


def test_header_layout_gives_tokens_of_its_own() -> None:
    head = [b"From: Ann <ann@example.org>", b"To: bob@example.net",
            b"X-Mailer: Mailer 1.0", b"Date: Mon, 2 Sep 2002 10:00:00 +0100"]
    body = b"\n\nthe same words in every variant\n"
    plain = _layout(b"\n".join(head) + body)
    for feature in ("hcase:X-Mailer", "horder:from>to", "horder:to>x-mailer",
                    "dateshape:Aa+, 9 Aa+ 9+ 9+:9+:9+ +9+", "datezone:+0100"):
        assert _h(feature) in plain, feature
    # The same headers with other digits in the Date: the same layout.
    assert _layout(b"\n".join([*head[:3], b"Date: Tue, 3 Dec 2002 23:59:01 +0100"])
                   + body) == plain
    spelt = _layout(b"\n".join([head[0], head[1], b"X-mailer: Mailer 1.0", head[3]]) + body)
    assert _h("hcase:X-mailer") in spelt and _h("hcase:X-Mailer") not in spelt
    order = _layout(b"\n".join([head[1], head[0], *head[2:]]) + body)
    assert _h("horder:to>from") in order and _h("horder:from>to") not in order
    zone = _layout(b"\n".join([*head[:3], b"Date: 2 Sep 2002 10:00:00 (GMT)"]) + body)
    assert _h("datezone:(gmt)") not in zone and _h("datezone:(GMT)") in zone
    assert _h("date:<none>") in _layout(b"\n".join(head[:3]) + body)
    assert _h("date:<none>") in _layout(b"\n".join([*head[:3], b"Date:   "]) + body)


def _pair(a: str, b: str, distance: int) -> int:
    return int(_mix(np.array([_h(a)], dtype=np.uint64), np.array([_h(b)], dtype=np.uint64),
                    distance)[0])


def test_word_pairs_keep_order_and_distance() -> None:
    one = set(tokenize(task_of("alpha beta"), OSB3).hashes.tolist())
    two = set(tokenize(task_of("beta alpha"), OSB3).hashes.tolist())
    far = set(tokenize(task_of("alpha gamma beta"), OSB3).hashes.tolist())
    assert _pair("alpha", "beta", 1) in one and _pair("alpha", "beta", 1) not in two
    assert _pair("beta", "alpha", 1) in two
    assert _pair("alpha", "beta", 2) in far and _pair("alpha", "beta", 1) not in far
    assert _pair("alpha", "beta", 1) != _pair("alpha", "beta", 2)
    unigrams = tokenize(task_of("alpha beta"))  # the default: single words
    assert _pair("alpha", "beta", 1) not in set(unigrams.hashes.tolist())
    assert np.all(unigrams.weights == 1.0)


def test_token_count_is_bounded_for_a_huge_message() -> None:
    body = " ".join(f"w{n}" for n in range(200_000))
    tokens = tokenize(task_of(body), TokenizerLimits(max_words=1500, max_tokens=3000,
                                                     osb_window=3))
    assert len(tokens) == 3000
    assert _h("w0") in set(tokens.hashes.tolist())  # the cut keeps the start


def test_same_message_same_digest_and_different_message_not() -> None:
    assert tokenize(task_of(HAM_TEXT)).digest() == tokenize(task_of(HAM_TEXT)).digest()
    assert tokenize(task_of(HAM_TEXT)).digest() != tokenize(task_of(HAM_TEXT + " x1")).digest()


# --- chi-square ---

def _chi2q(x2: float, v: int) -> float:
    """SpamBayes' series for the chi-square survival function, even degrees of freedom."""
    m = x2 / 2.0
    term = total = math.exp(-m)
    for i in range(1, v // 2):
        term *= m / i
        total += term
    return min(total, 1.0)


@pytest.mark.parametrize("probs", [[0.99, 0.98, 0.2], [0.01, 0.4, 0.03, 0.02], [0.6, 0.4],
                                   [0.9] * 30 + [0.1] * 5])
def test_chi2_combine_matches_spambayes_formula(probs: list[float]) -> None:
    n = len(probs)
    s = 1.0 - _chi2q(-2.0 * sum(math.log(1 - p) for p in probs), 2 * n)
    h = 1.0 - _chi2q(-2.0 * sum(math.log(p) for p in probs), 2 * n)
    expected = (s - h + 1.0) / 2.0
    assert chi2_combine(np.array(probs), np.ones(n)) == pytest.approx(expected, abs=1e-9)


def test_unknown_and_weak_tokens_do_not_vote() -> None:
    params = Chi2Params()
    spam = np.array([0, 5, 1, 40], dtype=np.int64)
    ham = np.array([0, 5, 0, 0], dtype=np.int64)
    p, used = classify_counts(spam, ham, np.ones(4), 50, 50, params)
    assert used == 2  # the unseen token and the 5/5 token say nothing
    assert p > 0.9
    assert classify_counts(spam[:0], ham[:0], np.ones(0), 50, 50, params) == (0.5, 0)


def test_score_scales_with_confidence_and_nothing_when_unsure() -> None:
    config = BayesConfig()
    def sym(p: float, ready: bool = True) -> tuple[str, float] | None:
        return verdict_symbol(Verdict(p, 10, 10, 300, 300, ready), config)
    # defaults: spam at 0.9 and above, ham at 0.5 and below, unsure in between
    assert sym(0.51) is None and sym(0.85) is None and sym(0.5) == ("BAYES_HAM", 0.1)
    assert sym(1.0) == ("BAYES_SPAM", 1.0) and sym(0.0) == ("BAYES_HAM", 1.0)
    assert sym(0.4)[1] < sym(0.1)[1] < 1.0  # type: ignore[index]
    low, high = sym(0.92), sym(0.99)
    assert low is not None and high is not None and low[1] < high[1] < 1.0
    assert sym(1.0, ready=False) is None


# --- the logistic model ---

FAST = LogisticParams(c=10.0)  # toy data: few messages, so less regularisation


def _toy_messages(n: int = 300) -> list[tuple[bytes, str, np.ndarray]]:
    """Spam has token 1, ham token 2; both have the bias token 0 and a random word."""
    rng = np.random.default_rng(3)
    out = []
    for i in range(n):
        spam = i % 3 == 0
        tokens = np.unique(np.array([0, 1 if spam else 2, 10 + rng.integers(0, 20)],
                                    dtype=np.uint64))
        out.append((i.to_bytes(16, "big"), SPAM if spam else HAM, tokens))
    return out


def test_fit_learns_the_separating_tokens() -> None:
    messages = _toy_messages()
    tokens, weights = fit(messages, FAST)
    weight = dict(zip(tokens.tolist(), weights.tolist(), strict=True))
    assert weight[1] > 1.0 and weight[2] < -1.0
    assert probability(np.array([weight[0], weight[1]])) > 0.9
    assert probability(np.array([weight[0], weight[2]])) < 0.1
    again = fit(messages, FAST)  # deterministic: the backends must agree to the last bit
    assert again[0].tolist() == tokens.tolist() and again[1].tolist() == weights.tolist()
    # a stronger penalty gives smaller weights
    loose = dict(zip(*(a.tolist() for a in fit(messages, LogisticParams(c=0.01))),
                     strict=True))
    assert 0 < loose[1] < weight[1]
    # nothing to tell apart yet: no model, so chi2 answers
    assert fit([], LogisticParams())[0].size == 0
    assert fit([m for m in messages if m[1] == SPAM], LogisticParams())[0].size == 0


@pytest.mark.parametrize("first", [SPAM, HAM])
def test_learning_one_folder_after_the_other_gives_the_same_model(
    first: str, tmp_path: Path
) -> None:
    """A site learns its spam folder, then its ham folder (or the other way round); an
    online model would end up believing the last class. The fitted one does not care."""
    models = []
    for run, order in (("mixed", None), ("folders", first)):
        bayes = Bayes(SqliteStorage(tmp_path / f"{run}.sqlite"), min_learns=0,
                      logistic_params=FAST)
        messages = _toy_messages()
        if order is not None:
            messages.sort(key=lambda m: m[1] != order)
        with bayes.storage.batch():
            for digest, label, tokens in messages:
                bayes.storage.learn(digest, tokens, label, 1)
        bayes.fit_model()
        counts = bayes.storage.token_counts(np.array([0, 1, 2], dtype=np.uint64))
        assert counts.weights is not None
        models.append(counts.weights.tolist())
        bayes.storage.close()
    assert models[0] == models[1] and models[0][1] > 0 > models[0][2]


def test_moved_and_unlearned_messages_change_the_model(tmp_path: Path) -> None:
    bayes = Bayes(SqliteStorage(tmp_path / "m.sqlite"), min_learns=0, logistic_params=FAST)
    messages = _toy_messages()
    for digest, label, tokens in messages:
        bayes.storage.learn(digest, tokens, label, 1)
    odd = np.array([0, 99], dtype=np.uint64)  # a token only one message has
    bayes.storage.learn(b"odd" * 5 + b"!", odd, SPAM, 1)

    def weight_of_99() -> float:
        bayes.fit_model()
        counts = bayes.storage.token_counts(np.array([99], dtype=np.uint64))
        assert counts.weights is not None
        return float(counts.weights[0])

    assert weight_of_99() > 0
    bayes.storage.learn(b"odd" * 5 + b"!", odd, HAM, 1)  # moved
    assert weight_of_99() < 0
    bayes.storage.unlearn(b"odd" * 5 + b"!", odd)
    assert weight_of_99() == 0.0  # no learned message has it: not in the model


def test_the_fit_bound_gives_the_same_model_on_both_backends(
    tmp_path: Path, redis_proc: RedisServer
) -> None:
    """max_fit_messages: the model forgets the oldest messages (here the only one with token
    99), the counts do not, and SQLite and Redis agree to the last bit."""
    from pyspamd.storage.redis_store import RedisStorage

    odd = (b"odd" * 5 + b"!", SPAM, np.array([0, 1, 99], dtype=np.uint64))
    stores = {"sqlite": SqliteStorage(tmp_path / "f.sqlite"),
              "redis": RedisStorage(redis_proc.url, prefix="fitbound"),
              "unbounded": SqliteStorage(tmp_path / "all.sqlite")}
    fits = {}
    for name, storage in stores.items():
        bayes = Bayes(storage, min_learns=0, logistic_params=FAST,
                      max_fit_messages=0 if name == "unbounded" else 10)
        bayes.learn_tokens(Tokens(odd[2], np.ones(3)), SPAM, day=1)  # learned first
        with storage.batch():
            for digest, label, tokens in _toy_messages():
                storage.learn(digest, tokens, label, 2, keep=bayes.max_fit_messages)
        bayes.fit_model()
        counts = storage.token_counts(np.array([0, 1, 2, 99], dtype=np.uint64))
        assert counts.weights is not None
        fits[name] = ([(d, label) for d, label, _ in storage.learned_messages()],
                      counts.weights.tolist(), counts.spam.tolist(), storage.bayes_stats())
    assert fits["sqlite"][:3] == fits["redis"][:3]
    messages, weights, spam_counts, stats = fits["sqlite"]
    assert stats.fit_messages == {SPAM: 10, HAM: 10} == fits["redis"][3].fit_messages
    assert len(messages) == 20 and odd[0] not in {d for d, _ in messages}
    assert weights[3] == 0.0 and spam_counts[3] == 1  # out of the model, still counted
    assert fits["unbounded"][1][3] > 0  # without the bound the old message still counts
    assert fits["unbounded"][3].fit_messages[HAM] > 10
    # a lowered limit takes effect at the next fit, on both backends alike
    for storage in stores.values():
        Bayes(storage, min_learns=0, logistic_params=FAST, max_fit_messages=4).fit_model()
    assert (stores["sqlite"].bayes_stats().fit_messages
            == stores["redis"].bayes_stats().fit_messages == {SPAM: 4, HAM: 4})
    assert stores["sqlite"].learned_messages()[0][0] == stores["redis"].learned_messages()[0][0]
    for storage in stores.values():
        storage.close()


def test_chi2_until_a_model_is_fitted_and_when_configured(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "c.sqlite")
    logistic = Bayes(storage, min_learns=0, logistic_params=FAST)
    chi2 = Bayes(storage, min_learns=0, classifier="chi2")
    for digest, label, tokens in _toy_messages():
        storage.learn(digest, tokens, label, 1)
    message = tokenize(task_of(SPAM_TEXT))
    assert logistic.classify_tokens(message) == chi2.classify_tokens(message)
    logistic.fit_model()
    spam = Bayes(storage, min_learns=0)
    toy = Tokens(np.array([0, 1], dtype=np.uint64), np.ones(2))
    assert spam.classify_tokens(toy).probability > 0.9
    assert chi2.classify_tokens(toy).probability != spam.classify_tokens(toy).probability


# --- the classifier on both backends ---

def _storage_config(backend: str, tmp_path: Path, request: pytest.FixtureRequest,
                    prefix: str) -> StorageConfig:
    if backend == "sqlite":
        return StorageConfig(path=str(tmp_path / "bayes.sqlite"))
    server: RedisServer = request.getfixturevalue("redis_proc")
    return StorageConfig(backend="redis", redis_url=server.url, redis_prefix=prefix)


def _train(bayes: Bayes) -> None:
    with bayes.storage.batch():
        for label, folder in ((SPAM, "spam"), (HAM, "ham")):
            for source in iter_messages([str(CORPUS / folder)]):
                assert source.data is not None
                bayes.learn(Task(source.data), label)
    bayes.fit_model()  # as pyspamc learn_* does after a run


@pytest.fixture(scope="module")
def trained_redis_prefix(redis_proc: RedisServer) -> str:
    config = Config(storage=StorageConfig(backend="redis", redis_url=redis_proc.url,
                                          redis_prefix="trained"))
    _train(bayes_from_config(config, create=True))
    return "trained"


def test_both_backends_give_identical_counts_and_verdicts(
    tmp_path: Path, redis_proc: RedisServer, trained_redis_prefix: str
) -> None:
    sqlite_bayes = bayes_from_config(
        Config(storage=StorageConfig(path=str(tmp_path / "b.sqlite"))), create=True)
    _train(sqlite_bayes)
    redis_bayes = bayes_from_config(Config(storage=StorageConfig(
        backend="redis", redis_url=redis_proc.url, redis_prefix=trained_redis_prefix)),
        create=False)
    assert sqlite_bayes.storage.bayes_stats().learned == redis_bayes.storage.bayes_stats().learned
    assert (sqlite_bayes.storage.bayes_stats().tokens
            == redis_bayes.storage.bayes_stats().tokens)
    for body in (SPAM_TEXT, HAM_TEXT):
        tokens = sqlite_bayes.tokens(task_of(body))
        a = sqlite_bayes.storage.token_counts(tokens.hashes)
        b = redis_bayes.storage.token_counts(tokens.hashes)
        assert a.spam.tolist() == b.spam.tolist() and a.ham.tolist() == b.ham.tolist()
        assert a.weights is not None and b.weights is not None and a.model_tokens > 0
        assert a.weights.tolist() == b.weights.tolist() and a.model_tokens == b.model_tokens
        assert sqlite_bayes.classify_tokens(tokens) == redis_bayes.classify_tokens(tokens)


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_workers_hold_the_model_in_memory_and_reload_it_after_a_fit(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    config = Config(storage=_storage_config(backend, tmp_path, request, "inmemory"))
    learner = bayes_from_config(config, create=True)
    worker = bayes_from_config(config, create=True)  # another process's view of the store
    tokens = worker.tokens(task_of(SPAM_TEXT))
    assert worker.storage.model_snapshot(-1).generation == 0  # nothing fitted: chi2 answers
    assert worker.classify_tokens(tokens).used == 0
    _train(learner)
    first = worker.classify_tokens(tokens)
    stored = worker.storage.token_counts(tokens.hashes, model_only=True)
    assert stored.weights is not None and stored.model_tokens > 0
    assert first.probability == probability(stored.weights)
    assert first.used == np.count_nonzero(stored.weights) > 0
    generation = worker.storage.model_snapshot(-1).generation
    assert generation and worker.storage.model_snapshot(generation).tokens is None
    # The learner unlearns every spam and fits again: the worker notices the new generation.
    with learner.storage.batch():
        for source in iter_messages([str(CORPUS / "spam")]):
            assert source.data is not None
            learner.unlearn(Task(source.data))
    learner.fit_model()
    assert worker.storage.model_snapshot(generation).generation == 0  # one class: no model
    assert worker.classify_tokens(tokens).probability != first.probability  # not held
    _train(learner)
    again = worker.classify_tokens(tokens)
    assert again.probability == pytest.approx(first.probability)
    learner.storage.close()
    worker.storage.close()


HELD_OUT = ("spam-2.01351.e960056da1502c90d40d598cdf37f359.eml",
            "hard-ham-1.00233.3731b99b0fb04bcf461d098d0570ea36.eml")


def _learn_folder(bayes: Bayes, folder: str, label: str) -> None:
    with bayes.storage.batch():
        for source in iter_messages([str(CORPUS / folder)]):
            assert source.data is not None
            if not source.label.endswith(HELD_OUT):
                bayes.learn(Task(source.data), label)
    bayes.fit_model()


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_scan_gets_bayes_symbols_after_min_learns(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    storage = _storage_config(backend, tmp_path, request, f"scan-{tmp_path.name}")
    config = Config(storage=storage, bayes=BayesConfig(min_learns=90))
    spam_raw = (CORPUS / "spam" / "cur" / HELD_OUT[0]).read_bytes()
    ham_raw = (CORPUS / "ham" / "cur" / HELD_OUT[1]).read_bytes()
    bayes = bayes_from_config(config, create=True)
    _learn_folder(bayes, "spam", SPAM)
    # 99 spam but no ham yet: Bayes must not vote
    scanner = Scanner.from_config(config)
    assert not {"BAYES_SPAM", "BAYES_HAM"} & scanner.scan(spam_raw).symbols.keys()
    _learn_folder(bayes, "ham", HAM)
    spam_result = scanner.scan(spam_raw)
    ham_result = scanner.scan(ham_raw)
    assert "BAYES_SPAM" in spam_result.symbols and "BAYES_HAM" in ham_result.symbols
    # Each is its (fitted) score scaled by the confidence, 0.1 to 1.0 of it.
    full_spam, full_ham = scanner.defs["BAYES_SPAM"].score, scanner.defs["BAYES_HAM"].score
    assert 0.1 * full_spam <= spam_result.symbols["BAYES_SPAM"].score <= full_spam
    assert full_ham <= ham_result.symbols["BAYES_HAM"].score <= 0.1 * full_ham
    assert spam_result.symbols["BAYES_SPAM"].options[0].endswith("%")


def test_same_symbol_from_cli_and_after_a_restart(tmp_path: Path) -> None:
    config_path = tmp_path / "pyspamd.toml"
    config_path.write_text(f'[storage]\npath = "{tmp_path / "b.sqlite"}"\n'
                           "[bayes]\nmin_learns = 50\n")
    config = Config(storage=StorageConfig(path=str(tmp_path / "b.sqlite")),
                    bayes=BayesConfig(min_learns=50))
    bayes = bayes_from_config(config, create=True)
    _learn_folder(bayes, "spam", SPAM)
    _learn_folder(bayes, "ham", HAM)
    message = CORPUS / "spam" / "cur" / HELD_OUT[0]
    in_process = Scanner.from_config(config).scan(message.read_bytes()).symbols["BAYES_SPAM"]
    # A new process is what a worker restart is; pyspamc symbols is what the admin runs.
    proc = subprocess.run([sys.executable, "-m", "pyspamd.cli.pyspamc", "--config",
                           str(config_path), "symbols", "--json", str(message)],
                          capture_output=True, check=True)
    symbols = json.loads(proc.stdout)["symbols"]
    assert symbols["BAYES_SPAM"]["score"] == pytest.approx(in_process.score, abs=0.005)
    assert symbols["BAYES_SPAM"]["options"] == in_process.options
    # ... and the milter session (pymilter's test context plays Postfix)
    import Milter
    from support.mta import AnsweringCtx

    from pyspamd.milter.session import MilterApp, session_class

    # reject and greylist off, so the milter accepts and adds X-Spamd-Result to compare
    config.actions.reject = config.actions.greylist = False
    Milter.factory = session_class(MilterApp(Scanner.from_config(config), "mx.example.net"))
    ctx = AnsweringCtx()
    ctx._connect(ip="198.51.100.4")
    rc = ctx._feedFile(io.BytesIO(message.read_bytes()), "a@example.org", "b@example.net")
    assert rc == Milter.ACCEPT
    ctx._close()
    assert f"BAYES_SPAM({in_process.score:.2f})[{in_process.options[0]}]" in (
        ctx._msg["X-Spamd-Result"].replace("\n", "").replace("\t", ""))


def test_redis_down_during_scan_is_a_check_error_not_a_lost_verdict() -> None:
    from support.mta import free_port

    config = Config(storage=StorageConfig(backend="redis",
                                          redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    result = Scanner.from_config(config).scan(make_message())
    assert any(e.startswith("bayes: StorageError") and "cannot connect" in e
               for e in result.errors)
    assert result.action == "no action"


def test_autolearn_learns_clear_cases_with_a_balance_guard(tmp_path: Path) -> None:
    from pyspamd.config import AutolearnConfig

    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "t.rules").write_text("body VERY_BAD /autolearn-me-spam/\nscore VERY_BAD 20\n"
                                   "body VERY_GOOD /autolearn-me-ham/\nscore VERY_GOOD -5\n")
    from pyspamd.config import RulesConfig

    config = Config(rules=RulesConfig(dirs=[str(rules)]),
                    storage=StorageConfig(path=str(tmp_path / "a.sqlite")),
                    bayes=BayesConfig(min_learns=2, autolearn=AutolearnConfig(
                        enabled=True, spam_score=12, ham_score=-2, max_ratio=2.0)))
    bayes_from_config(config, create=True).storage.token_counts(np.zeros(0, np.uint64))
    scanner = Scanner.from_config(config)
    storage = bayes_from_config(config, create=False).storage
    for n in range(3):
        scanner.scan(make_message({"Subject": f"s{n}"}, f"autolearn-me-spam number {n}"))
    scanner.scan(make_message({"Subject": "neutral"}, "nothing special here"))
    assert storage.bayes_stats().learned == {SPAM: 3, HAM: 0}
    # the guard: at min_learns, spam may not grow beyond max_ratio x ham
    for n in range(3, 6):
        scanner.scan(make_message({"Subject": f"s{n}"}, f"autolearn-me-spam number {n}"))
    assert storage.bayes_stats().learned == {SPAM: 3, HAM: 0}
    for n in range(2):
        scanner.scan(make_message({"Subject": f"h{n}"}, f"autolearn-me-ham item {n}"))
    assert storage.bayes_stats().learned == {SPAM: 3, HAM: 2}
    # now below the ratio again, but Bayes already says spam: learning it adds nothing
    scanner.scan(make_message({"Subject": "s9"}, "autolearn-me-spam number 9"))
    assert storage.bayes_stats().learned == {SPAM: 3, HAM: 2}
    # a clear case Bayes gets wrong or is unsure about is learned
    result = scanner.scan(make_message({"Subject": "h9"}, "autolearn-me-spam item 1"))
    assert "BAYES_SPAM" not in result.symbols
    assert storage.bayes_stats().learned == {SPAM: 4, HAM: 2}


def test_bayes_off_when_disabled() -> None:
    scanner = Scanner.from_config(Config(bayes=BayesConfig(enabled=False)))
    assert not any(isinstance(c, BayesCheck) for c in scanner.checks)


def test_scanning_alone_never_makes_a_store(tmp_path: Path) -> None:
    # Greylisting (on by default) writes to the store the Bayes check reads: the handle they
    # share may make the file only for a writer, and this scan writes nothing (no client).
    path = tmp_path / "store.sqlite"
    config = Config(storage=StorageConfig(path=str(path)))
    assert config.greylist.enabled and config.bayes.enabled
    scanner = Scanner.from_config(config)
    for _ in range(2):
        result = scanner.scan(make_message())
        assert not result.errors and "BAYES_HAM" not in result.symbols
    assert not path.exists()
