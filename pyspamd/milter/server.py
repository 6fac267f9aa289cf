"""The daemon's processes: master -> one pool per listener -> pre-forked workers.

Why three levels: libmilter keeps exactly one listening socket per process, so each listener
gets a pool process that opens it once and forks its workers, which inherit it. Workers
restarted later inherit the same socket, so no connection is refused while they come and go.
Python's GIL makes one process one core; scanning happens in the workers.

Stopping a worker gracefully cannot go through libmilter's own SIGTERM handling: libmilter
then closes its listener and returns from milter.main(), after which pymilter no longer runs
Python callbacks, so sessions still open are stranded (seen in tests: the MTA waits, then
gets a reset). Instead the pool sends SIGUSR1; a thread in the worker closes its gate (see
gate.py: the worker stops accepting, the others do not), waits until its open sessions have
finished, and exits. Past shutdown_timeout the pool kills what is left.

Each worker has its own restart back-off (a worker that keeps dying young waits longer before
its next start, the others are not held back), and a pool left with no worker restarts one
within a second whatever the back-offs say. Workers die with their pool (PR_SET_PDEATHSIG),
so a pool restarted by the master never finds its socket still held by orphans. The master
checks each pool the way the MTA would, by connecting and negotiating (health.py), and
restarts a pool that stopped answering.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import stat
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import Milter
import milter

from pyspamd.config import Config, load_config
from pyspamd.logsetup import setup_logging
from pyspamd.milter.gate import CHECK_INTERVAL, FREE, Gate, SessionBoard, install_kick_handler
from pyspamd.milter.health import Probe
from pyspamd.milter.instance import (
    EXIT_NO_SOCKET,
    StartupError,
    address_problem,
    claim_instance,
    milter_address,
)
from pyspamd.milter.session import MilterApp, session_class
from pyspamd.permissions import write_problems
from pyspamd.scanner import Scanner, reload_pipeline
from pyspamd.stats.keys import EVENT as EVENT_KEY
from pyspamd.stats.keys import STARTED
from pyspamd.stats.recorder import ScanRecorder
from pyspamd.storage import StorageError, open_storage

log = logging.getLogger("pyspamd.master")

_RESTART_MIN = 0.5  # seconds before restarting a crashed process; doubles while it keeps dying
_RESTART_MAX = 30.0
_STABLE_AFTER = 60.0  # a process that lived this long resets the back-off
_EMPTY_POOL_WAIT = 1.0  # at most this long with no worker at all, whatever the back-offs
_TICK = 0.2
_DRAIN_GRACE = 0.5  # seconds between closing a worker's gate and counting its sessions
# Probes failed in a row before the master acts: a pool starved of CPU answers late, one
# that stopped accepting never does.
_HEALTH_FAILURES = 3
_PR_SET_PDEATHSIG = 1
_M_ARENA_MAX = -8  # mallopt()
# libmilter runs each connection in its own thread, and every stage is a short callback that
# takes the GIL. At Python's default 5 ms switch interval, threads waiting with a header or
# body chunk force the thread that is scanning to hand over the GIL again and again. A worker
# with 4 connections spent 3.9 ms CPU per message at 5 ms and 3.4 ms at 50 ms (direct milter
# protocol, 2,000 corpus messages, two runs each); callbacks still run as soon as a scan ends,
# so one connection's latency does not change.
_GIL_SWITCH_INTERVAL = 0.05


def worker_count(config: Config) -> int:
    return config.milter.workers or os.cpu_count() or 1


def server_name(config: Config) -> str:
    return config.milter.server_name or socket.gethostname()


# --- workers -----------------------------------------------------------------------------

def _register_callbacks() -> None:
    """What Milter.runmilter registers, without its call to milter.main()."""
    milter.set_connect_callback(Milter.connect_callback)
    milter.set_helo_callback(lambda ctx, host: ctx.getpriv().hello(host))
    milter.set_envfrom_callback(lambda ctx, *b: ctx.getpriv().envfrom_bytes(*b))
    milter.set_envrcpt_callback(lambda ctx, *b: ctx.getpriv().envrcpt_bytes(*b))
    milter.set_header_callback(lambda ctx, f, v: ctx.getpriv().header_bytes(f, v))
    # No end-of-headers callback: without one pymilter negotiates P_NOEOH and the MTA sends
    # one packet less per message.
    milter.set_body_callback(lambda ctx, chunk: ctx.getpriv().body(chunk))
    milter.set_eom_callback(lambda ctx: ctx.getpriv().eom())
    milter.set_abort_callback(lambda ctx: ctx.getpriv().abort())
    milter.set_close_callback(Milter.close_callback)
    milter.register(
        "pyspamd",
        data=lambda ctx: ctx.getpriv().data(),
        unknown=lambda ctx, cmd: ctx.getpriv().unknown(cmd),
        negotiate=Milter.negotiate_callback,
    )


DRAIN_SIGNAL = signal.SIGUSR1  # pool -> worker: stop accepting, finish, exit
REPLACE_SIGNAL = signal.SIGUSR2  # master -> pool: replace the workers (health check)


def _worker_main(app: MilterApp, gate: Gate, shutdown_timeout: float) -> None:
    _die_with_parent()
    _few_malloc_arenas()
    # libmilter waits for these signals in its own thread; Python's handlers would hide them.
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)
    # Blocked before any thread exists, so every libmilter thread inherits the mask and only
    # the drain thread's sigwait() receives it.
    signal.pthread_sigmask(signal.SIG_BLOCK, {DRAIN_SIGNAL})
    install_kick_handler()
    app.recorder = _start_recorder(app)
    app.on_sessions_changed = gate.update
    threading.Thread(target=_balance, args=(app, gate), name="balance", daemon=True).start()
    threading.Thread(target=_drain_on_signal, args=(app, gate, shutdown_timeout),
                     name="drain", daemon=True).start()
    Milter.factory = session_class(app)
    sys.setswitchinterval(_GIL_SWITCH_INTERVAL)
    code = 0
    try:
        milter.main()  # libmilter's listener runs here, in the main thread (gate.py)
    except Exception:
        log.exception("worker %d: milter loop failed", os.getpid())
        code = 1
    _stop_recorder(app)
    logging.shutdown()
    os._exit(code)


def _few_malloc_arenas() -> None:
    """glibc gives each thread that allocates at once an arena of its own (up to 8 per
    core) and keeps what is freed in each: libmilter's threads made a worker's RSS grow
    from 46 to 93 MiB anonymous over 21,000 messages, 79 MiB with two arenas (bench/memory.py;
    Python's own objects grew by 1 MiB). Set before the worker starts any thread."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(_M_ARENA_MAX, 2)


def _die_with_parent() -> None:
    """Have the kernel kill this worker when its pool dies: orphans would keep accepting on
    the pool's socket, and a new pool could not bind it."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
    except (OSError, AttributeError) as exc:
        log.warning("worker %d will not die with its pool: %s", os.getpid(), exc)
    if os.getppid() == 1:  # the pool died before the call above
        os._exit(1)


def _start_recorder(app: MilterApp) -> ScanRecorder | None:
    """This worker's scan statistics writer (a thread: started after the fork), on the store
    handle its checks use."""
    c = app.config.controller
    if not c.record_scans:
        return None
    try:
        storage = app.scanner.services.storage_opener(writes=True)()
    except StorageError as exc:
        log.error("worker %d: scan statistics off: %s", os.getpid(), exc)
        return None
    return ScanRecorder(storage, c.history_size, c.flush_interval).start()


def _stop_recorder(app: MilterApp) -> None:
    if app.recorder is not None:
        app.recorder.stop()


def _balance(app: MilterApp, gate: Gate) -> None:
    """Re-check now and then: other workers' loads change without our sessions changing
    (and the update is this worker's heartbeat on the board)."""
    while True:
        time.sleep(CHECK_INTERVAL)
        gate.update(app.active)


def _drain_on_signal(app: MilterApp, gate: Gate, shutdown_timeout: float) -> None:
    signal.sigwait({DRAIN_SIGNAL})
    try:
        gate.drain()
        # A connection accepted just before the gate closed reaches our first callback a
        # moment later; give it that moment before counting open sessions.
        time.sleep(_DRAIN_GRACE)
        log.info("worker %d: draining, %d session(s) open", os.getpid(), app.active)
        if not app.wait_idle(shutdown_timeout):
            log.warning("worker %d: sessions still open after %.0fs; exiting anyway",
                        os.getpid(), shutdown_timeout)
    except Exception:
        log.exception("worker %d: drain failed; exiting", os.getpid())
    _stop_recorder(app)
    logging.shutdown()
    os._exit(0)


# --- pools -------------------------------------------------------------------------------

@dataclass
class _Backoff:
    delay: float = 0.0
    not_before: float = 0.0

    def crashed(self, lived: float) -> None:
        if lived >= _STABLE_AFTER:
            self.delay = 0.0
        self.delay = min(_RESTART_MAX, max(_RESTART_MIN, self.delay * 2))
        self.not_before = time.monotonic() + self.delay


@dataclass
class _Slot:
    """One worker's place in a pool: the process in it (0: none) and its own back-off, so
    one worker dying again and again does not hold back the restart of the others."""

    pid: int = 0
    started: float = 0.0
    died: float = 0.0
    backoff: _Backoff = field(default_factory=_Backoff)
    board_slot: int = -1  # its place on the SessionBoard


def _listen_fds(spec: str) -> list[int]:
    """The fd libmilter opened for `spec`, found by address (libmilter does not return it)."""
    kind, _, rest = spec.partition(":")
    fds = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            sock = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        try:
            if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) != 1:
                continue
            local = sock.getsockname()
            is_unix = kind in ("unix", "local") and local == rest
            is_inet = kind.startswith("inet") and isinstance(local, tuple) \
                and str(local[1]) == rest.partition("@")[0]
            if is_unix or is_inet:
                fds.append(fd)
        finally:
            sock.close()
    return fds


def _prepare_socket(spec: str, config: Config) -> None:
    kind, _, rest = spec.partition(":")
    if kind in ("unix", "local"):
        os.chmod(rest, int(config.milter.socket_mode, 8))
        if config.milter.socket_group:
            import grp

            os.chown(rest, -1, grp.getgrnam(config.milter.socket_group).gr_gid)
        return
    # libmilter never sets TCP_NODELAY; Nagle plus delayed ACKs then cost ~40 ms twice per
    # message. Linux copies the option from the listening socket to every accepted one.
    for fd in _listen_fds(spec):
        sock = socket.socket(fileno=os.dup(fd))
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        finally:
            sock.close()


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
        _register_callbacks()
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
        _prepare_socket(self.spec, self.config)
        self.listen_fds = _listen_fds(self.spec)
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
            time.sleep(_TICK)
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
        pid = os.fork()
        if pid == 0:
            gate = Gate(self.board, board_slot, self.listen_fds,
                        threading.main_thread().ident or 0)
            _worker_main(app, gate, self.config.milter.shutdown_timeout)
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
        for pid, status in _exited_children():
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
                      _describe_status(status), lived, slot.backoff.delay)
            _count_restart(self.config)

    def _reload(self) -> None:
        reloaded = reload_pipeline(self.config_path, log)
        if reloaded is None:
            return
        config, scanner = reloaded
        if config.milter.listen != self.config.milter.listen:
            log.warning("milter.listen changed: restart pyspamd to apply it")
        self.config, self.scanner = config, scanner
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
            _kill(pid, DRAIN_SIGNAL)
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
                _kill(pid, signal.SIGKILL)
                self.draining[pid] = now + 60  # reaped soon; no second line meanwhile

    def _shutdown(self) -> None:
        children = self._children()
        for pid in children:
            _kill(pid, DRAIN_SIGNAL)
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
            _kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        if self.spec.startswith(("unix:", "local:")):
            Path(self.spec.partition(":")[2]).unlink(missing_ok=True)


