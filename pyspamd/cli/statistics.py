"""pyspamc stat / history / counters in-process (from the storage backend), and pyspamc pw.

With -h the same commands ask the controller (remote.py); both print through
pyspamd/stats/render.py, so the output is the same either way.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from pyspamd.cli.common import EXIT_FAILED, EXIT_OK, load_config_or_exit, scanner_or_exit
from pyspamd.config import Config
from pyspamd.stats.reader import StatsReader
from pyspamd.stats.render import counter_output, history_output, stat_lines, symbol_rows
from pyspamd.storage import open_storage
from pyspamd.storage.base import StorageError

COMMANDS = ("history", "counters", "pw")
NEEDS_NO_DAEMON = ("pw",)  # fine with -h too: it only prints


def add_commands(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("history", add_help=False,
                            help="the last scans of all workers (newest first)")
    p.add_argument("--help", action="help", help="show this help and exit")
    p.add_argument("--limit", "-l", type=int, default=50, metavar="N",
                   help="how many scans (default 50)")
    p = commands.add_parser("counters", add_help=False,
                            help="how often each symbol hit, over all workers")
    p.add_argument("--help", action="help", help="show this help and exit")
    p = commands.add_parser("pw", add_help=False,
                            help="hash a controller password for the config (as rspamadm pw)")
    p.add_argument("--help", action="help", help="show this help and exit")


def print_stat(config: Config) -> int:
    storage = open_storage(config.storage, create=False)
    try:
        stat = StatsReader(storage).stat(config)
    except StorageError as exc:
        print(f"pyspamc: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        storage.close()
    print("\n".join(stat_lines(stat)))
    return EXIT_OK



def _read(config: Config, what: str, limit: int) -> Any:
    storage = open_storage(config.storage, create=False)
    try:
        reader = StatsReader(storage)
        return reader.history(limit) if what == "history" else reader.symbol_hits()
    finally:
        storage.close()


def cmd_pw() -> int:
    if sys.stdin.isatty():
        password = getpass.getpass("Enter passphrase: ")
        if getpass.getpass("Repeat passphrase: ") != password:
            print("pyspamc: the passphrases differ", file=sys.stderr)
            return EXIT_FAILED
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("pyspamc: empty passphrase", file=sys.stderr)
        return EXIT_FAILED
    from pyspamd.controller.auth import make_hash

    print(make_hash(password))
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    if args.command == "pw":
        return cmd_pw()
    config = load_config_or_exit(args.config)
    try:
        if args.command == "history":
            lines = history_output(_read(config, "history", max(1, args.limit)), args.json)
        else:
            scanner = scanner_or_exit(config)
            rows = symbol_rows(scanner.defs, _read(config, "counters", 0))
            lines = counter_output(rows, args.json)
    except StorageError as exc:
        print(f"pyspamc: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print("\n".join(lines))
    return EXIT_OK
