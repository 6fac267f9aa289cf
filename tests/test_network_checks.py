"""Network checks against a real DNS server (Knot, tests/network_lab.py): blocklists, SPF,
DKIM, DMARC, ARC, the Authentication-Results header, and DNS faults."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import dkim
import pytest
from support.messages import make_message
from support.network_lab import (
    ALL_ZEN_IP,
    MTA_IP,
    OTHER_CODE_IP,
    OVER_QUOTA_IP,
    PBL_IP,
    PUBLIC_RESOLVER_IP,
    RECEIVED_XBL_IP,
    SBL_IP,
    SBL_IPV6,
    SPAMCOP_IP,
    SPF_IPV6,
    UNLISTED_IP,
    XBL_IP,
    Lab,
)

from pyspamd.auth.dkim_sign import Signer
from pyspamd.checks.rbl import RblCheck
from pyspamd.config import DkimKeyConfig, DkimSigningConfig, load_config
from pyspamd.result import ScanResult
from pyspamd.scanner import Scanner
from pyspamd.symbols import Hits
from pyspamd.task import Envelope, Task


def scanner_for(lab: Lab, tmp_path: Path, extra: str = "", **kw: object) -> Scanner:
    path = tmp_path / "pyspamd.toml"
    path.write_text(lab.config(extra, **kw))  # type: ignore[arg-type]
    return Scanner.from_config(load_config(path))


def scan(scanner: Scanner, raw: bytes, **envelope: object) -> tuple[ScanResult, Task]:
    env = {"helo": "mta.example.test", "mail_from": "", "rcpts": ("bob@example.net",),
           **envelope}
    task = scanner.task(raw, Envelope(**env))  # type: ignore[arg-type]
    return scanner.scan_task(task), task


def resolver_of(scanner: Scanner):  # type: ignore[no-untyped-def]
    return next(c for c in scanner.checks if isinstance(c, RblCheck)).resolver


@pytest.fixture
def scanner(lab: Lab, tmp_path: Path) -> Scanner:
    return scanner_for(lab, tmp_path)


# --- DNS blocklists on the client address -------------------------------------------------

@pytest.mark.parametrize(("ip", "expected"), [
    (SBL_IP, {"RBL_SPAMHAUS_SBL"}),
    (XBL_IP, {"RBL_SPAMHAUS_XBL"}),
    (PBL_IP, {"RBL_SPAMHAUS_PBL"}),
    (ALL_ZEN_IP, {"RBL_SPAMHAUS_SBL", "RBL_SPAMHAUS_XBL", "RBL_SPAMHAUS_PBL"}),
    (OTHER_CODE_IP, {"RBL_SPAMHAUS"}),
    (SPAMCOP_IP, {"RBL_SPAMCOP"}),
    (SBL_IPV6, {"RBL_SPAMHAUS_SBL"}),
    (UNLISTED_IP, set()),
])
def test_client_ip_listings_by_return_code(scanner: Scanner, ip: str,
                                           expected: set[str]) -> None:
    result, _ = scan(scanner, make_message(), client_ip=ip)
    listed = {s for s in result.symbols if s.startswith("RBL_")}
    assert listed == expected
    for symbol in expected:
        assert result.symbols[symbol].options == [ip]
        assert result.symbols[symbol].score > 0


def test_pbl_does_not_hit_authenticated_senders(scanner: Scanner) -> None:
    result, _ = scan(scanner, make_message(), client_ip=ALL_ZEN_IP, user="alice")
    assert "RBL_SPAMHAUS_PBL" not in result.symbols
    assert "RBL_SPAMHAUS_SBL" in result.symbols  # a listed spam source stays listed


@pytest.mark.parametrize("ip", [PUBLIC_RESOLVER_IP, OVER_QUOTA_IP])
def test_spamhaus_error_answers_are_errors_not_listings(
        scanner: Scanner, ip: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="pyspamd.rbl")
    scanner.checks[[type(c) for c in scanner.checks].index(RblCheck)]._warned.clear()  # type: ignore[attr-defined]
    result, _ = scan(scanner, make_message(), client_ip=ip)
    assert result.symbols["RBL_ERROR"].options == ["spamhaus_zen"]
    assert result.symbols["RBL_ERROR"].score == 0
    assert not {s for s in result.symbols if s.startswith("RBL_SPAMHAUS")}
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert "not a listing" in warning and "local caching resolver" in warning


def test_a_refusing_list_is_logged_once_over_workers_and_messages(
        lab: Lab, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="pyspamd.rbl")
    store = f'[storage]\npath = "{tmp_path}/s.sqlite"\n'
    # Two scanners on one store: two workers of one daemon.
    workers = [scanner_for(lab, tmp_path, store) for _ in range(2)]
    for scanner in workers * 3:
        result, _ = scan(scanner, make_message(), client_ip=PUBLIC_RESOLVER_IP)
        assert result.symbols["RBL_ERROR"].options == ["spamhaus_zen"]  # every message
    warnings = [r.getMessage() for r in caplog.records if "not a listing" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("rbl spamhaus_zen: zen.spamhaus.org answered")


def test_private_client_addresses_are_not_looked_up(scanner: Scanner) -> None:
    rbl = next(c for c in scanner.checks if isinstance(c, RblCheck))
    for ip in ("10.1.2.3", "127.0.0.1", "192.168.1.1", "fd00::1", "::ffff:10.0.0.1"):
        assert rbl.run(Task(make_message(), Envelope(client_ip=ip)), Hits()) is None, ip
    job = rbl.run(Task(make_message(), Envelope(client_ip=SBL_IP)), Hits())
    assert job is not None
    job.close()


def test_received_hops_are_looked_up_where_configured(lab: Lab, tmp_path: Path) -> None:
    scanner = scanner_for(lab, tmp_path, """
