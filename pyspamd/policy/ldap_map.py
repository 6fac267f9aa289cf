"""LDAP maps (Postfix's ldap_table(5)): the looked-up value goes into `query_filter`, the
found entry's `result_attribute` into `result_format`, and the result is read like any map
line (`REJECT text`, `OK`, ...), e.g. the admin notes' sender restriction:

    query_filter  = (&(mail=%s)(smtpdSenderRestrictions=TRUE))
    result_format = REJECT This account is not allowed to send emails, plz talk to abuse@...

Values are escaped (RFC 4515) before they go into the filter, so an address cannot change
the query. Answers, found or not, are cached for `cache_ttl` seconds per worker. A server
that is down or slow raises MapUnavailable; the check then skips the map (fail open) or
defers the message, as configured.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
from collections.abc import Callable

import ldap3
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars

from pyspamd.policy.keyed import MapUnavailable
from pyspamd.policy.map_settings import LdapConfig
from pyspamd.policy.verbs import Entry, VerbError, VerbUnsupported, parse_result

log = logging.getLogger("pyspamd.maps")

MAX_CACHE = 10000  # entries per map and worker; the oldest half goes when it is full
_OK_CODES = (0, 32)  # success, noSuchObject (an empty subtree is "not found", not "down")


def fill_query(template: str, value: str) -> str:
    """%s: the value, %u: its local part, %d: its domain, each escaped; %% a percent sign."""
    local, at, domain = value.rpartition("@")
    if not at:
        local, domain = value, ""
    parts = {"s": value, "u": local, "d": domain}
    out, i = [], 0
    while i < len(template):
        ch = template[i]
        if ch == "%" and i + 1 < len(template) and template[i + 1] in "sud%":
            key = template[i + 1]
            out.append("%" if key == "%" else escape_filter_chars(parts[key]))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out)


class LdapTable:
    kind = "ldap"

    def __init__(self, name: str, config: LdapConfig,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.config = config
        self.clock = clock
        self.cache: dict[str, tuple[float, tuple[str, Entry] | None]] = {}
        # One connection per thread: pymilter runs each SMTP session in its own thread, and
        # an ldap3 connection serves one request at a time under its lock, so a shared one
        # would make every session of a worker queue behind the slowest search.
        self._local = threading.local()

    def __len__(self) -> int:
        return 1  # a directory is never known to be empty: always ask it

    def _connection(self) -> ldap3.Connection:
        conn: ldap3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", 0) == os.getpid() \
                and not conn.closed:
            return conn
        c = self.config
        server = ldap3.Server(c.server_url, connect_timeout=c.timeout, get_info=ldap3.NONE)
        conn = ldap3.Connection(
            server, user=c.bind_dn or None, password=c.bind_password or None,
            # ldap3 packs this into a socket option as whole seconds.
            receive_timeout=max(1, math.ceil(c.timeout)), read_only=True, raise_exceptions=False,
            auto_bind=ldap3.AUTO_BIND_TLS_BEFORE_BIND if c.start_tls
            else ldap3.AUTO_BIND_NO_TLS)
        self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", 0) == os.getpid():
            with contextlib.suppress(LDAPException, OSError):  # it is going away either way
                conn.unbind()
        self._local.conn = None

    def lookup(self, value: str) -> tuple[str, Entry] | None:
        value = value.strip().strip("<>").lower()
        if not value:
            return None
        now = self.clock()
        cached = self.cache.get(value)
        if cached is not None and cached[0] > now:
            return cached[1]
        result = self._search(value)
        if len(self.cache) >= MAX_CACHE:
            for key in list(self.cache)[: MAX_CACHE // 2]:
                self.cache.pop(key, None)  # another thread may have dropped it already
        self.cache[value] = (now + self.config.cache_ttl, result)
        return result

    def _search(self, value: str) -> tuple[str, Entry] | None:
        c = self.config
        query = fill_query(c.query_filter, value)
        attributes = [c.result_attribute] if c.result_attribute else [ldap3.NO_ATTRIBUTES]
        try:
            conn = self._connection()
            ok = conn.search(c.search_base, query, attributes=attributes, size_limit=10,
                             time_limit=max(1, int(c.timeout)))
        except (LDAPException, OSError) as exc:
            self._drop()
            raise MapUnavailable(f"{c.server_url}: {type(exc).__name__}: {exc}") from exc
        code = conn.result.get("result", 0) if conn.result else 0
        if not ok and code not in _OK_CODES:
            self._drop()
            raise MapUnavailable(f"{c.server_url}: {conn.result.get('description')} "
                                  f"({conn.result.get('message') or 'no message'})")
        found = sorted((e for e in conn.response or [] if e.get("type") == "searchResEntry"),
                       key=lambda e: str(e.get("dn", "")))
        if not found:
            return None
        first = found[0]
        if c.result_attribute:
            raw = first.get("attributes", {}).get(c.result_attribute)
            values = raw if isinstance(raw, list) else [raw] if raw not in (None, "") else []
            if not values:
                return None  # the entry has no such attribute: no result, as Postfix
            # Several values: Postfix would join them with commas, which no access result
            # survives; the first in sorted order decides, so the answer is stable.
            attribute = sorted(str(v) for v in values)[0]
        else:
            attribute = str(first.get("dn", ""))
        text = c.result_format.replace("%s", attribute)
        where = f"ldap map {self.name} ({first.get('dn', '')})"
        try:
            return str(first.get("dn", "")), parse_result(text, where, header_checks=False)
        except (VerbError, VerbUnsupported) as exc:
            log.error("map %s: result %r: %s", self.name, text, exc)
            return None

    def close(self) -> None:
        self._drop()
