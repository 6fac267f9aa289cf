"""The content model: the shipped file loads and votes, bad files are refused with a clear
error (and the scan goes on without the model), and a small training run gives a model
that loads and votes."""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from support.messages import make_message
from support.paths import CORPUS

from pyspamd.checks.model import MODEL_SPAM_SCORE, ModelCheck, Thresholds, verdict_symbol
from pyspamd.cli.pyspamc import main as pyspamc_main
from pyspamd.cli.pyspamd import main as pyspamd_main
from pyspamd.config import ConfigError, ModelConfig, load_config
from pyspamd.model.linear import ModelError, load_model, save_model
from pyspamd.scanner import Scanner

SHIPPED = Path(ModelConfig().path)


def messages(folder: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted((folder / "cur").iterdir())]


def config_file(tmp_path: Path, model_lines: str = "") -> Path:
    path = tmp_path / "pyspamd.toml"
    path.write_text(f'[storage]\npath = "bayes.sqlite"\n[model]\n{model_lines}\n')
    return path


def test_shipped_model_loads_with_its_metadata() -> None:
    model = load_model(SHIPPED)
    assert model.meta.version and model.meta.created
    assert len(model.weights) == 1 << model.meta.hash_bits
    assert 0 < model.size_bytes <= 20 << 20
    counts = model.meta.train_counts
    assert counts["spamassassin"]["spam"] > 1000 and counts["spamassassin"]["ham"] > 3000
    t = model.meta.extra["thresholds"]
    assert 0 < t["ham"] < t["spam"] < t["confident"] < 1


def test_shipped_model_votes_with_an_empty_bayes_store(tmp_path: Path) -> None:
    scanner = Scanner.from_config(load_config(config_file(tmp_path)))
    spam = [scanner.scan(m) for m in messages(CORPUS / "spam")]
    ham = [scanner.scan(m) for m in messages(CORPUS / "ham")]
    assert not any("BAYES_SPAM" in r.symbols or "BAYES_HAM" in r.symbols for r in spam + ham)
    model_spam = sum("MODEL_SPAM" in r.symbols for r in spam)
    assert model_spam >= 70, model_spam
    assert sum("MODEL_SPAM" in r.symbols for r in ham) <= 1  # hard ham: newsletters
    assert sum("MODEL_HAM" in r.symbols for r in ham) >= 80
    # A confident MODEL_SPAM is worth `add header` on its own.
    confident = [r for r in spam if "MODEL_SPAM" in r.symbols
                 and r.symbols["MODEL_SPAM"].score == pytest.approx(MODEL_SPAM_SCORE)]
    assert len(confident) >= 30
    assert sum(r.action in ("add header", "reject") for r in confident) >= 0.9 * len(confident)


def test_a_sure_model_marks_plain_text_mail_beside_small_negative_rules(
        tmp_path: Path) -> None:
    # Issue 15: at 6.0, MIME_GOOD (every plain-text message) kept a sure vote on body-only
    # spam in the greylist band; the full score must clear `add header` beside it and
    # MAILLIST with room to spare.
    scanner = Scanner.from_config(load_config(config_file(tmp_path)))
    scores = {name: scanner.defs[name].score for name in ("MODEL_SPAM", "MIME_GOOD", "MAILLIST")}
    assert scores["MODEL_SPAM"] == pytest.approx(MODEL_SPAM_SCORE)
    assert scores["MIME_GOOD"] < 0 and scores["MAILLIST"] < 0
    assert sum(scores.values()) >= scanner.thresholds.spam_score + 0.5, scores


def test_weight_grows_with_confidence() -> None:
    t = Thresholds(spam=0.9, confident=0.99, ham=0.2)
    assert verdict_symbol(0.5, t) is None
    low = verdict_symbol(0.9, t)
    mid = verdict_symbol(0.95, t)
    top = verdict_symbol(0.999, t)
    assert low is not None and mid is not None and top is not None
    assert low[0] == mid[0] == top[0] == "MODEL_SPAM"
    assert low[1] == pytest.approx(0.5) and low[1] < mid[1] < top[1] == 1.0
    ham_low, ham_top = verdict_symbol(0.2, t), verdict_symbol(0.0001, t)
    assert ham_low is not None and ham_top is not None and ham_low[0] == "MODEL_HAM"
    assert ham_low[1] == pytest.approx(0.5) and ham_top[1] == 1.0


def test_pickle_and_object_arrays_are_refused(tmp_path: Path) -> None:
    pickled = tmp_path / "pickled.npz"
    pickled.write_bytes(pickle.dumps({"weights": [1.0, 2.0]}))
    with pytest.raises(ModelError, match="pickles and other formats are refused"):
        load_model(pickled)
    objects = tmp_path / "objects.npz"
    with objects.open("wb") as handle:
        np.savez(handle, weights=np.array([{"a": 1}], dtype=object), bias=np.zeros(1),
                 meta=np.array("{}"))
    with pytest.raises(ModelError, match=r"objects\.npz: refused: .*allow_pickle"):
        load_model(objects)


