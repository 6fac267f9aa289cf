"""Links found in text: with a scheme, `www.` links, and links written without a scheme."""

from __future__ import annotations

from pyspamd.config import load_config
from pyspamd.scanner import Scanner
from pyspamd.urls import find_urls


def urls(text: str) -> list[tuple[str, bool]]:
    found, _ = find_urls([text], [], 100)
    return [(u.url, u.schemeless) for u in found]


def test_links_without_a_scheme_are_found() -> None:
    assert urls("Claim it now: bestdeals-now.top/claim?id=3.") == [
        ("http://bestdeals-now.top/claim?id=3", True)]
    assert urls("mirror at kernel.org/pub/linux, see") == [("http://kernel.org/pub/linux", True)]


def test_what_is_not_a_scheme_less_link() -> None:
    text = ("a bare name example.com, a mail address a@example.com/x, a file path "
            "arch/mips/kernel/setup.c/foo, a name of no real TLD build.local/x, and "
            "http://example.org/a/b which is found once, with its scheme")
    assert urls(text) == [("http://example.org/a/b", False)]
    # a www. link is found with the scheme added, once
    assert urls("see www.example.org/page") == [("http://www.example.org/page", False)]


def test_url_rules_see_scheme_less_links(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "c.toml").write_text(f'[storage]\npath = "{tmp_path / "b.sqlite"}"\n')
    scanner = Scanner.from_config(load_config(tmp_path / "c.toml"))
    raw = (b"From: a@example.org\r\nTo: b@example.net\r\nSubject: hi\r\n\r\n"
           b"Your prize waits at prize-claim.cfd/win now\r\n")
    assert "URL_TLD_MOSTLY_ABUSE" in scanner.scan(raw).symbols

