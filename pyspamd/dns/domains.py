"""Registrable ("organizational") domains, by the Public Suffix List
(pyspamd.public_suffixes)."""

from __future__ import annotations

import ipaddress

from pyspamd.public_suffixes import public_suffixes as _psl


def load_public_suffixes() -> None:
    """Read the list now (about 0.3 s of CPU): a check that needs it calls this when it is
    built, in the daemon's master, so the workers forked later share the parsed list instead
    of each paying for it on its first message with a link."""
    _psl()


def normalize_domain(name: str) -> str:
    """Lower case, no trailing dot, IDNA (punycode) labels; "" if it is not a host name."""
    text = name.strip().strip(".").lower()
    if not text or len(text) > 253 or " " in text:
        return ""
    try:
        ipaddress.ip_address(text.strip("[]"))
        return ""
    except ValueError:
        pass
    if not text.isascii():
        try:
            text = text.encode("idna").decode("ascii")
        except UnicodeError:
            return ""
    labels = text.split(".")
    if any(not label or len(label) > 63 for label in labels):
        return ""
    return text


def registrable_domain(name: str) -> str:
    """example.co.uk for www.mail.example.co.uk; "" for a public suffix or a non-name."""
    text = normalize_domain(name)
    if not text or "." not in text:
        return ""
    return _psl().privatesuffix(text) or ""

