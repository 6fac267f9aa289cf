"""The config's sections against the code that acts on them: each name a section accepts
(map match, RBL match, forced action) is one the feature carries out, and the reverse."""

from __future__ import annotations

from pathlib import Path

import pytest

from pyspamd import actions
from pyspamd.checks import multimap, rbl
from pyspamd.checks.rbl_settings import RBL_MATCHES
from pyspamd.config import VALIDATORS, Config, ConfigError, load_config
from pyspamd.config_schema import beside_config
from pyspamd.policy.map_settings import DEFAULT_MATCH, MAP_MATCHES, MAP_TYPES


def test_every_map_match_the_config_accepts_is_looked_up() -> None:
    assert set(multimap.VALUES) == set(MAP_MATCHES)
    assert set(DEFAULT_MATCH) == set(MAP_TYPES)
    assert all(DEFAULT_MATCH[t] in MAP_MATCHES and t in MAP_MATCHES[DEFAULT_MATCH[t]]
               for t in MAP_TYPES)


def test_every_rbl_match_the_config_accepts_is_looked_up() -> None:
    assert set(rbl.TARGETS) == {m for matches in RBL_MATCHES.values() for m in matches}


def test_forceable_actions_are_actions() -> None:
    assert {actions.ACCEPT_WORDS.get(a, a) for a in actions.FORCEABLE} <= actions.ALL_ACTIONS


def test_every_section_with_checks_is_a_config_section() -> None:
    sections = {f for f in Config.__dataclass_fields__ if f != "path"}
    assert {name for name, _ in VALIDATORS} <= sections


@pytest.mark.parametrize("written", ["keys/a.pem", "/etc/keys/a.pem"])
def test_paths_are_read_beside_the_config_file(tmp_path: Path, written: str) -> None:
    config = tmp_path / "pyspamd.toml"
    expected = written if written.startswith("/") else str(tmp_path / written)
    assert beside_config(written, config) == expected
    assert beside_config(written, None) == written


def test_relative_map_model_and_rules_paths_resolve_beside_the_file(tmp_path: Path) -> None:
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "block.txt").write_text("192.0.2.1\n")
    path = tmp_path / "pyspamd.toml"
    path.write_text('[rules]\ndirs = ["myrules"]\n[model]\nenabled = false\npath = "m.npz"\n'
                    '[[maps]]\nname = "block"\ntype = "ip"\nfile = "lists/block.txt"\n')
    config = load_config(path)
    assert config.rules.dirs == [str(tmp_path / "myrules")]
    assert config.model.path == str(tmp_path / "m.npz")
    assert config.maps[0].file == str(tmp_path / "lists" / "block.txt")


def test_scan_limits_are_the_tasks_parse_limits(tmp_path: Path) -> None:
    path = tmp_path / "pyspamd.toml"
    path.write_text("[scan]\nmax_urls = 7\nmax_parts = 0\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.errors == [f"{path}:3: scan.max_parts must be positive"]
    path.write_text("[scan]\nmax_urls = 7\n")
    from pyspamd.task import Task

    task = Task(b"Subject: x\n\nsee http://a.example/ http://b.example/\n",
                limits=load_config(path).scan)
    assert task.limits.max_urls == 7
