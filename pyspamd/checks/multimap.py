"""The multimap check: every `[[maps]]` entry of the config, looked up with the part of the
message it names; a hit adds the map's symbol and may force an action (rspamd's multimap,
Postfix's access tables and header_checks)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from pyspamd import actions
from pyspamd.checks.base import Check
from pyspamd.config import Config
from pyspamd.policy.keyed import MapUnavailable
from pyspamd.policy.map_settings import MapConfig
from pyspamd.policy.maps import MapSource, load_maps
from pyspamd.policy.verbs import Entry
from pyspamd.symbols import Hits, SymbolDef
from pyspamd.task import Task
from pyspamd.textdecode import surrogates_to_text, unfold

if TYPE_CHECKING:
    from pyspamd.services import Services

log = logging.getLogger("pyspamd.maps")

MAX_BODY_LINES = 5000  # body lines looked up per map; beyond that is not a mail a human wrote


def _domain(address: str) -> str:
    return address.rpartition("@")[2]


def _raw_body_lines(task: Task) -> Iterator[str]:
    raw = task.full_bytes
    for sep in (b"\r\n\r\n", b"\n\n"):
        at = raw.find(sep)
        if at >= 0:
            raw = raw[at + len(sep) :]
            break
    else:
        return
    for line in raw.decode("utf-8", "surrogateescape").splitlines()[:MAX_BODY_LINES]:
        yield surrogates_to_text(line)[0]


def _addresses(config: MapConfig, addresses: Iterable[str]) -> Iterator[str]:
    """A domain map is looked up with each address's domain, other maps with the address."""
    for address in addresses:
        yield _domain(address) if config.type == "domain" else address


def _present(*values: str | None) -> Iterator[str]:
    return (v for v in values if v)


def _header(config: MapConfig, task: Task) -> Iterator[str]:
    if config.type == "regexp":
        return iter(task.headers.decoded(config.header))
    return _addresses(config, (a for _, a in task.headers.addresses(config.header)))


def _headers(config: MapConfig, task: Task) -> Iterator[str]:
    # header_checks sees each header as one logical line, "Name: value".
    for name, value in task.headers.items:
        yield f"{name}: {unfold(surrogates_to_text(value)[0])}"


def _body(config: MapConfig, task: Task) -> Iterator[str]:
    lines = list(dict.fromkeys(_raw_body_lines(task)))
    yield from lines
    seen = set(lines)
    for part in task.text_parts:
        for line in part.text.splitlines()[:MAX_BODY_LINES]:
            if line not in seen:
                seen.add(line)
                yield line


_Values = Callable[[MapConfig, Task], Iterator[str]]
# What each match (map_settings.MAP_MATCHES names them all) looks a map up with.
VALUES: dict[str, _Values] = {
    "client_ip": lambda c, t: _present(t.envelope.client_ip),
    "received_ip": lambda c, t: iter(dict.fromkeys(hop.ip for hop in t.received if hop.ip)),
    "envelope_from": lambda c, t: _addresses(
        c, [] if t.envelope.mail_from is None else [t.envelope.mail_from]),
    "header_from": lambda c, t: _addresses(c, (a for _, a in t.headers.addresses("from"))),
    "rcpt": lambda c, t: _addresses(c, (r.strip("<>") for r in t.envelope.rcpts)),
    "helo": lambda c, t: _present(t.envelope.helo),
    "hostname": lambda c, t: _present(t.envelope.client_hostname),
    "user": lambda c, t: _present(t.envelope.user),
    "url_hosts": lambda c, t: iter(dict.fromkeys(url.host for url in t.urls if url.host)),
    "header": _header,
    "headers": _headers,
    "body": _body,
}


def values_for(config: MapConfig, task: Task) -> Iterator[str]:
    """What a map is looked up with, for one message."""
    return VALUES[config.match](config, task)


class MultiMap(Check):
    name = "multimap"

    @classmethod
    def build(cls, config: Config, services: Services) -> MultiMap | None:
        return cls(config, load=not services.symbols_only) if config.maps else None

    def __init__(self, config: Config, load: bool = True) -> None:
        # load=False: only the symbols (configtest reads the map files itself).
        self.sources: dict[str, MapSource] = load_maps(config.maps) if load else {}
        self.configs = {m.name: m for m in config.maps}
        defs: dict[str, SymbolDef] = {}
        for m in config.maps:
            defs.setdefault(m.symbol, SymbolDef(
                m.score, m.description or f"listed in map {m.name}", group="policy"))
        self.symbols = defs  # type: ignore[misc]  # per instance: the config names them

    @staticmethod
    def _unavailable(config: MapConfig, exc: Exception, hits: Hits) -> None:
        if config.ldap.fail_open:
            log.warning("map %s skipped, directory unavailable: %s", config.name, exc)
            return
        log.error("map %s: directory unavailable, deferring: %s", config.name, exc)
        hits.add(config.symbol, "unavailable")
        hits.force_action(actions.SOFT_REJECT, f"Temporary failure checking {config.name}, "
                          "try again later", config.symbol)

    @staticmethod
    def _action(config: MapConfig, entry: Entry) -> str | None:
        if entry.verb == "" and config.action:
            return actions.ACCEPT_WORDS.get(config.action, config.action)
        return entry.action

    def _welcomes(self, config: MapConfig, value: str) -> bool:
        """Whether the map's entry for `value` accepts the message (OK, action "accept")."""
        try:
            found = self.sources[config.name].table().lookup(value)
        except MapUnavailable:
            return False  # not known to accept: the message is scanned for this recipient
        return found is not None and not found[1].stop and (
            self._action(config, found[1]) == actions.NO_ACTION)

    def welcomes_recipient(self, rcpt: str) -> bool:
        """Whether a recipient map accepts mail for `rcpt` unscanned: such a recipient has a
        policy of its own, as a [[settings]] entry gives one (pyspamd/milter/recipients.py)."""
        for name in self.sources:
            config = self.configs[name]
            if config.match != "rcpt":
                continue
            if any(self._welcomes(config, v) for v in _addresses(config, [rcpt])):
                return True
        return False

    def run(self, task: Task, hits: Hits) -> None:
        for name, source in self.sources.items():
            config = self.configs[name]
            table = source.table()
            if not len(table):
                continue
            values = list(values_for(config, task))
            for value in values:
                try:
                    found = table.lookup(value)
                except MapUnavailable as exc:
                    self._unavailable(config, exc, hits)
                    break
                if found is None or found[1].stop:
                    continue
                key, entry = found
                hits.add(config.symbol, key)
                action = self._action(config, entry)
                text = entry.text or config.message
                if action == actions.NO_ACTION and config.match == "rcpt" and not all(
                        self._welcomes(config, v) for v in values):
                    # One recipient's OK must not let the message in for the others.
                    log.info("map %s: %s matched rcpt: %s; binds only that recipient, not "
                             "the others of the message", name, key, entry.describe())
                    continue
                if action is not None:
                    hits.force_action(action, text, config.symbol)
                log.info("map %s: %s matched %s: %s", name, key, config.match, entry.describe())
