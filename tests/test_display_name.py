"""SPOOF_DISPLAY_NAME through the default scanner (the check comes from the registry)."""

from __future__ import annotations

import pytest
from support.messages import make_message

from pyspamd.scanner import Scanner


@pytest.mark.parametrize(("from_header", "shown"), [
    ('"service@paypal.com" <billing@example.test>', "service@paypal.com"),
    ("=?utf-8?q?security=40mybank=2Ecom?= <alerts@mailer.example.net>", "security@mybank.com"),
    ("Accounts (accounts@bank.co.uk) <x@bank-secure.example>", "accounts@bank.co.uk"),
])
def test_display_name_of_another_domain(default_scanner: Scanner, from_header: str,
                                        shown: str) -> None:
    result = default_scanner.scan(make_message({"From": from_header}))
    symbol = result.symbols["SPOOF_DISPLAY_NAME"]
    assert symbol.options == [shown] and symbol.score == 2.0


@pytest.mark.parametrize("from_header", [
    '"alice@example.org" <alice@example.org>',            # the address itself
    '"news@example.org" <bounce-123@lists.example.org>',  # the same registrable domain
    "Alice Example <alice@example.org>",                  # no address in the name
    '"root@localhost" <alice@example.org>',               # no domain to compare
])
def test_display_name_that_is_not_a_spoof(default_scanner: Scanner, from_header: str) -> None:
    result = default_scanner.scan(make_message({"From": from_header}))
    assert "SPOOF_DISPLAY_NAME" not in result.symbols
