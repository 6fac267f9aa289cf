"""The controller's HTTP API (aiohttp): rspamd-style endpoints over the one scan pipeline.

Scans and learns are CPU work and storage round trips, so they run in a small thread pool;
the event loop stays free for /healthy, /metrics and the page while a big message scans.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import json
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from pyspamd.checks.bayes import bayes_from_config
from pyspamd.classifiers.bayes import Bayes
from pyspamd.cli.learn import not_a_message
from pyspamd.cli.statistics import symbol_rows
from pyspamd.config import Config
from pyspamd.controller.auth import Access
from pyspamd.rescore.vectors import keep_vector
from pyspamd.result import ScanResult, result_headers, rewrite_subject
from pyspamd.scanner import Scanner, reload_pipeline
from pyspamd.stats import keys, prometheus
from pyspamd.stats.reader import StatsReader
from pyspamd.stats.recorder import ScanRecorder
from pyspamd.storage import open_storage
from pyspamd.storage.base import HAM, SPAM, LearnOutcome, StorageError
from pyspamd.storage.redis_store import redacted
from pyspamd.task import Envelope, Task

log = logging.getLogger("pyspamd.controller")

READ, WRITE, PUBLIC = "read", "write", ""
# The page's files, by URL name; nothing from a URL is ever joined to a file-system path.
STATIC = {"app.js": "application/javascript", "app.css": "text/css",
          "favicon.svg": "image/svg+xml"}
_SECRET_WORDS = ("password", "secret")


def redact_config(config: Config) -> dict[str, Any]:
    """The config in force for the page: password hashes and secrets replaced by "***"."""

    def clean(value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {k: clean(v, k) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v, key) for v in value]
        if isinstance(value, Path):
            return str(value)
        if any(word in key for word in _SECRET_WORDS) and value:
            return "***"
        return value

    data = clean(dataclasses.asdict(config))
    data["storage"]["redis_url"] = redacted(config.storage.redis_url)
    return data


class Controller:
    """What the handlers share; rebuilt parts on SIGHUP keep the old ones if the new fail."""

    def __init__(self, config_path: Path | None, config: Config,
                 scanner: Scanner | None = None) -> None:
        self.config_path = config_path
        self.started = time.time()
        self.executor = ThreadPoolExecutor(config.controller.scan_threads,
                                           thread_name_prefix="controller")
        self._apply(config, scanner or Scanner.from_config(config))

    def _apply(self, config: Config, scanner: Scanner) -> None:
        self.config = config
        self.scanner = scanner
        c = config.controller
        self.access = Access(c.password, c.enable_password, c.secure_ip)
        old_bayes = getattr(self, "bayes", None)
        self.storage = open_storage(config.storage, create=True)
        self.reader = StatsReader(self.storage)
        self.bayes: Bayes = bayes_from_config(config, create=True)
        if old_bayes is not None:
            old_bayes.storage.close()
        old = getattr(self, "recorder", None)
        self.recorder = ScanRecorder(self.storage, c.history_size, c.flush_interval,
                                     source="controller")
        if c.record_scans:
            self.recorder.start()
        if old is not None:  # a reload: write what the old recorder holds, then let go
            old.stop()
            old.storage.close()

    def reload(self) -> None:
        reloaded = reload_pipeline(self.config_path, log)
        if reloaded is None:
            return
        self._apply(*reloaded)
        log.info("controller: config and rules reloaded")

    def close(self) -> None:
        self.recorder.stop()
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.storage.close()
        self.bayes.storage.close()

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)


def _error(status: int, text: str) -> web.Response:
    return web.json_response({"error": text}, status=status)


def client_ip(request: web.Request, access: Access) -> str | None:
    """The peer; behind a reverse proxy on a secure_ip address, the client the proxy names
    (its X-Forwarded-For entry, the last one, is the one it added; X-Real-IP else), so a
    proxied stranger does not inherit the proxy's trust."""
    peer = request.remote
    if not access.is_secure(peer):
        return peer
    forwarded = request.headers.get("X-Forwarded-For")
    if forwarded:
        return forwarded.split(",")[-1].strip()
    return request.headers.get("X-Real-IP", peer).strip() or peer


def _password(request: web.Request) -> str | None:
    """rspamd's `Password:` header; or HTTP auth (Bearer, or Basic's password) for
    scrapers such as Prometheus that cannot send other headers."""
    if "Password" in request.headers:
        return request.headers["Password"]
    auth = request.headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        import base64
        import binascii

        try:
            return base64.b64decode(value.strip()).decode().partition(":")[2]
        except (binascii.Error, UnicodeDecodeError):
            return None
    return None


