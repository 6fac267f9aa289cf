"""pyspamc fuzzy_add / fuzzy_del: store or forget the fuzzy hashes of reported messages."""

from __future__ import annotations

import argparse
import sys

from pyspamd.cli.common import EXIT_FAILED, EXIT_OK, load_config_or_exit
from pyspamd.cli.learn import not_a_message
from pyspamd.config import Config
from pyspamd.fuzzy.store import fuzzy_add, fuzzy_delete
from pyspamd.sources import iter_messages
from pyspamd.storage import StorageError, open_storage
from pyspamd.storage.base import FuzzyStore
from pyspamd.task import Task

COMMANDS = ("fuzzy_add", "fuzzy_del")


def add_commands(commands: argparse._SubParsersAction) -> None:
    for name, what in (("fuzzy_add", "store the fuzzy hashes of messages (reported spam)"),
                       ("fuzzy_del", "forget the fuzzy hashes of messages")):
        p = commands.add_parser(name, add_help=False, help=what)
        p.add_argument("--help", action="help", help="show this help and exit")
        p.add_argument("-f", "--flag", type=int, default=1, metavar="FLAG",
                       help="flag number; [fuzzy.flags] gives each its symbol (default 1: "
                            "FUZZY_DENIED)")
        if name == "fuzzy_add":
            p.add_argument("-w", "--weight", type=float, default=1.0, metavar="WEIGHT",
                           help="weight added to each hash (default 1)")
        p.add_argument("paths", nargs="+", metavar="PATH",
                       help="Maildir, Maildir++ folder, directory, mbox, file, or - for stdin")


def run(args: argparse.Namespace) -> int:
    config = load_config_or_exit(args.config)
    if str(args.flag) not in config.fuzzy.flags:
        print(f"pyspamc: flag {args.flag} is not in [fuzzy.flags] (known: "
              f"{', '.join(sorted(config.fuzzy.flags))}); a scan would not score it",
              file=sys.stderr)
        return EXIT_FAILED
    adding = args.command == "fuzzy_add"
    storage = open_storage(config.storage, create=adding)
    try:
        return _run(storage, config, args, adding)
    except StorageError as exc:
        print(f"pyspamc: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        storage.close()


def _run(storage: FuzzyStore, config: Config, args: argparse.Namespace, adding: bool) -> int:
    messages = hashes = changed = 0
    skipped: list[str] = []
    failed: list[tuple[str, str]] = []
    for source in iter_messages(args.paths):
        if source.error is not None or source.data is None:
            failed.append((source.label, source.error or "unreadable"))
            continue
        reason = not_a_message(source.data)
        if reason is not None:
            failed.append((source.label, reason))
            continue
        try:
            task = Task(source.data)
            if adding:
                found, count = fuzzy_add(storage, task, config.fuzzy, args.flag, args.weight)
            else:
                found, count = fuzzy_delete(storage, task, config.fuzzy, args.flag)
        except StorageError:
            raise
        except Exception as exc:  # one odd message must not stop a run of thousands
            failed.append((source.label, f"cannot parse: {type(exc).__name__}: {exc}"))
            continue
        if not found:
            skipped.append(source.label)
            continue
        messages += 1
        hashes += found
        changed += count
    verb = "new" if adding else "deleted"
    print(f"messages: {messages}, hashes: {hashes}, {verb}: {changed}, "
          f"nothing to hash: {len(skipped)}, failed: {len(failed)}")
    for name in skipped:
        print(f"nothing to hash: {name}: too little text, and no attachment or image of "
              f"[fuzzy] min_bytes ({config.fuzzy.min_bytes}) or more")
    for name, why in failed:
        print(f"failed: {name}: {why}")
    return EXIT_FAILED if failed else EXIT_OK
