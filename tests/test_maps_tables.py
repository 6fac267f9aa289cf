"""Map tables on their own: Postfix regexp tables, access-style addresses, domains, networks."""

from __future__ import annotations

from pyspamd.policy.keyed import AddressTable, DomainTable, LoadProblems, NetworkTable
from pyspamd.policy.lines import logical_lines
from pyspamd.policy.maps import build_table
from pyspamd.policy.regexp_table import RegexpTable


def regexp(text: str, header_checks: bool = True) -> tuple[RegexpTable, LoadProblems]:
    problems = LoadProblems()
    table = RegexpTable.parse(list(logical_lines(text, "hc")), header_checks, problems)
    return table, problems


def keyed(kind: str, text: str) -> tuple[AddressTable | DomainTable | NetworkTable,
                                         LoadProblems]:
    problems = LoadProblems()
    table = build_table(kind, list(logical_lines(text, "f")), False, problems)
    return table, problems  # type: ignore[return-value]


def test_admin_notes_header_check_rejects_with_its_text() -> None:
    table, problems = regexp('# from the admin notes\n'
                             '/adsgreece\\.com/ REJECT "Plz stop sending SPAM id=8"\n')
    assert not problems.errors and len(table) == 1
    key, entry = table.lookup("From: Promo <news@AdsGreece.com>")  # type: ignore[misc]
    assert key == "/adsgreece\\.com/"
    assert entry.action == "reject" and entry.text == '"Plz stop sending SPAM id=8"'
    assert entry.where == "hc:2"
    assert table.lookup("From: someone@adsgreece.org") is None


def test_flags_negation_groups_and_first_match() -> None:
    table, problems = regexp(
        "/^Subject:.*VIAGRA/i DISCARD case sensitive now\n"
        "/^Subject: (.*) offer/ REJECT no $1 offers, ${1}!\n"
        "!/^(From|To|Subject|Date|Received):/ WARN other header\n"
        "/^Subject:/ HOLD catch-all\n")
    assert not problems.errors
    assert table.lookup("Subject: cheap viagra")[1].action == "quarantine"  # type: ignore[index]
    assert table.lookup("Subject: cheap VIAGRA")[1].action == "discard"  # type: ignore[index]
    _, entry = table.lookup("subject: Great offer")  # type: ignore[misc]
    assert entry.text == "no Great offers, Great!"
    _, entry = table.lookup("X-Mailer: foo")  # type: ignore[misc]
    assert entry.verb == "WARN" and entry.action is None


def test_if_endif_blocks_nest_and_continuation_lines() -> None:
    table, problems = regexp(
        "if /^Subject:/\n"
        "if !/urgent/\n"
        "/money/ REJECT no money\n"
        "  talk here\n"
        "endif\n"
        "/money/ DEFER urgent money later\n"
        "endif\n"
        "/money/ HOLD outside\n")
    assert not problems.errors
    assert table.lookup("Subject: money")[1].text == "no money talk here"  # type: ignore[index]
    assert table.lookup("Subject: urgent money")[1].action == "soft reject"  # type: ignore
    assert table.lookup("Body: money")[1].action == "quarantine"  # type: ignore[index]


def test_ok_is_dunno_in_header_checks_and_permit_in_access_tables() -> None:
    text = "/^From:.*@partner\\.example/ OK\n/^From:/ REJECT no\n"
    table, _ = regexp(text, header_checks=True)
    _, entry = table.lookup("From: a@partner.example")  # type: ignore[misc]
    assert entry.stop  # first match wins and does nothing, like DUNNO
    table, _ = regexp(text, header_checks=False)
    _, entry = table.lookup("From: a@partner.example")  # type: ignore[misc]
    assert not entry.stop and entry.action == "no action"


def test_bad_lines_are_reported_with_file_and_line_and_the_rest_loads() -> None:
    table, problems = regexp(
        "/good/ REJECT fine\n"
        "/(unclosed/ REJECT x\n"
        "/x/ FROB what\n"
        "no-pattern REJECT\n"
        "/y/q REJECT bad flag\n"
        "/z/ PREPEND X-Tag: yes\n"
        "endif\n"
        "if /(/\n"
        "/inside-bad-if/ REJECT\n"
        "endif\n"
        "if /open/\n"
        "/last/ REJECT last\n")
    errors = "\n".join(problems.errors)
    assert "hc:2: bad regular expression /(unclosed/" in errors
    assert "hc:3: unknown action 'FROB'" in errors
    assert "hc:4: expected /pattern/" in errors
    assert "hc:5: unknown flag 'q'" in errors
    assert "hc:7: endif without an if" in errors
    assert "hc:8: bad regular expression" in errors and "skipped" in errors
    assert "hc:11: if without an endif" in errors
    assert problems.warnings == ["hc:6: PREPEND is a Postfix action pyspamd cannot carry out; "
                                 "line skipped (keep it in Postfix's own checks)"]
    assert table.lookup("good")[1].text == "fine"  # type: ignore[index]
    assert table.lookup("inside-bad-if") is None
    assert table.lookup("open last")[1].text == "last"  # type: ignore[index]
    assert len(table) == 2


