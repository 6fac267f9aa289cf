"""pyspamd: the milter daemon (`pyspamd [--config PATH] [--daemon]`) and `configtest`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pyspamd.checks.base import Check
from pyspamd.cli.common import EXIT_FAILED, EXIT_OK
from pyspamd.config import Config, ConfigError, load_config, resolve_config_path
from pyspamd.scanner import BUILTIN_CHECKS, RuleLoadError, Scanner, load_ruleset
from pyspamd.symbols import is_hidden


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
    for directory in config.rules.dirs:
        if not Path(directory).exists() and directory != "/etc/pyspamd/rules.d":
            print(f"warning: rule directory {directory} does not exist")
    ruleset = load_ruleset(config, configured_checks(config))
    for warning in ruleset.warnings:
        print(f"warning: {warning}")
    for error in ruleset.errors:
        print(error)
    map_errors = _check_map_files(config) + _check_model(config)
    if ruleset.errors or map_errors:
        print(f"config test failed: {len(ruleset.errors) + map_errors} error(s) in rule and "
              "map files")
        return EXIT_FAILED
    scored = sum(1 for name in ruleset.rules if not is_hidden(name))
    print(f"config {path or '(built-in defaults)'}: OK; {len(ruleset.rules)} rules "
          f"({scored} scored) from {len(ruleset.files)} file(s)")
    return EXIT_OK


def configured_checks(config: Config) -> list[Check]:
    """The checks the scanner would build, so rule files may re-score their symbols."""
    from pyspamd.checks.bayes import BayesCheck
    from pyspamd.checks.model import ModelCheck
    from pyspamd.checks.policy import policy_checks

    checks: list[Check] = [c() for c in BUILTIN_CHECKS]
    checks += policy_checks(config, load_maps=False)
    if config.bayes.enabled:
        checks.append(BayesCheck(config))
    if config.model.enabled:
        checks.append(ModelCheck(config, load=False))
    return checks


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


def _check_map_files(config: Config) -> int:
    """Load every map as the daemon would; print its problems; return the error count."""
    from pyspamd.policy.maps import MapSource

    errors = 0
    for map_config in config.maps:
        loaded = MapSource(map_config).loaded
        for warning in loaded.warnings:
            print(f"warning: {warning}")
        for error in loaded.errors:
            print(error)
        errors += len(loaded.errors)
        print(f"map {map_config.name}: {len(loaded.table)} entries from "
              f"{map_config.file or 'inline values'}")
    return errors


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pyspamd", description="pyspamd spam filter")
    parser.add_argument("--config", "-c", metavar="PATH",
                        help="config file (default: $PYSPAMD_CONFIG or /etc/pyspamd/pyspamd.toml)")
    parser.add_argument("--daemon", "-d", action="store_true",
                        help="detach from the terminal (default: stay in the foreground)")
    parser.add_argument("--pidfile", metavar="PATH", help="write the master's pid here")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("configtest", help="check the config and rule files, then exit")
    commands.add_parser("run", help="run the milter (the default)")
    commands.add_parser("controller", help="run only the controller (HTTP API and web page), "
                                           "e.g. on a host that scans no mail")
    args = parser.parse_args(argv)
    if args.command == "configtest":
        return configtest(args.config)
    if args.command == "controller":
        return run_controller_alone(args.config)
    return run(args.config, args.daemon, args.pidfile)


def run(config_arg: str | None, daemon: bool, pidfile: str | None) -> int:
    from pyspamd.milter.server import serve  # pymilter is needed only to serve

    path = resolve_config_path(config_arg)
    try:
        return serve(path, daemon=daemon, pidfile=Path(pidfile) if pidfile else None)
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
