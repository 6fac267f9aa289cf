"""A map: its table built from a file or from inline values, reloaded when the file changes.

Loading never gives up on a whole file for one bad line: the line is reported as
`FILE:LINE: what is wrong` and skipped. A *reload* is different: if the new file has any
error, or cannot be read, the map keeps the table it had and logs why, so a half-edited file
never silently drops entries that were in force.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pyspamd.policy.keyed import (
    AddressTable,
    DomainTable,
    LoadProblems,
    NetworkTable,
    parse_entries,
)
from pyspamd.policy.lines import inline_lines, logical_lines
from pyspamd.policy.map_settings import CONTENT_MATCHES, MapConfig
from pyspamd.policy.regexp_table import RegexpTable
from pyspamd.policy.verbs import Entry

log = logging.getLogger("pyspamd.maps")


class Table(Protocol):
    kind: str

    def lookup(self, value: str) -> tuple[str, Entry] | None: ...

    def __len__(self) -> int: ...


_KEYED: dict[str, type[NetworkTable] | type[DomainTable]] = {
    "ip": NetworkTable, "domain": DomainTable, "address": AddressTable,
}


def build_table(kind: str, lines: list[tuple[str, str]] | object, header_checks: bool,
                problems: LoadProblems) -> Table:
    if kind == "regexp":
        return RegexpTable.parse(lines, header_checks, problems)  # type: ignore[arg-type]
    table = _KEYED[kind]()
    for _, key, entry in parse_entries(lines, header_checks, problems):  # type: ignore[arg-type]
        table.add(key, entry, problems)
    return table


def _signature(st: os.stat_result) -> tuple[int, int, int]:
    # mtime alone misses an edit within the clock's granularity and some atomic renames.
    return (st.st_mtime_ns, st.st_size, st.st_ino)


@dataclass
class LoadedMap:
    table: Table
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


class MapSource:
    """One configured map. `table()` is cheap to call per message: one stat() of the file."""

    def __init__(self, config: MapConfig) -> None:
        self.config = config
        self.name = config.name
        self.header_checks = config.match in CONTENT_MATCHES
        self._signature: tuple[int, int, int] | None = None
        self._failed_signature: tuple[int, int, int] | None = None
        if config.type == "ldap":
            from pyspamd.policy.ldap_map import LdapTable  # ldap3 only when a map needs it

            self.loaded = LoadedMap(LdapTable(config.name, config.ldap))
        else:
            self.loaded = self._load_values() if not config.file else self._first_load()

    # --- loading ---
    def _parse(self, text: str, label: str, inline: bool) -> LoadedMap:
        start = time.perf_counter()
        problems = LoadProblems()
        lines = list(inline_lines(self.config.values, label) if inline
                     else logical_lines(text, label))
        table = build_table(self.config.type, lines, self.header_checks, problems)
        return LoadedMap(table, problems.errors, problems.warnings,
                         time.perf_counter() - start)

    def _load_values(self) -> LoadedMap:
        return self._parse("", f"maps {self.name}: values", inline=True)

    def _read(self) -> tuple[str, tuple[int, int, int]]:
        path = Path(self.config.file)
        with path.open("rb") as handle:
            signature = _signature(os.fstat(handle.fileno()))
            data = handle.read()
        # Postfix files are often Latin-1; never refuse a file over one odd byte.
        return data.decode("utf-8", errors="surrogateescape"), signature

    def _first_load(self) -> LoadedMap:
        try:
            text, signature = self._read()
        except OSError as exc:
            empty = build_table(self.config.type, [], self.header_checks, LoadProblems())
            self._signature = None
            if self.config.url and isinstance(exc, FileNotFoundError):
                # Not fetched yet (remote_maps.py): empty until the first copy arrives.
                return LoadedMap(empty, warnings=[f"map {self.name}: no copy of "
                                                  f"{self.config.url} fetched yet"])
            error = f"{self.config.file}: cannot read map {self.name}: {exc.strerror or exc}"
            return LoadedMap(empty, [error])
        loaded = self._parse(text, self.config.file, inline=False)
        self._signature = signature
        return loaded

    def table(self) -> Table:
        if self.config.file:
            self._maybe_reload()
        return self.loaded.table

    def _maybe_reload(self) -> None:
        try:
            signature = _signature(os.stat(self.config.file))
        except OSError as exc:
            if self._failed_signature != (0, 0, 0):
                log.error("map %s: %s: %s; keeping the %d entries loaded before", self.name,
                          self.config.file, exc.strerror or exc, len(self.loaded.table))
                self._failed_signature = (0, 0, 0)
            return
        if signature == self._signature or signature == self._failed_signature:
            return
        self.reload()

    def reload(self) -> bool:
        """Read the file again; on any error keep the current table. True if replaced."""
        try:
            text, signature = self._read()
        except OSError as exc:
            log.error("map %s: cannot read %s: %s; keeping the old map", self.name,
                      self.config.file, exc.strerror or exc)
            return False
        fresh = self._parse(text, self.config.file, inline=False)
        for warning in fresh.warnings:
            log.warning("map %s: %s", self.name, warning)
        if fresh.errors:
            for error in fresh.errors:
                log.error("map %s: %s", self.name, error)
            log.error("map %s: reload refused (%d error(s)); keeping the %d entries loaded "
                      "before", self.name, len(fresh.errors), len(self.loaded.table))
            self._failed_signature = signature
            return False
        self.loaded, self._signature, self._failed_signature = fresh, signature, None
        log.info("map %s: reloaded %s: %d entries in %.0f ms", self.name, self.config.file,
                 len(fresh.table), fresh.seconds * 1000)
        return True


def load_maps(configs: list[MapConfig]) -> dict[str, MapSource]:
    sources = {}
    for config in configs:
        source = MapSource(config)
        for warning in source.loaded.warnings:
            log.warning("map %s: %s", source.name, warning)
        for error in source.loaded.errors:
            log.error("map %s: %s", source.name, error)
        sources[config.name] = source
    return sources
