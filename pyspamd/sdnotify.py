"""systemd's readiness protocol (sd_notify(3)): one datagram to $NOTIFY_SOCKET per state
change, so a Type=notify unit is "started" only once the milter answers, "reloading" while
SIGHUP is handled, and "stopping" while the workers finish. Without $NOTIFY_SOCKET (no
systemd, Type=simple, a test) nothing is sent. The protocol is one sendto(); libsystemd's
own sd_notify does the same."""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger("pyspamd.master")


def notify(*states: str) -> bool:
    """Send "KEY=value" lines to systemd; False when there is no socket or it failed."""
    where = os.environ.get("NOTIFY_SOCKET", "")
    if not where:
        return False
    if where.startswith("@"):  # an abstract socket
        where = "\0" + where[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(where)
            sock.sendall("\n".join(states).encode())
    except OSError as exc:
        log.warning("cannot tell systemd %s: %s", states[0], exc)
        return False
    return True


def reloading() -> bool:
    # systemd 253 and later want the time of the reload with it (Type=notify-reload)
    return notify("RELOADING=1",
                  f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")
