"""Configuration: defaults, the shipped example, errors with file and line, configtest."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from support.paths import REPO

from pyspamd.cli.pyspamd import main as pyspamd_main
from pyspamd.config import (
    Config,
    ConfigError,
    LdapConfig,
    MapConfig,
    load_config,
    resolve_config_path,
)


def test_no_file_means_defaults() -> None:
    config = load_config(None)
    assert config.actions.reject == 15.0 and config.actions.add_header == 6.0
    assert config.actions.greylist == 4.0 and config.actions.rewrite_subject is False
    assert Path(config.rules.dirs[0]).is_dir()  # the shipped rules are found


def test_example_config_loads_and_documents_every_option() -> None:
    example = REPO / "pyspamd.toml.example"
    loaded = load_config(example)
    text = example.read_text()
    defaults = Config()
    for section in ("scan", "actions", "headers", "milter", "logging"):
        assert getattr(loaded, section) == getattr(defaults, section), section
        for f in dataclasses.fields(getattr(defaults, section)):
            assert f"\n{f.name} = " in text, f"{section}.{f.name} missing from the example"
    assert "# dirs = " in text and "[scores]" in text and "max_score" in text
    for section in ("storage", "bayes", "model"):
        assert getattr(loaded, section) == getattr(defaults, section), section
    assert loaded.greylist == defaults.greylist and loaded.ratelimit == defaults.ratelimit
    assert loaded.helo == defaults.helo and loaded.controller == defaults.controller
    assert loaded.banned_files == defaults.banned_files
    assert loaded.quarantine == defaults.quarantine
    assert "\n[ratelimit.limits]\n" in text and '\n# ip = "100 / 1h"\n' in text
    for name, options in (("storage", defaults.storage), ("bayes", defaults.bayes),
                          ("bayes.autolearn", defaults.bayes.autolearn),
                          ("model", defaults.model),
                          ("greylist", defaults.greylist), ("ratelimit", defaults.ratelimit),
                          ("helo", defaults.helo), ("controller", defaults.controller)):
        assert f"\n[{name}]\n" in text
        for f in dataclasses.fields(options):
            if f.name not in ("autolearn", "limits"):  # both are sub-tables
                assert f"\n{f.name} = " in text or f"\n# {f.name} = " in text, (
                    f"{name}.{f.name} missing from the example")


def test_example_documents_map_options() -> None:
    text = (REPO / "pyspamd.toml.example").read_text()
    assert "\n# [[maps]]\n" in text
    for f in dataclasses.fields(MapConfig):
        if f.name != "ldap" and f.init:  # a sub-table, checked below; url is derived
            assert f"\n# {f.name} = " in text, f"maps.{f.name} missing from the example"
    assert "\n# [maps.ldap]\n" in text
    for f in dataclasses.fields(LdapConfig):
        assert f"\n# {f.name} = " in text, f"maps.ldap.{f.name} missing from the example"


def test_storage_and_bayes_errors_point_at_lines(tmp_path: Path) -> None:
    path = tmp_path / "pyspamd.toml"
    path.write_text('[storage]\nbackend = "mysql"\nredis_url = "localhost:6379"\n'
                    'path = "data/b.sqlite"\n[bayes]\nspam_threshold = 0.3\n'
                    '[bayes.autolearn]\nspam_score = -5.0\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    errors = info.value.errors
    assert any(e.startswith(f"{path}:2: storage.backend must be") for e in errors)
    assert any(e.startswith(f"{path}:3: storage.redis_url must start") for e in errors)
    assert any(e.startswith(f"{path}:6: bayes.spam_threshold must be") for e in errors)
    assert any(e.startswith(f"{path}:8: autolearn.spam_score must be above") for e in errors)
    path.write_text('[storage]\npath = "data/b.sqlite"\n')
    assert load_config(path).storage.path == str(tmp_path / "data" / "b.sqlite")


def test_errors_point_at_lines(tmp_path: Path) -> None:
    path = tmp_path / "pyspamd.toml"
    path.write_text('[actions]\nreject = "high"\nrejekt = 20\n\n[scan]\nmax_parts = 2.5\n'
                    '[headers]\nspam_flag = "yes"\n[groups.phrases]\nmax_score = true\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    errors = info.value.errors
    assert f"{path}:2: actions.reject must be a number, or false" in errors[0]
    assert any(e.startswith(f"{path}:3: unknown option 'actions.rejekt'") for e in errors)
    assert any(e.startswith(f"{path}:6: scan.max_parts must be a whole number") for e in errors)
    assert any(e.startswith(f"{path}:8: headers.spam_flag must be true or false") for e in errors)
    assert any(f"{path}:10: max_score must be a number" in e for e in errors)


def test_toml_syntax_error_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[actions\nreject = 1\n")
    with pytest.raises(ConfigError, match=r"broken\.toml: TOML syntax error.*line 1"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "nope.toml")


def test_config_path_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PYSPAMD_CONFIG", str(tmp_path / "env.toml"))
    assert resolve_config_path("/x/arg.toml") == Path("/x/arg.toml")
    assert resolve_config_path(None) == tmp_path / "env.toml"


def test_configtest_ok_and_failing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert pyspamd_main(["--config", str(REPO / "pyspamd.toml.example"), "configtest"]) == 0
    assert "OK" in capsys.readouterr().out
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "local.rules").write_text("body GOOD /fine/\nbody BROKEN /(/\nscore GOOD x\n")
    config = tmp_path / "pyspamd.toml"
    config.write_text('[rules]\ndirs = ["rules"]\n')  # relative to the config file
    assert pyspamd_main(["--config", str(config), "configtest"]) == 1
    out = capsys.readouterr().out
    assert f"{rules / 'local.rules'}:2: BROKEN: bad regex" in out
    assert f"{rules / 'local.rules'}:3: score of GOOD must be a number" in out
    assert "config test failed: 2 error(s)" in out


def test_configtest_as_installed_command(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[actions]\nreject = true\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pyspamd.cli.pyspamd", "--config", str(bad), "configtest"],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 1
    assert f"{bad}:2: actions.reject must be a score threshold" in proc.stdout


def test_configtest_knows_the_network_checks_symbols(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    # configtest builds the checks the scanner builds (checks/registry.py), so re-scoring a
    # blocklist's symbol is no "which no rule or check defines" warning when DNS is on.
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "local.rules").write_text("score RBL_SPAMCOP 3.5\nscore R_SPF_FAIL 2.0\n")
    config = tmp_path / "pyspamd.toml"
    config.write_text(f'[rules]\ndirs = ["{REPO / "rules"}", "rules"]\n'
                      '[dns]\nenabled = true\nnameservers = ["127.0.0.1:53"]\n')
    assert pyspamd_main(["--config", str(config), "configtest"]) == 0
    out = capsys.readouterr().out
    assert "RBL_SPAMCOP" not in out and "R_SPF_FAIL" not in out, out
    config.write_text(f'[rules]\ndirs = ["{REPO / "rules"}", "rules"]\n')  # DNS off
    assert pyspamd_main(["--config", str(config), "configtest"]) == 0
    assert "score for RBL_SPAMCOP, which no rule or check defines" in capsys.readouterr().out
