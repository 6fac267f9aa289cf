"""pyspamc rescore and the verdict eval: scores fitted from labelled mail (the repo's
corpus/), pinned scores, the scores file, and the refit from the store's symbol vectors on
SQLite and Redis."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.messages import make_message
from support.paths import CORPUS
from support.redis_server import RedisServer

from pyspamd.checks.bayes import bayes_on
from pyspamd.cli.pyspamc import main as pyspamc_main
from pyspamd.config import load_config
from pyspamd.rescore.fit import FitParams, fit_scores
from pyspamd.rescore.learned import LearnedVectors
from pyspamd.rescore.vectors import SymbolVector, stored_vectors
from pyspamd.scanner import Scanner
from pyspamd.sources import iter_messages
from pyspamd.storage import open_storage
from pyspamd.storage.base import HAM, NO_TOKENS, SPAM

SPAM_DIR = CORPUS / "spam"
HAM_DIR = CORPUS / "ham"


def run_json(*args: str, capsys: pytest.CaptureFixture[str]) -> dict:
    capsys.readouterr()
    assert pyspamc_main(list(args)) == 0
    return json.loads(capsys.readouterr().out)


def by_name(fit: dict) -> dict[str, dict]:
    return {s["name"]: s for s in fit["scores"]}


def test_fit_moves_scores_the_way_the_mail_says() -> None:
    # SPAMMY fires on most spam and no ham, BOTH on half of each class, HAMMY on ham only.
    vectors = []
    for i in range(200):
        spam = i % 2 == 0
        factors = {}
        if spam and i % 10 != 0:
            factors["SPAMMY"] = 1.0
        if i % 4 < 2:
            factors["BOTH"] = 1.0
        if not spam and i % 3:
            factors["HAMMY"] = 1.0
        vectors.append(SymbolVector(spam, factors))
    defaults = {"SPAMMY": 1.0, "BOTH": 2.0, "HAMMY": -0.1}
    fit = {s.name: s for s in fit_scores(vectors, defaults, set()).scores}
    assert fit["SPAMMY"].new > 3.0  # from 1.0: it decides alone
    assert fit["BOTH"].new < 2.0  # says nothing: down from its 2.0, never below 0
    assert fit["BOTH"].new >= 0.0
    assert fit["HAMMY"].new < -0.1
    assert (fit["SPAMMY"].spam_hits, fit["SPAMMY"].ham_hits) == (80, 0)
    again = {s.name: s.new for s in fit_scores(vectors, defaults, set()).scores}
    assert again == {n: s.new for n, s in fit.items()}  # deterministic


def test_fit_keeps_pinned_rare_and_informational_scores() -> None:
    vectors = [SymbolVector(i % 2 == 0, {"PINNED": 1.0, "RARE": 1.0} if i < 4 else
                            {"INFO": 1.0, "X": 1.0} if i % 2 == 0 else {"INFO": 1.0})
               for i in range(100)]
    defaults = {"PINNED": 3.0, "RARE": 2.0, "INFO": 0.0, "X": 1.0}
    fit = {s.name: s for s in fit_scores(vectors, defaults, {"PINNED"},
                                         FitParams(min_hits=10)).scores}
    assert (fit["PINNED"].new, fit["PINNED"].why) == (3.0, "pinned")
    assert (fit["RARE"].new, fit["RARE"].why) == (2.0, "too few hits")
    assert (fit["INFO"].new, fit["INFO"].why) == (0.0, "informational")
    assert fit["X"].why == "fitted" and fit["X"].new > 1.0


def test_rescore_on_the_corpus_writes_a_scores_file_the_rules_load(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "rules.d"
    rules.mkdir()
    config = tmp_path / "pyspamd.toml"
    shipped = Path(__file__).parent.parent / "rules"
    written = [str(p) for p in sorted(shipped.glob("*.rules")) if "fitted" not in p.name]
    config.write_text("[rules]\ndirs = [" + ", ".join(f'"{p}"' for p in written)
                      + ', "rules.d"]\n[storage]\npath = "s.sqlite"\n'
                      "[scores]\nFORGED_MUA_OE = 2.0\n")
    out = rules / "95_site.rules"
    fit = run_json("-c", str(config), "rescore", "--spam", str(SPAM_DIR), "--ham",
                   str(HAM_DIR), "--folds", "2", "--min-hits", "5", "-o", str(out), "--json",
                   capsys=capsys)
    scores = by_name(fit)
    assert fit["spam"] == 100 and fit["ham"] == 100
    assert scores["FORGED_MUA_OE"]["why"] == "pinned"  # the config's [scores]
    assert scores["FORGED_MUA_OE"]["new"] == scores["FORGED_MUA_OE"]["old"]
    rules = Scanner.from_config(load_config(config)).ruleset.rules
    for s in scores.values():  # written for spam stays >= 0, for ham <= 0
        assert s["new"] * s["old"] >= 0 or s["new"] == 0
        if s["name"] in rules and s["why"] == "fitted":  # the rules' scoring policy
            assert -1.0 <= s["new"] <= 7.0
    # Each fitted rule that fires on spam far more than on ham ends above one that fires on
    # ham far more than spam.
    fitted = [s for s in scores.values() if s["why"] == "fitted"]
    assert fitted
    spammy = [s for s in fitted if s["spam_hits"] >= 5 and s["ham_hits"] == 0]
    hammy = [s for s in fitted if s["ham_hits"] >= 5 * max(s["spam_hits"], 1)]
    assert spammy and hammy
    assert min(s["new"] for s in spammy) >= max(s["new"] for s in hammy)
    text = out.read_text()
    assert text.startswith("# pyspamd fitted scores")
    assert "FORGED_MUA_OE" not in text
    scanner = Scanner.from_config(load_config(config))
    for s in fitted:
        assert scanner.defs[s["name"]].score == pytest.approx(s["new"])
    assert scanner.defs["FORGED_MUA_OE"].score == 2.0
    # A second fit reads its own file as a fit, not as the written score.
    again = by_name(run_json("-c", str(config), "rescore", "--spam", str(SPAM_DIR), "--ham",
                             str(HAM_DIR), "--folds", "2", "--min-hits", "5", "--json",
                             capsys=capsys))
    assert again == scores


def test_eval_reports_the_verdict(tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "pyspamd.toml"  # the built-in defaults, whatever /etc holds
    config.write_text("")
    report = run_json("-c", str(config), "eval", "--spam", str(SPAM_DIR), "--ham",
                      str(HAM_DIR), "--split", "0.7", "--seed", "3", "--json", capsys=capsys)
    verdict = report["verdict"]
    assert (verdict["spam"], verdict["ham"]) == (30, 30)
    assert sum(a["spam"] for a in verdict["actions"].values()) == pytest.approx(100, abs=0.1)
    spam_actions = ("add header", "rewrite subject", "reject")
    assert verdict["verdict_recall"] == pytest.approx(
        sum(a["spam"] for n, a in verdict["actions"].items() if n in spam_actions), abs=0.05)
    assert {"symbol", "spam", "ham", "s_o", "score"} <= set(verdict["symbols"][0])
    capsys.readouterr()
    assert pyspamc_main(["-c", str(config), "eval", "--spam", str(SPAM_DIR), "--ham",
                         str(HAM_DIR), "--empty-bayes", "--test-ham", str(HAM_DIR / "cur")]) == 0
    out = capsys.readouterr().out
    assert "empty Bayes store" in out and "Verdict on the test-only folders: 0 spam, 100 ham" in out


def learn_in_rounds(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Half of each class, then the rest: Bayes votes in the second round's vectors."""
    spam = sorted(str(p) for p in (SPAM_DIR / "cur").iterdir())
    ham = sorted(str(p) for p in (HAM_DIR / "cur").iterdir())
    assert pyspamc_main(["-c", str(config), "learn_spam", *spam[:50]]) == 0
    assert pyspamc_main(["-c", str(config), "learn_ham", *ham[:50]]) == 0
    assert pyspamc_main(["-c", str(config), "learn_spam", *spam[50:]]) == 0
    assert pyspamc_main(["-c", str(config), "learn_ham", *ham[50:], "--rescore",
                         str(config.parent / "site.rules")]) == 0
    capsys.readouterr()


