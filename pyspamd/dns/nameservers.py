"""Where queries go: `[dns] nameservers`, or the system's resolv.conf when that is empty."""

from __future__ import annotations

import ipaddress
from pathlib import Path

RESOLV_CONF = Path("/etc/resolv.conf")


def parse_nameserver(spec: str) -> tuple[str, int]:
    """"IP", "IP:PORT", "[IPv6]" or "[IPv6]:PORT" -> (address, port); ValueError if not one."""
    text = spec.strip()
    port = 53
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            raise ValueError(f"{spec!r}: missing ']' after the IPv6 address")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"{spec!r}: write [IPv6]:PORT")
            port = _port(spec, rest[1:])
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = _port(spec, port_text)
    else:
        host = text  # IPv4, or a bare IPv6 address without a port
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{spec!r} is not IP, IP:PORT or [IPv6]:PORT (names are not "
                         "allowed: the resolver cannot resolve its own address)") from None
    return str(address), port


def _port(spec: str, text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{spec!r}: the port must be 1 to 65535")
    return int(text)


def system_nameservers(path: Path = RESOLV_CONF) -> list[tuple[str, int]]:
    """The `nameserver` lines of resolv.conf, as the C library would use them."""
    out: list[tuple[str, int]] = []
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return [("127.0.0.1", 53)]  # what the C library assumes without the file
    for line in lines:
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            try:
                out.append((str(ipaddress.ip_address(fields[1].split("%")[0])), 53))
            except ValueError:
                continue
    return out or [("127.0.0.1", 53)]


def local_resolver(configured: list[str], resolv_conf: Path = RESOLV_CONF) -> tuple[bool, str]:
    """`[dns] enabled = "auto"`: (on, why) from the first nameserver queries go to. On when it
    is a local one (127.0.0.0/8 or ::1: unbound, systemd-resolved): Spamhaus and most lists
    refuse queries that come through public or shared resolvers."""
    where = "[dns] nameservers" if configured else str(resolv_conf)
    try:
        servers = [parse_nameserver(s) for s in configured] if configured \
            else system_nameservers(resolv_conf)
    except ValueError:
        return False, "network checks off: [dns] nameservers has an error (configtest)"
    first = servers[0][0]
    if ipaddress.ip_address(first).is_loopback:
        return True, (f"network checks (DNSBL, SPF, DKIM, DMARC) on: the resolver {first} "
                      f"({where}) is local")
    return False, (f"network checks (DNSBL, SPF, DKIM, DMARC) off: the resolver {first} "
                   f"({where}) is not local, and DNS blocklists refuse queries from shared "
                   "resolvers; install one (apt-get install unbound) and point "
                   "/etc/resolv.conf or [dns] nameservers at 127.0.0.1, or set "
                   "[dns] enabled = true")
