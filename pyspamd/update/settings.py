"""`[update]`: the signed update channels `pyspamc update` installs, where their sets live, and
how an installed set takes the place of the shipped rules, model and maps.

An installed channel set is `DIR/CHANNEL/current` (a symlink to `DIR/CHANNEL/sets/...`).
When one is there, its `rules/` directory is read instead of the shipped rules directory (as
sa-update's rules replace SpamAssassin's shipped ones), its `model/pyspamd-content.npz`
instead of the shipped model (unless [model] path names another), and a map written
`file = "update:NAME"` reads its `maps/NAME`.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pyspamd.config_schema import Locator, beside_config, shipped_path
from pyspamd.model.settings import SHIPPED_MODEL, ModelConfig
from pyspamd.policy.map_settings import REMOTE_PREFIX, UPDATE_PREFIX, MapConfig

_CHANNEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")


@dataclass
class ChannelConfig:
    """One `[[update.channels]]` entry."""

    name: str = ""
    url: str = ""  # https://.../bundle.tar.gz
    # The channel's Ed25519 public key: its 32 bytes in base64, or the path of a PEM file.
    # Configured here, never fetched: a key that came with the update would prove nothing.
    key: str = ""


@dataclass
class UpdateConfig:
    channels: list[ChannelConfig] = field(default_factory=list)
    dir: str = "/var/lib/pyspamd/updates"  # installed sets, staging, remote map cache
    timeout: float = 60.0  # seconds for one download
    max_size: int = 200 << 20  # bytes; a bigger bundle is refused
    ca_file: str = ""  # extra CA bundle for a channel or map server with a private CA
    pidfile: str = "/run/pyspamd/pyspamd.pid"  # the daemon told to reload (SIGHUP)
    map_refresh: float = 300.0  # seconds between polls of each https:// map
    map_timeout: float = 10.0
    # Set by `pyspamc update` while it tests a set in its staging directory: channel -> dir.
    staged: dict[str, str] = field(default_factory=dict, init=False)


def channel_dir(update: UpdateConfig, name: str) -> Path:
    return Path(update.dir) / name


def active_set(update: UpdateConfig, name: str) -> Path | None:
    """The directory of the channel's set in force (resolved, so a daemon keeps reading the
    set it loaded while `current` moves on), or None when none is installed."""
    if name in update.staged:
        return Path(update.staged[name])
    current = channel_dir(update, name) / "current"
    return current.resolve() if current.is_dir() else None


def map_cache_dir(update: UpdateConfig) -> Path:
    return Path(update.dir) / "maps"


def check_update(update: UpdateConfig, rules_dirs: list[str], model: ModelConfig,
                 maps: list[MapConfig], config_path: Path | None, loc: Locator) -> list[str]:
    """Checks [update] and points rules (`rules_dirs`, changed in place), model and maps at
    the installed sets."""
    errors: list[str] = []

    def bad_at(keys: tuple[str, ...], what: str) -> None:
        errors.append(f"{loc.where(keys)}: {what}")

    def bad(key: tuple[str, ...], what: str) -> None:
        bad_at(("update", *key), what)

    update.dir = beside_config(update.dir, config_path)
    if update.ca_file:
        update.ca_file = beside_config(update.ca_file, config_path)
    if update.timeout <= 0 or update.map_timeout <= 0 or update.max_size <= 0:
        bad(("timeout",), "update.timeout, map_timeout and max_size must be positive")
    if update.map_refresh < 1:
        bad(("map_refresh",), "update.map_refresh must be at least 1 second")
    seen: set[str] = set()
    for index, channel in enumerate(update.channels):
        at = ("channels", str(index))
        if not _CHANNEL_NAME.match(channel.name):
            bad((*at, "name"), "update channel needs a name of letters, digits, '.', '_' "
                "or '-' (name = \"rules.example.org\")")
        elif channel.name in seen:
            bad((*at, "name"), f"update channel {channel.name!r} is defined twice")
        seen.add(channel.name)
        if not channel.url.startswith(REMOTE_PREFIX):
            bad((*at, "url"), f"update channel {channel.name}: url must be https://...")
        if not channel.key:  # not written: the line of the table
            bad(at, f"update channel {channel.name}: key is required (the "
                "channel's Ed25519 public key, base64, or a PEM file's path)")
        else:
            channel.key = _check_key(channel.key, config_path, ("update", *at, "key"),
                                     f"update channel {channel.name}", bad_at)
    for index, m in enumerate(maps):
        if m.url:  # fetched into the cache, and read from there like any map file
            m.file = str(map_cache_dir(update) / f"{m.name}.map")
            if m.key:
                m.key = _check_key(m.key, config_path, ("maps", str(index), "key"),
                                   f"maps {m.name}", bad_at)
    errors.extend(_use_installed_sets(update, rules_dirs, model, maps, loc))
    return errors


def _check_key(key: str, config_path: Path | None, at: tuple[str, ...], label: str,
               bad: Callable[[tuple[str, ...], str], None]) -> str:
    """The key as the verifier reads it (a path resolved beside the config)."""
    if key_is_path(key):
        return beside_config(key, config_path)
    try:
        if len(base64.b64decode(key, validate=True)) != 32:
            raise ValueError
    except ValueError:
        bad(at, f"{label}: key is neither 32 bytes in base64 nor a PEM file's path")
    return key


def key_is_path(key: str) -> bool:
    """32 bytes in base64 always end in "=" (44 characters); a PEM file's path does not."""
    return not key.strip().endswith("=")


def _use_installed_sets(update: UpdateConfig, rules_dirs: list[str], model: ModelConfig,
                        maps: list[MapConfig], loc: Locator) -> list[str]:
    sets = [s for c in update.channels if (s := active_set(update, c.name))]
    shipped_rules = str(shipped_path("rules"))
    if sets:
        rules = [str(s / "rules") for s in sets if (s / "rules").is_dir()]
        if rules:
            dirs: list[str] = []
            for directory in rules_dirs:
                dirs.extend(rules if directory == shipped_rules else [directory])
            rules_dirs[:] = dirs
        models = [s / "model" / SHIPPED_MODEL for s in sets
                  if (s / "model" / SHIPPED_MODEL).is_file()]
        if models and model.path == str(shipped_path("models") / SHIPPED_MODEL):
            model.path = str(models[-1])
    errors = []
    for index, m in enumerate(maps):
        if not m.file.startswith(UPDATE_PREFIX):
            continue
        name = m.file.removeprefix(UPDATE_PREFIX)
        found = [s / "maps" / name for s in sets if (s / "maps" / name).is_file()]
        if "/" in name or not name:
            errors.append(f"{loc.where(('maps', str(index), 'file'))}: maps {m.name}: "
                          f"{m.file!r} must name a file of an update set's maps/")
        elif found:
            m.file = str(found[-1])
        else:
            m.file = str(shipped_path("maps") / name)
    return errors
