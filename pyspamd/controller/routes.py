"""The controller's HTTP endpoints, rspamd's names and shapes; each handler finds the
Controller (what they share) in the application, under CONTROLLER."""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
import time
from importlib import resources
from typing import Any

from aiohttp import web

from pyspamd.controller.app import (
    CONTROLLER,
    PUBLIC,
    READ,
    WRITE,
    Controller,
    access,
    auth_middleware,
    client_ip,
    json_error,
    redact_config,
)
from pyspamd.controller.limits import ConnectionGuard, body_deadline
from pyspamd.fuzzy.store import fuzzy_add, fuzzy_delete, learned_spam_hook
from pyspamd.quarantine.release import release
from pyspamd.quarantine.store import QuarantineError, QuarantineStore
from pyspamd.rescore.vectors import keep_vector
from pyspamd.result import ScanResult, header_changes
from pyspamd.sources import not_a_message
from pyspamd.stats import keys, prometheus
from pyspamd.stats.render import symbol_rows
from pyspamd.storage.base import HAM, SPAM, LearnOutcome, StorageError
from pyspamd.task import Envelope, Task

log = logging.getLogger("pyspamd.quarantine")
_text_json = functools.partial(json.dumps, ensure_ascii=False)  # names as written, not \u escapes
# The page's files, by URL name; nothing from a URL is ever joined to a file-system path.
STATIC = {"app.js": "application/javascript", "app.css": "text/css",
          "favicon.svg": "image/svg+xml"}


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


@access(PUBLIC)
async def healthy(request: web.Request) -> web.Response:
    return web.json_response({"success": True})


@access(PUBLIC)
async def ready(request: web.Request) -> web.Response:
    c = request.app[CONTROLLER]
    try:
        await c.run(c.storage.get, keys.STARTED)
    except StorageError as exc:
        return web.json_response({"ready": False, "error": str(exc)}, status=503)
    return web.json_response({"ready": True})


@access(READ)
async def auth(request: web.Request) -> web.Response:
    return web.json_response({"level": request["level"],
                              "read_only": request["level"] != WRITE})


async def _posted_task(request: web.Request) -> Task | web.Response:
    """The message of a /checkv2 or /explain request with its envelope headers, as a task of
    the running scanner, or the 400 that says why there is none."""
    c = request.app[CONTROLLER]
    envelope = _envelope(request, c.config.controller.max_rcpts)
    body = await request.read()
    if not body.strip():
        return json_error(400, "empty body: send the message as the request body")
    return c.scanner.task(body, envelope)


@access(READ)
async def checkv2(request: web.Request) -> web.Response:
    c = request.app[CONTROLLER]
    task = await _posted_task(request)
    if isinstance(task, web.Response):
        return task
    envelope, body, scanner = task.envelope, task.raw, c.scanner
    result: ScanResult = await c.run(scanner.scan_task, task,
                                     c.config.milter.scan_timeout)
    if c.config.controller.record_scans:
        c.recorder.record(result, envelope, len(body))
    out = result.to_json()
    if request.query.get("headers") in ("1", "yes", "true"):
        out["headers"] = dict(
            header_changes(result, task.add_headers, scanner.config).listing())
    return web.json_response(out, dumps=_text_json)


def _learn_message(c: Controller, body: bytes, label: str) -> str:
    """One message learned through the controller (the learn endpoints, a quarantine release
    with learn=ham): its symbol vector, the learn counter, the model's refit, the fuzzy hook."""
    bayes = c.bayes
    task = Task(body)
    tokens = bayes.tokens(task)
    # The symbol vector as the milter saw it: scanned before the message is learned.
    result = (c.scanner.scan_task(c.scanner.task(body), after_scan=False)
              if c.config.bayes.symbol_vectors else None)
    outcome = bayes.learn_tokens(tokens, label)
    if result is not None and outcome in (LearnOutcome.LEARNED, LearnOutcome.MOVED):
        keep_vector(c.storage, label, tokens.digest(), result,
                    c.config.bayes.max_fit_messages)
    c.storage.incr(f"{keys.LEARN}{label}:{outcome.value}")
    if outcome in (LearnOutcome.LEARNED, LearnOutcome.MOVED):
        c.refitter.learned()
    hook = learned_spam_hook(c.config, c.storage) if label == SPAM else None
    if hook is not None and outcome in (LearnOutcome.LEARNED, LearnOutcome.MOVED):
        hook(task)
    return outcome.value


