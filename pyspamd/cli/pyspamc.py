"""pyspamc: the admin's client, shaped like rspamd's rspamc."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Sequence

from pyspamd import __version__
from pyspamd.cli import (
    backup,
    dkim,
    evaluate,
    fuzzy,
    learn,
    model_train,
    policy,
    quarantine,
    remote,
    rescore,
    statistics,
    update,
)
from pyspamd.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    load_config_or_exit,
    scanner_or_exit,
)
from pyspamd.permissions import give_store_back, store_problems
from pyspamd.result import header_changes, text_report
from pyspamd.sources import iter_messages
from pyspamd.task import Envelope

# Options that work before or after the command, as rspamc's do: (spellings, takes a value).
GLOBAL_OPTIONS: tuple[tuple[tuple[str, ...], bool], ...] = (
    (("-c", "--config"), True), (("-h", "--connect"), True), (("-P", "--password"), True),
    (("-n", "--parallel"), True), (("-t", "--timeout"), True), (("-i", "--ip"), True),
    (("-F", "--from"), True), (("-r", "--rcpt"), True), (("-u", "--user"), True),
    (("-H", "--helo"), True), (("-j", "--json"), False),
)
DEFAULT_COMMAND = "symbols"  # `pyspamc FILE...`, as `rspamc FILE...`
# In-process commands that read or write the store: its permissions are checked first, so
# a store of another user is one line, not a scan that silently goes without Bayes.
IN_PROCESS_STORE = ("symbols", "learn_spam", "learn_ham", "unlearn", "stat", "expire",
                    "history", "counters", "backup", "restore", "clear", "explain",
                    "fuzzy_add", "fuzzy_del")


def _parser() -> tuple[argparse.ArgumentParser, set[str]]:
    # -h stays free for "-h HOST:PORT" (the controller), as in rspamc; --help prints help.
    parser = argparse.ArgumentParser(
        prog="pyspamc", add_help=False,
        usage="pyspamc [OPTIONS] [COMMAND] [OPTIONS] [FILE ...]",
        description="pyspamd's admin client, shaped like rspamc: scan, learn, show statistics, "
                    "back up the Bayes store. The options below work before or after the "
                    "command; without a command, FILE... is scanned (symbols).",
        epilog="Examples: pyspamc message.eml; pyspamc -h 127.0.0.1 -j symbols DIR; "
               "pyspamc learn_spam ~/Maildir/.Junk; pyspamc backup /root/bayes.jsonl.gz. "
               "More: man pyspamc.",
    )
    parser.add_argument("--help", action="help", help="show this help and exit")
    parser.add_argument("--version", action="version", version=f"pyspamc {__version__}")
    parser.add_argument("--config", "-c", metavar="PATH",
                        help="config file (default: $PYSPAMD_CONFIG or /etc/pyspamd/pyspamd.toml)")
    parser.add_argument("-h", "--connect", dest="host", metavar="HOST[:PORT]",
                        help="talk to the controller there (port 11334 by default) instead "
                             "of working in-process")
    parser.add_argument("-P", "--password", metavar="PASSWORD",
                        help="controller password (or $PYSPAMC_PASSWORD)")
    parser.add_argument("-n", "--parallel", type=int, default=8, metavar="N",
                        help="requests at a time to the controller (default 8)")
    parser.add_argument("-t", "--timeout", type=float, default=60.0, metavar="SECONDS",
                        help="seconds to wait for the controller's answer (default 60)")
    parser.add_argument("--json", "-j", action="store_true",
                        help="JSON output: one object per message, scan or symbol")
    parser.add_argument("--ip", "-i", help="client IP address")
    parser.add_argument("--from", "-F", dest="mail_from", help="envelope sender (MAIL FROM)")
    parser.add_argument("--rcpt", "-r", action="append", default=[],
                        help="envelope recipient (repeat for more)")
    parser.add_argument("--helo", "-H", help="HELO/EHLO name")
    parser.add_argument("--user", "-u", help="authenticated user (SASL login)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    symbols = commands.add_parser(
        "symbols", add_help=False, help="scan messages and show the symbols that hit"
    )
    symbols.add_argument("--help", action="help", help="show this help and exit")
    symbols.add_argument("--headers", action="store_true",
                         help="also print the headers the milter would add")
    symbols.add_argument("--hostname", help="client host name (reverse DNS)")
    symbols.add_argument("--queue-id", help="queue id")
    symbols.add_argument("paths", nargs="+", metavar="PATH",
                         help="file, directory, Maildir, mbox, or - for stdin")
    explain = commands.add_parser(
        "explain", add_help=False,
        help="why a message gets its verdict: each symbol's rule, match, score and source")
    explain.add_argument("--help", action="help", help="show this help and exit")
    explain.add_argument("--tokens", type=int, default=10, metavar="N",
                         help="Bayes tokens shown each way (default 10)")
    explain.add_argument("paths", nargs="+", metavar="PATH",
                         help="file, directory, Maildir, mbox, or - for stdin")
    learn.add_commands(commands)
    fuzzy.add_commands(commands)
    backup.add_commands(commands)
    statistics.add_commands(commands)
    evaluate.add_command(commands)
    rescore.add_command(commands)
    model_train.add_command(commands)
    policy.add_commands(commands)
    dkim.add_command(commands)
    update.add_command(commands)
    quarantine.add_commands(commands)
    return parser, set(commands.choices)


def _global_option(arg: str) -> tuple[bool, bool]:
    """(is a global option, takes a separate value) for one argument."""
    for spellings, takes_value in GLOBAL_OPTIONS:
        for spelling in spellings:
            if arg == spelling:
                return True, takes_value
            if takes_value and spelling.startswith("--") and arg.startswith(spelling + "="):
                return True, False
            if takes_value and len(spelling) == 2 and arg.startswith(spelling) \
                    and not arg.startswith("--"):
                return True, False  # -i1.2.3.4
    return False, False


def rspamc_argv(argv: Sequence[str], command_names: set[str]) -> list[str]:
    """Global options moved before the command, and `symbols` put in when no command is
    named, so argparse sees one shape: `pyspamc GLOBALS COMMAND ARGS`."""
    hoisted: list[str] = []
    rest: list[str] = []
    items = list(argv)
    i = 0
    while i < len(items):
        arg = items[i]
        if arg == "--":
            rest.extend(items[i:])
            break
        is_global, takes_value = _global_option(arg)
        if is_global:
            hoisted.append(arg)
            if takes_value and i + 1 < len(items):
                hoisted.append(items[i + 1])
                i += 1
        else:
            rest.append(arg)
        i += 1
    first = next((a for a in rest if a == "-" or not a.startswith("-")), None)
    if first is not None and first not in command_names:
        rest.insert(rest.index(first), DEFAULT_COMMAND)
    return hoisted + rest



def cmd_symbols(args: argparse.Namespace) -> int:
    scanner = scanner_or_exit(load_config_or_exit(args.config))
    envelope = Envelope(
        client_ip=args.ip, client_hostname=args.hostname, helo=args.helo,
        mail_from=args.mail_from, rcpts=tuple(args.rcpt), user=args.user, queue_id=args.queue_id,
    )
    failed = 0
    first = True
    for source in iter_messages(args.paths):
        if source.error is not None or source.data is None:
            failed += 1
            if args.json:
                print(json.dumps({"file": source.label, "error": source.error}))
            else:
                print(f"Error for file: {source.label}: {source.error}", file=sys.stderr)
            continue
        try:
            task = scanner.task(source.data, envelope)
            result = scanner.scan_task(task)
        except Exception as exc:  # report, and go on with the next message
            failed += 1
            reason = f"scan failed: {type(exc).__name__}: {exc}"
            if args.json:
                print(json.dumps({"file": source.label, "error": reason}))
            else:
                print(f"Error for file: {source.label}: {reason}", file=sys.stderr)
            continue
        if args.json:
            out = result.to_json(source.label)
            if args.headers:
                out["headers"] = dict(
                    header_changes(result, task.add_headers, scanner.config).listing())
            print(json.dumps(out, ensure_ascii=False))
            continue
        if not first:
            print()
        first = False
        print(text_report(source.label, result))
        if args.headers:
            for name, value in header_changes(result, task.add_headers,
                                              scanner.config).listing():
                print(f"{name}: {value}")
    return EXIT_FAILED if failed else EXIT_OK


def cmd_explain(args: argparse.Namespace) -> int:
    from pyspamd.explain import explain, render_text

    scanner = scanner_or_exit(load_config_or_exit(args.config))
    failed = 0
    for number, source in enumerate(iter_messages(args.paths)):
        if source.error is not None or source.data is None:
            failed += 1
            print(f"Error for file: {source.label}: {source.error}", file=sys.stderr)
            continue
        try:
            why = explain(scanner, scanner.task(source.data), args.tokens)
        except Exception as exc:  # report, and go on with the next message
            failed += 1
            print(f"Error for file: {source.label}: scan failed: {type(exc).__name__}: {exc}",
                  file=sys.stderr)
            continue
        data = why.to_json(source.label)
        if args.json:
            print(json.dumps(data, ensure_ascii=False))
            continue
        if number:
            print()
        print("\n".join(render_text(data)))
    return EXIT_FAILED if failed else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser, names = _parser()
    args = parser.parse_args(rspamc_argv(sys.argv[1:] if argv is None else argv, names))
    try:
        if args.host and args.command in remote.COMMANDS:
            args.password = args.password or os.environ.get("PYSPAMC_PASSWORD")
            return remote.run(args)
        if args.host and args.command not in statistics.NEEDS_NO_DAEMON:
            print(f"pyspamc: {args.command} works in-process only; run it without -h",
                  file=sys.stderr)
            return EXIT_USAGE
        if args.command in IN_PROCESS_STORE:
            problems = store_problems(load_config_or_exit(args.config))
            if problems:
                for line in problems:
                    print(f"pyspamc: {line}", file=sys.stderr)
                return EXIT_FAILED
        if args.command in backup.COMMANDS:
            return backup.run(args)
        if args.command in statistics.COMMANDS:
            return statistics.run(args)
        if args.command == "symbols":
            return cmd_symbols(args)
        if args.command == "explain":
            return cmd_explain(args)
        if args.command in ("learn_spam", "learn_ham", "unlearn"):
            return learn.cmd_learn(args)
        if args.command in fuzzy.COMMANDS:
            return fuzzy.run(args)
        if args.command == "stat":
            return learn.cmd_stat(args)
        if args.command == "expire":
            return learn.cmd_expire(args)
        if args.command == "eval":
            return evaluate.cmd_eval(args)
        if args.command == "rescore":
            return rescore.cmd_rescore(args, list(sys.argv[1:] if argv is None else argv))
        if args.command == "model-train":
            return model_train.cmd_model_train(args)
        if args.command in policy.COMMANDS:
            return policy.run(args)
        if args.command == "dkim-keygen":
            return dkim.cmd_keygen(args)
        if args.command == "update":
            return update.cmd_update(args)
        if args.command in quarantine.COMMANDS:
            return quarantine.run(args)
    except BrokenPipeError:  # `pyspamc symbols DIR | head` is normal use
        sys.stderr.close()
        return EXIT_OK
    finally:
        if args.command in IN_PROCESS_STORE and not args.host:
            with contextlib.suppress(SystemExit, OSError):
                give_store_back(load_config_or_exit(args.config))
    return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