[[rbl.lists]]
name = "zen_received"
zone = "zen.spamhaus.org"
match = ["client_ip", "received"]
returncodes = { RBL_ZEN_RECEIVED_XBL = ["127.0.0.4"] }
""")
    raw = make_message({"Received": f"from relay.example.org (relay.example.org "
                                    f"[{RECEIVED_XBL_IP}]) by mx.example.net; "
                                    "Mon, 6 Jan 2003 10:00:05 +0000"})
    result, _ = scan(scanner, raw, client_ip=UNLISTED_IP)
    assert result.symbols["RBL_ZEN_RECEIVED_XBL"].options == [RECEIVED_XBL_IP]


# --- URL domains, HELO and From domains ---------------------------------------------------

def test_url_registrable_domains_against_dbl(scanner: Scanner) -> None:
    raw = make_message(body="Buy at http://www.shop.spammy-domain.test/now and "
                            "https://login.phish.test/x or http://example.org/ ok\n")
    result, _ = scan(scanner, raw, client_ip=UNLISTED_IP)
    assert result.symbols["DBL_SPAMHAUS_SPAM"].options == ["spammy-domain.test"]
    assert result.symbols["DBL_SPAMHAUS_PHISH"].options == ["phish.test"]


def test_dbl_error_answer_gives_no_score(scanner: Scanner) -> None:
    result, _ = scan(scanner, make_message(body="see http://refused.test/\n"),
                     client_ip=UNLISTED_IP)
    assert result.symbols["RBL_ERROR"].options == ["spamhaus_dbl"]
    assert not any(s.startswith("DBL_") for s in result.symbols)


def test_helo_and_from_domain_lists(lab: Lab, tmp_path: Path) -> None:
    scanner = scanner_for(lab, tmp_path, """
[[rbl.lists]]
name = "domains"
zone = "dom.bl.test"
type = "domain"
match = ["helo", "from"]
symbol = "DOMAIN_LISTED"
""")
    raw = make_message({"From": "Spammer <spam@bad-from.test>"})
    result, _ = scan(scanner, raw, client_ip=UNLISTED_IP, helo="bad-helo.test")
    assert sorted(result.symbols["DOMAIN_LISTED"].options) == ["bad-from.test",
                                                               "bad-helo.test"]
    clean, _ = scan(scanner, make_message(), client_ip=UNLISTED_IP, helo="fine.test")
    assert "DOMAIN_LISTED" not in clean.symbols


def test_five_thousand_urls_are_capped(lab: Lab, tmp_path: Path) -> None:
    scanner = scanner_for(lab, tmp_path, """
