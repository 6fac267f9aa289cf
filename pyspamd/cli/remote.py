"""pyspamc -h HOST:PORT: the same commands over the controller's HTTP API, as rspamc does.

Messages are read here and sent one per request, up to -n requests at a time (one
keep-alive connection per thread); output comes in input order and in the same formats
as the in-process commands.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any
from urllib.parse import urlencode

from pyspamd.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from pyspamd.cli.learn import LEARN_ORDER, Progress, Summary, other_class_refusal
from pyspamd.config import split_host_port
from pyspamd.result import ScanResult, Symbol, text_report
from pyspamd.sources import MessageSource, count_files, iter_messages, not_a_message
from pyspamd.stats.render import counter_output, history_output, stat_lines
from pyspamd.storage.base import LearnOutcome

DEFAULT_PORT = 11334
COMMANDS = ("symbols", "explain", "learn_spam", "learn_ham", "stat", "history", "counters",
            "fuzzy_add", "fuzzy_del")


class ControllerError(Exception):
    pass


class Client:
    """One keep-alive connection per thread to the controller."""

    def __init__(self, address: str, password: str | None, timeout: float = 60.0) -> None:
        try:
            self.host, self.port = split_host_port(address)
        except ValueError:
            self.host, self.port = address.strip("[]"), DEFAULT_PORT
        self.address = address
        self.password = password
        self.timeout = timeout
        self._local = threading.local()

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection(self.host, self.port,
                                                                 timeout=self.timeout)
        return conn

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: list[tuple[str, str]] | None = None) -> Any:
        """The JSON answer; ControllerError with the controller's own reason otherwise."""
        for attempt in (1, 2):
            conn = self._conn()
            try:
                conn.putrequest(method, path)
                for name, value in [*(headers or []), *self._auth()]:
                    conn.putheader(name, value)
                conn.putheader("Content-Length", str(len(body or b"")))
                conn.endheaders(body or b"")
                response = conn.getresponse()
                data = response.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError,
                    ConnectionResetError) as exc:
                conn.close()
                self._local.conn = None
                if attempt == 2:  # a kept-alive connection the server closed: retry once
                    raise ControllerError(f"controller {self.address}: {exc}") from exc
            except OSError as exc:
                conn.close()
                self._local.conn = None
                raise ControllerError(f"cannot reach the controller at {self.address}: "
                                      f"{exc}") from exc
        try:
            answer = json.loads(data) if data else {}
        except ValueError:
            answer = {"error": data[:200].decode("utf-8", "replace")}
        if response.status >= 400:
            reason = answer.get("error") if isinstance(answer, dict) else None
            raise ControllerError(f"controller {self.address}: {response.status} "
                                  f"{reason or response.reason}")
        return answer

    def _auth(self) -> list[tuple[str, str]]:
        return [("Password", self.password)] if self.password else []


def _ordered(client: Client, parallel: int, items: Iterable[MessageSource],
             work: Callable[[MessageSource], Any]) -> Iterator[tuple[MessageSource, Any]]:
    """Run `work` on up to `parallel` items at once; yield (item, result or exception) in
    input order, never holding more than 2 x parallel messages in memory."""
    window: deque[tuple[MessageSource, Future[Any]]] = deque()
    with ThreadPoolExecutor(max(1, parallel)) as pool:
        for item in items:
            window.append((item, pool.submit(work, item)))
            if len(window) >= 2 * max(1, parallel):
                yield _take(window)
        while window:
            yield _take(window)


def _take(window: deque[tuple[MessageSource, Future[Any]]]) -> tuple[MessageSource, Any]:
    item, future = window.popleft()
    try:
        return item, future.result()
    except Exception as exc:
        return item, exc


def _result_from_json(data: dict[str, Any]) -> ScanResult:
    symbols = {name: Symbol(name, s["score"], list(s.get("options", [])))
               for name, s in data["symbols"].items()}
    return ScanResult(action=data["action"], score=data["score"],
                      required_score=data["required_score"], spam_score=0.0,
                      symbols=symbols, message=data.get("message", ""),
                      scan_time=data.get("scan_time", 0.0), errors=data.get("errors", []),
                      message_id=data.get("message_id", ""),
                      settings=data.get("settings", ""))


def cmd_symbols(args: argparse.Namespace, client: Client) -> int:
    envelope = [("IP", args.ip), ("From", args.mail_from), ("Helo", args.helo),
                ("Hostname", args.hostname), ("User", args.user), ("Queue-Id", args.queue_id)]
    headers = [(k, v) for k, v in envelope if v] + [("Rcpt", r) for r in args.rcpt]
    path = "/checkv2" + ("?" + urlencode({"headers": "1"}) if args.headers else "")

    def scan(source: MessageSource) -> dict[str, Any]:
        assert source.data is not None
        return client.request("POST", path, source.data, headers)

    failed, first = 0, True
    readable = (s for s in iter_messages(args.paths))
    for source, answer in _ordered(client, args.parallel, readable, _skip_errors(scan)):
        error = source.error or (str(answer) if isinstance(answer, Exception) else None)
        if error is not None:
            failed += 1
            if args.json:
                print(json.dumps({"file": source.label, "error": error}))
            else:
                print(f"Error for file: {source.label}: {error}", file=sys.stderr)
            if isinstance(answer, ControllerError) and "cannot reach" in error:
                return EXIT_FAILED
            continue
        if args.json:
            print(json.dumps({"file": source.label, **answer}, ensure_ascii=False))
            continue
        if not first:
            print()
        first = False
        print(text_report(source.label, _result_from_json(answer)))
        for name, value in answer.get("headers", {}).items():
            print(f"{name}: {value}")
    return EXIT_FAILED if failed else EXIT_OK