async def _learn(request: web.Request, label: str) -> web.Response:
    c = request.app[CONTROLLER]
    body = await request.read()
    reason = not_a_message(body)
    if reason is not None:
        return json_error(400, f"not learned: {reason}")

    try:
        outcome = await c.run(_learn_message, c, body, label)
    except StorageError as exc:
        return json_error(503, f"not learned: {exc}")
    return web.json_response({"success": True, "outcome": outcome})


@access(WRITE)
async def learnspam(request: web.Request) -> web.Response:
    return await _learn(request, SPAM)


@access(WRITE)
async def learnham(request: web.Request) -> web.Response:
    return await _learn(request, HAM)


@access(READ)
async def stat(request: web.Request) -> web.Response:
    c = request.app[CONTROLLER]
    try:
        data = await c.run(c.reader.stat, c.config)
    except StorageError as exc:
        return json_error(503, str(exc))
    data["controller_started"] = c.started
    data["now"] = time.time()
    return web.json_response(data)


@access(READ)
async def counters(request: web.Request) -> web.Response:
    """rspamd's /counters, which `rspamc counters` prints: each symbol's weight, hits, and
    hits per second since the statistics started (rspamc shows them per minute)."""
    c = request.app[CONTROLLER]
    try:
        counted = await c.run(c.reader.counters)
    except StorageError as exc:
        return json_error(503, str(exc))
    since = c.reader.scans(counted)["started"] or c.started
    seconds = max(time.time() - since, 1.0)
    rows = [{"symbol": r["name"], "weight": r["score"], "hits": r["hits"],
             "frequency": r["hits"] / seconds, "frequency_stddev": 0.0, "time": 0.0}
            for r in symbol_rows(c.scanner.defs, c.reader.symbol_hits(counted))]
    return web.json_response(rows)


@access(PUBLIC)
async def ping(request: web.Request) -> web.Response:
    return web.Response(text="pong\r\n")


@access(READ)
async def history(request: web.Request) -> web.Response:
    c = request.app[CONTROLLER]
    size = c.config.controller.history_size
    try:
        limit = min(max(int(request.query.get("limit", size)), 1), size)
    except ValueError:
        return json_error(400, "limit must be a number")
    try:
        rows = await c.run(c.reader.history, limit)
    except StorageError as exc:
        return json_error(503, str(exc))
    return web.json_response({"rows": rows, "size": size},
                             dumps=_text_json)


@access(READ)
async def graph(request: web.Request) -> web.Response:
    c = request.app[CONTROLLER]
    step = request.query.get("type", "minute")
    if step not in keys.GRAPH_STEPS:
        return json_error(400, f"type must be one of {', '.join(keys.GRAPH_STEPS)}")
    try:
        return web.json_response(await c.run(c.reader.graph, step))
    except StorageError as exc:
        return json_error(503, str(exc))


@access(READ)
async def symbols(request: web.Request) -> web.Response:
    c = request.app[CONTROLLER]
    try:
        hits = await c.run(c.reader.symbol_hits)
    except StorageError as exc:
        return json_error(503, str(exc))
    rows = symbol_rows(c.scanner.defs, hits)
    return web.json_response({"symbols": rows})


