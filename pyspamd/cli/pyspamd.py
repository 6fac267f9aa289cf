"""pyspamd: the milter daemon (`pyspamd [--config PATH] [--daemon]`) and `configtest`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pyspamd import __version__
from pyspamd.checks.base import Check
from pyspamd.checks.registry import build_checks
from pyspamd.cli.common import EXIT_FAILED, EXIT_OK
from pyspamd.config import (
    Config,
    ConfigError,
    config_files,
    load_config,
    resolve_config_path,
)
from pyspamd.permissions import write_problems
from pyspamd.scanner import RuleLoadError, Scanner, load_ruleset
from pyspamd.services import Services
from pyspamd.symbols import is_hidden


def _show_quarantine(config: Config) -> None:
    """Where held mail goes, and which banned-file rules apply."""
    from pyspamd.checks.banned_settings import all_rules
    from pyspamd.quarantine.store import quarantine_dir

    q = config.quarantine
    if q.enabled:
        directory = quarantine_dir(q)
        existing = next(p for p in (directory, *directory.parents) if p.exists())
        print(f"quarantine: {directory} (max {q.max_size} bytes, {q.expire_days:g} days; "
              f"full or unwritable: {q.fallback_action}; release to {q.release_smtp})")
        if not os.access(existing, os.W_OK | os.X_OK):
            print(f"warning: quarantine: {existing} is not writable by this user; held mail "
                  f"would get fallback_action ({q.fallback_action})")
    else:
        print("quarantine: off (the quarantine action is Postfix's hold queue)")
    if config.banned_files.enabled:
        rules = [r.name for r in all_rules(config.banned_files)
                 if r.name not in config.banned_files.exempt]
        print(f"banned files: {', '.join(rules) or 'no rules'}")


def configtest(config_arg: str | None) -> int:
    """Validate the config and every rule file; print each problem with file and line."""
    path = resolve_config_path(config_arg)
    try:
        config = load_config(path)
    except ConfigError as exc:
        for line in exc.errors:
            print(line)
        print(f"config test failed: {len(exc.errors)} error(s)")
        return EXIT_FAILED
    problems = write_problems(config, as_owner=True)
    for line in problems:
        print(line)
    if config.dns.auto_note:
        note = config.dns.auto_note
        print(note if note.startswith("warning:") else f"note: {note}")
    for warning in config.warnings:
        print(f"warning: {warning}")
    for directory in config.rules.dirs:
        if not Path(directory).exists() and directory != "/etc/pyspamd/rules.d":
            print(f"warning: rule directory {directory} does not exist")
    ruleset = load_ruleset(config, configured_checks(config))
    for warning in ruleset.warnings:
        print(f"warning: {warning}")
    for error in ruleset.errors:
        print(error)
    _show_update_sets(config)
    map_errors = _check_map_files(config) + _check_model(config)
    if ruleset.errors or map_errors:
        print(f"config test failed: {len(ruleset.errors) + map_errors} error(s) in rule and "
              "map files")
        return EXIT_FAILED
    if problems:
        print(f"config test failed: {len(problems)} path(s) pyspamd cannot write")
        return EXIT_FAILED
    if config.settings:
        print(f"settings: {len(config.settings)} entries, first match wins: "
              + ", ".join(s.name for s in config.settings)
              + f"; recipients of different settings: {config.milter.mixed_settings}")
    if config.antivirus.enabled:
        from pyspamd.checks.clamav_families import load_families

        print("\n".join(load_families(config.antivirus.families_file, config.antivirus.families)
                        .listing(config.antivirus.reject_classes)))
    _show_quarantine(config)
    scored = sum(1 for name in ruleset.rules if not is_hidden(name))
    print(f"config {path or '(built-in defaults)'}: OK; {len(ruleset.rules)} rules "
          f"({scored} scored) from {len(ruleset.files)} file(s)")
    return EXIT_OK


def configdump(config_arg: str | None) -> int:
    """The merged config as TOML, every option with its value, secrets hidden."""
    import tomli_w

    from pyspamd.controller.app import redact_config

    path = resolve_config_path(config_arg)
    try:
        config = load_config(path)
    except ConfigError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        return EXIT_FAILED
    files = config_files(path) if path is not None else []
    print("# pyspamd configdump: " + (", then ".join(map(str, files)) if files
                                      else "built-in defaults (no config file)"))
    data = _without_none(redact_config(config))
    data.pop("path", None)
    data["dns"].pop("auto_note", None)
    data["dns"].pop("unanswered", None)
    data["update"].pop("staged", None)
    for map_data in data["maps"]:  # a fetched map: its address, not the local copy
        url = map_data.pop("url", "")
        map_data["file"] = url or map_data["file"]
    data.pop("warnings", None)
    print(tomli_w.dumps(data), end="")
    return EXIT_OK


def _without_none(value: Any) -> Any:
    """TOML has no null: an option left unset (None) is left out."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_without_none(v) for v in value if v is not None]
    return value


def configured_checks(config: Config) -> list[Check]:
    """The checks the scanner would build, so rule files may re-score their symbols."""
    return build_checks(config, Services(config, symbols_only=True))


