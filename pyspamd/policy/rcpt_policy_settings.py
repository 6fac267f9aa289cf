"""`[[settings]]`: per-recipient, per-domain, per-sender or per-user policy (rspamd's settings,
amavisd's policy banks, SpamAssassin's user_prefs), and the checks of its options.
The selection and what a chosen entry changes in a scan live in pyspamd/policy/rcpt_policy.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pyspamd.actions import THRESHOLD_KEYS
from pyspamd.config_schema import SYMBOL, Locator, bad_networks
from pyspamd.policy.map_settings import LdapConfig, check_ldap_options


@dataclass
class SettingsConfig:
    """One `[[settings]]` table: what selects it, and what it changes. Selectors of one kind
    are alternatives (any rcpt listed); different kinds must all match (rcpt AND ip)."""

    name: str = ""
    # --- selectors ---
    rcpt: list[str] = field(default_factory=list)  # envelope recipients, whole addresses
    rcpt_domain: list[str] = field(default_factory=list)  # a domain and its subdomains
    from_: list[str] = field(default_factory=list)  # `from`: MAIL FROM, address or @domain
    ip: list[str] = field(default_factory=list)  # the SMTP client, addresses or networks
    user: list[str] = field(default_factory=list)  # SASL login names
    # The recipient is in the group when this directory search finds an entry for it.
    ldap_group: LdapConfig = field(default_factory=LdapConfig)
    # --- what it changes ---
    actions: dict[str, float | bool] = field(default_factory=dict)  # over [actions]
    symbols_enabled: list[str] = field(default_factory=list)  # only these (with groups_enabled)
    symbols_disabled: list[str] = field(default_factory=list)
    groups_enabled: list[str] = field(default_factory=list)
    groups_disabled: list[str] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)  # over [scores] and the rules
    add_headers: bool = True  # false: no X-Spam-*/X-Spamd-Result headers on delivered mail
    subject: str = ""  # tag for delivered spam, %s the subject; "": [actions] as they are
    quarantine_instead_of_reject: bool = False
    welcomelist: list[str] = field(default_factory=list)  # senders accepted unscored
    blocklist: list[str] = field(default_factory=list)  # senders refused
    banned_exempt: list[str] = field(default_factory=list)  # banned-file rules that do not apply


_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")
_SELECTORS = ("rcpt", "rcpt_domain", "from_", "ip", "user")


def has_selector(s: SettingsConfig) -> bool:
    return any(getattr(s, key) for key in _SELECTORS) or bool(s.ldap_group.server_url)


def _bad_addresses(values: list[str], domains_ok: bool) -> list[str]:
    bad = []
    for value in values:
        local, at, domain = value.rpartition("@")
        if (at and not domain) or " " in value or not value or (
                not at and not domains_ok) or (at and not local and not domains_ok):
            bad.append(value)
    return bad


def check_settings(entries: list[SettingsConfig], loc: Locator) -> list[str]:
    errors: list[str] = []
    seen: set[str] = set()
    for index, s in enumerate(entries):
        at = ("settings", str(index))
        label = s.name or f"#{index + 1}"

        def bad(key: str, what: str, at: tuple[str, ...] = at, label: str = label) -> None:
            shown = key.rstrip("_")
            errors.append(f"{loc.where((*at, shown))}: settings {label}: {shown} {what}")

        if not _NAME.match(s.name):
            bad("name", "must be letters, digits, _, . or - (name = \"abuse-desk\")")
        elif s.name in seen:
            bad("name", "is defined twice; settings names must be unique")
        seen.add(s.name)
        if not has_selector(s):
            errors.append(f"{loc.where(at)}: settings {label}: selects nothing: give rcpt, "
                          "rcpt_domain, from, ip, user or ldap_group")
        for value in _bad_addresses(s.rcpt, domains_ok=False):
            bad("rcpt", f"has {value!r}; write whole addresses (abuse@example.org), or use "
                "rcpt_domain for a domain")
        for value in s.rcpt_domain:
            if not value or "@" in value or " " in value:
                bad("rcpt_domain", f"has {value!r}; write a domain (example.org)")
        for value in _bad_addresses(s.from_, domains_ok=True):
            bad("from_", f"has {value!r}; write an address or @domain")
        for net in bad_networks(s.ip):
            bad("ip", f"has {net!r}, which is not an address or CIDR network")
        if s.ldap_group.server_url:
            errors.extend(
                f"{loc.where((*at, 'ldap_group', key) if key else (*at, 'ldap_group'))}: "
                f"settings {label}: {problem.replace('ldap.', 'ldap_group.')}"
                for key, problem in check_ldap_options(s.ldap_group))
        for option, threshold in s.actions.items():
            if option not in THRESHOLD_KEYS:
                bad("actions", f"has {option!r}; known: {', '.join(THRESHOLD_KEYS)}")
            elif threshold is True:
                errors.append(f"{loc.where((*at, 'actions'))}: settings {label}: actions."
                              f"{option} must be a score threshold (a number) or false to turn "
                              "the action off")
        for key in ("symbols_enabled", "symbols_disabled"):
            for name in getattr(s, key):
                if not SYMBOL.match(name):
                    bad(key, f"has {name!r}, which is not a symbol name")
        for name in s.scores:
            if not SYMBOL.match(name):
                bad("scores", f"has {name!r}, which is not a symbol name")
        if s.subject and "%s" not in s.subject:
            bad("subject", "needs %s where the original subject goes (\"[SPAM] %s\")")
        for key in ("welcomelist", "blocklist"):
            for value in _bad_addresses(getattr(s, key), domains_ok=True):
                bad(key, f"has {value!r}; write an address or @domain")
    return errors