@access(READ)
async def actions(request: web.Request) -> web.Response:
    c = request.app[CONTROLLER]
    by_action = c.scanner.thresholds.by_action
    rows = [{"action": a, "threshold": t}
            for a, t in sorted(by_action.items(), key=lambda i: i[1])]
    return web.json_response({"actions": rows,
                              "subject_template": c.config.actions.subject_template})


@access(READ)
async def maps(request: web.Request) -> web.Response:
    c = request.app[CONTROLLER]
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


@access(READ)
async def config(request: web.Request) -> web.Response:
    c = request.app[CONTROLLER]
    return web.json_response(redact_config(c.config))


@access(READ)
async def metrics(request: web.Request) -> web.Response:
    c = request.app[CONTROLLER]
    def render() -> str:
        try:
            learned = c.storage.bayes_stats().learned
        except StorageError:
            learned = None
        return (prometheus.render(c.reader, learned, time.time() - c.started)
                + prometheus.process_metrics())

    try:
        text = await c.run(render)
    except StorageError as exc:
        return json_error(503, str(exc))
    return web.Response(body=text.encode(),
                        headers={"Content-Type": prometheus.CONTENT_TYPE})


@access(PUBLIC)
async def index(request: web.Request) -> web.Response:
    return _static_file("index.html", "text/html")


@access(PUBLIC)
async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in STATIC:
        return json_error(404, "no such file")
    return _static_file(name, STATIC[name])


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


async def _fuzzy(request: web.Request, adding: bool) -> web.Response:
    """rspamd's /fuzzyadd and /fuzzydel: the message as the body, Flag and Weight headers
    (default 1 and 1)."""
    c = request.app[CONTROLLER]
    body = await request.read()
    reason = not_a_message(body)
    if reason is not None:
        return json_error(400, f"nothing done: {reason}")
    try:
        flag = int(request.headers.get("Flag", "1"))
        weight = float(request.headers.get("Weight", "1"))
    except ValueError:
        return json_error(400, "the Flag header must be a whole number, Weight a number")
    settings = c.config.fuzzy
    if str(flag) not in settings.flags:
        return json_error(400, f"flag {flag} is not in [fuzzy.flags]")

    def work() -> tuple[int, int]:
        task = Task(body)
        if adding:
            return fuzzy_add(c.storage, task, settings, flag, weight)
        return fuzzy_delete(c.storage, task, settings, flag)

    try:
        hashes, changed = await c.run(work)
    except StorageError as exc:
        return json_error(503, f"nothing done: {exc}")
    if not hashes:
        return json_error(400, "nothing to hash: too little text, and no attachment or image "
                               f"of [fuzzy] min_bytes ({settings.min_bytes}) or more")
    return web.json_response({"success": True, "hashes": hashes,
                              "new" if adding else "deleted": changed})


@access(WRITE)
async def fuzzyadd(request: web.Request) -> web.Response:
    return await _fuzzy(request, adding=True)


@access(WRITE)
async def fuzzydel(request: web.Request) -> web.Response:
    return await _fuzzy(request, adding=False)


@access(READ)
async def explain_message(request: web.Request) -> web.Response:
    """`pyspamc -h HOST explain`: the scan of /checkv2 with each symbol's rule, match, score
    source and Bayes tokens (pyspamd/explain.py); not recorded in the history."""
    from pyspamd.explain import explain

    c = request.app[CONTROLLER]
    task = await _posted_task(request)
    if isinstance(task, web.Response):
        return task
    why = await c.run(explain, c.scanner, task)
    return web.json_response(why.to_json(), dumps=_text_json)


def _quarantine(request: web.Request) -> QuarantineStore:
    c = request.app[CONTROLLER]
    if not c.config.quarantine.enabled:
        raise web.HTTPNotFound(text=json.dumps({"error": "[quarantine] is off"}),
                               content_type="application/json")
    return QuarantineStore(c.config.quarantine)


