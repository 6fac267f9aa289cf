"""Which `[[settings]]` a message is scanned with, and what that entry changes.

Selectors are compiled once (sets, parsed networks, an LDAP table), so picking the settings
of a message is a few set probes per entry and recipient. Each recipient gets the first
entry that matches it; when the recipients of one message get different entries, the
strictest of them applies to all (the milter keeps that from happening by default: it
defers the recipients unlike the first, see pyspamd/milter/recipients.py).
"""

from __future__ import annotations

import ipaddress
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, replace

from pyspamd import actions
from pyspamd.actions import ActionsConfig, Thresholds
from pyspamd.policy.keyed import MapUnavailable, parent_domains
from pyspamd.policy.rcpt_policy_settings import SettingsConfig
from pyspamd.symbols import SymbolDef

log = logging.getLogger("pyspamd.settings")

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# The symbols the settings add (scored 0 unless [scores] says otherwise).
SETTINGS = "SETTINGS"
WELCOMELIST = "SETTINGS_WELCOMELIST"
BLOCKLIST = "SETTINGS_BLOCKLIST"
SYMBOLS = {
    SETTINGS: SymbolDef(0.0, "The [[settings]] this message was scanned with (option: its "
                        "name)", "policy", source="settings"),
    WELCOMELIST: SymbolDef(0.0, "The sender is on the welcomelist of the recipient's "
                           "[[settings]]: accepted", "policy", source="settings"),
    BLOCKLIST: SymbolDef(0.0, "The sender is on the blocklist of the recipient's "
                         "[[settings]]: refused", "policy", source="settings"),
}
BLOCKED_TEXT = "Message refused by the recipient's policy"


def _lower(values: Iterable[str]) -> frozenset[str]:
    return frozenset(v.strip().strip("<>").lower() for v in values)


class SenderList:
    """Addresses (`user@example.org`) and domains (`@example.org` or `example.org`, with
    their subdomains)."""

    __slots__ = ("addresses", "domains")

    def __init__(self, values: Iterable[str]) -> None:
        values = _lower(values)
        self.addresses = frozenset(v for v in values if "@" in v[1:])
        self.domains = frozenset(v.lstrip("@") for v in values if "@" not in v[1:])

    def __bool__(self) -> bool:
        return bool(self.addresses or self.domains)

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, str) or not address:
            return False
        address = address.lower()
        if address in self.addresses:
            return True
        domain = address.rpartition("@")[2]
        return bool(self.domains) and (domain in self.domains or any(
            parent in self.domains for parent in parent_domains(domain)))


@dataclass(frozen=True, slots=True)
class AppliedSettings:
    """What one [[settings]] entry (or the defaults, name "") makes of a scan."""

    name: str
    thresholds: Thresholds
    defs: dict[str, SymbolDef]  # scores and descriptions, with the entry's [scores] over them
    # Hits kept: None all; else these names. Symbols named by `disabled` are dropped.
    allowed: frozenset[str] | None
    disabled: frozenset[str]
    add_headers: bool
    subject_template: str  # "" leaves the subject to [actions]
    quarantine_instead_of_reject: bool
    welcomelist: SenderList
    blocklist: SenderList
    banned_exempt: frozenset[str]

    @property
    def filters(self) -> bool:
        return self.allowed is not None or bool(self.disabled)

    def strictness(self) -> tuple[float, ...]:
        """Smaller is stricter: the lower reject threshold first, then the lower thresholds
        of the other actions; rejecting is stricter than quarantining, no welcomelist
        stricter than one."""
        by = self.thresholds.by_action
        return (by.get(actions.REJECT, math.inf), float(self.quarantine_instead_of_reject),
                by.get(actions.SOFT_REJECT, math.inf), by.get(actions.ADD_HEADER, math.inf),
                by.get(actions.REWRITE_SUBJECT, math.inf), by.get(actions.GREYLIST, math.inf),
                float(bool(self.welcomelist)), float(len(self.disabled)))


