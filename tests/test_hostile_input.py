"""Messages built to switch the scan off or stall it (issue 18): each must get a verdict, and
the GTUBE each one carries must still be rejected, through `pyspamc symbols`, through the
milter daemon over the milter protocol, and (the 8-bit ones) through a real Postfix.

The first two are in corpus/malformed/; the big ones are generated (tests/messages.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support import messages
from support.controller_proc import ControllerProc, running_controller
from support.mta import Daemon, MtaSession, running_daemon
from support.paths import CORPUS, REPO
from support.postfix import Postfix, running_postfix

from pyspamd.cli.pyspamc import main as pyspamc_main
from pyspamd.scanner import Scanner

MALFORMED = CORPUS / "malformed"

# name -> (message, the symbol that names what was wrong with it)
HOSTILE: dict[str, tuple[Callable[[], bytes], str]] = {
    "gtube-8bit-content-type": (
        lambda: (MALFORMED / "gtube-8bit-content-type.eml").read_bytes(), "GTUBE"),
    "gtube-8bit-disposition": (
        lambda: (MALFORMED / "gtube-8bit-disposition.eml").read_bytes(), "GTUBE"),
    "multipart-1000-deep": (
        lambda: messages.deep_nesting(1000, "multipart"), "MIME_TOO_DEEP"),
    "rfc822-1000-deep": (lambda: messages.deep_nesting(1000, "rfc822"), "MIME_TOO_DEEP"),
    "html-50k-nested-divs": (lambda: messages.deep_html(50_000), "HTML_TOO_DEEP"),
    "subject-100k-encoded-words": (
        lambda: messages.many_encoded_words(100_000), "TOO_MANY_ENCODED_WORDS"),
    "100k-headers": (lambda: messages.many_headers(100_000), "TOO_MANY_HEADERS"),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_message_is_scanned_and_gtube_rejected(default_scanner: Scanner,
                                                      name: str) -> None:
    make, symbol = HOSTILE[name]
    result = default_scanner.scan(make())
    assert result.errors == []
    assert result.action == "reject" and "GTUBE" in result.symbols
    assert symbol in result.symbols, sorted(result.symbols)


def test_hostile_messages_through_pyspamc(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    mail = tmp_path / "mail"
    mail.mkdir()
    for name, (make, _) in HOSTILE.items():
        (mail / f"{name}.eml").write_bytes(make())
    # An explicit config: without one pyspamc reads /etc/pyspamd/pyspamd.toml when it exists.
    config = tmp_path / "pyspamd.toml"
    config.write_text(f'[rules]\ndirs = ["{REPO / "rules"}"]\n')
    assert pyspamc_main(["--config", str(config), "symbols", "--json", str(mail)]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(out) == len(HOSTILE)
    for item in out:
        name = Path(item["file"]).stem
        assert "errors" not in item and "error" not in item, item
        assert item["action"] == "reject", (name, item["action"], item["symbols"])
        assert {"GTUBE", HOSTILE[name][1]} <= item["symbols"].keys(), (name, item["symbols"])


def test_header_values_are_text_for_every_accessor(default_scanner: Scanner) -> None:
    raw = (MALFORMED / "gtube-8bit-disposition.eml").read_bytes()
    task = default_scanner.task(raw)
    for name in ("content-type", "content-disposition"):
        assert isinstance(task.message.get(name), str)
    (part,) = task.parts
    assert not part.is_attachment and part.content_type == "text/plain"
    assert part.header_values("content-disposition") == ['inline; x="é"']
    assert "HEADER_8BIT" in default_scanner.scan_task(task).symbols


def test_nesting_limit_keeps_the_top_level_and_names_the_cut(default_scanner: Scanner) -> None:
    task = default_scanner.task(messages.deep_nesting(1000, "rfc822"))
    assert max(p.depth for p in task.parts) <= default_scanner.config.scan.max_depth
    assert task.text_parts[0].text.strip() == messages.GTUBE
    assert "too_deep" in task.anomalies


def test_deep_html_is_read_the_cheap_way_with_its_links(default_scanner: Scanner) -> None:
    task = default_scanner.task(messages.deep_html(50_000))
    (part,) = task.text_parts
    assert messages.GTUBE in part.text
    assert part.links == ["http://deep.example.com/x"]
    assert [u.url for u in task.urls] == ["http://deep.example.com/x"]


def test_encoded_words_beyond_the_budget_stay_as_written(default_scanner: Scanner) -> None:
    task = default_scanner.task(messages.many_encoded_words(5000))
    subject = task.subject
    assert subject.startswith("w0w1w2") and "=?utf-8?q?w4999?=" in subject


def test_headers_beyond_the_budget_are_not_read(default_scanner: Scanner) -> None:
    task = default_scanner.task(messages.many_headers(5000))
    assert len(task.headers.items) == default_scanner.config.scan.max_headers
    assert task.headers.first("subject") == "Many headers"


# --- through the milter daemon ----------------------------------------------------------


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    rules_only = f'[rules]\ndirs = ["{REPO / "rules"}"]\n'  # not /etc/pyspamd/rules.d
    with running_daemon(tmp_path_factory.mktemp("hostile"), rules_only) as d:
        yield d


# libmilter refuses a header longer than its 64 KiB packet (and Postfix limits headers to
# 100 kB), so through the milter the Subject holds as many encoded words as fit in that.
THROUGH_MILTER = {**{name: make for name, (make, _) in HOSTILE.items()},
                  "subject-100k-encoded-words": lambda: messages.many_encoded_words(3000)}


@pytest.mark.parametrize("name", THROUGH_MILTER)
def test_hostile_message_through_the_milter(daemon: Daemon, name: str) -> None:
    session = MtaSession(daemon.port)
    try:
        result = session.send(THROUGH_MILTER[name](), queue_id="4QHOSTILE")
    finally:
        session.close()
    assert result.reply.startswith("554 5.7.1"), result.replies  # type: ignore[attr-defined]
    assert "GTUBE" in result.reply  # type: ignore[attr-defined]
    assert "scan failed" not in daemon.log() and "Traceback" not in daemon.log()


# --- through a real Postfix -------------------------------------------------------------


@pytest.fixture(scope="module")
def postfix(daemon: Daemon) -> Iterator[Postfix]:
    with running_postfix(daemon.port) as instance:
        yield instance


@pytest.mark.parametrize("name", ["gtube-8bit-content-type", "gtube-8bit-disposition"])
def test_gtube_with_8bit_parameter_through_postfix(postfix: Postfix, name: str) -> None:
    code, reply = postfix.send(HOSTILE[name][0]())
    assert code == 554, reply
    assert reply.startswith("5.7.1 Message rejected as spam") and "GTUBE" in reply



# --- through the controller's HTTP API ----------------------------------------------------


@pytest.fixture(scope="module")
def controller(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControllerProc]:
    rules_only = f'[rules]\ndirs = ["{REPO / "rules"}"]\n'
    with running_controller(tmp_path_factory.mktemp("hostile-controller"), rules_only) as c:
        yield c


@pytest.mark.parametrize("name", ["gtube-8bit-disposition", "multipart-1000-deep",
                                  "rfc822-1000-deep"])
def test_hostile_message_through_checkv2(controller: ControllerProc, name: str) -> None:
    reply = controller.call("POST", "/checkv2", HOSTILE[name][0]())
    assert reply.status == 200, reply.body  # was 500 for the nested ones
    result = reply.json()
    assert result["action"] == "reject" and "errors" not in result