def test_refit_from_store_same_on_sqlite_and_redis(
        tmp_path: Path, redis_proc: RedisServer, capsys: pytest.CaptureFixture[str]) -> None:
    fits = []
    for backend in ("sqlite", "redis"):
        base = tmp_path / backend
        base.mkdir()
        config = base / "pyspamd.toml"
        config.write_text(f'[storage]\nbackend = "{backend}"\npath = "s.sqlite"\n'
                          f'redis_url = "{redis_proc.url}"\nredis_prefix = "rescore"\n'
                          "[bayes]\nmin_learns = 20\n")
        learn_in_rounds(config, capsys)
        assert (base / "site.rules").read_text().startswith("# pyspamd fitted scores")
        storage = open_storage(load_config(config).storage, create=False)
        vectors = list(stored_vectors(storage, 0))
        storage.close()
        assert sum(v.spam for v in vectors) == 100 and sum(not v.spam for v in vectors) == 100
        # The second round's messages were scanned by a Bayes trained on the first.
        assert sum("BAYES_SPAM" in v.factors for v in vectors if v.spam) > 25
        fits.append(run_json("-c", str(config), "rescore", "--from-store", "--min-hits",
                             "5", "--json", capsys=capsys))
        # A message learned again as the other class keeps only its newer vector, and an
        # unlearned one none.
        spam_file = sorted((SPAM_DIR / "cur").iterdir())[0]
        ham_file = sorted((HAM_DIR / "cur").iterdir())[0]
        assert pyspamc_main(["-c", str(config), "learn_ham", str(spam_file)]) == 0
        assert pyspamc_main(["-c", str(config), "unlearn", str(ham_file)]) == 0
        capsys.readouterr()
        storage = open_storage(load_config(config).storage, create=False)
        after = list(stored_vectors(storage, 0))
        storage.close()
        assert (sum(v.spam for v in after), sum(not v.spam for v in after)) == (99, 100)
    assert fits[0] == fits[1]
    assert any(s["why"] == "fitted" for s in fits[0]["scores"])