def _check_model(config: Config) -> int:
    """Load the content model as a worker would; print its version and size, or the error."""
    if not config.model.enabled:
        print("content model: off ([model] enabled = false)")
        return 0
    from pyspamd.checks.model import Thresholds, open_model
    from pyspamd.model.linear import ModelError

    try:
        model = open_model(config.model)
    except ModelError as exc:
        print(f"error: content model: {exc}")
        return 1
    t = Thresholds.of(model, config.model)
    print(f"content model {model.meta.version}: {model.path} ({model.size_bytes / 1e6:.1f} MB, "
          f"2^{model.meta.hash_bits} weights, trained {model.meta.created}); MODEL_SPAM from "
          f"{t.spam:g} (full score at {t.confident:g}), MODEL_HAM at or under {t.ham:g}")
    return 0


def _show_update_sets(config: Config) -> None:
    """Which set of each update channel is in force (docs/updates.md)."""
    from pyspamd.update.bundle import installed_version
    from pyspamd.update.settings import active_set

    for channel in config.update.channels:
        found = active_set(config.update, channel.name)
        print(f"update channel {channel.name}: " + (
            f"version {installed_version(found)} in force ({found})" if found
            else "no set installed yet (pyspamc update); the shipped rules and model are used"))


def _check_map_files(config: Config) -> int:
    """Load every map as the daemon would; print its problems; return the error count."""
    from pyspamd.policy.maps import MapSource
    from pyspamd.policy.remote_maps import copy_age, describe_age

    errors = 0
    for map_config in config.maps:
        loaded = MapSource(map_config).loaded
        for warning in loaded.warnings:
            print(f"warning: {warning}")
        for error in loaded.errors:
            print(error)
        errors += len(loaded.errors)
        source = map_config.file or "inline values"
        if map_config.url:
            source = f"{map_config.url} ({describe_age(copy_age(map_config))})"
        print(f"map {map_config.name}: {len(loaded.table)} entries from {source}")
    return errors


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pyspamd",
        description="pyspamd: a spam-filtering milter for Postfix. Without a command it runs "
                    "the milter (a master, one pool of workers per milter.listen socket, and "
                    "the controller) in the foreground, logging to stderr (the journal under "
                    "systemd); --daemon detaches and logs to syslog's mail facility.",
        epilog="Files: /etc/pyspamd/pyspamd.toml, then /etc/pyspamd/local.d/*.toml; rules in "
               "/usr/share/pyspamd/rules and /etc/pyspamd/rules.d; state in /var/lib/pyspamd. "
               "Signals: HUP reloads config and rules, TERM stops after the messages in flight. "
               "Exit status: 0 stopped cleanly, 1 a config, rule, permission or socket problem "
               "(one line says which). More: man pyspamd, docs/debian.md.",
    )
    parser.add_argument("--version", action="version", version=f"pyspamd {__version__}")
    parser.add_argument("--config", "-c", metavar="PATH",
                        help="config file (default: $PYSPAMD_CONFIG or /etc/pyspamd/pyspamd.toml)")
    parser.add_argument("--daemon", "-d", action="store_true",
                        help="detach from the terminal (default: stay in the foreground)")
    parser.add_argument("--pidfile", metavar="PATH", help="write the master's pid here")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("configtest", help="check the config and rule files, then exit")
    commands.add_parser("configdump", help="print the config in force: the main file with "
                                           "local.d/*.toml merged over it, every option")
    commands.add_parser("run", help="run the milter (the default)")
    commands.add_parser("controller", help="run only the controller (HTTP API and web page), "
                                           "e.g. on a host that scans no mail")
    args = parser.parse_args(argv)
    if args.command == "configtest":
        return configtest(args.config)
    if args.command == "configdump":
        return configdump(args.config)
    if args.command == "controller":
        return run_controller_alone(args.config)
    return run(args.config, args.daemon, args.pidfile)


def run(config_arg: str | None, daemon: bool, pidfile: str | None) -> int:
    from pyspamd.milter.instance import StartupError
    from pyspamd.milter.server import serve  # pymilter is needed only to serve

    path = resolve_config_path(config_arg)
    try:
        return serve(path, daemon=daemon, pidfile=Path(pidfile) if pidfile else None)
    except StartupError as exc:
        print(exc, file=sys.stderr)
        return EXIT_FAILED
    except ConfigError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        return EXIT_FAILED
    except RuleLoadError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        print("pyspamd not started: fix the rule files (pyspamd configtest)", file=sys.stderr)
        return EXIT_FAILED


def run_controller_alone(config_arg: str | None) -> int:
    from pyspamd.controller.server import run_controller  # aiohttp only when serving
    from pyspamd.logsetup import setup_logging

    path = resolve_config_path(config_arg)
    if path is not None:
        path = path.resolve()
    try:
        config = load_config(path)
        scanner = Scanner.from_config(config)
    except (ConfigError, RuleLoadError) as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        print("controller not started", file=sys.stderr)
        return EXIT_FAILED
    setup_logging(config.logging)
    return run_controller(path, config, scanner)


if __name__ == "__main__":
    sys.exit(main())
