"""pyspamc quarantine list|show|release|delete|expire: the messages pyspamd holds."""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pyspamd.cli.common import EXIT_FAILED, EXIT_OK, load_config_or_exit
from pyspamd.config import Config
from pyspamd.logsetup import setup_admin_logging
from pyspamd.permissions import give_back
from pyspamd.quarantine.release import KEY_FILE, release
from pyspamd.quarantine.store import Entry, QuarantineError, QuarantineStore

log = logging.getLogger("pyspamd.quarantine")
COMMANDS = ("quarantine",)


def add_commands(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("quarantine", add_help=False,
                            help="list, show, release or delete held messages; expire old ones")
    p.add_argument("--help", action="help", help="show this help and exit")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", add_help=False, help="held messages, newest first")
    listing.add_argument("--all", action="store_true", help="released messages too")
    listing.add_argument("--limit", type=int, default=100, metavar="N",
                         help="at most N messages (default 100)")
    show = actions.add_parser("show", add_help=False,
                              help="one message's entry (--raw: the message)")
    show.add_argument("--raw", action="store_true", help="the message itself")
    release_p = actions.add_parser(
        "release", add_help=False, help="send back to the MTA with the original envelope")
    release_p.add_argument("--learn-ham", action="store_true",
                           help="also learn the messages as ham (as [quarantine] "
                                "learn_ham_on_release does)")
    delete = actions.add_parser("delete", add_help=False, help="delete held messages")
    for sub in (show, release_p, delete):
        sub.add_argument("ids", nargs="+", metavar="ID", help="quarantine ids (from list)")
    expire = actions.add_parser("expire", add_help=False,
                                help="delete what is past [quarantine] expire_days")
    for sub in (listing, show, release_p, delete, expire):
        sub.add_argument("--help", action="help", help="show this help and exit")


def who() -> str:
    """The admin releasing, as the log names them: the login behind sudo, if any."""
    user = getpass.getuser()
    sudo = os.environ.get("SUDO_USER")
    return f"{sudo} (sudo {user}, pyspamc)" if sudo and sudo != user else f"{user} (pyspamc)"


def ham_learner(config: Config) -> Callable[[bytes], str]:
    def learn(raw: bytes) -> str:
        from pyspamd.checks.bayes import bayes_on
        from pyspamd.storage import open_storage
        from pyspamd.storage.base import HAM
        from pyspamd.task import Task

        storage = open_storage(config.storage)
        try:
            bayes = bayes_on(config, storage)
            outcome = bayes.learn_tokens(bayes.tokens(Task(raw)), HAM)
            bayes.fit_model()
            return outcome.value
        finally:
            storage.close()

    return learn


def _line(entry: Entry) -> str:
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(entry.time))
    return (f"{entry.id}  {when}  {entry.score:6.2f}  <{entry.sender}> -> "
            f"{','.join(entry.rcpts)}  {entry.size}B  {entry.reason}"
            + (f"  [released by {entry.released_by}]" if entry.status != "held" else ""))


def run(args: argparse.Namespace) -> int:
    config = load_config_or_exit(args.config)
    store = QuarantineStore(config.quarantine)
    try:
        return _run(args, config, store)
    finally:
        # Run as root, what it wrote stays the daemon's, or the milter could no longer hold
        # mail (and would fall back to fallback_action).
        index = store.index
        give_back(store.dir, [index, Path(f"{index}-wal"), Path(f"{index}-shm"),
                              store.dir / KEY_FILE])


def _run(args: argparse.Namespace, config: Config, store: QuarantineStore) -> int:
    try:
        if args.action == "list":
            entries = ([] if not store.index.exists()
                       else store.list(args.limit, include_released=args.all))
            if args.json:
                print(json.dumps([e.to_json() for e in entries], ensure_ascii=False))
            else:
                for entry in entries:
                    print(_line(entry))
                print(f"{len(entries)} message(s) in {store.dir}")
            return EXIT_OK
        if args.action == "expire":
            count = store.expire() if store.index.exists() else 0
            print(f"expired {count} held message(s) from the quarantine")
            return EXIT_OK
    except QuarantineError as exc:
        print(f"pyspamc: {exc}", file=sys.stderr)
        return EXIT_FAILED
    setup_admin_logging(config.logging, config.path)
    failed = 0
    wants_ham = getattr(args, "learn_ham", False) or config.quarantine.learn_ham_on_release
    learn = ham_learner(config) if args.action == "release" and wants_ham else None
    for message_id in args.ids:
        try:
            failed += _one(store, config, args, message_id, learn)
        except QuarantineError as exc:
            print(f"pyspamc: {exc}", file=sys.stderr)
            failed += 1
    return EXIT_FAILED if failed else EXIT_OK


def _one(store: QuarantineStore, config: Config, args: argparse.Namespace, message_id: str,
         learn: Callable[[bytes], str] | None) -> int:
    if args.action == "show":
        entry = store.get(message_id)
        if args.raw:
            sys.stdout.buffer.write(store.read(message_id))
        elif args.json:
            print(json.dumps(entry.to_json(), ensure_ascii=False))
        else:
            print(_line(entry))
            print(f"Subject: {entry.subject}\nMessage-ID: {entry.message_id}\n"
                  f"Queue-ID: {entry.queue_id}\nAction: {entry.action}\n"
                  f"Expires: {time.strftime('%Y-%m-%d %H:%M', time.localtime(entry.expires))}")
            for name, options in entry.symbols.items():
                print(f"Symbol: {name}" + (f"[{','.join(options)}]" if options else ""))
        return 0
    if args.action == "release":
        by = who()
        reply = release(store, config.quarantine, message_id, by, learn)
        print(f"{message_id}: released by {by} to {config.quarantine.release_smtp}: "
              f"{reply.strip()}")
        return 0
    store.delete(message_id)
    log.info("quarantine: %s deleted by %s", message_id, who())
    print(f"{message_id}: deleted")
    return 0
