"""Tables looked up by key: IP/CIDR networks, domains, and Postfix access-style addresses.

Every look-up is a handful of dict probes, whatever the table's size: addresses and
domains probe the value and its parent domains; networks probe one dict per prefix length
present in the table (most specific first, like rspamd's radix maps; Postfix's cidr_table
takes the first match in file order instead, which differs only for overlapping networks
with different actions).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Iterator

from pyspamd.policy.verbs import Entry, VerbError, VerbUnsupported, parse_result


class MapUnavailable(Exception):
    """A map that asks a server (LDAP) could not get an answer now."""


class LoadProblems:
    def __init__(self) -> None:
        self.errors: list[str] = []
        self.warnings: list[str] = []


def _split(line: str) -> tuple[str, str]:
    key, _, rest = line.partition(" ")
    if "\t" in key:
        key, _, more = key.partition("\t")
        rest = f"{more} {rest}"
    return key.strip(), rest.strip()


def checked_result(rest: str, where: str, header_checks: bool,
                   problems: LoadProblems) -> Entry | None:
    """The action of one map line, or None after recording why the line is skipped:
    an action Postfix has but pyspamd cannot do is a warning, a malformed one an error."""
    try:
        return parse_result(rest, where, header_checks)
    except VerbUnsupported as exc:
        problems.warnings.append(f"{where}: {exc}")
    except VerbError as exc:
        problems.errors.append(f"{where}: {exc}")
    return None


def parse_entries(
    lines: Iterable[tuple[str, str]], header_checks: bool, problems: LoadProblems
) -> Iterator[tuple[str, str, Entry]]:
    """(where, key, entry) per usable line; bad lines go to `problems` and are skipped."""
    for where, line in lines:
        key, rest = _split(line)
        entry = checked_result(rest, where, header_checks, problems)
        if entry is not None:
            yield where, key, entry


def parent_domains(domain: str) -> Iterator[str]:
    """example.co.uk -> co.uk -> uk (the domain itself not included)."""
    while "." in domain:
        domain = domain.split(".", 1)[1]
        yield domain


class DomainTable:
    """Keys `example.org` (the domain and, as Postfix's parent_domain_matches_subdomains,
    every subdomain) and `.example.org` (subdomains only)."""

    kind = "domain"

    def __init__(self) -> None:
        self.keys: dict[str, Entry] = {}

    def add(self, key: str, entry: Entry, problems: LoadProblems) -> None:
        key = key.lower().rstrip(".")
        if not key or key == "." or " " in key:
            problems.errors.append(f"{entry.where}: {key!r} is not a domain")
            return
        self.keys.setdefault(key, entry)  # the first line for a key wins, as in postmap

    def lookup(self, value: str) -> tuple[str, Entry] | None:
        domain = value.strip().lower().rstrip(".").strip("[]")
        if not domain:
            return None
        entry = self.keys.get(domain)
        if entry is not None:
            return domain, entry
        for parent in parent_domains(domain):
            for key in (parent, "." + parent):
                entry = self.keys.get(key)
                if entry is not None:
                    return key, entry
        return None

    def __len__(self) -> int:
        return len(self.keys)


class AddressTable(DomainTable):
    """check_sender_access keys: `user@domain`, `domain` (and its subdomains), `.domain`,
    `@domain` (that domain only), `user@` (any domain), and `<>` for the null sender.
    Looked up in access(5)'s order: full address, domain and parents, then `user@`."""

    kind = "address"

    def add(self, key: str, entry: Entry, problems: LoadProblems) -> None:
        key = key.lower()
        if key == "<>" or "@" in key:
            if key.count("@") > 1 or key == "@":
                problems.errors.append(f"{entry.where}: {key!r} is not an address key; "
                                       "write user@domain, user@, @domain or domain")
                return
            self.keys.setdefault(key, entry)
            return
        super().add(key, entry, problems)

    def lookup(self, value: str) -> tuple[str, Entry] | None:
        address = value.strip().strip("<>").lower()
        if not address:
            entry = self.keys.get("<>")
            return ("<>", entry) if entry is not None else None
        entry = self.keys.get(address)
        if entry is not None:
            return address, entry
        user, at, domain = address.rpartition("@")
        if not at:
            user, domain = "", address
        if domain:
            for key in (domain, "@" + domain):
                entry = self.keys.get(key)
                if entry is not None:
                    return key, entry
            for parent in parent_domains(domain):
                for key in (parent, "." + parent):
                    entry = self.keys.get(key)
                    if entry is not None:
                        return key, entry
        if user:
            entry = self.keys.get(user + "@")
            if entry is not None:
                return user + "@", entry
        return None


def _octet_prefix(key: str) -> str:
    """Postfix access tables match `192.168` as 192.168.0.0/16: turn that form into CIDR."""
    parts = key.split(".")
    if 1 <= len(parts) < 4 and all(p.isdigit() for p in parts):
        return ".".join(parts + ["0"] * (4 - len(parts))) + f"/{8 * len(parts)}"
    return key


def parse_network(key: str) -> tuple[int, int, int] | None:
    """(IP version, prefix length, network as int) or None. inet_pton is several times
    faster than ipaddress.ip_network, which matters for maps of 100,000 networks."""
    text, _, length_text = _octet_prefix(key.strip().strip("[]")).partition("/")
    for family, version, bits in ((socket.AF_INET, 4, 32), (socket.AF_INET6, 6, 128)):
        try:
            number = int.from_bytes(socket.inet_pton(family, text), "big")
        except OSError:
            continue
        if not length_text:
            return version, bits, number
        if not length_text.isdigit() or int(length_text) > bits:
            return None
        length = int(length_text)
        return version, length, number & ~((1 << (bits - length)) - 1)
    return None


class NetworkTable:
    """IPv4 and IPv6 addresses and CIDR networks (`192.0.2.0/24`, `2001:db8::/32`,
    Postfix's `192.168` octet prefixes)."""

    kind = "ip"

    def __init__(self) -> None:
        # version -> prefix length -> network address as int -> (key, entry)
        self.nets: dict[int, dict[int, dict[int, tuple[str, Entry]]]] = {4: {}, 6: {}}
        self._order: dict[int, list[int]] = {4: [], 6: []}
        self.count = 0

    def add(self, key: str, entry: Entry, problems: LoadProblems) -> None:
        parsed = parse_network(key)
        if parsed is None:
            problems.errors.append(f"{entry.where}: {key!r} is not an IP address or CIDR "
                                   "network (write 192.0.2.1, 192.0.2.0/24 or 2001:db8::/32)")
            return
        version, prefixlen, network = parsed
        lengths = self.nets[version]
        if prefixlen not in lengths:
            lengths[prefixlen] = {}
            self._order[version] = sorted(lengths, reverse=True)
        by_len = lengths[prefixlen]
        if network not in by_len:  # the first line for a network wins
            by_len[network] = (key, entry)
            self.count += 1

    def lookup(self, value: str) -> tuple[str, Entry] | None:
        try:
            address = ipaddress.ip_address(value.strip().strip("[]"))
        except ValueError:
            return None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        bits = 32 if address.version == 4 else 128
        number = int(address)
        by_len = self.nets[address.version]
        for length in self._order[address.version]:
            masked = number & ~((1 << (bits - length)) - 1) if length else 0
            hit = by_len[length].get(masked)
            if hit is not None:
                return hit
        return None

    def __len__(self) -> int:
        return self.count