@access(READ)
async def quarantine_list(request: web.Request) -> web.Response:
    c = request.app[CONTROLLER]
    store = _quarantine(request)
    try:
        limit = min(max(int(request.query.get("limit", 100)), 1), 1000)
    except ValueError:
        return json_error(400, "limit must be a number")
    everything = request.query.get("all") in ("1", "yes", "true")

    def listing() -> list[dict[str, Any]]:
        if not store.index.exists():
            return []
        return [e.to_json() for e in store.list(limit, include_released=everything)]

    try:
        rows = await c.run(listing)
    except QuarantineError as exc:
        return json_error(503, str(exc))
    return web.json_response({"messages": rows}, dumps=_text_json)


@access(READ)
async def quarantine_show(request: web.Request) -> web.Response:
    c = request.app[CONTROLLER]
    store = _quarantine(request)
    message_id = request.match_info["id"]
    try:
        entry = await c.run(store.get, message_id)
        if request.query.get("raw") in ("1", "yes", "true"):
            data = await c.run(store.read, message_id)
            return web.Response(body=data, content_type="text/plain", charset="utf-8",
                                headers={"X-Content-Type-Options": "nosniff"})
    except QuarantineError as exc:
        return json_error(404, str(exc))
    return web.json_response(entry.to_json(), dumps=_text_json)


@access(WRITE)
async def quarantine_release(request: web.Request) -> web.Response:
    """Back to the MTA with the original envelope; `?learn=ham` also learns it as ham."""
    c = request.app[CONTROLLER]
    store = _quarantine(request)
    message_id = request.match_info["id"]
    by = f"controller {client_ip(request, c.access) or '-'}"
    learn = None
    if request.query.get("learn") == "ham" or c.config.quarantine.learn_ham_on_release:
        def learn(raw: bytes) -> str:
            return _learn_message(c, raw, HAM)
    try:
        reply = await c.run(release, store, c.config.quarantine, message_id, by, learn)
    except QuarantineError as exc:
        return json_error(409 if "released already" in str(exc) else 502, str(exc))
    return web.json_response({"success": True, "reply": reply.strip(), "released_by": by})


@access(WRITE)
async def quarantine_delete(request: web.Request) -> web.Response:
    c = request.app[CONTROLLER]
    store = _quarantine(request)
    message_id = request.match_info["id"]
    try:
        await c.run(store.delete, message_id)
    except QuarantineError as exc:
        return json_error(404, str(exc))
    log.info("quarantine: %s deleted by controller %s", message_id,
             client_ip(request, c.access) or "-")
    return web.json_response({"success": True})


ROUTES = [
    web.get("/healthy", healthy),
    web.get("/ready", ready),
    web.get("/auth", auth),
    web.post("/checkv2", checkv2),
    web.post("/explain", explain_message),
    web.post("/learnspam", learnspam),
    web.post("/learnham", learnham),
    web.post("/fuzzyadd", fuzzyadd),
    web.post("/fuzzydel", fuzzydel),
    web.get("/stat", stat),
    web.get("/history", history),
    web.get("/counters", counters),
    web.get("/ping", ping),
    web.get("/graph", graph),
    web.get("/symbols", symbols),
    web.get("/actions", actions),
    web.get("/maps", maps),
    web.get("/config", config),
    web.get("/metrics", metrics),
    web.get("/quarantine", quarantine_list),
    web.get("/quarantine/{id}", quarantine_show),
    web.post("/quarantine/{id}/release", quarantine_release),
    web.post("/quarantine/{id}/delete", quarantine_delete),
    web.get("/", index),
    web.get("/static/{name}", static),
]


def make_app(controller: Controller) -> web.Application:
    c = controller.config.controller
    controller.guard = ConnectionGuard(c.max_connections)
    app = web.Application(client_max_size=c.max_body, middlewares=[
        controller.guard.middleware(), auth_middleware, body_deadline(c.body_timeout)])
    app[CONTROLLER] = controller
    app.add_routes(ROUTES)
    return app
