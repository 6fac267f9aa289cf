"""One daemon per socket: checked before the daemon forks, so a second `pyspamd` says why in
one line and exits non-zero instead of starting workers that can never listen.

Three things tell that another daemon runs: a locked pidfile (or one naming a live pyspamd
that took no lock), a milter address something listens on, and the controller's address.
The pidfile is locked with flock() for the daemon's whole life: the lock survives the
--daemon forks (the open file goes with them) and vanishes with the process, so a stale
pidfile left by a crash never blocks a start and a live one is never overwritten.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from pyspamd.config import Config, split_host_port

# A pool whose socket cannot be opened exits with this (sysexits' EX_UNAVAILABLE), so the
# master stops instead of restarting it for ever.
EXIT_NO_SOCKET = 69


class StartupError(Exception):
    """Why this daemon must not start: one line for the admin."""


def milter_address(spec: str) -> tuple[int, object] | None:
    """(address family, socket address) of a listen spec; None for a form we do not know."""
    kind, _, rest = spec.partition(":")
    if kind in ("unix", "local"):
        return socket.AF_UNIX, rest
    port, _, host = rest.partition("@")
    if not port.isdigit():
        return None
    if kind == "inet6":
        return socket.AF_INET6, (host or "::", int(port))
    if kind == "inet":
        return socket.AF_INET, (host or "0.0.0.0", int(port))
    return None


def address_problem(family: int, address: object) -> str | None:
    """Why we could not listen on `address` now, or None. Binds with SO_REUSEADDR, as
    libmilter and aiohttp do, so a port in TIME_WAIT after a restart is not "in use"."""
    if family == socket.AF_UNIX:
        return _unix_problem(str(address))
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)  # type: ignore[arg-type]
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return "address in use (another pyspamd, or another program)"
            return exc.strerror or str(exc)
    return None


def _unix_problem(path: str) -> str | None:
    # libmilter removes an existing socket file before it binds: a live daemon's socket would
    # be taken from it without a word. A file nobody answers on is left from a crash.
    if not os.path.lexists(path):
        return None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except OSError:
            return None
    return "address in use (a process answers on this socket)"


def listen_problems(config: Config) -> list[str]:
    """One line per address this daemon would listen on that is taken."""
    problems = []
    specs = [("milter.listen", spec) for spec in config.milter.listen]
    specs += [("policy_service.listen", spec) for spec in config.policy_service.listen]
    for option, spec in specs:
        address = milter_address(spec)
        if address is None:
            continue
        problem = address_problem(*address)
        if problem:
            problems.append(f"{option} {spec}: {problem}")
    if config.controller.enabled:
        with contextlib.suppress(ValueError):
            host, port = split_host_port(config.controller.listen)
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            problem = address_problem(family, (host, port))
            if problem:
                problems.append(f"controller.listen {config.controller.listen}: {problem}")
    return problems


def is_pyspamd(pid: int) -> bool:
    """Whether the process `pid` is a pyspamd (a pid read from a stale pidfile may have been
    given to another program since)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"pyspamd" in cmdline


@dataclass
class PidFile:
    """The daemon's locked pidfile; keep the object (and so its open file) for the process'
    life."""

    path: Path
    fd: int

    @classmethod
    def claim(cls, path: Path) -> PidFile:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StartupError(f"pidfile {path}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise StartupError(
                f"pyspamd is already running (pid {pid or '?'}, pidfile {path} is locked)"
            ) from None
        pid = _read_pid(fd)
        if pid and pid != os.getpid() and is_pyspamd(pid):
            os.close(fd)  # a live daemon of an older version, which took no lock
            raise StartupError(f"pyspamd is already running (pid {pid} in {path})")
        return cls(path, fd)

    def write(self, pid: int) -> None:
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{pid}\n".encode(), 0)

    def release(self) -> None:
        """Remove the file if it still names us (the lock goes with the last open copy)."""
        if _read_pid(self.fd) == os.getpid():
            self.path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            os.close(self.fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def claim_instance(config: Config, pidfile: Path | None) -> PidFile | None:
    """Check that no other daemon runs here; lock the pidfile. Raises StartupError."""
    claimed = PidFile.claim(pidfile) if pidfile is not None else None
    problems = listen_problems(config)
    if problems:
        if claimed is not None:
            if _read_pid(claimed.fd) is None:  # the empty file we just made
                claimed.path.unlink(missing_ok=True)
            claimed.release()
        raise StartupError("pyspamd not started: " + "; ".join(problems))
    return claimed
