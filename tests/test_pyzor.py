"""The Pyzor check and report against a real pyzord on 127.0.0.1: a message reported with
`pyspamc learn_spam --report` is then PYZOR_CHECK with its count; whitelist reports take
it off; a server that is down or silent costs at most [pyzor] timeout and adds PYZOR_FAIL."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import pyzor.client
from support.messages import make_message
from support.ports import free_port
from support.pyzord_server import Pyzord, pyzord_server

from pyspamd.cli.pyspamc import main as pyspamc
from pyspamd.config import load_config
from pyspamd.pyzor_client import digest_of
from pyspamd.scanner import Scanner
from pyspamd.task import Task

pytestmark = pytest.mark.redis  # pyzord keeps its digests in a private redis-server

SPAM_BODY = ("Dear friend, we have selected you for an exclusive offer on premium watches.\n"
             "Visit our store today and claim the discount before the stock runs out.\n"
             "This offer is valid only for the first hundred customers who reply.\n"
             "Reply now with your address and telephone number to receive it.\n"
             "Kind regards from the sales department of the watch company.\n")


@pytest.fixture(scope="module")
def pyzord() -> Iterator[Pyzord]:
    with pyzord_server() as server:
        yield server


def write_config(tmp: Path, servers: list[str], timeout: float = 2.0,
                 extra: str = "") -> Path:
    config = tmp / "pyspamd.toml"
    listed = ", ".join(f'"{s}"' for s in servers)
    config.write_text(f'[storage]\npath = "{tmp / "store.sqlite"}"\n[model]\nenabled = false\n'
                      f'[pyzor]\nenabled = true\nservers = [{listed}]\ntimeout = {timeout}\n'
                      f'scores = {{ "1" = 1.0, "3" = 1.5 }}\n{extra}')
    return config


def test_reported_spam_is_then_found(tmp_path: Path, pyzord: Pyzord,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    message = make_message(body=SPAM_BODY)
    config = write_config(tmp_path, [pyzord.address])
    scanner = Scanner.from_config(load_config(config))
    assert "PYZOR_CHECK" not in scanner.scan(message).symbols
    spam = tmp_path / "spam.eml"
    spam.write_bytes(message)
    assert pyspamc(["-c", str(config), "learn_spam", "--report", str(spam)]) == 0
    assert "reported to pyzor: 1" in capsys.readouterr().out
    hit = scanner.scan(message).symbols["PYZOR_CHECK"]
    assert hit.options == ["count=1", "wl=0"]
    assert hit.score == pytest.approx(2.0)  # PYZOR_CHECK's 2.0 times the weight of count 1
    # Whitelist reports (as `pyzor whitelist` makes them) take it off.
    digest = digest_of(Task(message).message)
    assert digest is not None
    answer = pyzor.client.Client(timeout=2).whitelist(digest, ("127.0.0.1", pyzord.port))
    assert answer.is_ok(), answer.get_diag()
    assert "PYZOR_CHECK" not in scanner.scan(message).symbols


def test_learn_spam_setting_reports_too(tmp_path: Path, pyzord: Pyzord,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    # Another campaign: every line differs, so does the digest (pyzor digests some lines).
    message = make_message(body=SPAM_BODY.replace("e", "a").replace("o", "u"))
    config = write_config(tmp_path, [pyzord.address], extra="learn_spam = true\n")
    spam = tmp_path / "spam.eml"
    spam.write_bytes(message)
    assert pyspamc(["-c", str(config), "learn_spam", str(spam)]) == 0
    assert "reported to pyzor: 1" in capsys.readouterr().out
    hit = Scanner.from_config(load_config(config)).scan(message).symbols["PYZOR_CHECK"]
    assert hit.options[0] == "count=1"


@pytest.mark.parametrize("kind", ["down", "silent"])
def test_a_dead_server_costs_at_most_its_timeout(tmp_path: Path, kind: str) -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # takes requests, never answers
    silent.bind(("127.0.0.1", 0))
    port = silent.getsockname()[1] if kind == "silent" else free_port()
    try:
        scanner = Scanner.from_config(load_config(
            write_config(tmp_path, [f"127.0.0.1:{port}"], timeout=0.5)))
        start = time.perf_counter()
        result = scanner.scan(make_message(body=SPAM_BODY))
        elapsed = time.perf_counter() - start
    finally:
        silent.close()
    # UDP: a server that is down looks like one that does not answer.
    assert result.symbols["PYZOR_FAIL"].options == ["timeout"]
    assert "PYZOR_CHECK" not in result.symbols
    assert elapsed < 0.5 + 1.0  # its timeout, and the rest of the scan


def test_config_errors_point_at_lines(tmp_path: Path) -> None:
    from pyspamd.config import ConfigError

    config = tmp_path / "pyspamd.toml"
    config.write_text('[pyzor]\nenabled = true\nservers = ["nohost"]\ntimeout = 30.0\n'
                      'scores = { "x" = 1.0 }\n')
    with pytest.raises(ConfigError) as info:
        load_config(config)
    text = "\n".join(info.value.errors)
    assert f"{config}:3: pyzor.servers has 'nohost'" in text
    assert f"{config}:4: pyzor.timeout (30s) must be below milter.scan_timeout" in text
    assert f"{config}:5: pyzor.scores has 'x'" in text
