"""Configuration: one TOML file; every option has a default (see pyspamd.toml.example).

Where the file is: `--config PATH`, else $PYSPAMD_CONFIG, else /etc/pyspamd/pyspamd.toml if
it exists, else built-in defaults. Errors name the file, the line and what to write instead.

This module reads and merges the files, builds the sections' dataclasses from them and runs
each section's checks (VALIDATORS). A feature's section, its dataclass and its checks, lives
beside the feature in a settings module (docs/development.md: "Configuration sections").
"""

from __future__ import annotations

import dataclasses
import keyword
import logging
import os
import tomllib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

from pyspamd.actions import ActionsConfig, check_actions, greylist_without_greylisting
from pyspamd.auth.settings import (
    DKIM_SIGNED_HEADERS,
    AuthConfig,
    DkimKeyConfig,
    DkimSigningConfig,
    check_auth,
    check_dkim_signing,
)
from pyspamd.checks.antivirus_settings import AntivirusConfig, check_antivirus
from pyspamd.checks.banned_settings import BannedFilesConfig, check_banned_files
from pyspamd.checks.helo_settings import HeloConfig, check_helo
from pyspamd.checks.pyzor_settings import PyzorConfig, check_pyzor
from pyspamd.checks.rbl_settings import RblConfig, RblListConfig, check_rbl
from pyspamd.classifiers.settings import AutolearnConfig, BayesConfig, check_bayes
from pyspamd.config_schema import (
    ConfigError,
    Locator,
    beside_config,
    is_local_host,
    shipped_path,
    split_host_port,
)
from pyspamd.controller.settings import ControllerConfig, check_controller
from pyspamd.dns_settings import DnsConfig, check_dns
from pyspamd.fuzzy.settings import FuzzyConfig, FuzzyFlagConfig, check_fuzzy
from pyspamd.milter.settings import MilterConfig, check_milter
from pyspamd.model.settings import SHIPPED_MODEL, ModelConfig, check_model
from pyspamd.policy.greylist_settings import BIG_SENDER_HOSTS, GreylistConfig, check_greylist
from pyspamd.policy.map_settings import (
    DEFAULT_MATCH,
    MAP_MATCHES,
    MAP_TYPES,
    LdapConfig,
    MapConfig,
    check_maps,
)
from pyspamd.policy.ratelimit_settings import RatelimitConfig, check_ratelimit
from pyspamd.policy.rcpt_policy_settings import SettingsConfig, check_settings
from pyspamd.policy_service.settings import PolicyServiceConfig, check_policy_service
from pyspamd.quarantine.settings import QuarantineConfig, check_quarantine
from pyspamd.storage.settings import StorageConfig, check_storage
from pyspamd.task import ParseLimits
from pyspamd.update.settings import UpdateConfig, check_update

__all__ = [
    "BIG_SENDER_HOSTS", "DEFAULT_MATCH", "DKIM_SIGNED_HEADERS", "MAP_MATCHES", "MAP_TYPES",
    "SHIPPED_MODEL", "ActionsConfig", "AntivirusConfig", "AuthConfig", "AutolearnConfig",
    "BayesConfig", "Config", "ConfigError", "ControllerConfig", "DkimKeyConfig",
    "DkimSigningConfig", "DnsConfig", "FuzzyConfig", "FuzzyFlagConfig", "GreylistConfig",
    "GroupConfig", "HeadersConfig", "HeloConfig", "LdapConfig", "LoggingConfig", "MapConfig",
    "MilterConfig", "ModelConfig", "PolicyServiceConfig", "RatelimitConfig", "RblConfig",
    "RblListConfig", "RulesConfig", "ScanConfig", "SettingsConfig", "StorageConfig",
    "config_files", "is_local_host",
    "load_config", "local_dir", "merge_tables", "resolve_config_path", "shipped_path",
    "split_host_port",
]

DEFAULT_CONFIG_PATH = Path("/etc/pyspamd/pyspamd.toml")
LOCAL_DIR_NAME = "local.d"  # *.toml here are merged over the main file, in name order
ENV_CONFIG = "PYSPAMD_CONFIG"


@dataclass
class RulesConfig:
    dirs: list[str] = field(
        default_factory=lambda: [str(shipped_path("rules")), "/etc/pyspamd/rules.d"]
    )


@dataclass
class ScanConfig(ParseLimits):
    """`[scan]`: the parse limits a Task gets (the scanner hands this to each Task as it is),
    and the bounds of the backtracking regex engine."""

    fallback_regex_max_bytes: int = 65536
    fallback_regex_timeout: float = 0.1


