"""What pyspamc and pyspamd share: finding the config and building the scanner."""

from __future__ import annotations

import sys

from pyspamd.config import Config, ConfigError, load_config, resolve_config_path
from pyspamd.scanner import RuleLoadError, Scanner

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def load_config_or_exit(arg: str | None) -> Config:
    try:
        return load_config(resolve_config_path(arg))
    except ConfigError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        raise SystemExit(EXIT_FAILED) from exc


def scanner_or_exit(config: Config) -> Scanner:
    try:
        return Scanner.from_config(config)
    except RuleLoadError as exc:
        for line in exc.errors:
            print(line, file=sys.stderr)
        print(f"{len(exc.errors)} error(s) in rule files; fix them and try again",
              file=sys.stderr)
        raise SystemExit(EXIT_FAILED) from exc