def _skip_errors(work: Callable[[MessageSource], Any]) -> Callable[[MessageSource], Any]:
    """Unreadable sources are reported by the caller, not sent."""
    def run(source: MessageSource) -> Any:
        if source.error is not None or source.data is None:
            return None
        return work(source)
    return run


def cmd_explain(args: argparse.Namespace, client: Client) -> int:
    from pyspamd.explain import render_text

    def explain(source: MessageSource) -> Any:
        assert source.data is not None
        return client.request("POST", "/explain", source.data)

    failed = 0
    first = True
    for source, answer in _ordered(client, args.parallel, iter_messages(args.paths),
                                   _skip_errors(explain)):
        if source.error is not None or isinstance(answer, Exception):
            failed += 1
            print(f"Error for file: {source.label}: {source.error or answer}", file=sys.stderr)
            continue
        answer["file"] = source.label
        if args.json:
            print(json.dumps(answer, ensure_ascii=False))
            continue
        if not first:
            print()
        first = False
        print("\n".join(render_text(answer)))
    return EXIT_FAILED if failed else EXIT_OK


def cmd_learn(args: argparse.Namespace, client: Client) -> int:
    if getattr(args, "rescore", None) is not None:
        print("pyspamc: --rescore works in-process only (run it on the host of the store)",
              file=sys.stderr)
        return EXIT_USAGE
    label = "spam" if args.command == "learn_spam" else "ham"
    refusal = other_class_refusal(args, label)
    if refusal is not None:
        print(refusal, file=sys.stderr)
        return EXIT_FAILED
    cutoff = time.time() - args.newer_than if args.newer_than is not None else None

    def learn(source: MessageSource) -> str:
        assert source.data is not None
        reason = not_a_message(source.data)
        if reason is not None:
            raise ControllerError(reason)
        return str(client.request("POST", f"/learn{label}", source.data)["outcome"])

    def wanted(source: MessageSource) -> bool:
        return cutoff is None or source.mtime is None or source.mtime >= cutoff

    summary = Summary()
    progress = Progress(sys.stderr.isatty(), count_files(args.paths))
    for source, answer in _ordered(client, args.parallel,
                                   filter(wanted, iter_messages(args.paths)),
                                   _skip_errors(learn)):
        if source.error is not None:
            summary.fail(source.label, source.error)
        elif isinstance(answer, Exception):
            summary.fail(source.label, str(answer))
            if "cannot reach" in str(answer):
                break
        else:
            summary.add(LearnOutcome(answer))
        progress.show(source, summary, LEARN_ORDER)
    progress.end()
    print(summary.line(LEARN_ORDER))
    for name, reason in summary.failed:
        print(f"failed: {name}: {reason}")
    return EXIT_FAILED if summary.failed else EXIT_OK


def cmd_fuzzy(args: argparse.Namespace, client: Client) -> int:
    adding = args.command == "fuzzy_add"
    headers = [("Flag", str(args.flag))]
    if adding:
        headers.append(("Weight", repr(args.weight)))
    path = "/fuzzyadd" if adding else "/fuzzydel"

    def send(source: MessageSource) -> dict[str, Any]:
        assert source.data is not None
        reason = not_a_message(source.data)
        if reason is not None:
            raise ControllerError(reason)
        return client.request("POST", path, source.data, headers)

    messages = hashes = changed = 0
    failed: list[tuple[str, str]] = []
    for source, answer in _ordered(client, args.parallel, iter_messages(args.paths),
                                   _skip_errors(send)):
        if source.error is not None:
            failed.append((source.label, source.error))
        elif isinstance(answer, Exception):
            failed.append((source.label, str(answer)))
            if "cannot reach" in str(answer):
                break
        else:
            messages += 1
            hashes += int(answer["hashes"])
            changed += int(answer["new" if adding else "deleted"])
    print(f"messages: {messages}, hashes: {hashes}, {'new' if adding else 'deleted'}: "
          f"{changed}, failed: {len(failed)}")
    for name, reason in failed:
        print(f"failed: {name}: {reason}")
    return EXIT_FAILED if failed else EXIT_OK


def run(args: argparse.Namespace) -> int:
    client = Client(args.host, args.password, timeout=args.timeout)
    try:
        if args.command == "symbols":
            return cmd_symbols(args, client)
        if args.command == "explain":
            return cmd_explain(args, client)
        if args.command in ("learn_spam", "learn_ham"):
            return cmd_learn(args, client)
        if args.command in ("fuzzy_add", "fuzzy_del"):
            return cmd_fuzzy(args, client)
        if args.command == "stat":
            lines = stat_lines(client.request("GET", "/stat"))
        elif args.command == "history":
            rows = client.request("GET", f"/history?limit={args.limit}")["rows"]
            lines = history_output(rows, args.json)
        else:
            lines = counter_output(client.request("GET", "/symbols")["symbols"], args.json)
    except ControllerError as exc:
        print(f"pyspamc: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print("\n".join(lines))
    return EXIT_OK
