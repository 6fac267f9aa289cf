"""A milter worker process: the milter protocol in the main thread (an event loop reading
every connection, protocol.py, with scans in a few threads; or, with transport =
"libmilter", libmilter's listener and a thread per SMTP session), the gate that balances
connections between the pool's workers (gate.py), and the drain on DRAIN_SIGNAL: stop
accepting, let the open sessions finish, exit (why not libmilter's own SIGTERM handling:
server.py)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import Milter
import milter

from pyspamd.milter.gate import CHECK_INTERVAL, Gate, install_kick_handler
from pyspamd.milter.protocol import MilterServer
from pyspamd.milter.session import MilterApp, session_class
from pyspamd.stats.recorder import ScanRecorder
from pyspamd.storage import StorageError

log = logging.getLogger("pyspamd.master")  # one logger for the daemon's supervision

_DRAIN_GRACE = 0.5  # seconds between closing a worker's gate and counting its sessions
_PR_SET_PDEATHSIG = 1
_M_ARENA_MAX = -8  # mallopt()
# libmilter runs each connection in its own thread, and every stage is a short callback that
# takes the GIL. At Python's default 5 ms switch interval, threads waiting with a header or
# body chunk force the thread that is scanning to hand over the GIL again and again. A worker
# with 4 connections spent 3.9 ms CPU per message at 5 ms and 3.4 ms at 50 ms (direct milter
# protocol, 2,000 corpus messages, two runs each); callbacks still run as soon as a scan ends,
# so one connection's latency does not change.
_GIL_SWITCH_INTERVAL = 0.05
# Threads that run end of message (the scan) beside the event loop. Scans hold the GIL, so
# one would do for CPU; more let a scan waiting on DNS leave the worker's core to the next.
SCAN_THREADS = 4


def register_callbacks() -> None:
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


def worker_main(app: MilterApp, gate: Gate, shutdown_timeout: float,
                listen_fds: list[int]) -> None:
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
        if app.config.milter.transport == "asyncio":
            _serve(app, gate, listen_fds)
        else:
            milter.main()  # libmilter's listener runs here, in the main thread (gate.py)
    except Exception:
        log.exception("worker %d: milter loop failed", os.getpid())
        code = 1
    _stop_recorder(app)
    logging.shutdown()
    os._exit(code)


def _serve(app: MilterApp, gate: Gate, listen_fds: list[int]) -> None:
    """pyspamd's own milter protocol: one event loop for all this worker's connections."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    fail = app.config.milter.fail_action
    server = MilterServer(
        loop, listen_fds, Milter.factory,
        ThreadPoolExecutor(SCAN_THREADS, thread_name_prefix="scan"),
        float(app.config.milter.timeout),
        lambda: Milter.TEMPFAIL if fail == "tempfail" else Milter.ACCEPT,
    )

    def switch(accept: bool) -> None:
        loop.call_soon_threadsafe(server.set_accepting, accept)

    gate.switch = switch
    server.start()
    loop.run_forever()


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
