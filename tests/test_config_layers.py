"""Config the way rspamd admins keep it: local.d/*.toml over the main file, errors naming
the file and line that set the key, configdump; and [dns] enabled = "auto"."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from pyspamd.config import ConfigError, DnsConfig, load_config
from pyspamd.dns.nameservers import local_resolver

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def _pyspamd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pyspamd.cli.pyspamd", *args],
                          capture_output=True, text=True, env=ENV)


@pytest.fixture
def layered(tmp_path: Path) -> Path:
    main = tmp_path / "pyspamd.toml"
    main.write_text('[milter]\nworkers = 2\nlisten = ["inet:11332@127.0.0.1"]\n'
                    '[actions]\nreject = 15.0\nadd_header = 6.0\n'
                    '[controller]\nenabled = false\n[dns]\nenabled = false\n')
    local = tmp_path / "local.d"
    local.mkdir()
    (local / "10-milter.toml").write_text('[milter]\nworkers = 4\n')
    (local / "20-actions.toml").write_text('[actions]\nreject = 20.0\n[milter]\nworkers = 3\n')
    (local / "README").write_text("not a .toml file: not read\n")
    return main


def test_local_d_files_merge_in_name_order(layered: Path) -> None:
    config = load_config(layered)
    assert config.milter.workers == 3  # 20-actions.toml is read after 10-milter.toml
    assert config.actions.reject == 20.0
    assert config.actions.add_header == 6.0  # a table merges key by key
    assert config.milter.listen == ["inet:11332@127.0.0.1"]


def test_lists_are_replaced_not_appended(layered: Path) -> None:
    (layered.parent / "local.d" / "30-listen.toml").write_text(
        '[milter]\nlisten = ["unix:/tmp/x.sock"]\n')
    assert load_config(layered).milter.listen == ["unix:/tmp/x.sock"]


def test_arrays_of_tables_merge_by_name(layered: Path) -> None:
    """A local.d [[maps]] entry updates the same-named map read before and adds the others;
    configdump shows the merged list, and errors point into the file that set the key."""
    with layered.open("a") as main:
        main.write('[[maps]]\nname = "blocked"\ntype = "ip"\nvalues = ["192.0.2.1"]\n'
                   'score = 1.0\naction = "reject"\n'
                   '[[maps]]\nname = "friends"\ntype = "address"\nvalues = ["a@example.org"]\n'
                   'score = -2.0\n')
    local = layered.parent / "local.d" / "30-maps.toml"
    local.write_text('[[maps]]\nname = "blocked"\nscore = 5.0\n'
                     '[[maps]]\nname = "partners"\ntype = "domain"\nvalues = ["example.net"]\n')
    maps = {m.name: m for m in load_config(layered).maps}
    assert list(maps) == ["blocked", "friends", "partners"]
    assert (maps["blocked"].score, maps["blocked"].action) == (5.0, "reject")
    assert maps["blocked"].values == ["192.0.2.1"] and maps["friends"].score == -2.0
    dumped = tomllib.loads(_pyspamd("--config", str(layered), "configdump").stdout)
    assert [(m["name"], m["score"]) for m in dumped["maps"]] == [
        ("blocked", 5.0), ("friends", -2.0), ("partners", 0.0)]
    with local.open("a") as more:  # its line 10: the third entry of this file, the 4th map
        more.write('[[maps]]\nname = "broken"\ntype = "nosuchtype"\nvalues = ["x"]\n')
    with pytest.raises(ConfigError) as caught:
        load_config(layered)
    assert caught.value.errors == [f"{local}:10: maps broken: type must be one of ip, address, "
                                   "domain, regexp, ldap, got 'nosuchtype'"]
    local.write_text('[[maps]]\nname = "blocked"\naction = "rejected"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(layered)
    assert caught.value.errors[0].startswith(f"{local}:3: maps blocked: ")


def test_errors_name_the_file_and_line_that_set_the_key(layered: Path) -> None:
    bad = layered.parent / "local.d" / "30-bad.toml"
    bad.write_text('# local tuning\n[milter]\n\nworkers = "many"\n[bayes]\nclassifer = "x"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(layered)
    assert f"{bad}:4: milter.workers must be a whole number, got 'many'" in caught.value.errors
    assert any(e.startswith(f"{bad}:6: unknown option 'bayes.classifer'")
               for e in caught.value.errors)
    out = _pyspamd("--config", str(layered), "configtest")
    assert out.returncode == 1 and f"{bad}:4: milter.workers" in out.stdout
    bad.write_text("[milter\n")
    out = _pyspamd("--config", str(layered), "configtest")
    assert out.returncode == 1 and out.stdout.startswith(f"{bad}: TOML syntax error")


def test_configdump_prints_the_merged_config(layered: Path) -> None:
    (layered.parent / "local.d" / "40-secret.toml").write_text(
        '[storage]\nbackend = "redis"\nredis_url = "redis://:hunter2@127.0.0.1:6379/0"\n')
    out = _pyspamd("--config", str(layered), "configdump")
    assert out.returncode == 0, out.stderr
    first = out.stdout.splitlines()[0]
    assert first == (f"# pyspamd configdump: {layered}, then {layered.parent}/local.d/"
                     f"10-milter.toml, then {layered.parent}/local.d/20-actions.toml, then "
                     f"{layered.parent}/local.d/40-secret.toml")
    dumped = tomllib.loads(out.stdout)
    assert dumped["milter"]["workers"] == 3 and dumped["actions"]["reject"] == 20.0
    assert dumped["bayes"]["min_learns"] == 200  # defaults are shown too
    assert "hunter2" not in out.stdout
    # What configdump prints is itself a config that loads to the same settings.
    again = layered.parent / "dumped" / "pyspamd.toml"
    again.parent.mkdir()
    again.write_text(out.stdout.replace('redis_url = "redis://:***@', 'redis_url = "redis://:x@'))
    reloaded = load_config(again)
    assert reloaded.milter == load_config(layered).milter


# --- [dns] enabled = "auto" ------------------------------------------------------------

@pytest.mark.parametrize(("resolv", "on"), [
    ("nameserver 127.0.0.1\n", True),             # unbound
    ("nameserver 127.0.0.53\noptions edns0\n", True),  # systemd-resolved
    ("nameserver ::1\n", True),
    ("# dhcp\nnameserver 192.0.2.53\nnameserver 127.0.0.1\n", False),  # the first is asked
    ("nameserver 8.8.8.8\n", False),
])
def test_auto_follows_the_system_resolver(tmp_path: Path, resolv: str, on: bool) -> None:
    path = tmp_path / "resolv.conf"
    path.write_text(resolv)
    enabled, note = local_resolver([], path)
    assert enabled is on
    if not on:
        assert f"({path}) is not local" in note
        assert "[dns] enabled = true" in note and "unbound" in note


def test_auto_with_configured_nameservers() -> None:
    assert local_resolver(["127.0.0.1:5353"])[0] is True
    assert local_resolver(["192.0.2.1"])[0] is False
    # Local, but nothing answers there (a bound socket that never replies): off, and why.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        where = f"127.0.0.1:{silent.getsockname()[1]}"
        dns = DnsConfig(enabled="auto", nameservers=[where])
    assert dns.enabled is False and dns.unanswered == where
    assert f"the local resolver {where} did not answer" in dns.auto_note
    assert DnsConfig(enabled=False, nameservers=["127.0.0.1"]).enabled is False
    assert DnsConfig(enabled="auto", nameservers=["192.0.2.1"]).auto_note.startswith(
        "network checks (DNSBL, SPF, DKIM, DMARC) off: the resolver 192.0.2.1")


def test_configtest_says_why_dns_is_off_and_rejects_other_words(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[dns]\nnameservers = ["192.0.2.1"]\n')
    out = _pyspamd("--config", str(config), "configtest")
    assert out.returncode == 0
    assert "note: network checks (DNSBL, SPF, DKIM, DMARC) off: the resolver 192.0.2.1 " \
           "([dns] nameservers) is not local" in out.stdout
    config.write_text('[dns]\nenabled = "yes"\n')
    out = _pyspamd("--config", str(config), "configtest")
    assert out.returncode == 1
    assert f"{config}:2: dns.enabled must be true, false or \"auto\", got 'yes'" in out.stdout


# --- action thresholds ---------------------------------------------------------------

def test_thresholds_out_of_order_are_refused(layered: Path) -> None:
    local = layered.parent / "local.d" / "30-actions.toml"
    local.write_text("[actions]\n# too strict\nreject = 3.0\n")
    with pytest.raises(ConfigError) as caught:
        load_config(layered)
    assert caught.value.errors[:2] == [
        f"{local}:3: actions.reject (3) must be above actions.greylist (4), or greylist never "
        "happens; set them in order (greylist < add_header < rewrite_subject < quarantine "
        "< reject) or set one to false",
        f"{local}:3: actions.reject (3) must be above actions.add_header (6), or add header "
        "never happens; set them in order (greylist < add_header < rewrite_subject "
        "< quarantine < reject) or set one to false"]
    local.write_text("[actions]\nadd_header = 16.0\nreject = 12.0\n")
    with pytest.raises(ConfigError) as caught:
        load_config(layered)
    assert caught.value.errors[0].startswith(f"{local}:3: actions.reject (12) must be above "
                                             "actions.add_header (16)")
    local.write_text("[actions]\nadd_header = false\nreject = 5.0\ngreylist = 3.0\n")
    assert load_config(layered).actions.reject == 5.0  # off is not out of order
    out = _pyspamd("--config", str(layered), "configtest")
    assert "OK" in out.stdout.splitlines()[-1], out.stdout


def test_greylist_threshold_without_greylisting_is_a_warning(layered: Path) -> None:
    local = layered.parent / "local.d" / "30-grey.toml"
    local.write_text("[greylist]\nenabled = false\n")
    warning = (f"{local}:2: actions.greylist = 4 while [greylist] enabled = false: every "
               "message scoring from 4 is deferred (451) on every attempt; set "
               "actions.greylist = false, or enable greylisting")
    assert load_config(layered).warnings == [warning]
    out = _pyspamd("--config", str(layered), "configtest")
    assert f"warning: {warning}" in out.stdout.splitlines()
    local.write_text("[greylist]\nenabled = false\n[actions]\ngreylist = false\n")
    assert load_config(layered).warnings == []
