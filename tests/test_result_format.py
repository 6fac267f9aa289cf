"""Result headers in rspamd's exact layout, SpamAssassin-style X-Spam-*, actions, JSON."""

from __future__ import annotations

import re
from collections.abc import Callable

from support.messages import make_message

from pyspamd.actions import Thresholds
from pyspamd.config import ActionsConfig, HeadersConfig
from pyspamd.result import ScanResult, Symbol, result_headers, spamd_result_header
from pyspamd.scanner import Scanner


def _result(score: float, action: str, symbols: list[Symbol]) -> ScanResult:
    return ScanResult(action=action, score=score, required_score=15.0, spam_score=6.0,
                      symbols={s.name: s for s in symbols})


def test_spamd_result_layout_is_rspamds() -> None:
    result = _result(9.4, "add header", [
        Symbol("MIME_GOOD", -0.1, ["text/plain"]),
        Symbol("SUBJ_ALL_CAPS", 3.0, ["FREE MONEY"]),
        Symbol("PH_CLICK", 6.5, ["click here", "act now"]),
        Symbol("RCVD_COUNT_ONE", 0.0, ["1"]),
        Symbol("ZERO_NO_OPTS", 0.0),
    ])
    header = spamd_result_header(result)
    assert header == (
        "default: False [9.40 / 15.00];\n"
        "\tPH_CLICK(6.50)[click here,act now];\n"
        "\tSUBJ_ALL_CAPS(3.00)[FREE MONEY];\n"
        "\tMIME_GOOD(-0.10)[text/plain];\n"
        "\tRCVD_COUNT_ONE(0.00)[1];\n"
        "\tZERO_NO_OPTS(0.00)"
    )
    # Unfolded (as a header reader sees it) the items are joined by "; "-style separators.
    unfolded = header.replace("\n\t", " ")
    assert unfolded.startswith("default: False [9.40 / 15.00]; PH_CLICK(6.50)")


def test_spamd_result_true_only_on_reject() -> None:
    assert spamd_result_header(_result(20, "reject", [])).startswith("default: True [20.00 /")
    assert spamd_result_header(_result(20, "soft reject", [])).startswith("default: False")


def test_spam_headers_amavis_style() -> None:
    config = HeadersConfig(spam_bar=True)
    spam = dict(result_headers(_result(9.4, "add header", []), config))
    assert spam["X-Spam-Flag"] == "YES"
    assert spam["X-Spam-Status"] == "Yes, score=9.4 required=6.0"
    assert spam["X-Spam-Level"] == "*********"
    assert spam["X-Spam-Bar"] == "+++++++++"
    ham = dict(result_headers(_result(-2.3, "no action", []), config))
    assert ham["X-Spam-Flag"] == "NO"
    assert ham["X-Spam-Status"] == "No, score=-2.3 required=6.0"
    assert ham["X-Spam-Level"] == ""
    assert ham["X-Spam-Bar"] == "--"
    few = dict(result_headers(_result(0.2, "no action", []), HeadersConfig(
        spam_flag=False, spam_status=False, spam_level=False, spam_bar=True, spamd_result=False)))
    assert few == {"X-Spam-Bar": "/"}


def test_level_is_capped() -> None:
    headers = dict(result_headers(_result(1000, "reject", []), HeadersConfig(max_level=50)))
    assert headers["X-Spam-Level"] == "*" * 50


def test_thresholds_choose_strongest_reached() -> None:
    t = Thresholds.from_config(ActionsConfig())
    assert t.choose(0) == "no action"
    assert t.choose(4) == "greylist"
    assert t.choose(6) == "add header"
    assert t.choose(14.99) == "add header"
    assert t.choose(15) == "reject"
    assert t.required_score == 15 and t.spam_score == 6
    custom = Thresholds.from_config(
        ActionsConfig(rewrite_subject=8.0, soft_reject=12.0, greylist=False))
    assert custom.choose(5) == "no action"
    assert custom.choose(9) == "rewrite subject"
    assert custom.choose(12) == "soft reject"
    same = Thresholds.from_config(ActionsConfig(add_header=6.0, rewrite_subject=6.0))
    assert same.choose(7) == "rewrite subject"  # equal thresholds: the stronger action


def test_json_shape(rules_scanner: Callable[[str], Scanner]) -> None:
    scanner = rules_scanner("body CASH /cash/\nscore CASH 7\n")
    result = scanner.scan(make_message(body="cash now\n"))
    out = result.to_json("some/file.eml")
    assert out["file"] == "some/file.eml"
    assert out["action"] == "add header"
    assert out["score"] == 6.9
    assert out["required_score"] == 15.0
    assert out["symbols"]["CASH"] == {"score": 7.0, "options": ["cash"]}
    assert next(iter(out["symbols"])) == "CASH"  # sorted by |score|
    assert re.fullmatch(r"<[^>]+>", out["message_id"])
