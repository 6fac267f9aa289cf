"""The greylist check: runs after scoring and acts on messages whose action is `greylist`
(by score, or forced by a map), or on any message for the configured recipients.

The first delivery attempt of a triplet is answered 451 4.7.1 (the milter's
`greylist_message`), a retry after `delay` passes with `GREYLIST(pass)` and the action
falls to `no action`. Authenticated senders, trusted and whitelisted networks, and clients
whose verified host name is in `whitelist_hosts` are never deferred.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import ClassVar

from pyspamd import actions
from pyspamd.checks.base import Check, Decision
from pyspamd.config import Config
from pyspamd.policy.greylist import (
    GREYLISTED,
    PASS,
    WHITELISTED,
    Greylister,
    Timing,
    Triplet,
    client_network,
)
from pyspamd.policy.keyed import AddressTable, DomainTable, LoadProblems, NetworkTable
from pyspamd.policy.trusted import TrustedNetworks
from pyspamd.policy.verbs import Entry
from pyspamd.services import Services
from pyspamd.storage.base import StateStore, StorageError
from pyspamd.symbols import Hits, SymbolDef
from pyspamd.task import Task

log = logging.getLogger("pyspamd.greylist")


def _listed(table: AddressTable | DomainTable | NetworkTable, items: list[str],
            label: str) -> None:
    problems = LoadProblems()
    for index, item in enumerate(items):
        table.add(item, Entry("", None, "", f"{label}[{index}]"), problems)


class Greylist(Check):
    name = "greylist"
    runs_after_scoring = True
    symbols: ClassVar = {
        "GREYLIST": SymbolDef(0.0, "Greylisting: state of the sender/recipient triplet"),
    }

    @classmethod
    def build(cls, config: Config, services: Services) -> Greylist | None:
        return cls(config, services) if config.greylist.enabled else None

    def __init__(self, config: Config, services: Services) -> None:
        self.config = config
        g = config.greylist
        self.timing = Timing(g.delay, g.expire, g.whitelist_expire)
        self.clock = services.clock
        self.storage: Callable[[], StateStore] = services.storage_opener(writes=True)
        self.trusted = TrustedNetworks(config.milter.trusted_networks)
        self.networks = NetworkTable()
        _listed(self.networks, g.whitelist_networks, "whitelist_networks")
        self.hosts = DomainTable()
        _listed(self.hosts, g.whitelist_hosts, "whitelist_hosts")
        self.sender_domains = DomainTable()
        _listed(self.sender_domains, g.whitelist_sender_domains, "whitelist_sender_domains")
        self.recipients = AddressTable()
        _listed(self.recipients, g.recipients, "recipients")
        self._greylister: Greylister | None = None

    def greylister(self) -> Greylister:
        if self._greylister is None:
            self._greylister = Greylister(self.storage(), self.timing, self.clock)
        return self._greylister

    def run(self, task: Task, hits: Hits) -> None:
        return None  # all the work needs the verdict: after_scoring

    def _whitelisted(self, task: Task) -> bool:
        env = task.envelope
        if env.user:
            return True
        if env.client_ip in self.trusted:
            return True
        if env.client_ip and self.networks.lookup(env.client_ip) is not None:
            return True
        if env.client_hostname and env.client_hostname != "unknown" and \
                self.hosts.lookup(env.client_hostname) is not None:
            return True
        sender = (env.mail_from or "").rpartition("@")[2]
        return bool(sender) and self.sender_domains.lookup(sender) is not None

    def after_scoring(self, task: Task, hits: Hits, decision: Decision) -> None:
        env = task.envelope
        if decision.action == actions.GREYLIST:
            by_score = True
        elif decision.action == actions.NO_ACTION and not decision.forced_by and any(
                self.recipients.lookup(r) is not None for r in env.rcpts):
            by_score = False
        else:
            return
        network = client_network(env.client_ip or "", self.config.greylist.ipv4_mask,
                                 self.config.greylist.ipv6_mask)
        if network is None or not env.rcpts:
            return  # nothing to key a triplet on (a CLI scan): the verdict stays as it is
        if self._whitelisted(task):
            hits.add("GREYLIST", WHITELISTED)
            self._let_through(decision)
            return
        triplets = [Triplet.make(network, env.mail_from, rcpt) for rcpt in env.rcpts]
        try:
            state = self.greylister().check(triplets)
        except StorageError as exc:
            # Fail open: a store that is down must not defer all mail.
            log.error("greylisting skipped: %s", exc)
            self._let_through(decision)
            return
        hits.add("GREYLIST", state)
        if state == PASS:
            self._let_through(decision)
        elif state == GREYLISTED and not by_score:
            decision.action, decision.forced_by = actions.GREYLIST, "GREYLIST"

    @staticmethod
    def _let_through(decision: Decision) -> None:
        if decision.action == actions.GREYLIST:
            # Greylist is the strongest action the score reached, so the next one down is
            # no action.
            decision.action, decision.message, decision.forced_by = actions.NO_ACTION, "", ""
