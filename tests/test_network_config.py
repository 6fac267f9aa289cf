"""The network checks' options: documented in the example, validated with file and line."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from support.paths import REPO

from pyspamd.config import (
    AuthConfig,
    Config,
    ConfigError,
    DkimKeyConfig,
    DkimSigningConfig,
    DnsConfig,
    RblConfig,
    RblListConfig,
    load_config,
)
from pyspamd.dns.nameservers import parse_nameserver, system_nameservers


def test_example_documents_every_network_option() -> None:
    example = REPO / "pyspamd.toml.example"
    text = example.read_text()
    loaded, defaults = load_config(example), Config()
    for section, options in (("dns", DnsConfig), ("rbl", RblConfig), ("auth", AuthConfig),
                             ("dkim_signing", DkimSigningConfig)):
        assert getattr(loaded, section) == getattr(defaults, section), section
        assert f"\n[{section}]\n" in text
        for f in dataclasses.fields(options):
            if f.init and f.name not in ("lists", "keys"):  # tables, checked below
                assert f"\n{f.name} = " in text, f"{section}.{f.name} missing from the example"
    for f in dataclasses.fields(RblListConfig):
        assert f"\n# {f.name} = " in text, f"rbl.lists.{f.name} missing from the example"
    for f in dataclasses.fields(DkimKeyConfig):
        assert f"\n# {f.name} = " in text, f"dkim_signing.keys.{f.name} missing"
    assert "\n# [[rbl.lists]]\n" in text and '\n# [dkim_signing.keys."example.org"]\n' in text


def test_default_lists() -> None:
    lists = {rbl.name: rbl for rbl in Config().rbl.lists}
    assert lists["spamhaus_zen"].zone == "zen.spamhaus.org"
    assert set(lists["spamhaus_zen"].returncodes) == {"RBL_SPAMHAUS_SBL", "RBL_SPAMHAUS_XBL",
                                                      "RBL_SPAMHAUS_PBL"}
    assert lists["spamhaus_zen"].skip_authenticated == ["RBL_SPAMHAUS_PBL"]
    assert "127.255.255.254" in lists["spamhaus_zen"].error_codes
    assert lists["spamcop"].zone == "bl.spamcop.net"
    assert not Config().dns.enabled


@pytest.mark.parametrize(("spec", "expected"), [
    ("127.0.0.1", ("127.0.0.1", 53)), ("127.0.0.1:5353", ("127.0.0.1", 5353)),
    ("::1", ("::1", 53)), ("[::1]:5300", ("::1", 5300)), ("[2001:db8::1]", ("2001:db8::1", 53)),
])
def test_nameserver_specs(spec: str, expected: tuple[str, int]) -> None:
    assert parse_nameserver(spec) == expected


@pytest.mark.parametrize("spec", ["resolver.example.org", "127.0.0.1:0", "127.0.0.1:99999",
                                  "[::1", "[::1]x", "1.2.3"])
def test_bad_nameserver_specs(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_nameserver(spec)


def test_system_nameservers(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("# comment\nsearch example.org\nnameserver 192.0.2.53\n"
                    "nameserver fe80::1%eth0\nnameserver bogus\n")
    assert system_nameservers(conf) == [("192.0.2.53", 53), ("fe80::1", 53)]
    assert system_nameservers(tmp_path / "missing") == [("127.0.0.1", 53)]


def test_network_errors_point_at_lines(tmp_path: Path) -> None:
    path = tmp_path / "pyspamd.toml"
    path.write_text('[dns]\nnameservers = ["dns.example.org"]\ntimeout = 0\n'
                    '[[rbl.lists]]\nname = "x"\nzone = "bl.example"\ntype = "ip"\n'
                    'match = ["urls"]\nreturncodes = { OK = ["not-an-ip"] }\n'
                    '[[rbl.lists]]\nname = "y"\nzone = ""\n'
                    '[auth]\nmin_key_bits = 256\n'
                    '[dkim_signing.keys."example.org"]\nselector = "s"\nkey = "missing.key"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    errors = "\n".join(info.value.errors)
    assert f"{path}:2: dns.nameservers: 'dns.example.org' is not IP" in errors
    assert f"{path}:3: dns.timeout and dns.budget must be positive" in errors
    assert f"{path}:8: rbl list x: a list of type 'ip' matches client_ip, received" in errors
    assert f"{path}:9: rbl list x: 'not-an-ip' is not an IP address" in errors
    assert f"{path}:12: rbl list y: needs the list's DNS zone" in errors
    assert f"{path}:14: auth.min_key_bits must be at least 512" in errors
    assert f"{path}:15: dkim_signing.keys.example.org: cannot read key" in errors
    assert str(tmp_path / "missing.key") in errors


def test_key_file_that_is_not_a_key(tmp_path: Path) -> None:
    (tmp_path / "k.pem").write_text("hello\n")
    path = tmp_path / "pyspamd.toml"
    path.write_text('[dkim_signing.keys."example.org"]\nselector = "s"\nkey = "k.pem"\n')
    with pytest.raises(ConfigError, match="is not a PEM private key"):
        load_config(path)


def test_dns_budget_must_fit_in_the_scan_timeout(tmp_path: Path) -> None:
    path = tmp_path / "pyspamd.toml"
    path.write_text("[milter]\nscan_timeout = 5.0\n[dns]\nenabled = true\nbudget = 8.0\n")
    with pytest.raises(ConfigError, match=r"pyspamd.toml:5: dns.budget \(8s\) must be below "
                                          r"milter.scan_timeout \(5s\)"):
        load_config(path)
    path.write_text("[milter]\nscan_timeout = 5.0\n[dns]\nenabled = false\nbudget = 8.0\n")
    assert load_config(path).dns.budget == 8.0  # off: nothing waits on DNS
