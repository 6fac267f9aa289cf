"""The controller process: under the milter's master, or alone (`pyspamd controller`)."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

from aiohttp import web

from pyspamd.config import Config, split_host_port
from pyspamd.controller.app import Controller
from pyspamd.controller.routes import make_app
from pyspamd.scanner import Scanner

log = logging.getLogger("pyspamd.controller")


async def _serve(controller: Controller, host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP,
                            lambda: loop.run_in_executor(None, controller.reload))
    app = make_app(controller)
    # aiohttp's keep-alive timer doubles as the header timeout (see limits.py).
    runner = web.AppRunner(app, access_log=None, handle_signals=False,
                           keepalive_timeout=controller.config.controller.header_timeout)
    await runner.setup()
    server = None
    try:
        guard = controller.guard
        assert guard is not None and runner.server is not None
        guard.server = runner.server
        # Our own listening server instead of a TCPSite, so each connection passes the guard.
        server = await loop.create_server(guard, host, port, reuse_address=True)
        log.info("controller listening on http://%s:%d/", host, port)
        await stop.wait()
    finally:
        if server is not None:
            server.close()
        await runner.cleanup()


def run_controller(config_path: Path | None, config: Config,
                   scanner: Scanner | None = None) -> int:
    """Serve until SIGTERM; returns the exit status (1 when the port cannot be bound)."""
    host, port = split_host_port(config.controller.listen)
    controller = Controller(config_path, config, scanner)
    try:
        asyncio.run(_serve(controller, host, port))
    except OSError as exc:
        log.error("controller cannot listen on %s: %s", config.controller.listen, exc)
        return 1
    finally:
        controller.close()
    return 0
