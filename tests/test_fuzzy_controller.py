"""The controller's /fuzzyadd and /fuzzydel (rspamd's names, Flag and Weight headers) behind
the enable password, pyspamc -h fuzzy_add, and /learnspam feeding fuzzy_add."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.controller_proc import ControllerProc, running_controller
from test_fuzzy import CAMPAIGN, REPORTED, TEMPLATE_HAM, VARIANT, message

from pyspamd.cli.pyspamc import main as pyspamc_main
from pyspamd.controller.auth import make_hash

READ_PW, WRITE_PW = "reader-secret", "writer-secret"


@pytest.fixture(scope="module")
def locked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControllerProc]:
    config = (f'password = "{make_hash(READ_PW)}"\nenable_password = "{make_hash(WRITE_PW)}"\n'
              'secure_ip = []\n[fuzzy]\nlearn_spam = true\n')
    with running_controller(tmp_path_factory.mktemp("fuzzy-controller"), config) as c:
        yield c


def _symbols(controller: ControllerProc, raw: bytes) -> dict:
    reply = controller.call("POST", "/checkv2", raw, {"Password": READ_PW})
    assert reply.status == 200, reply.body
    return reply.json()["symbols"]


def test_fuzzyadd_needs_the_enable_password_then_matches_and_deletes(
        locked: ControllerProc) -> None:
    refused = locked.call("POST", "/fuzzyadd", REPORTED, {"Password": READ_PW})
    assert refused.status == 403 and "enable" in refused.json()["error"]
    assert locked.call("POST", "/fuzzyadd", REPORTED).status == 401
    added = locked.call("POST", "/fuzzyadd", REPORTED, {"Password": WRITE_PW, "Flag": "1",
                                                         "Weight": "3"})
    assert added.status == 200 and added.json() == {"success": True, "hashes": 1, "new": 1}
    symbols = _symbols(locked, VARIANT)
    assert symbols["FUZZY_DENIED"]["options"][0].startswith("txt:0.")
    assert "FUZZY_DENIED" not in _symbols(locked, TEMPLATE_HAM)
    bad = locked.call("POST", "/fuzzyadd", REPORTED, {"Password": WRITE_PW, "Flag": "77"})
    assert bad.status == 400 and "flag 77" in bad.json()["error"]
    short = locked.call("POST", "/fuzzyadd", message("Buy now."), {"Password": WRITE_PW})
    assert short.status == 400 and "nothing to hash" in short.json()["error"]
    deleted = locked.call("POST", "/fuzzydel", REPORTED, {"Password": WRITE_PW})
    assert deleted.json() == {"success": True, "hashes": 1, "deleted": 1}
    assert "FUZZY_DENIED" not in _symbols(locked, VARIANT)


def test_pyspamc_fuzzy_over_http(locked: ControllerProc, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "report.eml"
    path.write_bytes(message(CAMPAIGN.format(name="Ann", link="", ref="").replace(
        "balance", "invoice")))
    remote = ["-h", f"127.0.0.1:{locked.port}", "-P", WRITE_PW]
    assert pyspamc_main([*remote, "fuzzy_add", "-f", "2", "-w", "2", str(path)]) == 0
    assert capsys.readouterr().out.startswith("messages: 1, hashes: 1, new: 1, failed: 0")
    assert "FUZZY_PROB" in _symbols(locked, path.read_bytes().replace(b"Ann", b"Bea"))
    assert pyspamc_main([*remote, "fuzzy_del", "-f", "2", str(path)]) == 0
    assert "deleted: 1" in capsys.readouterr().out


def test_learnspam_feeds_fuzzy_when_configured(locked: ControllerProc) -> None:
    report = message(CAMPAIGN.format(name="Cy", link="", ref="").replace("account", "plan"))
    assert locked.call("POST", "/learnspam", report, {"Password": WRITE_PW}).status == 200
    assert "FUZZY_DENIED" in _symbols(locked, report.replace(b"Cy", b"Dee"))