def test_regexp_is_linear_time_on_a_hostile_line() -> None:
    table, problems = regexp("/(a+)+$/ REJECT x\n")
    assert not problems.errors
    assert table.lookup("a" * 50_000 + "b") is None  # RE2: no catastrophic backtracking
    table, _ = regexp("/caf.$/ REJECT x\n")
    assert table.lookup("caf\udce9") is not None  # a raw 8-bit byte kept as a surrogate


def test_big_table_finds_the_first_matching_line() -> None:
    lines = "".join(f"/^From:.*@spam{i}\\.test/ REJECT listed {i}\n" for i in range(2000))
    table, problems = regexp(lines + "/^From:/ WARN any\n/spam1999/ DISCARD later line\n")
    assert not problems.errors and len(table.sets) > 1
    assert table.lookup("From: x@spam1999.test")[1].text == "listed 1999"  # type: ignore
    assert table.lookup("From: x@spam7.test")[1].text == "listed 7"  # type: ignore[index]
    assert table.lookup("From: x@other.test")[1].verb == "WARN"  # type: ignore[index]
    nested, problems = regexp("if /^From:/\n" + lines + "endif\n!/^From:/ HOLD not from\n")
    assert not problems.errors and not nested.flat
    assert nested.lookup("From: x@spam1999.test")[1].text == "listed 1999"  # type: ignore
    assert nested.lookup("To: x@spam1999.test")[1].verb == "HOLD"  # type: ignore[index]


def test_access_keys_in_postfix_order() -> None:
    table, problems = keyed("address", (
        "spammer@example.com REJECT full address\n"
        "example.com DEFER the domain and subdomains\n"
        ".sub.example.org WARN subdomains only\n"
        "@exact.example REJECT that domain only\n"
        "postmaster@ OK any domain\n"
        "<> REJECT null sender\n"
        "user@two@at REJECT\n"))
    assert problems.errors == ["f:7: 'user@two@at' is not an address key; write user@domain, "
                               "user@, @domain or domain"]

    def look(value: str) -> tuple[str, str]:
        found = table.lookup(value)
        assert found is not None, value
        return found[0], found[1].text

    assert look("Spammer@Example.COM") == ("spammer@example.com", "full address")
    assert look("other@example.com")[0] == "example.com"
    assert look("x@mx.deep.example.com")[0] == "example.com"  # parent domain
    assert look("x@a.sub.example.org")[0] == ".sub.example.org"
    assert table.lookup("x@sub.example.org") is None  # .domain is subdomains only
    assert look("x@exact.example")[0] == "@exact.example"
    assert table.lookup("x@sub.exact.example") is None
    assert look("postmaster@anything.test")[0] == "postmaster@"
    assert look("postmaster@example.com")[0] == "example.com"  # domain before user@
    assert look("")[0] == "<>" and look("<>")[0] == "<>"
    assert table.lookup("nobody@elsewhere.test") is None


def test_domains_match_subdomains() -> None:
    table, _ = keyed("domain", "example.com\n.only-subs.test\n")
    assert table.lookup("mail.Example.com.") is not None
    assert table.lookup("example.com") is not None
    assert table.lookup("badexample.com") is None
    assert table.lookup("only-subs.test") is None
    assert table.lookup("a.only-subs.test") is not None
    assert table.lookup("") is None


def test_networks_v4_v6_prefixes_and_most_specific_first() -> None:
    table, problems = keyed("ip", (
        "192.0.2.0/24 REJECT whole net\n"
        "192.0.2.7 OK one host\n"
        "10.1 REJECT octet prefix\n"
        "2001:db8::/32 DEFER v6 net\n"
        "[2001:db8:1::5] OK v6 host\n"
        "300.1.1.1 REJECT\n"
        "192.0.2.0/24 REJECT duplicate, first wins\n"))
    assert problems.errors == ["f:6: '300.1.1.1' is not an IP address or CIDR network (write "
                               "192.0.2.1, 192.0.2.0/24 or 2001:db8::/32)"]
    assert table.lookup("192.0.2.8")[1].text == "whole net"  # type: ignore[index]
    assert table.lookup("192.0.2.7")[1].text == "one host"  # type: ignore[index]
    assert table.lookup("::ffff:192.0.2.9")[1].text == "whole net"  # type: ignore[index]
    assert table.lookup("10.1.200.3")[1].text == "octet prefix"  # type: ignore[index]
    assert table.lookup("2001:db8:ffff::1")[1].text == "v6 net"  # type: ignore[index]
    assert table.lookup("2001:db8:1::5")[1].text == "v6 host"  # type: ignore[index]
    assert table.lookup("198.51.100.1") is None
    assert table.lookup("not an ip") is None
    assert len(table) == 5


def test_numeric_replies_and_plain_list_entries() -> None:
    table, problems = keyed("address", "a@x.test 550 5.7.1 go away\nb@x.test 450 later\n"
                                       "c@x.test\n")
    assert not problems.errors
    assert table.lookup("a@x.test")[1].action == "reject"  # type: ignore[index]
    assert table.lookup("a@x.test")[1].text == "go away"  # type: ignore[index]
    assert table.lookup("b@x.test")[1].action == "soft reject"  # type: ignore[index]
    entry = table.lookup("c@x.test")[1]  # type: ignore[index]
    assert entry.verb == "" and entry.action is None
