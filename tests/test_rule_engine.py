"""The rule language (docs/rules.md): every kind, metas, metadata, and errors with file:line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from support.messages import make_message

from pyspamd.config import Config, ModelConfig, RulesConfig
from pyspamd.ruleset.loader import load_rules
from pyspamd.ruleset.meta import MetaError, parse_meta
from pyspamd.ruleset.regex import RegexError, parse_literal
from pyspamd.scanner import RuleLoadError, Scanner
from pyspamd.task import Envelope

Build = Callable[[str], Scanner]


def hits(scanner: Scanner, raw: bytes, envelope: Envelope | None = None) -> dict[str, list[str]]:
    result = scanner.scan(raw, envelope)
    return {name: s.options for name, s in result.symbols.items()}


def test_header_rule_decoded_raw_addr_name(rules_scanner: Build) -> None:
    scanner = rules_scanner(
        "header SUBJ_DECODED Subject =~ /Grüße/\n"
        "header SUBJ_RAW Subject:raw =~ /=\\?utf-8\\?/i\n"
        "header FROM_ADDR From:addr =~ /^alice@example\\.org$/\n"
        "header FROM_NAME From:name =~ /^Alice Ex/\n"
        "header RCVD_TWO Received:count =~ /^2$/\n"
    )
    raw = make_message({
        "Subject": "=?utf-8?q?Gr=C3=BC=C3=9Fe?= from Berlin",
        "Received": "from a by b; Mon, 6 Jan 2003 10:00:04 +0000",
    })
    found = hits(scanner, raw)
    assert found["SUBJ_DECODED"] == ["Grüße from Berlin"]
    assert "SUBJ_RAW" in found
    assert found["FROM_ADDR"] == ["alice@example.org"]
    assert "FROM_NAME" in found
    assert "RCVD_TWO" not in found  # the default message has one Received plus this one...
    assert hits(scanner, make_message({"X-A": "1"}))  # ...and scanning still works


def test_header_count_and_negation_and_missing(rules_scanner: Build) -> None:
    scanner = rules_scanner(
        "header ONE_RCVD Received:count =~ /^1$/\n"
        "header NO_MSGID_FORMAT Message-ID !~ /^<[^@>]+@[^>]+>$/\n"
        "header HAS_XM exists:X-Mailer\n"
        "header NO_DATE missing:Date\n"
        "header MISSING_IS_EMPTY X-Nothing =~ /^$/\n"
    )
    good = hits(scanner, make_message())
    assert "ONE_RCVD" in good and "NO_MSGID_FORMAT" not in good
    assert "HAS_XM" not in good and "NO_DATE" not in good
    assert "MISSING_IS_EMPTY" in good  # a missing header reads as ""
    bad = hits(scanner, make_message({"Message-ID": "12345", "X-Mailer": "Foo", "Date": None}))
    assert {"NO_MSGID_FORMAT", "HAS_XM", "NO_DATE"} <= bad.keys()


def test_envelope_pseudo_headers(rules_scanner: Build) -> None:
    scanner = rules_scanner(
        "header HELO_IP Helo =~ /^\\[?\\d+\\.\\d+\\.\\d+\\.\\d+\\]?$/\n"
        "header ENV_FREEMAIL EnvelopeFrom =~ /@freemail\\.test$/\n"
        "header RCPT_POSTMASTER EnvelopeRcpt =~ /^postmaster@/\n"
        "header AUTHED exists:AuthUser\n"
        "header NO_RDNS ClientHostname =~ /^unknown$/\n"
    )
    env = Envelope(client_ip="198.51.100.7", client_hostname="unknown", helo="[198.51.100.7]",
                   mail_from="<x@freemail.test>", rcpts=("bob@example.net", "postmaster@x.net"))
    found = hits(scanner, make_message(), env)
    assert {"HELO_IP", "ENV_FREEMAIL", "RCPT_POSTMASTER", "NO_RDNS"} <= found.keys()
    assert "AUTHED" not in found
    assert "AUTHED" in hits(scanner, make_message(), Envelope(user="alice"))


def test_body_rawbody_full_uri_mime(rules_scanner: Build) -> None:
    scanner = rules_scanner(
        "body BODY_UNSUB /unsubscribe/i\n"
        "rawbody RAW_FONT /<font\\b/i\n"
        "full FULL_XHDR /^X-Campaign:/m\n"
        "uri URI_SHORT /^https?:\\/\\/bit\\.ly\\//i\n"
        "mime MIME_EXE filename =~ /\\.exe$/i\n"
        "mime MIME_HTML type =~ /^text\\/html$/\n"
        "body SUBJECT_IN_BODY /^Big news$/m\n"
    )
    html = ('<html><body><p>To un<b>sub</b>scribe <a href="https://bit.ly/x1">click</a></p>'
            '<font color=red>now</font><script>unsubscribe_hidden()</script></body></html>')
    raw = (
        "From: a@example.org\nTo: b@example.net\nSubject: Big news\nX-Campaign: 7\n"
        "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=XX\n\n"
        "--XX\nContent-Type: text/html; charset=utf-8\n\n" + html + "\n"
        "--XX\nContent-Type: application/octet-stream\n"
        "Content-Disposition: attachment; filename=\"setup.exe\"\n"
        "Content-Transfer-Encoding: base64\n\nTVqQAAMAAAAEAAAA\n--XX--\n"
    ).encode()
    found = hits(scanner, raw)
    # "un<b>sub</b>scribe" reads as one word, as the reader sees it
    assert found["BODY_UNSUB"] == ["unsubscribe"]
    assert found["RAW_FONT"] == ["<font"]
    assert "FULL_XHDR" in found
    assert found["URI_SHORT"] == ["https://bit.ly/x1"]
    assert found["MIME_EXE"] == ["setup.exe"]
    assert "MIME_HTML" in found
    assert "SUBJECT_IN_BODY" in found  # the Subject is the first line of body text


def test_script_text_is_not_body(rules_scanner: Build) -> None:
    scanner = rules_scanner("body HIDDEN /hidden_call/\n")
    raw = make_message({"Content-Type": "text/html"},
                       "<p>hi</p><script>hidden_call()</script><style>p{}</style>")
    assert "HIDDEN" not in hits(scanner, raw)


def test_meta_boolean_counting_and_precedence(rules_scanner: Build) -> None:
    scanner = rules_scanner(
        "body __A /alpha/\nbody __B /bravo/\nbody __C /charlie/\n"
        "meta TWO_OF_THREE __A + __B + __C >= 2\n"
        "meta A_NOT_B __A && !__B\n"
        "meta GROUPED (__A || __B) && __C\n"
        "meta NOT_BINDS_TIGHT !__A + __B >= 1\n"
        "meta META_OF_META TWO_OF_THREE && !A_NOT_B\n"
        "score TWO_OF_THREE 2.5\n"
    )
    found = hits(scanner, make_message(body="alpha and charlie\n"))
    assert "TWO_OF_THREE" in found and "A_NOT_B" in found and "GROUPED" in found
    # (!__A) + __B = 0 + 0: "!" binds tighter than "+", as in C and SpamAssassin
    assert "NOT_BINDS_TIGHT" not in found
    assert "META_OF_META" not in found
    assert not any(name.startswith("__") for name in found)  # sub-rules never show
    found = hits(scanner, make_message(body="alpha bravo\n"))
    assert {"TWO_OF_THREE", "META_OF_META", "NOT_BINDS_TIGHT"} <= found.keys()
    assert "A_NOT_B" not in found and "GROUPED" not in found
    result = scanner.scan(make_message(body="alpha bravo\n"))
    assert result.symbols["TWO_OF_THREE"].score == 2.5


def test_meta_can_use_builtin_check_symbols(rules_scanner: Build) -> None:
    scanner = rules_scanner("meta HTML_NO_RCVD MIME_HTML_ONLY && RCVD_COUNT_ZERO\n")
    raw = b"From: a@example.org\nContent-Type: text/html\n\n<p>Buy</p>\n"
    assert "HTML_NO_RCVD" in hits(scanner, raw)


def test_metadata_score_describe_group_tflags(rules_scanner: Build) -> None:
    scanner = rules_scanner(
        "body MONEY /\\$\\d+/\n"
        "tflags MONEY multiple\n"
        "score MONEY 0.5\n"
        "describe MONEY Dollar amounts\n"
        "group MONEY money\n"
        "body QUIET /quiet/\n"
        "tflags QUIET nooptions\n"
        "score MIME_GOOD -0.5\n"
    )
    result = scanner.scan(make_message(body="$10 $20 $30 quiet\n"))
    money = result.symbols["MONEY"]
    assert money.score == pytest.approx(1.5)  # three hits x 0.5
    assert money.options == ["$10", "$20", "$30"]
    assert money.description == "Dollar amounts"
    assert result.symbols["QUIET"].options == []
    assert result.symbols["QUIET"].score == 1.0  # the default score
    assert result.symbols["MIME_GOOD"].score == -0.5  # rule files re-score built-ins


def test_group_max_score_limits_total(tmp_path: Path) -> None:
    rules = tmp_path / "r.rules"
    rules.write_text("body P1 /one/\nbody P2 /two/\nbody P3 /three/\n"
                     "group P1 phrases\ngroup P2 phrases\ngroup P3 phrases\n"
                     "score P1 3\nscore P2 3\nscore P3 3\n")
    config = Config(rules=RulesConfig(dirs=[str(rules)]), model=ModelConfig(enabled=False))
    from pyspamd.config import GroupConfig
    config.groups["phrases"] = GroupConfig(max_score=4.0)
    config.model.enabled = False  # its MODEL_HAM would move the total this test adds up
    result = Scanner.from_config(config).scan(make_message(body="one two three\n"))
    assert result.score == pytest.approx(4.0 - 0.1)  # capped phrases + MIME_GOOD


def test_later_file_overrides_scores(tmp_path: Path) -> None:
    shipped, local = tmp_path / "shipped", tmp_path / "local"
    shipped.mkdir()
    local.mkdir()
    (shipped / "10_x.rules").write_text("body FREE /free/\nscore FREE 2\n")
    (local / "local.rules").write_text("score FREE 0.1\n")
    rs = load_rules([shipped, local])
    assert rs.errors == []
    assert rs.defs["FREE"].score == 0.1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hedaer FOO Subject =~ /x/\n", "unknown statement 'hedaer'"),
        ("body 9LIVES /x/\n", "bad rule name"),
        ("body FOO /x/q\n", "unknown regex flag"),
        ("body FOO /unclosed\n", "not closed"),
        ("body FOO /(unbalanced/\n", "bad regex"),
        ("header FOO Subject ~= /x/\n", "expected"),
        ("header FOO Subject:bogus =~ /x/\n", "unknown header variant"),
        ("meta FOO BAR && \n", "ends too early"),
        ("meta FOO NO_SUCH_RULE\n", "which no rule or check defines"),
        ("meta FOO (A\nbody A /a/\n", "missing ')'"),
        ("body FOO /x/\nbody FOO /y/\n", "defined twice"),
        ("meta M1 M2\nmeta M2 M1\n", "cycle"),
        ("body FOO /x/\nscore FOO lots\n", "must be a number"),
        ("body FOO /x/\ntflags FOO sometimes\n", "unknown tflags"),
    ],
)
def test_errors_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.rules"
    path.write_text("# a comment\n\n" + text)
    rs = load_rules([path])
    assert rs.errors, text
    assert any(message in e and e.startswith(f"{path}:") for e in rs.errors), rs.errors
    line = int(rs.errors[0].split(":")[1])
    assert line >= 3  # counted from the top of the file, comments included


def test_scanner_refuses_rules_with_errors(tmp_path: Path) -> None:
    (tmp_path / "x.rules").write_text("body OK /fine/\nbody BAD /(/\n")
    with pytest.raises(RuleLoadError) as info:
        Scanner.from_config(Config(rules=RulesConfig(dirs=[str(tmp_path)])))
    assert "x.rules:2" in str(info.value)


def test_regex_literal_forms() -> None:
    assert parse_literal("/a\\/b/i").pattern == "a\\/b"
    assert parse_literal("m{x/y}s").flags == "s"
    assert parse_literal("m!abc!").pattern == "abc"
    with pytest.raises(RegexError):
        parse_literal("abc")
    with pytest.raises(MetaError):
        parse_meta("A && && B")


def test_lookaround_runs_on_the_backtracking_engine_when_opted_in(rules_scanner: Build) -> None:
    scanner = rules_scanner(
        "body PRICE_NOT_EURO /\\d+(?! EUR)\\b/\ntflags PRICE_NOT_EURO backtracking\n")
    assert any("RE2 cannot run" in w for w in scanner.ruleset.warnings)
    assert "PRICE_NOT_EURO" in hits(scanner, make_message(body="costs 40 USD\n"))


def test_catastrophic_pattern_runs_in_linear_time_on_re2(rules_scanner: Build) -> None:
    # On a backtracking engine this pattern on this input needs ~2^50000 steps.
    scanner = rules_scanner("body EVIL /(a+)+$/\nbody EVIL2 /(x|xx)+!!/\n")
    rule = scanner.ruleset.rules["EVIL"]
    assert rule.regex is not None and not rule.regex.uses_fallback
    body = "a" * 50_000 + "!\n" + "x" * 50_000 + "\n"
    found = hits(scanner, make_message(body=body))
    assert "EVIL" not in found and "EVIL2" not in found


def test_fallback_regex_input_is_bounded(tmp_path: Path) -> None:
    (tmp_path / "x.rules").write_text(
        "body LATE_WORD /(?<=x)needle/\ntflags LATE_WORD backtracking\n")
    config = Config(rules=RulesConfig(dirs=[str(tmp_path)]))
    config.scan.fallback_regex_max_bytes = 1000
    scanner = Scanner.from_config(config)
    assert "LATE_WORD" in hits(scanner, make_message(body="xneedle\n"))
    # Beyond the bound a fallback rule does not look; RE2 rules are not bounded this way.
    assert "LATE_WORD" not in hits(scanner, make_message(body="." * 5000 + "xneedle\n"))


def test_many_rules_on_one_target_are_all_matched(rules_scanner: Build) -> None:
    # More patterns than one re2.Set chunk holds: every one must still be found.
    text = "".join(f"body W{i} /\\bword{i}\\b/\n" for i in range(80))
    scanner = rules_scanner(text)
    body = " ".join(f"word{i}" for i in range(0, 80, 3)) + "\n"
    found = hits(scanner, make_message(body=body))
    assert {k for k in found if k.startswith("W")} == {f"W{i}" for i in range(0, 80, 3)}


def test_set_larger_than_its_budget_still_compiles() -> None:
    # A Set whose program alone outgrows the budget it is given gets a larger one (a rule
    # file may hold such patterns) instead of failing the rules' load.
    from pyspamd.checks.regex_rules import _compiled_set

    patterns: list[bytes | None] = [rb"\bbrand\b.{0,200}\brenewal", rb"(?i)dear customer"]
    matcher = _compiled_set(patterns, latin1=True, max_mem=4096)
    assert matcher.Match(b"brand ... then renewal; DEAR CUSTOMER") == [0, 1]
    assert not matcher.Match(b"nothing here")