def _count_restart(config: Config) -> None:
    """For the controller's pyspamd_worker_restarts_total; rare, so written at once."""
    try:
        with open_storage(config.storage, create=True) as storage:
            storage.incr(EVENT_KEY + "worker_restarts")
    except Exception as exc:  # counting must not stop the restart
        log.warning("worker restart not counted: %s", exc)


def _exited_children() -> Iterator[tuple[int, int]]:
    """(pid, status) of each child that has exited, without waiting for the others."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:  # no children at all
            return
        if pid == 0:
            return
        yield pid, status


def _kill(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit {os.WEXITSTATUS(status)}"


# --- master ------------------------------------------------------------------------------

@dataclass
class _Health:
    """The master's view of one pool: the probe under way and the failures in a row."""

    next_probe: float
    probe: Probe | None = None
    failures: int = 0
    replaced: bool = False  # its workers were replaced after failures; next step: restart


@dataclass
class Master:
    config_path: Path | None
    config: Config
    scanner: Scanner
    pools: dict[int, str] = field(default_factory=dict)  # pid -> listener spec
    backoff: dict[str, _Backoff] = field(default_factory=dict)
    started: dict[int, float] = field(default_factory=dict)
    health: dict[str, _Health] = field(default_factory=dict)
    stopping: bool = False
    reload_requested: bool = False
    exit_code: int = 0

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)
        log.info("pyspamd starting: %s", ", ".join(self.config.milter.listen))
        if self.config.dns.auto_note:
            log.info("%s", self.config.dns.auto_note)
        _mark_started(self.config)
        while not self.stopping:
            self._reap()
            if self.stopping:  # a pool could not listen: no respawn
                break
            if self.reload_requested:
                self.reload_requested = False
                self._reload()
            running = set(self.pools.values())
            self._stop_unwanted_controller()
            for spec in self._children_wanted():
                backoff = self.backoff.setdefault(spec, _Backoff())
                if spec not in running and time.monotonic() >= backoff.not_before:
                    self._spawn_pool(spec)
            self._check_health()
            time.sleep(_TICK)
        for pid in self.pools:
            _kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.config.milter.shutdown_timeout + 15
        while self.pools and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.05)
        for pid in list(self.pools):
            _kill(pid, signal.SIGKILL)
        log.info("pyspamd stopped")
        return self.exit_code

    def _on_stop(self, signum: int, frame: object) -> None:
        self.stopping = True

    def _on_reload(self, signum: int, frame: object) -> None:
        self.reload_requested = True

    def _children_wanted(self) -> list[str]:
        """The listeners' pools, and the controller (a child of its own, so scanning
        workers never wait on it; restarted with the same back-off)."""
        wanted = list(self.config.milter.listen)
        if self.config.controller.enabled:
            wanted.append(CONTROLLER)
        return wanted

    def _stop_unwanted_controller(self) -> None:
        if not self.config.controller.enabled:
            for pid, spec in self.pools.items():
                if spec == CONTROLLER:
                    _kill(pid, signal.SIGTERM)

    def _spawn_pool(self, spec: str) -> None:
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                if spec == CONTROLLER:
                    code = _controller_main(self.config_path, self.config, self.scanner)
                else:
                    Pool(spec, self.config_path, self.config, self.scanner).run()
            except Exception:
                log.exception("%s failed", spec if spec == CONTROLLER else f"pool for {spec}")
                code = 1
            logging.shutdown()
            os._exit(code)
        self.pools[pid] = spec
        self.started[pid] = time.monotonic()
        old = self.health.get(spec)
        if old is not None and old.probe is not None:
            old.probe.sock.close()  # a probe of the pool that died
        self.health[spec] = _Health(time.monotonic() + self.config.milter.health_check_interval)

    def _check_health(self) -> None:
        """Probe each pool now and then; a pool that fails _HEALTH_FAILURES times in a row
        gets new workers, and one that fails as often again after that is killed and
        started again."""
        m = self.config.milter
        if m.health_check_interval <= 0:
            return
        now = time.monotonic()
        for pid, spec in list(self.pools.items()):
            health = self.health.get(spec)
            if spec == CONTROLLER or health is None:
                continue
            if health.probe is None:
                if now >= health.next_probe:
                    health.probe = Probe(spec, m.health_check_timeout)
                continue
            outcome = health.probe.step()
            if outcome is None:
                continue
            health.probe = None
            health.next_probe = now + m.health_check_interval
            if not outcome:
                health.failures, health.replaced = 0, False
                continue
            health.failures += 1
            log.warning("health check of %s failed (%d in a row): %s", spec, health.failures,
                        outcome)
            if health.failures < _HEALTH_FAILURES:
                continue
            health.failures = 0
            if not health.replaced:
                log.error("pool for %s stopped answering; replacing its workers", spec)
                health.replaced = True
                _kill(pid, REPLACE_SIGNAL)
            else:
                log.error("pool for %s still not answering; killing it to start it again",
                          spec)
                _kill(pid, signal.SIGKILL)  # its workers die with it (PR_SET_PDEATHSIG)

    def _reap(self) -> None:
        for pid, status in _exited_children():
            spec = self.pools.pop(pid, None)
            if spec is None or self.stopping:
                continue
            if os.WIFEXITED(status) and os.WEXITSTATUS(status) == EXIT_NO_SOCKET:
                self.stopping, self.exit_code = True, 1  # the pool said why
                continue
            backoff = self.backoff.setdefault(spec, _Backoff())
            backoff.crashed(time.monotonic() - self.started.pop(pid, time.monotonic()))
            log.error("pool for %s died (%s); restarting in %.1fs", spec,
                      _describe_status(status), backoff.delay)

    def _reload(self) -> None:
        reloaded = reload_pipeline(self.config_path, log)  # the pools load their own
        if reloaded is None:
            return
        self.config = reloaded[0]
        for pid in self.pools:
            _kill(pid, signal.SIGHUP)