[scan]
max_urls = 10000
[rbl]
max_domains = 20
[[rbl.lists]]
name = "dbl"
zone = "dbl.spamhaus.org"
type = "domain"
match = ["urls"]
symbol = "DBL_ANY"
""", auth="spf = false\ndkim = false\ndmarc = false\narc = false")
    body = "\n".join(f"http://host{i}.domain{i}.test/page" for i in range(5000))
    resolver = resolver_of(scanner)
    before = resolver.stats.queries
    start = time.monotonic()
    result, task = scan(scanner, make_message(body=body + "\n"), client_ip=UNLISTED_IP)
    assert len(task.urls) == 5000
    assert resolver.stats.queries - before == 20
    assert time.monotonic() - start < 10
    assert result.action in ("no action", "greylist", "add header")


# --- SPF -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("ip", "sender", "symbol"), [
    (MTA_IP, "alice@example.test", "R_SPF_ALLOW"),
    ("203.0.113.9", "alice@example.test", "R_SPF_FAIL"),
    ("192.0.2.77", "alice@softfail.example.test", "R_SPF_SOFTFAIL"),
    ("192.0.2.77", "alice@neutral.example.test", "R_SPF_NEUTRAL"),
    ("192.0.2.77", "alice@nospf.example.test", "R_SPF_NA"),
    ("203.0.113.40", "alice@include.example.test", "R_SPF_ALLOW"),  # include chain, 2 deep
    ("198.51.100.3", "alice@include.example.test", "R_SPF_FAIL"),
    (MTA_IP, "alice@mxonly.example.test", "R_SPF_ALLOW"),
    ("192.0.2.77", "alice@toomany.example.test", "R_SPF_PERMFAIL"),  # 11 lookups
    ("192.0.2.77", "alice@badspf.example.test", "R_SPF_PERMFAIL"),  # malformed record
    ("192.0.2.77", "alice@x.servfail.test", "R_SPF_DNSFAIL"),
    (SPF_IPV6, "alice@ip6.example.test", "R_SPF_ALLOW"),
    ("2001:db8::99", "alice@ip6.example.test", "R_SPF_FAIL"),
])
def test_spf_results(scanner: Scanner, ip: str, sender: str, symbol: str) -> None:
    result, task = scan(scanner, make_message(), client_ip=ip, mail_from=sender)
    spf = {s for s in result.symbols if s.startswith("R_SPF_")}
    assert spf == {symbol}
    headers = dict(task.add_headers)
    assert headers["Received-SPF"].split()[0].lower().replace("error", "error") in (
        "pass", "fail", "softfail", "neutral", "none", "permerror", "temperror")
    assert f"client-ip={ip}" in headers["Received-SPF"]


def test_spf_for_the_null_sender_checks_helo(scanner: Scanner) -> None:
    result, task = scan(scanner, make_message(), client_ip=MTA_IP, mail_from="",
                        helo="example.test")
    assert "R_SPF_ALLOW" in result.symbols
    assert "smtp.helo=example.test" in dict(task.add_headers)["Authentication-Results"]


def test_spf_timeout(lab: Lab, tmp_path: Path) -> None:
    scanner = scanner_for(lab, tmp_path, budget=2.0, timeout=0.5)
    start = time.monotonic()
    result, _ = scan(scanner, make_message(), client_ip="192.0.2.77",
                     mail_from="alice@x.timeout.test")
    assert time.monotonic() - start < 3.5
    assert "R_SPF_DNSFAIL" in result.symbols and "DNS_TIMEOUT" in result.symbols
    assert result.symbols["DNS_TIMEOUT"].score == 0


def test_no_spf_or_dmarc_for_authenticated_senders(lab: Lab, tmp_path: Path) -> None:
    scanner = scanner_for(lab, tmp_path, auth="dmarc_reject = true")
    result, task = scan(scanner, _message_from(), client_ip="203.0.113.9",
                        mail_from="alice@example.test", user="alice")
    assert not any(s.startswith(("R_SPF", "DMARC")) for s in result.symbols)
    assert "Received-SPF" not in dict(task.add_headers)
    assert result.action != "reject"


# --- DKIM ----------------------------------------------------------------------------------

def _signed(lab: Lab, raw: bytes, key: Path | None = None, selector: str = "sel") -> bytes:
    signer = Signer(DkimSigningConfig(keys={"example.test": DkimKeyConfig(
        selector, str(key or lab.key_path))}))
    signature = signer.sign(raw.replace(b"\n", b"\r\n"), "example.test")
    assert signature is not None
    name, value = signature
    return f"{name}: {value}\n".encode() + raw


def _message_from(domain: str = "example.test", body: str = "Hello,\n\nsee you.\n") -> bytes:
    return make_message({"From": f"Alice <alice@{domain}>", "To": "bob@example.net"},
                        body=body)


def test_dkim_signed_by_us_verifies_here_and_with_dkimverify(lab: Lab, scanner: Scanner,
                                                              tmp_path: Path) -> None:
    signed = _signed(lab, _message_from())
    result, task = scan(scanner, signed, client_ip="203.0.113.9",
                        mail_from="bounce@elsewhere.test")
    assert result.symbols["R_DKIM_ALLOW"].options == ["example.test"]
    auth = dict(task.add_headers)["Authentication-Results"]
    assert "dkim=pass" in auth and "header.d=example.test" in auth
    # dkimpy's own dkimverify program, its resolver pointed at the lab's server
    program = ("import dns.resolver, sys\n"
               "r = dns.resolver.Resolver(configure=False)\n"
               f"r.nameservers = ['127.0.0.1']; r.port = {lab.server.port}\n"
               "dns.resolver.default_resolver = r\n"
               "from dkim.dkimverify import main\nmain()\n")
    done = subprocess.run([sys.executable, "-c", program], input=signed,
                          capture_output=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    assert b"signature ok" in done.stdout
    tampered = signed.replace(b"see you.", b"see you!")
    bad = subprocess.run([sys.executable, "-c", program], input=tampered,
                         capture_output=True, timeout=30)
    assert bad.returncode == 1 and b"body hash mismatch" in bad.stdout + bad.stderr


def test_dkim_tampered_body_is_rejected(lab: Lab, scanner: Scanner) -> None:
    signed = _signed(lab, _message_from()).replace(b"see you.", b"send money.")
    result, task = scan(scanner, signed, client_ip=UNLISTED_IP)
    assert result.symbols["R_DKIM_REJECT"].options == ["example.test"]
    assert "R_DKIM_ALLOW" not in result.symbols
    assert "dkim=fail" in dict(task.add_headers)["Authentication-Results"]


def test_dkim_unsigned_is_na(scanner: Scanner) -> None:
    result, task = scan(scanner, _message_from(), client_ip=UNLISTED_IP)
    assert "R_DKIM_NA" in result.symbols
    assert "dkim=none" in dict(task.add_headers)["Authentication-Results"]


def test_dkim_512_bit_key_is_not_accepted(lab: Lab, scanner: Scanner) -> None:
    signed = _signed(lab, _message_from(), key=lab.weak_key_path, selector="weak")
    assert dkim.verify(signed, dnsfunc=lambda *a, **k: None) is False  # sanity: needs a key
    result, task = scan(scanner, signed, client_ip=UNLISTED_IP)
    assert "R_DKIM_ALLOW" not in result.symbols
    assert result.symbols["R_DKIM_PERMFAIL"].options == ["example.test"]
    assert "public key too small" in dict(task.add_headers)["Authentication-Results"]


def test_dkim_bad_base64_signature(lab: Lab, scanner: Scanner) -> None:
    signed = _signed(lab, _message_from())
    head, _, rest = signed.partition(b" b=")
    broken = head + b" b=!!!not*base64!!!" + rest[rest.index(b"\n"):]
    result, _ = scan(scanner, broken, client_ip=UNLISTED_IP)
    assert "R_DKIM_PERMFAIL" in result.symbols and "R_DKIM_ALLOW" not in result.symbols


def test_dkim_malformed_key_record(lab: Lab, scanner: Scanner) -> None:
    signed = _signed(lab, _message_from()).replace(b"s=sel;", b"s=broken;")
    result, _ = scan(scanner, signed, client_ip=UNLISTED_IP)
    assert "R_DKIM_PERMFAIL" in result.symbols


def test_dkim_key_lookup_timeout(lab: Lab, tmp_path: Path) -> None:
    scanner = scanner_for(lab, tmp_path, budget=2.0, timeout=0.5)
    signed = _signed(lab, _message_from()).replace(b"d=example.test", b"d=keys.timeout.test")
    result, task = scan(scanner, signed, client_ip=UNLISTED_IP)
    assert "R_DKIM_TEMPFAIL" in result.symbols and "DNS_TIMEOUT" in result.symbols
    assert "dkim=temperror" in dict(task.add_headers)["Authentication-Results"]


# --- DMARC ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("from_domain", "ip", "sender", "symbol"), [
    ("example.test", MTA_IP, "alice@example.test", "DMARC_POLICY_ALLOW"),  # aligned SPF
    ("example.test", "203.0.113.9", "alice@example.test", "DMARC_POLICY_REJECT"),
    ("sub.example.test", "203.0.113.9", "a@sub.example.test", "DMARC_POLICY_QUARANTINE"),
    ("quarantine.test", "203.0.113.9", "a@quarantine.test", "DMARC_POLICY_QUARANTINE"),
    ("none.test", "203.0.113.9", "a@none.test", "DMARC_POLICY_SOFTFAIL"),
    ("nodmarc.test", "203.0.113.9", "a@nodmarc.test", "DMARC_NA"),
    ("badpolicy.test", "203.0.113.9", "a@badpolicy.test", "DMARC_NA"),
    ("junk.example.test", "203.0.113.9", "a@junk.example.test", "DMARC_NA"),  # binary TXT
])
def test_dmarc_policies(scanner: Scanner, from_domain: str, ip: str, sender: str,
                        symbol: str) -> None:
    result, task = scan(scanner, _message_from(from_domain), client_ip=ip, mail_from=sender)
    dmarc = {s for s in result.symbols if s.startswith("DMARC_")}
    assert dmarc == {symbol}
    assert f"header.from={from_domain}" in dict(task.add_headers)["Authentication-Results"]
    assert result.action != "reject"  # dmarc_reject is off by default


def test_dmarc_passes_on_aligned_dkim_alone(lab: Lab, scanner: Scanner) -> None:
    raw = _signed(lab, _message_from("news.example.test"))  # relaxed: same org domain
    result, task = scan(scanner, raw, client_ip="203.0.113.9", mail_from="b@bounces.test")
    assert "DMARC_POLICY_ALLOW" in result.symbols and "R_DKIM_ALLOW" in result.symbols
    assert "dmarc=pass" in dict(task.add_headers)["Authentication-Results"]


def test_dmarc_reject_action_when_configured(lab: Lab, tmp_path: Path) -> None:
    scanner = scanner_for(lab, tmp_path, auth="dmarc_reject = true")
    result, _ = scan(scanner, _message_from(), client_ip="203.0.113.9",
                     mail_from="alice@example.test")
    assert result.action == "reject" and result.forced_by == "DMARC_POLICY_REJECT"
    assert "DMARC policy of example.test says reject" in result.message


def test_missing_from_header(scanner: Scanner) -> None:
    raw = make_message({"From": None})  # type: ignore[dict-item]
    assert b"From:" not in raw
    result, task = scan(scanner, raw, client_ip=MTA_IP, mail_from="alice@example.test")
    assert "DMARC_NA" in result.symbols and "R_SPF_ALLOW" in result.symbols
    assert "Authentication-Results" in dict(task.add_headers)
    assert not result.errors


# --- ARC -----------------------------------------------------------------------------------

def _arc_sealed(lab: Lab, raw: bytes) -> bytes:
    raw = raw.replace(b"\n", b"\r\n")
    with_ar = (b"Authentication-Results: relay.example.test; spf=pass "
               b"smtp.mailfrom=example.test\r\n" + raw)
    headers = dkim.arc_sign(with_ar, b"sel", b"example.test", lab.key_path.read_bytes(),
                            b"relay.example.test")
    return b"".join(headers) + with_ar


def test_arc_chain(lab: Lab, scanner: Scanner) -> None:
    sealed = _arc_sealed(lab, _message_from("forwarded.test"))
    result, task = scan(scanner, sealed, client_ip=UNLISTED_IP)
    assert "ARC_ALLOW" in result.symbols
    assert "arc=pass" in dict(task.add_headers)["Authentication-Results"]
    broken, _ = scan(scanner, sealed.replace(b"see you.", b"see me."), client_ip=UNLISTED_IP)
    assert "ARC_REJECT" in broken.symbols
    plain, _ = scan(scanner, _message_from(), client_ip=UNLISTED_IP)
    assert "ARC_NA" in plain.symbols


# --- the Authentication-Results header and DNS faults --------------------------------------

def test_authentication_results_header_reports_everything(lab: Lab, scanner: Scanner) -> None:
    import authres

    result, task = scan(scanner, _signed(lab, _message_from()), client_ip=MTA_IP,
                        mail_from="alice@example.test")
    value = dict(task.add_headers)["Authentication-Results"]
    parsed = authres.AuthenticationResultsHeader.parse_value(value.replace("\n\t", " "))
    assert parsed.authserv_id == "mx.example.net"
    methods = {r.method: r.result for r in parsed.results}
    assert methods == {"spf": "pass", "dkim": "pass", "dmarc": "pass", "arc": "none"}
    assert {"R_SPF_ALLOW", "R_DKIM_ALLOW", "DMARC_POLICY_ALLOW", "ARC_NA"} <= set(result.symbols)


def test_resolver_that_never_answers(lab: Lab, tmp_path: Path) -> None:
    dead = scanner_for(lab, tmp_path, nameserver=lab.server.dead_nameserver, budget=1.5,
                       timeout=0.5)
    raw = _message_from(body="see http://www.spammy-domain.test/\n")
    start = time.monotonic()
    result, _ = scan(dead, raw, client_ip=SBL_IP, mail_from="alice@example.test")
    assert time.monotonic() - start < 2.5
    assert "DNS_TIMEOUT" in result.symbols
    assert result.symbols["DNS_TIMEOUT"].score == 0
    assert not any(s.startswith(("RBL_SPAMHAUS", "DBL_", "R_SPF_FAIL")) for s in result.symbols)
    (tmp_path / "off").mkdir()
    off = tmp_path / "off" / "pyspamd.toml"
    off.write_text("[bayes]\nenabled = false\n[greylist]\nenabled = false\n")
    baseline = Scanner.from_config(load_config(off)).scan(raw, Envelope(
        client_ip=SBL_IP, mail_from="alice@example.test", helo="client.example.org",
        rcpts=("bob@example.net",)))
    assert result.score == pytest.approx(baseline.score)  # a timeout adds no spam score
    assert resolver_of(dead).stats.timeouts >= 1


def test_servfail_list(lab: Lab, tmp_path: Path) -> None:
    scanner = scanner_for(lab, tmp_path, """