def _cross_site(request: web.Request) -> bool:
    """A browser's request made by another site's page (a form posting to localhost)."""
    if request.headers.get("Sec-Fetch-Site") == "cross-site":
        return True
    origin = request.headers.get("Origin")
    return bool(origin) and origin != "null" and urlsplit(origin).netloc != request.host


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def auth_middleware(controller: Controller) -> Any:
    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.match_info.http_exception is not None:  # 404, 405: nothing to guard
            return await handler(request)
        need = getattr(request.match_info.handler, "access", READ)
        if request.method == "POST" and _cross_site(request):
            return _error(403, "cross-site request refused")
        if need == PUBLIC:
            return await handler(request)
        password = _password(request)
        ip = client_ip(request, controller.access)
        if password and not controller.access.is_secure(ip):
            level = await controller.run(controller.access.level, ip, password)
        else:
            level = controller.access.level(ip, password)
        if not level:
            if not password:
                return _error(401, "password required (send it in the Password header)")
            log.warning("controller: wrong password from %s for %s", ip, request.path)
            return _error(403, "wrong password")
        if need == WRITE and level != WRITE:
            return _error(403, "this needs the enable (write) password")
        request["level"] = level
        return await handler(request)

    return check


def access(level: str) -> Callable[[Handler], Handler]:
    def mark(fn: Handler) -> Handler:
        fn.access = level  # type: ignore[attr-defined]
        return fn
    return mark


def _envelope(request: web.Request, max_rcpts: int) -> Envelope:
    h = request.headers
    rcpts = [r.strip().strip("<>") for value in h.getall("Rcpt", [])
             for r in value.split(",") if r.strip()]
    if len(rcpts) > max_rcpts:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"{len(rcpts)} recipients, more than controller."
                                      f"max_rcpts ({max_rcpts})"}),
            content_type="application/json")
    ip = h.get("IP")
    if ip:
        try:
            ip = str(ipaddress.ip_address(ip.strip()))
        except ValueError:
            raise web.HTTPBadRequest(
                text=json.dumps({"error": f"IP header {ip[:60]!r} is not an IP address"}),
                content_type="application/json") from None
    return Envelope(client_ip=ip or None, client_hostname=h.get("Hostname"),
                    helo=h.get("Helo"), mail_from=h.get("From"), rcpts=tuple(rcpts),
                    user=h.get("User"), queue_id=h.get("Queue-Id"))


