"""`[[maps]]`: the admin's lookup tables (files, inline values, LDAP), what each is looked up
with, and their checks. The map code (pyspamd/policy/maps.py, pyspamd/checks/multimap.py)
reads the match names from here."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from pyspamd.actions import FORCEABLE
from pyspamd.config_schema import SYMBOL, Locator, beside_config

REMOTE_PREFIX = "https://"
UPDATE_PREFIX = "update:"  # a file of the installed update set's maps/ (pyspamd.update)


@dataclass
class LdapConfig:
    """`[maps.ldap]` of a map with type = "ldap" (Postfix's ldap_table(5) options)."""

    server_url: str = ""  # ldap://HOST:PORT, ldaps://HOST:PORT
    search_base: str = ""
    query_filter: str = ""  # %s the value, %u its local part, %d its domain (escaped)
    result_attribute: str = ""  # empty: a found entry is the result
    result_format: str = "%s"  # %s: the attribute's value
    bind_dn: str = ""  # empty: anonymous
    bind_password: str = ""
    timeout: float = 2.0
    start_tls: bool = False
    cache_ttl: float = 60.0
    fail_open: bool = True


@dataclass
class MapConfig:
    """One `[[maps]]` entry: see pyspamd.toml.example and README's Policy section."""

    name: str = ""
    type: str = ""  # ip, address, domain, regexp
    match: str = ""  # what the map is looked up with; empty: the type's usual field
    header: str = ""  # the header's name, for match = "header"
    file: str = ""
    values: list[str] = field(default_factory=list)
    symbol: str = ""  # empty: the name in upper case
    score: float = 0.0
    action: str = ""  # forced on a hit whose line names no action of its own
    message: str = ""
    description: str = ""
    ldap: LdapConfig = field(default_factory=LdapConfig)
    # file = "https://...": the Ed25519 public key its FILE.sig is checked with ("": unsigned)
    key: str = ""
    url: str = field(default="", init=False)  # the https:// address file was written as


MAP_TYPES = ("ip", "address", "domain", "regexp", "ldap")
# What a map can be looked up with, and which types fit each.
MAP_MATCHES: dict[str, tuple[str, ...]] = {
    "client_ip": ("ip", "ldap"), "received_ip": ("ip",),
    "envelope_from": ("address", "domain", "regexp", "ldap"),
    "header_from": ("address", "domain", "regexp", "ldap"),
    "rcpt": ("address", "domain", "regexp", "ldap"),
    "helo": ("domain", "regexp"), "hostname": ("domain", "regexp"),
    "url_hosts": ("domain", "regexp"), "header": ("regexp", "address", "domain"),
    "headers": ("regexp",), "body": ("regexp",), "user": ("address", "regexp", "ldap"),
}
DEFAULT_MATCH = {"ip": "client_ip", "address": "envelope_from", "domain": "hostname",
                 "regexp": "headers", "ldap": "envelope_from"}
# header_checks(5) semantics (OK means DUNNO) for maps over message content; access(5)
# semantics (OK means accept) for maps over the envelope.
CONTENT_MATCHES = frozenset({"headers", "header", "body"})
_MAP_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")


def check_maps(maps: list[MapConfig], config_path: Path | None, loc: Locator) -> list[str]:
    """Also fills in what a map leaves to its type (match, symbol) and resolves its file."""
    errors: list[str] = []
    seen: set[str] = set()
    for index, m in enumerate(maps):
        at = ("maps", str(index))
        label = m.name or f"#{index + 1}"

        def bad(key: str, what: str, at: tuple[str, ...] = at, label: str = label) -> None:
            errors.append(f"{loc.where((*at, key))}: maps {label}: {what}")

        if not _MAP_NAME.match(m.name):
            bad("name", "needs a name of letters, digits, _ or - (name = \"blocked_senders\")")
        elif m.name in seen:
            bad("name", "is defined twice; map names must be unique")
        seen.add(m.name)
        if m.type not in MAP_TYPES:
            bad("type", f"type must be one of {', '.join(MAP_TYPES)}, got {m.type!r}")
            continue
        m.match = m.match or DEFAULT_MATCH[m.type]
        if m.match not in MAP_MATCHES:
            bad("match", f"match must be one of {', '.join(MAP_MATCHES)}, got {m.match!r}")
        elif m.type not in MAP_MATCHES[m.match]:
            bad("match", f"a map of type {m.type!r} cannot match {m.match}; use type "
                f"{' or '.join(repr(t) for t in MAP_MATCHES[m.match])}")
        if (m.match == "header") != bool(m.header):
            bad("header", "header = \"Name\" goes with match = \"header\" (and only there)")
        if m.type == "ldap":
            errors.extend(check_ldap(m, at, label, loc))
        elif bool(m.file) == bool(m.values):
            bad("file", "give either file = \"PATH\" or values = [...], not both or neither")
        if m.file.startswith(REMOTE_PREFIX):
            m.url = m.file  # the fetched copy's path is filled in by check_update
        elif m.file.startswith("http://"):
            bad("file", "a map fetched over the network must be https://")
        elif m.file and not m.file.startswith(UPDATE_PREFIX):
            m.file = beside_config(m.file, config_path)
        if m.key and not m.url:
            bad("key", "key (the signer's public key) goes with file = \"https://...\"")
        m.symbol = m.symbol or m.name.upper().replace("-", "_")
        if not SYMBOL.match(m.symbol):
            bad("symbol", f"{m.symbol!r} is not a symbol name (letters, digits, _)")
        if m.action and m.action not in FORCEABLE:
            bad("action", f"action must be one of {', '.join(FORCEABLE)}, got {m.action!r}")
    return errors


def check_ldap_options(ldap: LdapConfig) -> list[tuple[str, str]]:
    """(key, problem) for each bad option of an LDAP search, wherever it is configured."""
    problems = []
    if not ldap.server_url.startswith(("ldap://", "ldaps://")):
        problems.append(("server_url", "ldap.server_url must be ldap://HOST:PORT or "
                         "ldaps://HOST:PORT"))
    if not ldap.search_base:
        problems.append(("", "ldap.search_base is required"))
    if "%s" not in ldap.query_filter and "%u" not in ldap.query_filter \
            and "%d" not in ldap.query_filter:
        problems.append(("query_filter", "ldap.query_filter needs %s (or %u, %d) where the "
                         "looked-up value goes"))
    if ldap.timeout <= 0 or ldap.cache_ttl < 0:
        problems.append(("timeout", "ldap.timeout must be positive and cache_ttl >= 0"))
    return problems


def check_ldap(m: MapConfig, at: tuple[str, ...], label: str, loc: Locator) -> list[str]:
    where = (*at, "ldap")
    errors = [f"{loc.where((*where, key) if key else where)}: maps {label}: {problem}"
              for key, problem in check_ldap_options(m.ldap)]
    if m.file or m.values:
        key = "file" if m.file else "values"
        errors.append(f"{loc.where((*at, key))}: maps {label}: an ldap map takes neither "
                      "file nor values")
    return errors
