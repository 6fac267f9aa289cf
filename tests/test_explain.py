"""pyspamc explain: each symbol with its rule's file:line and text, what it matched, where
its score is set, and the Bayes tokens behind a Bayes vote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.messages import make_message
from support.paths import CORPUS

from pyspamd.cli.pyspamc import main as pyspamc_main


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("explain")
    config = base / "pyspamd.toml"
    config.write_text('[storage]\npath = "s.sqlite"\n[bayes]\nmin_learns = 20\n'
                      "[scores]\nSUBJ_ALL_CAPS = 1.25\n")
    assert pyspamc_main(["-c", str(config), "learn_spam", str(CORPUS / "spam")]) == 0
    assert pyspamc_main(["-c", str(config), "learn_ham", str(CORPUS / "ham")]) == 0
    return config


def test_explain_names_rule_match_score_source_and_bayes_tokens(
        trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    message = tmp_path / "m.eml"
    message.write_bytes(make_message(
        {"Subject": "FREE MONEY FOR YOU NOW"},
        body="Click http://192.0.2.7/offer to claim your free money now!\n"))
    learned_spam = sorted((CORPUS / "spam" / "cur").iterdir())[0]
    capsys.readouterr()
    assert pyspamc_main(["-c", str(trained), "explain", "--json", str(message),
                         str(learned_spam)]) == 0
    out, spam = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    symbols = {s["name"]: s for s in out["symbols"]}
    ip = symbols["URI_IP_HOST"]
    path, _, line = ip["source"].rpartition(":")
    assert Path(path).read_text().splitlines()[int(line) - 1].strip() == ip["rule"]
    assert ip["rule"].startswith("uri") and ip["matched"].startswith("http://192.0.2.7")
    caps = symbols["SUBJ_ALL_CAPS"]
    assert caps["score"] == 1.25 and caps["score_from"] == f"{trained} [scores]"
    assert sum(s["score"] for s in out["symbols"]) == pytest.approx(out["score"], abs=0.05)
    bayes = next(s for s in spam["symbols"] if s["name"] == "BAYES_SPAM")
    assert len(bayes["tokens_spam"]) == 10 and all(w > 0 for _, w in bayes["tokens_spam"])
    assert all(w < 0 for _, w in bayes["tokens_ham"])
    assert bayes["score_from"].endswith("(fitted)")  # rules/95_fitted_scores.rules
    assert pyspamc_main(["-c", str(trained), "explain", str(message), str(learned_spam)]) == 0
    text = capsys.readouterr().out
    assert "URI_IP_HOST" in text and "  matched: 'http://192.0.2.7" in text
    assert "tokens toward" in text
    assert pyspamc_main(["-c", str(trained), "explain", str(tmp_path / "missing")]) == 1
