"""The milter session in-process (pymilter's TestCtx plays libmilter): faults and verdicts."""

from __future__ import annotations

import logging
from io import BytesIO

import Milter
import pytest
from support.messages import make_message
from support.mta import AnsweringCtx
from support.paths import CORPUS

from pyspamd.config import Config, load_config
from pyspamd.milter.session import MilterApp, session_class
from pyspamd.milter.verdict import decide, reply_text
from pyspamd.result import ScanResult, Symbol
from pyspamd.scanner import Scanner
from pyspamd.task import Task


class ExplodingScanner(Scanner):
    """A scanner whose scan dies: stands for any internal fault at end of message."""

    def scan_task(self, task: Task, budget: float | None = None) -> ScanResult:
        raise RuntimeError("storage went away")


def _run(app: MilterApp, raw: bytes) -> tuple[int, AnsweringCtx]:
    Milter.factory = session_class(app)
    ctx = AnsweringCtx()
    assert ctx._connect(ip="198.51.100.4") == Milter.CONTINUE
    rc = ctx._feedFile(BytesIO(raw), "alice@example.org", "bob@example.net")
    ctx._close()
    return rc, ctx


def _scanner(cls: type[Scanner], **milter: object) -> Scanner:
    config = load_config(None)
    for key, value in milter.items():
        setattr(config.milter, key, value)
    return cls.from_config(config)


def test_internal_fault_accepts_with_a_header(caplog: pytest.LogCaptureFixture) -> None:
    app = MilterApp(_scanner(ExplodingScanner), "mx.example.net")
    with caplog.at_level(logging.ERROR, logger="pyspamd.milter"):
        rc, ctx = _run(app, make_message())
    assert rc == Milter.ACCEPT
    assert ctx._msg["X-Pyspamd-Scan"] == "failed; RuntimeError"
    assert "scan failed, applying fail_action=accept: storage went away" in caplog.text
    assert app.active == 0  # the session was counted out again


def test_internal_fault_tempfails_when_configured() -> None:
    app = MilterApp(_scanner(ExplodingScanner, fail_action="tempfail"), "mx.example.net")
    rc, ctx = _run(app, make_message())
    assert rc == Milter.TEMPFAIL
    assert ctx._reply[:2] == ("451", "4.7.1")


def test_real_scan_through_the_session() -> None:
    app = MilterApp(_scanner(Scanner), "mx.example.net")
    rc, ctx = _run(app, (CORPUS / "malformed" / "gtube.eml").read_bytes())
    assert rc == Milter.REJECT
    assert ctx._reply[0] == "554" and "GTUBE" in ctx._reply[2]
    rc, ctx = _run(app, make_message())
    assert rc == Milter.ACCEPT and ctx._msg["X-Spamd-Result"].startswith("default: False")


def test_trusted_network_is_skipped() -> None:
    scanner = _scanner(Scanner, trusted_networks=["198.51.100.0/24"])
    rc, ctx = _run(MilterApp(scanner, "mx"), (CORPUS / "malformed" / "gtube.eml").read_bytes())
    assert rc == Milter.ACCEPT
    assert ctx._msg["X-Pyspamd-Scan"] == "skipped; trusted network"


def _result(action: str, message: str = "") -> ScanResult:
    return ScanResult(action=action, score=20.0, required_score=15.0, spam_score=6.0,
                      symbols={"A": Symbol("A", 12.0), "B": Symbol("B", 8.0),
                               "C": Symbol("C", -1.0)}, message=message, subject="Hi")


def test_decide_reject_text_names_top_symbols() -> None:
    verdict = decide(_result("reject"), Config(), "Q1", "mx", {})
    assert verdict.disposition == "reject" and verdict.reply is not None
    assert verdict.reply.text == "Message rejected as spam (score 20.0 of 15.0: A, B)"
    forced = decide(_result("reject", 'Plz stop sending SPAM id=8'), Config(), "Q1", "mx", {})
    assert forced.reply is not None and forced.reply.text == "Plz stop sending SPAM id=8"


def test_decide_discard_quarantine_and_rename() -> None:
    assert decide(_result("discard"), Config(), "", "mx", {}).disposition == "discard"
    quarantined = decide(_result("quarantine"), Config(), "", "mx", {})
    assert quarantined.disposition == "accept" and quarantined.quarantine
    config = Config()
    config.milter.foreign_headers = "rename"
    verdict = decide(_result("add header"), config, "", "mx", {"X-Spam-Flag": ["NO"]})
    assert ("X-Spam-Flag", 1, "") in verdict.change_headers
    assert ("X-Original-X-Spam-Flag", "NO") in verdict.add_headers
    config.milter.foreign_headers = "keep"
    assert decide(_result("add header"), config, "", "mx", {"X-Spam-Flag": ["NO"]}) \
        .change_headers == []


def test_reply_text_is_one_safe_line() -> None:
    assert reply_text("100% free\r\nnext line") == "100 percent free next line"
    assert len(reply_text("x" * 2000)) == 400
    assert reply_text("") == "Message refused"


def test_trusted_networks_one_decision() -> None:
    """The milter, HELO sanity and greylisting ask the same TrustedNetworks."""
    scanner = _scanner(Scanner, trusted_networks=["198.51.100.0/24", "2001:db8::/32"])
    app = MilterApp(scanner, "mx.example.net")
    assert app.is_trusted("198.51.100.7") and app.is_trusted("2001:db8::25")
    assert app.is_trusted("::ffff:198.51.100.7")  # an IPv4 client on a dual-stack socket
    assert not app.is_trusted("192.0.2.1") and not app.is_trusted(None)
    assert not app.is_trusted("not an address") and not app.is_trusted("")
    helo = next(c for c in scanner.checks if c.name == "helo_sanity")
    grey = next(c for c in scanner.post_checks if c.name == "greylist")
    for ip in ("198.51.100.7", "192.0.2.1"):
        assert (ip in helo.trusted) == (ip in grey.trusted) == app.is_trusted(ip)


def test_verdict_keeps_to_the_actions_the_mta_offered() -> None:
    from pyspamd.milter.verdict import SMFIF_ADDHDRS, SMFIF_CHGHDRS, Verdict, fit_to_mta

    quarantined = Verdict("accept", add_headers=[("X-Spam-Flag", "YES")],
                          change_headers=[("Subject", 1, "[SPAM] x")], quarantine="held")
    dropped = fit_to_mta(quarantined, SMFIF_ADDHDRS | SMFIF_CHGHDRS)
    assert dropped == ["quarantine (no SMFIF_QUARANTINE): accepted"]
    assert quarantined.quarantine == "" and quarantined.add_headers and \
        quarantined.change_headers
    rejected = Verdict("reject", add_headers=[("X-A", "1")], insert_headers=[("X-B", "2")],
                       change_headers=[("X-Spam-Flag", 1, "")])
    assert fit_to_mta(rejected, 0) == ["header changes (no SMFIF_CHGHDRS): X-Spam-Flag",
                                       "added headers (no SMFIF_ADDHDRS)"]
    assert rejected.disposition == "reject" and not (
        rejected.add_headers or rejected.insert_headers or rejected.change_headers)
