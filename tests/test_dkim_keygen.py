"""pyspamc dkim-keygen: a key pyspamd can sign with and the record that verifies it."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import dkim
import pytest

from pyspamd.auth.dkim_sign import Signer
from pyspamd.cli.pyspamc import main as pyspamc
from pyspamd.config import DkimKeyConfig, DkimSigningConfig


def test_keygen_writes_a_key_and_prints_the_record(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert pyspamc(["dkim-keygen", "example.org", "2026a", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    key = tmp_path / "example.org.2026a.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert f'key = "{key}"' in out and '[dkim_signing.keys."example.org"]' in out
    line = next(x for x in out.splitlines() if x.startswith("2026a._domainkey.example.org."))
    record = "".join(re.findall(r'"([^"]*)"', line))
    assert record.startswith("v=DKIM1; k=rsa; p=")
    assert all(len(part) <= 255 for part in re.findall(r'"([^"]*)"', line))
    signer = Signer(DkimSigningConfig(keys={"example.org": DkimKeyConfig("2026a", str(key))}))
    raw = b"From: a@example.org\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nbody\r\n"
    name, value = signer.sign(raw, "example.org") or ("", "")
    signed = f"{name}: {value}".replace("\n", "\r\n").encode() + b"\r\n" + raw

    def dns(qname: bytes, timeout: float = 5) -> bytes | None:
        return record.encode() if qname == b"2026a._domainkey.example.org." else None

    assert dkim.verify(signed, dnsfunc=dns)


def test_keygen_refuses_to_overwrite_and_bad_names(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert pyspamc(["dkim-keygen", "example.org", "s1", "--dir", str(tmp_path)]) == 0
    before = (tmp_path / "example.org.s1.key").read_bytes()
    assert pyspamc(["dkim-keygen", "example.org", "s1", "--dir", str(tmp_path)]) == 1
    assert "pick a new selector" in capsys.readouterr().err
    assert (tmp_path / "example.org.s1.key").read_bytes() == before
    assert pyspamc(["dkim-keygen", "localhost", "s1", "--dir", str(tmp_path)]) == 1
    assert pyspamc(["dkim-keygen", "example.org", "a/b", "--dir", str(tmp_path)]) == 1
    assert pyspamc(["dkim-keygen", "example.org", "s2", "--bits", "512",
                    "--dir", str(tmp_path)]) == 1
    assert "at least 1024 bits" in capsys.readouterr().err


def test_keygen_puts_the_key_beside_the_config_and_names_the_local_d_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "etc" / "pyspamd.toml"
    config.parent.mkdir()
    config.write_text("")
    assert pyspamc(["-c", str(config), "dkim-keygen", "example.org", "2026b"]) == 0
    out = capsys.readouterr().out
    key = tmp_path / "etc" / "dkim" / "example.org.2026b.key"
    assert key.exists()
    local = tmp_path / "etc" / "local.d" / "dkim-example.org.toml"
    assert f"write these lines to {local} " in out and "the DNS zone of example.org" in out
    snippet = out[out.index('[dkim_signing.keys."example.org"]'):]
    local.parent.mkdir()
    local.write_text(snippet)
    from pyspamd.config import load_config

    assert load_config(config).dkim_signing.keys["example.org"].key == str(key)