[[rbl.lists]]
name = "broken"
zone = "rbl.servfail.test"
symbol = "RBL_BROKEN"
""")
    result, _ = scan(scanner, _message_from("nodmarc.test"), client_ip=SBL_IP)
    assert result.symbols["DNS_FAIL"].options == ["broken"]
    assert "RBL_BROKEN" not in result.symbols
    assert resolver_of(scanner).stats.failures >= 1


def test_cache_answers_the_second_time(scanner: Scanner) -> None:
    resolver = resolver_of(scanner)
    raw = _message_from(body="http://www.spammy-domain.test/\n")
    scan(scanner, raw, client_ip=SBL_IP, mail_from="alice@example.test")
    sent = resolver.stats.queries
    second, _ = scan(scanner, raw, client_ip=SBL_IP, mail_from="alice@example.test")
    assert resolver.stats.queries == sent  # everything, NXDOMAIN included, came from cache
    assert {"RBL_SPAMHAUS_SBL", "DBL_SPAMHAUS_SPAM", "R_SPF_FAIL"} <= set(second.symbols)


def test_network_checks_are_off_by_default() -> None:
    scanner = Scanner.from_config(load_config(None))
    assert not any(c.name in ("rbl", "email_auth") for c in scanner.checks)


# --- the envelope sender's domain ----------------------------------------------------------

@pytest.mark.parametrize(("sender", "symbol"), [
    ("a@example.test", None),  # MX
    ("a@nospf.example.test", None),  # no MX, an A record: mail goes there
    ("a@noaddr.example.test", "SENDER_DOMAIN_NO_MX"),
    ("a@nullmx.example.test", "SENDER_DOMAIN_NULL_MX"),
    ("a@made-up.example.test", "SENDER_DOMAIN_NXDOMAIN"),
    ("a@nowhere.invalid", "SENDER_DOMAIN_NXDOMAIN"),  # answered by the resolver itself
])
def test_sender_domain(scanner: Scanner, sender: str, symbol: str | None) -> None:
    result, _ = scan(scanner, make_message(), client_ip=UNLISTED_IP, mail_from=sender)
    found = {s for s in result.symbols if s.startswith("SENDER_DOMAIN_")}
    assert found == ({symbol} if symbol else set())
    if symbol:
        assert result.symbols[symbol].options == [sender.partition("@")[2]]


def test_sender_domain_not_checked_for_authenticated_or_bounces(scanner: Scanner) -> None:
    for envelope in ({"mail_from": "a@made-up.example.test", "user": "a"}, {"mail_from": ""}):
        result, _ = scan(scanner, make_message(), client_ip=UNLISTED_IP, **envelope)
        assert not any(s.startswith("SENDER_DOMAIN_") for s in result.symbols)


def test_pyspamc_symbols_shows_network_symbols_and_headers(lab: Lab, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    from pyspamd.cli.pyspamc import main as pyspamc

    config = tmp_path / "pyspamd.toml"
    config.write_text(lab.config())
    message = tmp_path / "m.eml"
    message.write_bytes(_message_from())
    assert pyspamc(["--config", str(config), "symbols", "--headers", "--ip", MTA_IP,
                    "--from", "alice@example.test", "--helo", "mta.example.test",
                    str(message)]) == 0
    out = capsys.readouterr().out
    assert "Symbol: R_SPF_ALLOW" in out and "Symbol: DMARC_POLICY_ALLOW" in out
    assert "Authentication-Results: mx.example.net;" in out and "Received-SPF: Pass" in out


def test_dmarc_and_arc_lookup_failures(lab: Lab, scanner: Scanner) -> None:
    result, task = scan(scanner, _message_from("x.servfail.test"), client_ip=UNLISTED_IP)
    assert result.symbols["DMARC_DNSFAIL"].options == ["x.servfail.test"]
    assert "dmarc=temperror" in dict(task.add_headers)["Authentication-Results"]
    sealed = _arc_sealed(lab, _message_from("forwarded.test"))
    broken_key = sealed.replace(b"d=example.test", b"d=x.servfail.test")
    result, _ = scan(scanner, broken_key, client_ip=UNLISTED_IP)
    assert "ARC_DNSFAIL" in result.symbols and "DNS_FAIL" in result.symbols