def test_damaged_and_foreign_files_are_refused(tmp_path: Path) -> None:
    good = load_model(SHIPPED)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(SHIPPED.read_bytes()[:5000])
    with pytest.raises(ModelError, match=r"truncated\.npz"):
        load_model(truncated)
    missing = tmp_path / "missing.npz"
    with missing.open("wb") as handle:
        np.savez(handle, weights=good.weights)
    with pytest.raises(ModelError, match="missing bias, meta"):
        load_model(missing)
    other = tmp_path / "other-tokenizer.npz"
    save_model(good, other)
    with zipfile.ZipFile(other) as z:
        meta = json.loads(str(np.load(z.open("meta.npy"))))
    meta["tokenizer_version"] = 99
    with other.open("wb") as handle:
        np.savez(handle, weights=good.weights, bias=np.array([good.bias]),
                 meta=np.array(json.dumps(meta)))
    with pytest.raises(ModelError, match=r"tokenizer version 99.*pyspamc model-train"):
        load_model(other)
    wrong_size = tmp_path / "wrong-size.npz"
    with wrong_size.open("wb") as handle:
        np.savez(handle, weights=good.weights[:100], bias=np.array([good.bias]),
                 meta=np.array(good.meta.to_json()))
    with pytest.raises(ModelError, match="100 weights for hash_bits"):
        load_model(wrong_size)


def test_broken_model_fails_configtest_and_scans_go_on(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a model at all")
    config = config_file(tmp_path, f'path = "{broken}"')
    assert pyspamd_main(["--config", str(config), "configtest"]) == 1
    out = capsys.readouterr().out
    assert f"error: content model: {broken}: not a pyspamd model" in out
    scanner = Scanner.from_config(load_config(config))
    assert "content model off" in caplog.text
    result = scanner.scan(messages(CORPUS / "spam")[0])
    assert not result.errors and "MODEL_SPAM" not in result.symbols


def test_configtest_lists_the_model_and_off_switch(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert pyspamd_main(["--config", str(config_file(tmp_path)), "configtest"]) == 0
    model = load_model(SHIPPED)
    out = capsys.readouterr().out
    assert f"content model {model.meta.version}: {SHIPPED}" in out and " MB, 2^20" in out
    off = config_file(tmp_path, "enabled = false")
    assert pyspamd_main(["--config", str(off), "configtest"]) == 0
    assert "content model: off" in capsys.readouterr().out
    scanner = Scanner.from_config(load_config(off))
    assert not any(isinstance(c, ModelCheck) for c in scanner.checks)
    result = scanner.scan(messages(CORPUS / "spam")[0])
    assert "MODEL_SPAM" not in result.symbols and "MODEL_HAM" not in result.symbols


def test_bad_thresholds_name_the_line(tmp_path: Path) -> None:
    config = config_file(tmp_path, "spam_threshold = 0.9\nconfident = 1.5")
    with pytest.raises(ConfigError) as exc:
        load_config(config)
    assert f"{config}:5: model.confident must be 0" in str(exc.value)
    config = config_file(tmp_path, "spam_threshold = 0.9\nham_threshold = 0.95")
    with pytest.raises(ConfigError, match="ham_threshold must be below"):
        load_config(config)


def test_small_training_run_gives_a_model_that_votes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "site.npz"
    code = pyspamc_main(["model-train", "--spam", str(CORPUS / "spam"), "--ham",
                         str(CORPUS / "ham"), "--hash-bits", "16", "--jobs", "1",
                         "--version", "test-1", "-o", str(out)])
    assert code == 0
    assert "to use it: [model] path" in capsys.readouterr().out
    model = load_model(out)
    assert model.meta.version == "test-1" and len(model.weights) == 1 << 16
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["train_counts"] == {"spam": {"spam": 100}, "ham": {"ham": 100}}
    config = config_file(tmp_path, f'path = "{out}"')
    assert pyspamd_main(["--config", str(config), "configtest"]) == 0
    assert "content model test-1" in capsys.readouterr().out
    scanner = Scanner.from_config(load_config(config))
    spam = [scanner.scan(m) for m in messages(CORPUS / "spam")[:20]]
    assert sum("MODEL_SPAM" in r.symbols for r in spam) >= 15
    ham = scanner.scan(make_message())
    assert "MODEL_SPAM" not in ham.symbols


def test_training_needs_both_classes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = pyspamc_main(["model-train", "--spam", str(CORPUS / "spam"), "--ham",
                         str(tmp_path / "nothing"), "--jobs", "1", "-o",
                         str(tmp_path / "m.npz")])
    assert code == 1
    assert "training needs both spam and ham" in capsys.readouterr().err
    assert not (tmp_path / "m.npz").exists()


def test_bayes_and_the_model_share_one_tokenization(tmp_path: Path) -> None:
    from pyspamd.checks.bayes import bayes_from_config
    from pyspamd.task import Task

    bayes = bayes_from_config(load_config(config_file(tmp_path)), create=True)
    model = load_model(SHIPPED)
    task = Task(messages(CORPUS / "spam")[0])
    assert bayes.tokens(task) is model.tokens(task)  # tokenized once, kept on the task