def build_routes(controller: Controller) -> web.RouteTableDef:
    routes = web.RouteTableDef()
    c = controller

    @routes.get("/healthy")
    @access(PUBLIC)
    async def healthy(request: web.Request) -> web.Response:
        return web.json_response({"success": True})

    @routes.get("/ready")
    @access(PUBLIC)
    async def ready(request: web.Request) -> web.Response:
        try:
            await c.run(c.storage.get, keys.STARTED)
        except StorageError as exc:
            return web.json_response({"ready": False, "error": str(exc)}, status=503)
        return web.json_response({"ready": True})

    @routes.get("/auth")
    @access(READ)
    async def auth(request: web.Request) -> web.Response:
        return web.json_response({"level": request["level"],
                                  "read_only": request["level"] != WRITE})

    @routes.post("/checkv2")
    @access(READ)
    async def checkv2(request: web.Request) -> web.Response:
        envelope = _envelope(request, c.config.controller.max_rcpts)
        body = await request.read()
        if not body.strip():
            return _error(400, "empty body: send the message as the request body")
        scanner = c.scanner
        task = scanner.task(body, envelope)
        result: ScanResult = await c.run(scanner.scan_task, task,
                                         c.config.milter.scan_timeout)
        if c.config.controller.record_scans:
            c.recorder.record(result, envelope, len(body))
        out = result.to_json()
        if request.query.get("headers") in ("1", "yes", "true"):
            headers = result_headers(result, scanner.config.headers)
            if result.action == "rewrite subject":
                headers.append(("Subject", rewrite_subject(
                    result.subject, scanner.config.actions.subject_template)))
            out["headers"] = dict(headers)
        return web.json_response(out, dumps=lambda o: json.dumps(o, ensure_ascii=False))

    async def learn(request: web.Request, label: str) -> web.Response:
        body = await request.read()
        reason = not_a_message(body)
        if reason is not None:
            return _error(400, f"not learned: {reason}")

        def work() -> str:
            bayes = c.bayes
            task = Task(body)
            tokens = bayes.tokens(task)
            # The symbol vector as the milter saw it: scanned before the message is learned.
            result = (c.scanner.scan_task(c.scanner.task(body), after_scan=False)
                      if c.config.bayes.symbol_vectors else None)
            outcome = bayes.learn_tokens(tokens, label)
            if result is not None and outcome in (LearnOutcome.LEARNED, LearnOutcome.MOVED):
                keep_vector(bayes.storage, label, tokens.digest(), result,
                            c.config.bayes.max_fit_messages)
            c.storage.incr(f"{keys.LEARN}{label}:{outcome.value}")
            return outcome.value

        try:
            outcome = await c.run(work)
        except StorageError as exc:
            return _error(503, f"not learned: {exc}")
        return web.json_response({"success": True, "outcome": outcome})

    @routes.post("/explain")
    @access(READ)
    async def explain_message(request: web.Request) -> web.Response:
        """`pyspamc -h HOST explain`: the scan of /checkv2 with each symbol's rule, match,
        score source and Bayes tokens (pyspamd/explain.py); not recorded in the history."""
        from pyspamd.explain import explain

        envelope = _envelope(request, c.config.controller.max_rcpts)
        body = await request.read()
        if not body.strip():
            return _error(400, "empty body: send the message as the request body")
        scanner = c.scanner
        why = await c.run(explain, scanner, scanner.task(body, envelope))
        return web.json_response(why.to_json(),
                                 dumps=lambda o: json.dumps(o, ensure_ascii=False))

    @routes.post("/learnspam")
    @access(WRITE)
    async def learnspam(request: web.Request) -> web.Response:
        return await learn(request, SPAM)

    @routes.post("/learnham")
    @access(WRITE)
    async def learnham(request: web.Request) -> web.Response:
        return await learn(request, HAM)

    @routes.get("/stat")
    @access(READ)
    async def stat(request: web.Request) -> web.Response:
        try:
            data = await c.run(c.reader.stat, c.config)
        except StorageError as exc:
            return _error(503, str(exc))
        data["controller_started"] = c.started
        data["now"] = time.time()
        return web.json_response(data)

    @routes.get("/history")
    @access(READ)
    async def history(request: web.Request) -> web.Response:
        size = c.config.controller.history_size
        try:
            limit = min(max(int(request.query.get("limit", size)), 1), size)
        except ValueError:
            return _error(400, "limit must be a number")
        try:
            rows = await c.run(c.reader.history, limit)
        except StorageError as exc:
            return _error(503, str(exc))
        return web.json_response({"rows": rows, "size": size},
                                 dumps=lambda o: json.dumps(o, ensure_ascii=False))

    @routes.get("/graph")
    @access(READ)
    async def graph(request: web.Request) -> web.Response:
        step = request.query.get("type", "minute")
        if step not in keys.GRAPH_STEPS:
            return _error(400, f"type must be one of {', '.join(keys.GRAPH_STEPS)}")
        try:
            return web.json_response(await c.run(c.reader.graph, step))
        except StorageError as exc:
            return _error(503, str(exc))

    @routes.get("/symbols")
    @access(READ)
    async def symbols(request: web.Request) -> web.Response:
        try:
            hits = await c.run(c.reader.symbol_hits)
        except StorageError as exc:
            return _error(503, str(exc))
        rows = symbol_rows(c.scanner.defs, hits)
        return web.json_response({"symbols": rows})

    @routes.get("/actions")
    @access(READ)
    async def actions(request: web.Request) -> web.Response:
        by_action = c.scanner.thresholds.by_action
        rows = [{"action": a, "threshold": t}
                for a, t in sorted(by_action.items(), key=lambda i: i[1])]
        return web.json_response({"actions": rows,
                                  "subject_template": c.config.actions.subject_template})

    @routes.get("/maps")
    @access(READ)
    async def maps(request: web.Request) -> web.Response:
        def listing() -> list[dict[str, Any]]:
            from pyspamd.policy.maps import MapSource

            rows = []
            for m in c.config.maps:
                row = {"name": m.name, "type": m.type, "match": m.match, "file": m.file,
                       "symbol": m.symbol or m.name.upper(), "score": m.score,
                       "action": m.action, "entries": None, "errors": 0}
                if m.type != "ldap":
                    loaded = MapSource(m).loaded
                    row["entries"], row["errors"] = len(loaded.table), len(loaded.errors)
                rows.append(row)
            return rows

        return web.json_response({"maps": await c.run(listing)})

    @routes.get("/config")
    @access(READ)
    async def config(request: web.Request) -> web.Response:
        return web.json_response(redact_config(c.config))

    @routes.get("/metrics")
    @access(READ)
    async def metrics(request: web.Request) -> web.Response:
        def render() -> str:
            try:
                learned = c.storage.bayes_stats().learned
            except StorageError:
                learned = None
            return prometheus.render(c.reader, learned, time.time() - c.started)

        try:
            text = await c.run(render)
        except StorageError as exc:
            return _error(503, str(exc))
        return web.Response(body=text.encode(),
                            headers={"Content-Type": prometheus.CONTENT_TYPE})

    @routes.get("/")
    @access(PUBLIC)
    async def index(request: web.Request) -> web.Response:
        return _static_file("index.html", "text/html")

    @routes.get("/static/{name}")
    @access(PUBLIC)
    async def static(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in STATIC:
            return _error(404, "no such file")
        return _static_file(name, STATIC[name])

    return routes


def _static_file(name: str, content_type: str) -> web.Response:
    data = resources.files("pyspamd.controller").joinpath("static", name).read_bytes()
    return web.Response(body=data, content_type=content_type, charset="utf-8"
                        if content_type.startswith("text") or "javascript" in content_type
                        else None, headers={
                            "Cache-Control": "no-cache",
                            "X-Content-Type-Options": "nosniff",
                            "Content-Security-Policy": "default-src 'self'; img-src 'self' "
                                                       "data:; frame-ancestors 'none'",
                        })


def make_app(controller: Controller) -> web.Application:
    app = web.Application(client_max_size=controller.config.controller.max_body,
                          middlewares=[auth_middleware(controller)])
    app.add_routes(build_routes(controller))
    return app