def test_the_vector_pass_skips_what_is_learned_as_the_class_already(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "pyspamd.toml"
    config.write_text('[storage]\npath = "s.sqlite"\n')
    spam = sorted(str(p) for p in (SPAM_DIR / "cur").iterdir())[:6]
    assert pyspamc_main(["-c", str(config), "learn_spam", *spam[:3]]) == 0
    capsys.readouterr()
    loaded = load_config(config)
    with open_storage(loaded.storage, create=False) as storage:
        bayes = bayes_on(loaded, storage)
        for label, jobs, scanned in ((SPAM, 1, 3), (SPAM, 2, 3), (HAM, 2, 6)):
            vectors = LearnedVectors(loaded)
            vectors.jobs = jobs
            vectors.scan(bayes, iter_messages(spam), None, label)
            vectors.close()
            # all six tokenized for the learn pass; a vector for each it will learn or move
            assert (len(vectors.tokens), len(vectors.scanned)) == (6, scanned), (label, jobs)


def test_autolearn_keeps_the_vector_of_what_it_learns(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "t.rules").write_text("body VERY_BAD /autolearn-me-spam/\nscore VERY_BAD 20\n")
    config = tmp_path / "pyspamd.toml"
    config.write_text(f'[rules]\ndirs = ["{rules}"]\n[storage]\npath = "a.sqlite"\n'
                      "[bayes.autolearn]\nenabled = true\n")
    loaded = load_config(config)
    with open_storage(loaded.storage, create=True) as store:  # made: autolearn runs
        store.token_counts(NO_TOKENS)
    scanner = Scanner.from_config(loaded)
    scanner.scan(make_message({"Subject": "s"}, "autolearn-me-spam\n"))
    scanner.scan(make_message())  # neutral: not learned, no vector
    storage = open_storage(loaded.storage, create=False)
    vectors = list(stored_vectors(storage, 0))
    storage.close()
    assert [(v.spam, v.factors.get("VERY_BAD")) for v in vectors] == [(True, 1.0)]
