"""The policy service's process: asyncio, one task per Postfix connection, every request
answered within [policy_service] request_timeout.

The master starts it as a child of its own (like a milter pool) when policy_service.listen
names a socket, restarts it with a back-off when it dies, probes it (health.py) and passes
SIGHUP on: the service then reads the config again and answers with the new settings, on
the sockets it has. A malformed request gets DUNNO or, when the stream cannot be followed
any more, a closed connection; either way one line in the log (rate-limited) and the other
connections go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import logging
import os
import signal
import socket
import time
from pathlib import Path

from pyspamd.config import Config, load_config
from pyspamd.faultlog import FaultLog
from pyspamd.milter.health import address
from pyspamd.milter.instance import EXIT_NO_SOCKET, address_problem
from pyspamd.milter.pool import REPLACE_SIGNAL
from pyspamd.policy_service.decide import DUNNO, Connection, Decider
from pyspamd.policy_service.protocol import MAX_REQUEST, ProtocolError, answer, read_request
from pyspamd.services import Services

log = logging.getLogger("pyspamd.policy")
EXIT_RESTART = 75  # asked by the master's health check: start again, with a new process


def open_listener(spec: str, mode: str, group: str) -> socket.socket:
    family, where = address(spec)
    sock = socket.socket(family, socket.SOCK_STREAM)
    if family == socket.AF_UNIX:
        path = Path(str(where))
        problem = address_problem(family, str(path))
        if problem:
            raise OSError(problem)
        if path.is_socket():
            path.unlink()  # left by a process that died: nobody answers on it
        sock.bind(str(path))
        os.chmod(path, int(mode, 8))
        if group:
            os.chown(path, -1, grp.getgrnam(group).gr_gid)
    else:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        kind, _, rest = spec.partition(":")
        port, _, host = rest.partition("@")
        host = host.strip("[]") or ("::" if kind == "inet6" else "0.0.0.0")
        sock.bind((host, int(port)))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.listen(512)
    sock.setblocking(False)
    return sock


class PolicyServer:
    def __init__(self, config_path: Path | None, config: Config) -> None:
        self.config_path = config_path
        self.faults = FaultLog(log)
        self.services: Services | None = None
        self.decider = self._decider(config)
        self.config = config
        self.open: set[asyncio.Task[None]] = set()
        self.stopping = asyncio.Event()
        self.exit_code = 0

    def _decider(self, config: Config) -> Decider:
        services = Services(config)
        self.services = services
        return Decider(config, services.resolver, services.storage, self.faults, time.time)

    def reload(self) -> None:
        try:
            config = load_config(self.config_path)
            decider = self._decider(config)
        except Exception as exc:  # a bad new config must not stop the running one
            log.error("SIGHUP: new config refused, keeping the running one: %s", exc)
            return
        old, self.decider, self.config = self.decider, decider, config
        old.close()
        log.info("policy service: reloaded config")

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self.open.add(task)
        conn = Connection()
        try:
            await self._serve(reader, writer, conn)
        except ProtocolError as exc:
            self.faults.report("policy protocol", f"policy service: closing a connection: {exc}",
                               level=logging.WARNING)
        except (ConnectionError, OSError):
            pass  # the client went away: nothing to answer
        finally:
            if task is not None:
                self.open.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     conn: Connection) -> None:
        p = self.config.policy_service
        if len(self.open) > p.max_connections:
            raise ProtocolError(f"more than {p.max_connections} connections at once")
        while not self.stopping.is_set():
            request = await read_request(reader, p.idle_timeout)
            if request is None:
                return
            if request.problem:
                self.faults.report("policy request", f"policy service: answering DUNNO to a "
                                   f"malformed request: {request.problem}",
                                   level=logging.WARNING)
                action = DUNNO
            else:
                action = await self._decide(request.attrs, conn)
            writer.write(answer(action))
            await writer.drain()

    async def _decide(self, attrs: dict[str, str], conn: Connection) -> str:
        decider = self.decider
        timeout = self.config.policy_service.request_timeout
        try:
            return await asyncio.wait_for(decider.decide(attrs, conn), timeout)
        except TimeoutError:
            self.faults.report("policy timeout", f"policy service: no decision within "
                               f"{timeout:g}s (store or DNS too slow); answering "
                               f"{decider.store_down}")
        except Exception as exc:  # never a traceback to Postfix, never a hang
            self.faults.report("policy decide", "policy service: internal error; answering "
                               f"{decider.store_down}", exc)
        return decider.store_down

    async def run(self, socks: list[socket.socket]) -> int:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        loop.add_signal_handler(signal.SIGINT, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        loop.add_signal_handler(REPLACE_SIGNAL, self._restart)
        servers = []
        for sock in socks:
            if sock.family == socket.AF_UNIX:
                servers.append(await asyncio.start_unix_server(self.handle, sock=sock,
                                                               limit=MAX_REQUEST))
            else:
                servers.append(await asyncio.start_server(self.handle, sock=sock,
                                                          limit=MAX_REQUEST))
        await self.stopping.wait()
        for server in servers:
            server.close()
        # Requests under way get their answer; idle connections are closed.
        for task in list(self.open):
            task.cancel()
        await asyncio.gather(*self.open, return_exceptions=True)
        self.decider.close()
        if self.services is not None:
            self.services.close()
        return self.exit_code

    def _restart(self) -> None:
        log.error("policy service: the master's health check failed; starting again")
        self.exit_code = EXIT_RESTART
        self.stopping.set()


def policy_main(config_path: Path | None, config: Config) -> int:
    """The child process's body; its exit code tells the master what to do."""
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, REPLACE_SIGNAL):
        signal.signal(signum, signal.SIG_DFL)
    p = config.policy_service
    socks = []
    for spec in p.listen:
        try:
            socks.append(open_listener(spec, p.socket_mode, p.socket_group))
        except (OSError, KeyError) as exc:
            log.error("policy service: cannot listen on %s: %s; pyspamd stops", spec, exc)
            return EXIT_NO_SOCKET
    log.info("policy service listening on %s", ", ".join(p.listen))
    try:
        return asyncio.run(PolicyServer(config_path, config).run(socks))
    finally:
        for spec in p.listen:
            if spec.startswith(("unix:", "local:")):
                Path(spec.partition(":")[2]).unlink(missing_ok=True)
