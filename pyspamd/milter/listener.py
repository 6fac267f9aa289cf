"""The pool's listening socket as libmilter opened it: found by address, and given its mode,
group or TCP_NODELAY."""

from __future__ import annotations

import os
import socket
import stat

from pyspamd.config import Config


def listen_fds(spec: str) -> list[int]:
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


def prepare_socket(spec: str, config: Config) -> None:
    kind, _, rest = spec.partition(":")
    if kind in ("unix", "local"):
        os.chmod(rest, int(config.milter.socket_mode, 8))
        if config.milter.socket_group:
            import grp

            os.chown(rest, -1, grp.getgrnam(config.milter.socket_group).gr_gid)
        return
    # libmilter never sets TCP_NODELAY; Nagle plus delayed ACKs then cost ~40 ms twice per
    # message. Linux copies the option from the listening socket to every accepted one.
    for fd in listen_fds(spec):
        sock = socket.socket(fileno=os.dup(fd))
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        finally:
            sock.close()
