"""pyspamc: the admin's client, shaped like rspamd's rspamc."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from pyspamd.cli import dkim, evaluate, learn, policy, remote, rescore, statistics
from pyspamd.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    load_config_or_exit,
    scanner_or_exit,
)
from pyspamd.result import ScanResult, result_headers, rewrite_subject
from pyspamd.scanner import Scanner
from pyspamd.sources import iter_messages
from pyspamd.task import Envelope


def _parser() -> argparse.ArgumentParser:
    # -h stays free for "-h HOST:PORT" (the controller), as in rspamc; --help prints help.
    parser = argparse.ArgumentParser(
        prog="pyspamc", add_help=False, description="pyspamd admin client"
    )
    parser.add_argument("--help", action="help", help="show this help and exit")
    parser.add_argument("--config", "-c", metavar="PATH",
                        help="config file (default: $PYSPAMD_CONFIG or /etc/pyspamd/pyspamd.toml)")
    parser.add_argument("-h", "--connect", dest="host", metavar="HOST[:PORT]",
                        help="talk to the controller there (port 11334 by default) instead "
                             "of working in-process")
    parser.add_argument("-P", "--password", metavar="PASSWORD",
                        help="controller password (or $PYSPAMC_PASSWORD)")
    parser.add_argument("-n", "--parallel", type=int, default=8, metavar="N",
                        help="requests at a time to the controller (default 8)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    symbols = commands.add_parser(
        "symbols", add_help=False, help="scan messages and show the symbols that hit"
    )
    symbols.add_argument("--help", action="help", help="show this help and exit")
    symbols.add_argument("--json", "-j", action="store_true", help="one JSON object per message")
    symbols.add_argument("--headers", action="store_true",
                         help="also print the headers the milter would add")
    symbols.add_argument("--ip", "-i", help="client IP address")
    symbols.add_argument("--from", "-F", dest="mail_from", help="envelope sender (MAIL FROM)")
    symbols.add_argument("--rcpt", "-r", action="append", default=[], help="envelope recipient")
    symbols.add_argument("--helo", help="HELO/EHLO name")
    symbols.add_argument("--hostname", help="client host name (reverse DNS)")
    symbols.add_argument("--user", "-u", help="authenticated user (SASL login)")
    symbols.add_argument("--queue-id", help="queue id")
    symbols.add_argument("paths", nargs="+", metavar="PATH",
                         help="file, directory, Maildir, mbox, or - for stdin")
    explain = commands.add_parser(
        "explain", add_help=False,
        help="why a message gets its verdict: each symbol's rule, match, score and source")
    explain.add_argument("--help", action="help", help="show this help and exit")
    explain.add_argument("--json", "-j", action="store_true", help="one JSON object per message")
    explain.add_argument("--tokens", type=int, default=10, metavar="N",
                         help="Bayes tokens shown each way (default 10)")
    explain.add_argument("paths", nargs="+", metavar="PATH",
                         help="file, directory, Maildir, mbox, or - for stdin")
    learn.add_commands(commands)
    statistics.add_commands(commands)
    evaluate.add_command(commands)
    rescore.add_command(commands)
    policy.add_commands(commands)
    dkim.add_command(commands)
    return parser


def print_text(label: str, result: ScanResult) -> None:
    print(f"Results for file: {label} ({result.scan_time:.3f} seconds)")
    print("[Metric: default]")
    print(f"Action: {result.action}")
    print(f"Spam: {'true' if result.is_spam else 'false'}")
    print(f"Score: {result.score:.2f} / {result.required_score:.2f}")
    for symbol in result.sorted_symbols():
        print(f"Symbol: {symbol.name} ({symbol.score:.2f})"
              + (f"[{','.join(symbol.options)}]" if symbol.options else ""))
    if result.message:
        print(f"Message: {result.message}")
    if result.message_id:
        print(f"Message-ID: {result.message_id}")
    for error in result.errors:
        print(f"Check error: {error}")


def _headers_for(scanner: Scanner, result: ScanResult) -> list[tuple[str, str]]:
    headers = result_headers(result, scanner.config.headers)
    if result.action == "rewrite subject":
        headers.append(
            ("Subject", rewrite_subject(result.subject, scanner.config.actions.subject_template))
        )
    return headers


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
                out["headers"] = dict(task.add_headers + _headers_for(scanner, result))
            print(json.dumps(out, ensure_ascii=False))
            continue
        if not first:
            print()
        first = False
        print_text(source.label, result)
        if args.headers:
            for name, value in task.add_headers + _headers_for(scanner, result):
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
    args = _parser().parse_args(argv)
    try:
        if args.host and args.command in remote.COMMANDS:
            args.password = args.password or os.environ.get("PYSPAMC_PASSWORD")
            return remote.run(args)
        if args.host and args.command not in statistics.NEEDS_NO_DAEMON:
            print(f"pyspamc: {args.command} works in-process only; run it without -h",
                  file=sys.stderr)
            return EXIT_USAGE
        if args.command in statistics.COMMANDS:
            return statistics.run(args)
        if args.command == "symbols":
            return cmd_symbols(args)
        if args.command == "explain":
            return cmd_explain(args)
        if args.command in ("learn_spam", "learn_ham", "unlearn"):
            return learn.cmd_learn(args)
        if args.command == "stat":
            return learn.cmd_stat(args)
        if args.command == "expire":
            return learn.cmd_expire(args)
        if args.command == "eval":
            return evaluate.cmd_eval(args)
        if args.command == "rescore":
            return rescore.cmd_rescore(args, list(sys.argv[1:] if argv is None else argv))
        if args.command in policy.COMMANDS:
            return policy.run(args)
        if args.command == "dkim-keygen":
            return dkim.cmd_keygen(args)
    except BrokenPipeError:  # `pyspamc symbols DIR | head` is normal use
        sys.stderr.close()
        return EXIT_OK
    return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
