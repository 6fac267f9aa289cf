"""What a slow or hoarding HTTP client may cost the controller: time and connections.

aiohttp waits for a request's headers as long as its keep-alive timeout allows (an hour by
default) and for a body as long as the client dribbles it, so 20 clients sending a byte now
and then held 20 connections forever (issue 18). Three limits:
- the headers: aiohttp's keep-alive timer runs from the connection (or the previous answer)
  until a request's headers are complete and is not restarted by data, so set to
  header_timeout it closes a connection whose headers do not arrive in time, and an idle one;
- the body: read within body_timeout (a middleware reads it before the handler), else 408 and
  the connection is closed;
- the number of connections: past max_connections a new connection closes the one idle the
  longest; when none is idle the newcomer gets 503 and is closed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

log = logging.getLogger("pyspamd.controller")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_BUSY_REPLY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
               b"Content-Length: 28\r\nConnection: close\r\n\r\ntoo many connections, retry\n")


class _Refuse(asyncio.Protocol):
    """For a connection over the cap while every other one is in a request."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(_BUSY_REPLY)
        transport.close()


class ConnectionGuard:
    """The protocol factory given to the event loop's server in place of aiohttp's own:
    aiohttp's web.Server makes each connection's handler, this decides whether it may."""

    def __init__(self, max_connections: int) -> None:
        self.server: web.Server | None = None  # the runner's, once it is set up
        self.max_connections = max_connections
        self.in_request: dict[RequestHandler, int] = {}
        self.last_active: dict[RequestHandler, float] = {}
        self._warned = 0.0

    def __call__(self) -> asyncio.Protocol:
        assert self.server is not None
        open_now = self.server.connections
        # Forget handlers whose connection has gone (the dicts must not grow).
        alive = set(open_now)
        for table in (self.in_request, self.last_active):
            for handler in [h for h in table if h not in alive]:
                del table[handler]
        if len(open_now) >= self.max_connections:
            idle = [h for h in open_now if not self.in_request.get(h)]
            self._warn(len(open_now))
            if not idle:
                return _Refuse()
            oldest = min(idle, key=lambda h: self.last_active.get(h, 0.0))
            oldest.force_close()
        handler = self.server()
        self.last_active[handler] = time.monotonic()
        return handler

    def _warn(self, count: int) -> None:
        now = time.monotonic()
        if now - self._warned > 60:  # one line a minute at most, however many clients
            self._warned = now
            log.warning("controller: %d connections open (max_connections); closing the "
                        "longest idle ones", count)

    def middleware(self) -> Any:
        @web.middleware
        async def track(request: web.Request, handler: Handler) -> web.StreamResponse:
            protocol = request.protocol
            self.in_request[protocol] = self.in_request.get(protocol, 0) + 1
            try:
                return await handler(request)
            finally:
                left = self.in_request.get(protocol, 1) - 1
                if left > 0:
                    self.in_request[protocol] = left
                else:
                    self.in_request.pop(protocol, None)
                self.last_active[protocol] = time.monotonic()

        return track


def body_deadline(timeout: float) -> Any:
    """Read the body within `timeout` before the handler runs (it then reads the copy)."""

    @web.middleware
    async def read_body(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.body_exists:
            try:
                await asyncio.wait_for(request.read(), timeout)
            except TimeoutError:
                log.warning("controller: %s sent its body too slowly; connection closed",
                            request.remote)
                response = web.json_response(
                    {"error": f"request body not received within {timeout:g}s"}, status=408)
                response.force_close()
                await response.prepare(request)
                await response.write_eof()
                request.protocol.force_close()  # no lingering read of the rest
                return response
        return await handler(request)

    return read_body