class _Selector:
    """One entry's selectors, compiled. Kinds not given match everything."""

    __slots__ = ("domains", "ldap", "mail_from", "name", "networks", "rcpts", "users")

    def __init__(self, config: SettingsConfig) -> None:
        self.name = config.name
        self.rcpts = _lower(config.rcpt) or None
        self.domains = _lower(d.lstrip("@") for d in config.rcpt_domain) or None
        self.mail_from = SenderList(config.from_) if config.from_ else None
        self.networks = [ipaddress.ip_network(n, strict=False) for n in config.ip] or None
        self.users = _lower(config.user) or None
        self.ldap = None
        if config.ldap_group.server_url:
            from pyspamd.policy.ldap_map import LdapTable  # ldap3 only when an entry needs it

            # The search's result is whether it finds an entry, not an access verb.
            self.ldap = LdapTable(f"settings {config.name}", replace(
                config.ldap_group, result_attribute="", result_format=""))

    @property
    def per_recipient(self) -> bool:
        return self.rcpts is not None or self.domains is not None or self.ldap is not None

    def matches_sender(self, ip: IpAddress | None, mail_from: str | None,
                       user: str | None) -> bool:
        if self.networks is not None and (ip is None or not any(
                ip in net for net in self.networks)):
            return False
        if self.mail_from is not None and (mail_from or "") not in self.mail_from:
            return False
        return self.users is None or (user or "").lower() in self.users

    def matches_rcpt(self, rcpt: str) -> bool:
        if self.rcpts is not None and rcpt not in self.rcpts:
            return False
        if self.domains is not None:
            domain = rcpt.rpartition("@")[2]
            if domain not in self.domains and not any(
                    p in self.domains for p in parent_domains(domain)):
                return False
        if self.ldap is not None:
            try:
                return self.ldap.lookup(rcpt) is not None
            except MapUnavailable as exc:
                log.warning("settings %s: directory unavailable, not selected for %s: %s",
                            self.name, rcpt, exc)
                return False
        return True


def _client_ip(text: str | None) -> IpAddress | None:
    try:
        return ipaddress.ip_address(text) if text else None
    except ValueError:
        return None


class SettingsTable:
    """All [[settings]] entries in order, compiled against the scanner's symbol table."""

    def __init__(self, entries: list[SettingsConfig], actions_config: ActionsConfig,
                 defs: dict[str, SymbolDef]) -> None:
        self.default = AppliedSettings(
            "", Thresholds.from_config(actions_config), defs, None, frozenset(), True, "",
            False, SenderList(()), SenderList(()), frozenset())
        self.selectors = [_Selector(e) for e in entries]
        self.applied = {e.name: self._compile(e, actions_config, defs) for e in entries}
        self.per_recipient = any(s.per_recipient for s in self.selectors)

    def __bool__(self) -> bool:
        return bool(self.selectors)

    @staticmethod
    def _compile(entry: SettingsConfig, actions_config: ActionsConfig,
                 defs: dict[str, SymbolDef]) -> AppliedSettings:
        own_defs = defs
        if entry.scores:
            own_defs = dict(defs)
            for name, score in entry.scores.items():
                own_defs[name] = replace(defs.get(name) or SymbolDef(), score=score)
        allowed = None
        if entry.symbols_enabled or entry.groups_enabled:
            groups = set(entry.groups_enabled)
            allowed = frozenset(entry.symbols_enabled) | frozenset(
                name for name, d in defs.items() if d.group in groups)
        disabled_groups = set(entry.groups_disabled)
        disabled = frozenset(entry.symbols_disabled) | frozenset(
            name for name, d in defs.items() if disabled_groups and d.group in disabled_groups)
        return AppliedSettings(
            entry.name, Thresholds.from_config(actions_config, entry.actions), own_defs,
            allowed, disabled, entry.add_headers, entry.subject,
            entry.quarantine_instead_of_reject, SenderList(entry.welcomelist),
            SenderList(entry.blocklist), frozenset(entry.banned_exempt))

    def for_recipient(self, client_ip: str | None, mail_from: str | None, user: str | None,
                      rcpt: str | None) -> AppliedSettings:
        """The first entry that selects this recipient (None: a message without one)."""
        return self._first(_client_ip(client_ip), mail_from, user,
                           rcpt.strip().strip("<>").lower() if rcpt is not None else None)

    def _first(self, ip: IpAddress | None, mail_from: str | None, user: str | None,
               rcpt: str | None) -> AppliedSettings:
        for selector in self.selectors:
            if not selector.matches_sender(ip, mail_from, user):
                continue
            if rcpt is None and selector.per_recipient:
                continue
            if rcpt is not None and not selector.matches_rcpt(rcpt):
                continue
            return self.applied[selector.name]
        return self.default

    def for_message(self, client_ip: str | None, mail_from: str | None, user: str | None,
                    rcpts: Iterable[str]) -> AppliedSettings:
        """One recipient's settings, or, when recipients differ, the strictest of theirs."""
        if not self.selectors:
            return self.default
        ip = _client_ip(client_ip)
        chosen: dict[str, AppliedSettings] = {}
        for rcpt in rcpts:
            applied = self._first(ip, mail_from, user, rcpt.strip().strip("<>").lower())
            chosen.setdefault(applied.name, applied)
        if not chosen:
            return self._first(ip, mail_from, user, None)
        if len(chosen) == 1:
            return next(iter(chosen.values()))
        return min(chosen.values(), key=AppliedSettings.strictness)
