"""A pool: the process that listens on one milter address (libmilter keeps one listening
socket per process) and keeps its pre-forked workers running, restarting each with its own
back-off, replacing them all on reload or when the master's health check asks."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import milter

from pyspamd.config import Config
from pyspamd.milter.children import TICK, Backoff, describe_status, exited_children, kill_child
from pyspamd.milter.gate import FREE, Gate, SessionBoard
from pyspamd.milter.instance import EXIT_NO_SOCKET, address_problem, milter_address
from pyspamd.milter.listener import listen_fds, prepare_socket
from pyspamd.milter.session import MilterApp
from pyspamd.milter.worker import DRAIN_SIGNAL, register_callbacks, worker_main
from pyspamd.scanner import Scanner, reload_pipeline
from pyspamd.services import Services
from pyspamd.stats.keys import EVENT as EVENT_KEY

log = logging.getLogger("pyspamd.master")  # one logger for the daemon's supervision

_EMPTY_POOL_WAIT = 1.0  # at most this long with no worker at all, whatever the back-offs
REPLACE_SIGNAL = signal.SIGUSR2  # master -> pool: replace the workers (health check)


def worker_count(config: Config) -> int:
    return config.milter.workers or os.cpu_count() or 1


def server_name(config: Config) -> str:
    return config.milter.server_name or socket.gethostname()


@dataclass
class _Slot:
    """One worker's place in a pool: the process in it (0: none) and its own back-off, so
    one worker dying again and again does not hold back the restart of the others."""

    pid: int = 0
    started: float = 0.0
    died: float = 0.0
    backoff: Backoff = field(default_factory=Backoff)
    board_slot: int = -1  # its place on the SessionBoard


@dataclass
class Pool:
    spec: str
    config_path: Path | None
    config: Config
    scanner: Scanner
    slots: list[_Slot] = field(default_factory=list)
    # Workers of an earlier generation -> when to kill them if they have not exited (a
    # worker that stopped answering may not drain).
    draining: dict[int, float] = field(default_factory=dict)
    stopping: bool = False
    reload_requested: bool = False
    replace_requested: bool = False
    listen_fds: list[int] = field(default_factory=list)
    board: SessionBoard | None = None

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)
        signal.signal(REPLACE_SIGNAL, self._on_replace)
        register_callbacks()
        milter.setconn(self.spec)
        milter.settimeout(self.config.milter.timeout)
        try:
            milter.opensocket(True)
        except milter.error:
            # Restarting cannot help (the address is taken or not ours): say why, once.
            address = milter_address(self.spec)
            why = (address_problem(*address) if address else None) or "libmilter refused it"
            log.error("cannot listen on %s: %s; pyspamd stops", self.spec, why)
            logging.shutdown()
            os._exit(EXIT_NO_SOCKET)
        prepare_socket(self.spec, self.config)
        self.listen_fds = listen_fds(self.spec)
        self.board = SessionBoard(worker_count(self.config))
        self.slots = [_Slot() for _ in range(worker_count(self.config))]
        log.info("listening on %s with %d workers", self.spec, len(self.slots))
        while not self.stopping:
            self._reap()
            if self.reload_requested:
                self.reload_requested = False
                self._reload()
            if self.replace_requested:
                self.replace_requested = False
                self._replace_workers("health check")
            self._fill()
            self._kill_overdue()
            time.sleep(TICK)
        self._shutdown()

    def _on_stop(self, signum: int, frame: object) -> None:
        self.stopping = True

    def _on_reload(self, signum: int, frame: object) -> None:
        self.reload_requested = True

    def _on_replace(self, signum: int, frame: object) -> None:
        self.replace_requested = True

    def _spawn(self, slot: _Slot) -> None:
        assert self.board is not None
        app = MilterApp(self.scanner, server_name(self.config))
        board_slot = self.board.claim()  # before the fork, so two spawns never share one
        # What the pool built (rules, RE2 sets, the model, lists) outlives every message: out
        # of the collector's sight, a worker's full collections no longer walk it (25 ms a
        # pass, measured, holding up every session of that worker) nor touch its pages.
        gc.freeze()
        pid = os.fork()
        if pid == 0:
            gate = Gate(self.board, board_slot, self.listen_fds,
                        threading.main_thread().ident or 0)
            worker_main(app, gate, self.config.milter.shutdown_timeout, self.listen_fds)
        slot.pid, slot.started, slot.board_slot = pid, time.monotonic(), board_slot

    def _fill(self) -> None:
        now = time.monotonic()
        empty = [slot for slot in self.slots if not slot.pid]
        if not empty:
            return
        for slot in empty:
            if now >= slot.backoff.not_before:
                self._spawn(slot)
        if all(not slot.pid for slot in self.slots):
            # Every worker is waiting out its back-off: a pool must never be without a
            # worker for long, so the one that died first starts now.
            first = min(self.slots, key=lambda slot: slot.died)
            if now - first.died >= _EMPTY_POOL_WAIT:
                log.warning("pool for %s has no worker; starting one despite the back-off",
                            self.spec)
                self._spawn(first)

    def _reap(self) -> None:
        for pid, status in exited_children():
            if self.draining.pop(pid, None) is not None:
                continue
            slot = next((s for s in self.slots if s.pid == pid), None)
            if slot is None or self.stopping:
                continue
            if self.board is not None and slot.board_slot >= 0:
                self.board.set(slot.board_slot, FREE)
            now = time.monotonic()
            lived = now - slot.started
            slot.pid, slot.died, slot.board_slot = 0, now, -1
            slot.backoff.crashed(lived)
            log.error("worker %d died (%s) after %.1fs; restarting in %.1fs", pid,
                      describe_status(status), lived, slot.backoff.delay)
            _count_restart(self.scanner.services)

    def _reload(self) -> None:
        reloaded = reload_pipeline(self.config_path, log)
        if reloaded is None:
            return
        config, scanner = reloaded
        if config.milter.listen != self.config.milter.listen:
            log.warning("milter.listen changed: restart pyspamd to apply it")
        old = self.scanner
        self.config, self.scanner = config, scanner
        old.services.close()  # the pool's handle; the workers' are their own
        gc.unfreeze()  # the old pipeline's cycles can be collected; _spawn freezes the new
        count = self._replace_workers("reload")
        log.info("reloaded config and rules; %d workers replaced", count)

    def _replace_workers(self, why: str) -> int:
        """New workers first, so the socket always has takers; then the old ones drain."""
        old = [slot.pid for slot in self.slots if slot.pid]
        kill_at = time.monotonic() + self.config.milter.shutdown_timeout + 5
        self.draining.update(dict.fromkeys(old, kill_at))
        # A new page: the old workers (some may be frozen) must not count for the new ones.
        self.board = SessionBoard(worker_count(self.config))
        self.slots = [_Slot() for _ in range(worker_count(self.config))]
        self._fill()
        for pid in old:
            kill_child(pid, DRAIN_SIGNAL)
        if why != "reload":
            log.warning("pool for %s: %d workers replaced (%s)", self.spec, len(old), why)
        return len(old)

    def _children(self) -> set[int]:
        return {slot.pid for slot in self.slots if slot.pid} | set(self.draining)

    def _kill_overdue(self) -> None:
        now = time.monotonic()
        for pid, kill_at in self.draining.items():
            if now > kill_at:
                log.warning("worker %d did not finish draining in time; killing it", pid)
                kill_child(pid, signal.SIGKILL)
                self.draining[pid] = now + 60  # reaped soon; no second line meanwhile

    def _shutdown(self) -> None:
        children = self._children()
        for pid in children:
            kill_child(pid, DRAIN_SIGNAL)
        deadline = time.monotonic() + self.config.milter.shutdown_timeout + 2
        while children and time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid:
                children.discard(pid)
            else:
                time.sleep(0.05)
        for pid in children:
            log.warning("worker %d did not stop in time; killing it", pid)
            kill_child(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        if self.spec.startswith(("unix:", "local:")):
            Path(self.spec.partition(":")[2]).unlink(missing_ok=True)


def _count_restart(services: Services) -> None:
    """For the controller's pyspamd_worker_restarts_total; rare, so written at once, on the
    pool's one store handle."""
    try:
        services.storage().incr(EVENT_KEY + "worker_restarts")
    except Exception as exc:  # counting must not stop the restart
        log.warning("worker restart not counted: %s", exc)
