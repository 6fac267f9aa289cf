"""What every section's settings module shares: the error type, the locator that turns a key
into FILE:LINE, and the small value checks several sections make.

A leaf: the settings modules beside each feature import this and nothing of pyspamd.config,
so pyspamd.config can import them all without an import loop.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

SYMBOL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def shipped_path(name: str) -> Path:
    """A file shipped with pyspamd: inside the wheel, or the source checkout's top level."""
    packaged = Path(__file__).parent / "_data" / name
    return packaged if packaged.exists() else Path(__file__).parent.parent / name


class ConfigError(Exception):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


class Locator:
    """Finds the line of a key, so semantic errors can point at it like syntax errors do."""

    def __init__(self, path: Path, text: str,
                 overlays: Sequence[tuple[Path, str]] = (),
                 arrays: dict[tuple[str, ...], list[list[tuple[int, int]]]] | None = None
                 ) -> None:
        self.path = path
        self.lines = text.splitlines()
        # local.d files, read after the main one: the last that sets a key is where it is.
        self.overlays = [(p, t.splitlines()) for p, t in overlays]
        # Merged arrays of tables ([[maps]]): each entry's (file number, index in that file),
        # since the merged index is not the index in any one file (config.merge_tables).
        self.arrays = arrays or {}

    def where(self, keys: tuple[str, ...]) -> str:
        found = self._in_array(keys)
        if found:
            return found
        for path, lines in reversed(self.overlays):
            found = self._find(path, lines, keys)
            if found:
                return found
        return self._find(self.path, self.lines, keys) or str(self.path)

    def where_any(self, *options: tuple[str, ...]) -> str:
        """The place of whichever of these keys was set last (the first named, within one
        file): for an error about two settings, the one the admin wrote most recently."""
        for path, lines in [*reversed(self.overlays), (self.path, self.lines)]:
            for keys in options:
                found = self._find(path, lines, keys)
                if found:
                    return found
        return str(self.path)

    def _in_array(self, keys: tuple[str, ...]) -> str | None:
        files = [(self.path, self.lines), *self.overlays]
        for cut in range(1, len(keys)):
            entries = self.arrays.get(keys[:cut])
            if entries is None or not keys[cut].isdigit() or int(keys[cut]) >= len(entries):
                continue
            # the key itself where it was last set, else the entry's last [[header]] (for a
            # key it got by default)
            for whole in (False, True):
                for layer, local in reversed(entries[int(keys[cut])]):
                    path, lines = files[layer]
                    wanted = (*keys[:cut], str(local), *(() if whole else keys[cut + 1:]))
                    found = self._find(path, lines, wanted)
                    if found:
                        return found
        return None

    @staticmethod
    def _find(path: Path, lines: list[str], keys: tuple[str, ...]) -> str | None:
        section: tuple[str, ...] = ()
        header = re.compile(r"^\s*\[+\s*([^\]]+?)\s*\]+")
        arrays: dict[tuple[str, ...], int] = {}  # [[name]] tables seen so far, by name
        for number, line in enumerate(lines, 1):
            m = header.match(line)
            if m:
                section = tuple(p.strip().strip("\"'") for p in m.group(1).split("."))
                if line.lstrip().startswith("[["):
                    # The Nth [[maps]] table is ("maps", "N") in the keys errors name.
                    index = arrays.get(section, 0)
                    arrays[section] = index + 1
                    section = (*section, str(index))
                elif len(section) > 1 and section[:1] in arrays:
                    # [maps.ldap] belongs to the last [[maps]] table above it.
                    section = (section[0], str(arrays[section[:1]] - 1), *section[1:])
                if section == keys:
                    return f"{path}:{number}"
                continue
            if section == keys[:-1] and re.match(
                rf"^\s*[\"']?{re.escape(keys[-1])}[\"']?\s*=", line
            ):
                return f"{path}:{number}"
        return None


def beside_config(value: str, config_path: Path | None) -> str:
    """A path option as written: a relative one is relative to the config file's folder
    (not the daemon's working directory); built-in defaults (no file) are left as they are."""
    if Path(value).is_absolute() or config_path is None:
        return value
    return str(config_path.parent / value)


def bad_networks(values: Iterable[str]) -> list[str]:
    """The values that are neither an address nor a CIDR network."""
    bad = []
    for net in values:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            bad.append(net)
    return bad


def split_host_port(text: str) -> tuple[str, int]:
    """"HOST:PORT" or "[V6]:PORT" -> (host, port); ValueError if it is neither."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or not host:
        raise ValueError(f"{text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def is_local_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name may resolve to anything
