"""pyspamc symbols: rspamc's text shape, --json, --headers, envelope options, exit status."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.messages import make_message
from support.paths import CORPUS

from pyspamd.cli.pyspamc import main as pyspamc_main

GTUBE = CORPUS / "malformed" / "gtube.eml"


def test_text_output_shape(capsys: pytest.CaptureFixture[str]) -> None:
    assert pyspamc_main(["symbols", str(GTUBE)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"Results for file: {GTUBE} (") and lines[0].endswith(" seconds)")
    assert lines[1:5] == ["[Metric: default]", "Action: reject", "Spam: true",
                          lines[4]]
    assert lines[4].startswith("Score: ") and lines[4].endswith(" / 15.00")
    assert "Symbol: GTUBE (1000.00)" in lines[5]
    assert any(line.startswith("Message-ID: <") for line in lines)


def test_json_one_object_per_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert pyspamc_main(["symbols", "--json", str(CORPUS / "malformed" / "mixed.mbox")]) == 0
    objects = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(objects) == 3
    for obj in objects:
        assert set(obj) >= {"file", "action", "score", "required_score", "symbols"}
        for symbol in obj["symbols"].values():
            assert set(symbol) == {"score", "options"}


def test_headers_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert pyspamc_main(["symbols", "--headers", str(GTUBE)]) == 0
    out = capsys.readouterr().out
    assert "X-Spamd-Result: default: True [" in out
    assert "\n\tGTUBE(1000.00)" in out
    assert "X-Spam-Flag: YES" in out and "X-Spam-Status: Yes, score=" in out


def test_envelope_options_reach_the_rules(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "env.rules").write_text(
        "header ENV_IP ClientIP =~ /^203\\.0\\.113\\.9$/\n"
        "header ENV_FROM EnvelopeFrom =~ /^bounce@lists\\.example$/\n"
        "header ENV_RCPT EnvelopeRcpt =~ /^carol@/\n"
        "header ENV_HELO Helo =~ /^mx\\.lists/\n"
        "header ENV_HOST ClientHostname =~ /^unknown$/\n"
        "header ENV_USER AuthUser =~ /^alice$/\n"
    )
    config = tmp_path / "pyspamd.toml"
    config.write_text('[rules]\ndirs = ["rules"]\n')
    message = tmp_path / "m.eml"
    message.write_bytes(make_message())
    code = pyspamc_main([
        "--config", str(config), "symbols", "--json", "--ip", "203.0.113.9",
        "--from", "bounce@lists.example", "--rcpt", "bob@example.net", "--rcpt", "carol@x.net",
        "--helo", "mx.lists.example", "--hostname", "unknown", "--user", "alice", str(message),
    ])
    assert code == 0
    symbols = json.loads(capsys.readouterr().out)["symbols"]
    assert {"ENV_IP", "ENV_FROM", "ENV_RCPT", "ENV_HELO", "ENV_HOST", "ENV_USER",
            "FROM_NEQ_ENVFROM"} <= symbols.keys()


def test_stdin_and_missing_file_exit_status(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pyspamd.cli.pyspamc", "symbols", "--json", "-",
         str(tmp_path / "missing.eml")],
        input=make_message(), capture_output=True, check=False,
    )
    lines = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert lines[0]["file"] == "stdin" and lines[0]["action"] == "no action"
    assert lines[1] == {"file": str(tmp_path / "missing.eml"),
                        "error": "no such file or directory"}
    assert proc.returncode == 1  # something failed, and the run still went on


def test_every_sample_gets_a_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    assert pyspamc_main(["symbols", "--json", str(CORPUS)]) == 0
    objects = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(objects) >= 215  # 100 ham + 100 spam + the malformed cases
    assert all("action" in o and "error" not in o for o in objects)
    by_file = {Path(o["file"]).name: o for o in objects}
    assert by_file["gtube.eml"]["action"] == "reject"
    assert by_file["gtube-base64.eml"]["action"] == "reject"
