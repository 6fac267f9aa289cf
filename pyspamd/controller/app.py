"""The controller's HTTP API (aiohttp): what its handlers (routes.py) share, and who may
call them (passwords, secure_ip, cross-site requests).

Scans and learns are CPU work and storage round trips, so they run in a small thread pool;
the event loop stays free for /healthy, /metrics and the page while a big message scans.
"""

from __future__ import annotations

import asyncio
import dataclasses
import keyword
import logging
import math
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from pyspamd.checks.bayes import bayes_on
from pyspamd.classifiers.bayes import Bayes
from pyspamd.classifiers.refit import ModelRefitter
from pyspamd.config import Config
from pyspamd.controller.auth import Access, LoginThrottle
from pyspamd.controller.limits import ConnectionGuard
from pyspamd.scanner import Scanner, reload_pipeline
from pyspamd.stats.reader import StatsReader
from pyspamd.stats.recorder import ScanRecorder
from pyspamd.storage.redis_store import redacted

log = logging.getLogger("pyspamd.controller")

READ, WRITE, PUBLIC = "read", "write", ""
_SECRET_WORDS = ("password", "secret")


def redact_config(config: Config) -> dict[str, Any]:
    """The config in force for the page: password hashes and secrets replaced by "***"."""

    def clean(value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            # Options named after a Python keyword (from_) are written without the "_".
            return {k.removesuffix("_") if keyword.iskeyword(k.removesuffix("_")) else k:
                    clean(v, k) for k, v in value.items()}
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
        self.throttle = LoginThrottle()  # kept across reloads
        self.guard: ConnectionGuard | None = None  # made with the app (make_app)
        self.executor = ThreadPoolExecutor(config.controller.scan_threads,
                                           thread_name_prefix="controller")
        self._apply(config, scanner or Scanner.from_config(config))
        # Learned messages count in the workers' verdicts within seconds, not from the
        # nightly fit (classifiers/refit.py).
        self.refitter = ModelRefitter(lambda: self.bayes).start()

    def _apply(self, config: Config, scanner: Scanner) -> None:
        old_scanner: Scanner | None = getattr(self, "scanner", None)
        self.config = config
        self.scanner = scanner
        c = config.controller
        self.access = Access(c.password, c.enable_password, c.secure_ip)
        # The scanner's store handle: statistics, learning and the checks share one.
        self.storage = scanner.services.storage_opener(writes=True)()
        self.reader = StatsReader(self.storage)
        self.bayes: Bayes = bayes_on(config, self.storage)
        old = getattr(self, "recorder", None)
        self.recorder = ScanRecorder(self.storage, c.history_size, c.flush_interval,
                                     source="controller")
        if c.record_scans:
            self.recorder.start()
        if old is not None:  # a reload: write what the old recorder holds, then let go
            old.stop()
        if old_scanner is not None and old_scanner is not scanner:
            old_scanner.services.close()

    def reload(self) -> None:
        reloaded = reload_pipeline(self.config_path, log)
        if reloaded is None:
            return
        self._apply(*reloaded)
        log.info("controller: config and rules reloaded")

    def close(self) -> None:
        self.refitter.stop()
        self.recorder.stop()
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.scanner.services.close()

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)


CONTROLLER: web.AppKey[Controller] = web.AppKey("controller", Controller)


def json_error(status: int, text: str) -> web.Response:
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
    return request.headers.get("X-Real-IP", "").strip() or peer


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
# Seconds between looks, for a request held while its client's other passwords are checked.
_CHECKS_POLL = 0.02


def _too_many(wait: float) -> web.Response:
    response = json_error(429, f"too many wrong passwords; try again in {math.ceil(wait)}s")
    response.headers["Retry-After"] = str(math.ceil(wait))
    return response


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    controller = request.app[CONTROLLER]
    if request.match_info.http_exception is not None:  # 404, 405: nothing to guard
        return await handler(request)
    need = getattr(request.match_info.handler, "access", READ)
    if request.method == "POST" and _cross_site(request):
        return json_error(403, "cross-site request refused")
    if need == PUBLIC:
        return await handler(request)
    password = _password(request)
    ip = client_ip(request, controller.access)
    throttled = bool(password) and not controller.access.is_secure(ip)
    if throttled:
        throttle = controller.throttle
        while (wait := throttle.begin(ip)) is None:
            await asyncio.sleep(_CHECKS_POLL)
        if wait > 0:  # refused unchecked: guessing costs the guesser the time
            return _too_many(wait)
        level = ""
        try:
            level = await controller.run(controller.access.level, ip, password)
        finally:
            wait = throttle.end(ip, bool(level))
    else:
        level, wait = controller.access.level(ip, password), 0.0
    if not level:
        if not password:
            return json_error(401, "password required (send it in the Password header)")
        log.warning("controller: wrong password from %s for %s%s", ip, request.path,
                    f"; it must wait {wait:.0f}s" if wait else "")
        return json_error(403, "wrong password")
    if need == WRITE and level != WRITE:
        return json_error(403, "this needs the enable (write) password")
    request["level"] = level
    return await handler(request)


def access(level: str) -> Callable[[Handler], Handler]:
    def mark(fn: Handler) -> Handler:
        fn.access = level  # type: ignore[attr-defined]
        return fn
    return mark
