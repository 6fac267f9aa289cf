"""pyspamc backup / restore / clear: the Bayes store to and from the portable file
(pyspamd/storage/portable.py), as sa-learn --backup / --restore / --clear."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from pyspamd.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, load_config_or_exit
from pyspamd.storage import StorageError, open_storage
from pyspamd.storage.portable import BackupError, restore_backup, write_backup

COMMANDS = ("backup", "restore", "clear")


def add_commands(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("backup", add_help=False,
                            help="write the Bayes store to FILE (gzip JSON lines, any backend)")
    p.add_argument("--help", action="help", help="show this help and exit")
    p.add_argument("file", metavar="FILE", help="the backup to write, e.g. bayes.jsonl.gz")
    p = commands.add_parser("restore", add_help=False,
                            help="replace the Bayes store with a backup (SQLite or Redis)")
    p.add_argument("--help", action="help", help="show this help and exit")
    p.add_argument("file", metavar="FILE", help="a file written by pyspamc backup")
    p = commands.add_parser("clear", add_help=False,
                            help="forget everything learned (needs --yes)")
    p.add_argument("--help", action="help", help="show this help and exit")
    p.add_argument("--yes", action="store_true", help="really empty the Bayes store")


def _summary(counts: Counter[str]) -> str:
    return (f"{counts['token']} tokens, {counts['learned']} learned messages, "
            f"{counts['message']} messages' tokens for the model, {counts['model']} model "
            "weights")


def run(args: argparse.Namespace) -> int:
    config = load_config_or_exit(args.config)
    if args.command == "clear" and not args.yes:
        print("pyspamc: clear forgets every learned message and token; run it again with "
              "--yes (pyspamc backup FILE first keeps a copy)", file=sys.stderr)
        return EXIT_USAGE
    try:
        with open_storage(config.storage, create=args.command != "backup") as storage:
            if args.command == "backup":
                counts = write_backup(storage, Path(args.file))
                print(f"backup: {args.file}: {_summary(counts)}")
            elif args.command == "restore":
                header, counts = restore_backup(storage, Path(args.file))
                print(f"restored: {args.file} (from {header.get('from')}, "
                      f"{header.get('created')}): {_summary(counts)}")
            else:
                storage.bayes_clear()
                print("cleared: the Bayes store is empty")
    except (StorageError, BackupError) as exc:
        print(f"pyspamc: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        print(f"pyspamc: {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
