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

The modules: master.py (the master), pool.py (a pool), worker.py (a worker), listener.py
(the pool's socket), children.py (back-off and reaping, for master and pools); this one
starts the daemon.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from pyspamd.config import load_config
from pyspamd.logsetup import setup_logging
from pyspamd.milter.instance import StartupError, claim_instance
from pyspamd.milter.master import Master
from pyspamd.permissions import write_problems
from pyspamd.policy.remote_maps import refresh_now
from pyspamd.scanner import Scanner


def _daemonize() -> Callable[[], None]:
    """Detach from the terminal. The first process waits, and exits only when the daemon
    calls the function returned here (after writing its pidfile): an init script or test
    that reads the pidfile as soon as `pyspamd --daemon` returns finds the pid in it. If the
    daemon dies before, the first process exits 1."""
    read_end, write_end = os.pipe()
    if os.fork():
        os.close(write_end)
        os._exit(0 if os.read(read_end, 1) == b"1" else 1)
    os.close(read_end)
    os.setsid()
    if os.fork():
        os._exit(0)
    os.chdir("/")
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)

    def ready() -> None:
        os.write(write_end, b"1")
        os.close(write_end)

    return ready


def serve(config_path: Path | None, daemon: bool = False, pidfile: Path | None = None) -> int:
    """Run the milter until SIGTERM. Config and rules are validated before anything forks."""
    if config_path is not None:
        config_path = config_path.resolve()
    config = load_config(config_path)
    refresh_now(config)  # https:// maps: the scanner's maps read the fetched copies
    scanner = Scanner.from_config(config)
    problems = write_problems(config)
    if problems:
        raise StartupError("pyspamd not started: " + "; ".join(problems))
    claimed = claim_instance(config, pidfile)  # StartupError: another daemon runs here
    setup_logging(config.logging, daemon=daemon, config_path=config_path)
    ready = _daemonize() if daemon else None
    if claimed is not None:
        claimed.write(os.getpid())
    if ready is not None:
        ready()
    try:
        return Master(config_path, config, scanner).run()
    finally:
        if claimed is not None:
            claimed.release()
        sys.stdout.flush()
