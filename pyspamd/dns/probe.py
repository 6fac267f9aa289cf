"""Does the resolver answer at all? One short query at start, on reload and, while it stays
silent, once a minute, so a local resolver that is down costs the checks one line in the log
and configtest instead of a timeout on every message."""

from __future__ import annotations

import dns.asyncquery
import dns.exception
import dns.message
import dns.query

# A name every resolver answers from its own data, without asking anyone (unbound,
# systemd-resolved, dnsmasq and BIND all serve localhost): the answer's speed is the
# resolver's, not the Internet's. Any reply counts, even REFUSED: something is there.
PROBE_NAME = "localhost."
PROBE_TIMEOUT = 0.5  # seconds; a resolver on this host answers in a millisecond


def probe(host: str, port: int, timeout: float = PROBE_TIMEOUT) -> str | None:
    """None when `host:port` answered a query; else why not, for the log."""
    try:
        dns.query.udp(_request(), host, port=port, timeout=timeout, ignore_unexpected=True)
    except (OSError, dns.exception.DNSException) as exc:
        return _why(exc, timeout)
    return None


async def probe_async(host: str, port: int, timeout: float = PROBE_TIMEOUT) -> str | None:
    """probe() from a message's event loop (pyspamd/dns/resolver.py)."""
    try:
        await dns.asyncquery.udp(_request(), host, port=port, timeout=timeout,
                                 ignore_unexpected=True)
    except (OSError, dns.exception.DNSException) as exc:
        return _why(exc, timeout)
    return None


def _request() -> dns.message.Message:
    return dns.message.make_query(PROBE_NAME, "A")


def _why(exc: Exception, timeout: float) -> str:
    if isinstance(exc, dns.exception.Timeout):
        return f"no answer within {timeout:g}s"
    return f"{type(exc).__name__}: {exc}"