@dataclass
class HeadersConfig:
    spamd_result: bool = True
    spam_flag: bool = True
    spam_status: bool = True
    spam_level: bool = True
    spam_bar: bool = False
    level_char: str = "*"
    max_level: int = 50


@dataclass
class LoggingConfig:
    level: str = "info"
    target: str = "auto"  # stderr in the foreground (journal, terminal), syslog with --daemon
    syslog_facility: str = "mail"


@dataclass
class GroupConfig:
    max_score: float | bool = False


@dataclass
class Config:
    rules: RulesConfig = field(default_factory=RulesConfig)
    scan: ScanConfig = field(default_factory=ScanConfig)
    actions: ActionsConfig = field(default_factory=ActionsConfig)
    headers: HeadersConfig = field(default_factory=HeadersConfig)
    milter: MilterConfig = field(default_factory=MilterConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    scores: dict[str, float] = field(default_factory=dict)
    groups: dict[str, GroupConfig] = field(default_factory=dict)
    storage: StorageConfig = field(default_factory=StorageConfig)
    bayes: BayesConfig = field(default_factory=BayesConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    maps: list[MapConfig] = field(default_factory=list)
    greylist: GreylistConfig = field(default_factory=GreylistConfig)
    ratelimit: RatelimitConfig = field(default_factory=RatelimitConfig)
    helo: HeloConfig = field(default_factory=HeloConfig)
    dns: DnsConfig = field(default_factory=DnsConfig)
    rbl: RblConfig = field(default_factory=RblConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    dkim_signing: DkimSigningConfig = field(default_factory=DkimSigningConfig)
    path: Path | None = None
    controller: ControllerConfig = field(default_factory=ControllerConfig)
    fuzzy: FuzzyConfig = field(default_factory=FuzzyConfig)
    antivirus: AntivirusConfig = field(default_factory=AntivirusConfig)
    update: UpdateConfig = field(default_factory=UpdateConfig)
    pyzor: PyzorConfig = field(default_factory=PyzorConfig)
    settings: list[SettingsConfig] = field(default_factory=list)
    policy_service: PolicyServiceConfig = field(default_factory=PolicyServiceConfig)
    banned_files: BannedFilesConfig = field(default_factory=BannedFilesConfig)
    quarantine: QuarantineConfig = field(default_factory=QuarantineConfig)
    # What is allowed but likely wrong, with FILE:LINE: configtest prints it, the daemon logs it.
    warnings: list[str] = field(default_factory=list, init=False, compare=False)


def resolve_config_path(arg: str | None) -> Path | None:
    if arg:
        return Path(arg)
    env = os.environ.get(ENV_CONFIG)
    if env:
        return Path(env)
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None


def local_dir(path: Path) -> Path:
    """Where the admin's own settings live beside a config file: local.d/ next to it."""
    return path.parent / LOCAL_DIR_NAME


def config_files(path: Path) -> list[Path]:
    """The main file, then local.d/*.toml in name order: the order they are merged in."""
    overlays = sorted(p for p in local_dir(path).glob("*.toml") if p.is_file()) \
        if local_dir(path).is_dir() else []
    return [path, *overlays]


def _read_toml(path: Path) -> tuple[str, dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config: {exc.strerror or exc}"]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: config is not UTF-8 text: {exc}"]) from exc
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: TOML syntax error: {exc}"]) from exc


# Where each merged entry of an array of tables came from: by the array's key path, one
# list per merged entry of (file's place in config_files, the entry's index in that file).
ArrayOrigins = dict[tuple[str, ...], list[list[tuple[int, int]]]]


def _is_table_array(value: Any) -> TypeGuard[list[dict[str, Any]]]:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def merge_tables(base: dict[str, Any], over: dict[str, Any], origins: ArrayOrigins | None = None,
                 layer: int = 0, _path: tuple[str, ...] = ()) -> dict[str, Any]:
    """`over` on top of `base`: tables merge key by key; in an array of tables such as
    [[maps]] an entry whose `name` an earlier entry has updates that one key by key, and any
    other entry is appended; anything else (numbers, strings, lists) is replaced whole.
    `origins` (if given) records where each array entry came from, `layer` being `over`'s
    place among the files."""
    merged = dict(base)
    for key, value in over.items():
        path = (*_path, key)
        old = merged.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            merged[key] = merge_tables(old, value, origins, layer, path)
        elif _is_table_array(value) and _is_table_array(old):
            merged[key] = _merge_array(old, value, origins, layer, path)
        else:
            merged[key] = value
            if origins is not None and _is_table_array(value):
                origins[path] = [[(layer, index)] for index in range(len(value))]
    return merged


def _merge_array(base: list[dict[str, Any]], over: list[dict[str, Any]],
                 origins: ArrayOrigins | None, layer: int,
                 path: tuple[str, ...]) -> list[dict[str, Any]]:
    merged = list(base)
    sources = origins.setdefault(path, [[] for _ in base]) if origins is not None else None
    # Names read before this file only: a name twice in one file stays an error of its own.
    named = {e["name"]: i for i, e in enumerate(merged) if isinstance(e.get("name"), str)}
    for local, entry in enumerate(over):
        name = entry.get("name")
        if isinstance(name, str) and name in named:
            merged[named[name]] = merge_tables(merged[named[name]], entry)
            if sources is not None:
                sources[named[name]].append((layer, local))
            continue
        merged.append(entry)
        if sources is not None:
            sources.append([(layer, local)])
    return merged


def load_config(path: str | Path | None, staged: dict[str, str] | None = None) -> Config:
    """Load and validate; raises ConfigError listing every problem. None: built-in defaults.
    The files of local.d/ beside the main file are merged over it (config_files).
    `staged`: channel -> a set's directory to use instead of the installed one (the test
    `pyspamc update` makes of a new set before it switches)."""
    if path is None:
        return Config()  # no file names a channel: nothing is staged
    path = Path(path)
    data: dict[str, Any] = {}
    sources = []
    origins: ArrayOrigins = {}
    for number, file in enumerate(config_files(path)):
        text, layer = _read_toml(file)
        data = merge_tables(data, layer, origins, number)
        sources.append((file, text))
    locator = Locator(path, sources[0][1], sources[1:], origins)
    errors: list[str] = []
    config = _build(Config, data, (), locator, errors)
    config.path = path
    config.update.staged = dict(staged or {})
    config.rules.dirs = [beside_config(d, path) for d in config.rules.dirs]
    for _section, check in VALIDATORS:
        errors.extend(check(config, locator))
    if errors:
        raise ConfigError(errors)
    return config


def _check_scan(config: Config, loc: Locator) -> list[str]:
    return [f"{loc.where(('scan', f.name))}: scan.{f.name} must be positive"
            for f in dataclasses.fields(config.scan) if not getattr(config.scan, f.name) > 0]


def _check_logging(config: Config, loc: Locator) -> list[str]:
    if logging.getLevelName(config.logging.level.upper()) not in range(0, 100):
        return [f"{loc.where(('logging', 'level'))}: logging.level must be debug, info, "
                "warning or error"]
    return []


def _warn_greylist(config: Config, loc: Locator) -> list[str]:
    warning = greylist_without_greylisting(config.actions, config.greylist.enabled, loc)
    if warning:
        config.warnings.append(warning)
    return []


def _check_groups(config: Config, loc: Locator) -> list[str]:
    return [f"{loc.where(('groups', name, 'max_score'))}: max_score must be a number or false"
            for name, group in config.groups.items() if group.max_score is True]


def _check_update(config: Config, loc: Locator) -> list[str]:
    return check_update(config.update, config.rules.dirs, config.model, config.maps,
                        config.path, loc)


# Each section's checks, in the order their errors are listed. A check gets the whole Config
# and passes on what its section's validator needs (another section's value, the file's path).
Validator = Callable[["Config", Locator], list[str]]
VALIDATORS: tuple[tuple[str, Validator], ...] = (
    ("actions", lambda c, loc: check_actions(c.actions, loc)),
    ("milter", lambda c, loc: check_milter(c.milter, loc)),
    ("logging", _check_logging),
    ("scan", _check_scan),
    ("groups", _check_groups),
    ("storage", lambda c, loc: check_storage(c.storage, c.path, loc)),
    ("bayes", lambda c, loc: check_bayes(c.bayes, loc)),
    ("model", lambda c, loc: check_model(c.model, c.path, loc)),
    ("maps", lambda c, loc: check_maps(c.maps, c.path, loc)),
    ("greylist", lambda c, loc: check_greylist(c.greylist, loc)),
    ("greylist", _warn_greylist),
    ("ratelimit", lambda c, loc: check_ratelimit(c.ratelimit, loc)),
    ("helo", lambda c, loc: check_helo(c.helo, loc)),
    ("dns", lambda c, loc: check_dns(c.dns, c.milter.scan_timeout, loc)),
    ("rbl", lambda c, loc: check_rbl(c.rbl, loc)),
    ("auth", lambda c, loc: check_auth(c.auth, loc)),
    ("dkim_signing", lambda c, loc: check_dkim_signing(c.dkim_signing, c.path, loc)),
    ("controller", lambda c, loc: check_controller(c.controller, loc)),
    ("fuzzy", lambda c, loc: check_fuzzy(c.fuzzy, loc)),
    ("antivirus", lambda c, loc: check_antivirus(c.antivirus, c.milter.scan_timeout, c.path,
                                                  loc)),
    ("pyzor", lambda c, loc: check_pyzor(c.pyzor, c.milter.scan_timeout, loc)),
    ("policy_service", lambda c, loc: check_policy_service(c.policy_service, c.path, loc)),
    ("banned_files", lambda c, loc: check_banned_files(c.banned_files, loc)),
    ("quarantine", lambda c, loc: check_quarantine(c.quarantine, c.path, loc)),
    ("settings", lambda c, loc: check_settings(c.settings, loc)),
    # after model and maps: it points their resolved paths at the installed update sets
    ("update", _check_update),
)

def _type_name(tp: Any) -> str:
    if tp is bool:
        return "true or false"
    if tp is int:
        return "a whole number"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    origin = typing.get_origin(tp)
    if origin is list:
        return "a list of strings"
    if origin in (types.UnionType, typing.Union):
        if set(typing.get_args(tp)) == {float, bool}:
            return "a number, or false to turn it off"
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    return str(tp)


def _coerce(tp: Any, value: Any) -> tuple[bool, Any]:
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        for option in typing.get_args(tp):
            ok, out = _coerce(option, value)
            if ok:
                return True, out
        return False, None
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return ok, float(value) if ok else None
    if tp is str:
        return isinstance(value, str), value
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            return False, None
        items = [_coerce(item, v) for v in value]
        return all(ok for ok, _ in items), [v for _, v in items]
    return False, None


def _build(cls: type, data: Any, keys: tuple[str, ...], loc: Locator, errors: list[str]) -> Any:
    hints = typing.get_type_hints(cls)
    # Config.path is where the file was read from, not an option; [storage] path is one.
    # A field named after a Python keyword plus "_" (from_) is written without it (from).
    known = {f.name.removesuffix("_") if keyword.iskeyword(f.name.removesuffix("_"))
             else f.name for f in dataclasses.fields(cls)
             if f.init and (cls is not Config or f.name != "path")}
    where = loc.where(keys) if keys else str(loc.path)
    if not isinstance(data, dict):
        errors.append(f"{where}: [{'.'.join(keys)}] must be a table")
        return cls()
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        here = (*keys, key)
        if key not in known:
            errors.append(
                f"{loc.where(here)}: unknown option {'.'.join(here)!r}; "
                f"known here: {', '.join(sorted(known))}"
            )
            continue
        name = f"{key}_" if keyword.iskeyword(key) else key
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, value, here, loc, errors)  # type: ignore[arg-type]
            continue
        if typing.get_origin(tp) is dict:
            kwargs[name] = _build_map(tp, value, here, loc, errors)
            continue
        if typing.get_origin(tp) is list and dataclasses.is_dataclass(typing.get_args(tp)[0]):
            kwargs[name] = _build_tables(typing.get_args(tp)[0], value, here, loc, errors)
            continue
        ok, coerced = _coerce(tp, value)
        if not ok:
            errors.append(
                f"{loc.where(here)}: {'.'.join(here)} must be {_type_name(tp)}, got {value!r}"
            )
            continue
        kwargs[name] = coerced
    return cls(**kwargs)


def _build_tables(item_type: type, value: Any, keys: tuple[str, ...], loc: Locator,
                  errors: list[str]) -> list[Any]:
    """An array of tables (`[[maps]]`): each item is built like a section."""
    if not isinstance(value, list):
        errors.append(f"{loc.where(keys)}: {'.'.join(keys)} must be written as [[{keys[-1]}]] "
                      "tables")
        return []
    return [_build(item_type, item, (*keys, str(index)), loc, errors)
            for index, item in enumerate(value)]


def _build_map(tp: Any, value: Any, keys: tuple[str, ...], loc: Locator, errors: list[str]) -> Any:
    _, item_type = typing.get_args(tp)
    if not isinstance(value, dict):
        errors.append(f"{loc.where(keys)}: [{'.'.join(keys)}] must be a table")
        return {}
    out: dict[str, Any] = {}
    for name, item in value.items():
        here = (*keys, name)
        if dataclasses.is_dataclass(item_type):
            out[name] = _build(item_type, item, here, loc, errors)  # type: ignore[arg-type]
            continue
        ok, coerced = _coerce(item_type, item)
        if ok:
            out[name] = coerced
        else:
            errors.append(
                f"{loc.where(here)}: {'.'.join(here)} must be {_type_name(item_type)}, "
                f"got {item!r}"
            )
    return out