CONTROLLER = "controller"  # the controller's entry among the master's children


def _controller_main(config_path: Path | None, config: Config, scanner: Scanner) -> int:
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    from pyspamd.controller.server import run_controller  # aiohttp only in this process

    return run_controller(config_path, config, scanner)


def _mark_started(config: Config) -> None:
    """The daemon's start time, for the controller's uptime."""
    try:
        with open_storage(config.storage, create=True) as storage:
            storage.set(STARTED, str(int(time.time())).encode())
    except Exception as exc:
        log.warning("start time not recorded: %s", exc)


def _daemonize(pidfile: Path | None) -> None:
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    os.chdir("/")
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)


def serve(config_path: Path | None, daemon: bool = False, pidfile: Path | None = None) -> int:
    """Run the milter until SIGTERM. Config and rules are validated before anything forks."""
    if config_path is not None:
        config_path = config_path.resolve()
    config = load_config(config_path)
    scanner = Scanner.from_config(config)
    problems = write_problems(config)
    if problems:
        raise StartupError("pyspamd not started: " + "; ".join(problems))
    claimed = claim_instance(config, pidfile)  # StartupError: another daemon runs here
    setup_logging(config.logging, daemon=daemon)
    if daemon:
        _daemonize(pidfile)
    if claimed is not None:
        claimed.write(os.getpid())
    try:
        return Master(config_path, config, scanner).run()
    finally:
        if claimed is not None:
            claimed.release()
        sys.stdout.flush()
