"""`[controller]`: the HTTP API, metrics and web page, and the checks of its options."""

from __future__ import annotations

from dataclasses import dataclass, field

from pyspamd.config_schema import Locator, bad_networks, is_local_host, split_host_port
from pyspamd.controller.auth import HashError, parse_hash


@dataclass
class ControllerConfig:
    """`[controller]`: the HTTP API, metrics and web page, and the scan history it shows."""

    enabled: bool = True  # the milter's master starts it
    listen: str = "127.0.0.1:11334"
    password: str = ""  # read-only access; a hash printed by `pyspamc pw`
    enable_password: str = ""  # read-write access (learning); also good for reading
    secure_ip: list[str] = field(default_factory=lambda: ["127.0.0.1", "::1"])
    max_body: int = 10 << 20
    max_rcpts: int = 1000
    scan_threads: int = 4
    # A request's line and headers must arrive within header_timeout of the connection or of
    # the previous answer (also the limit for an idle kept-alive connection), its body within
    # body_timeout; past max_connections the longest idle connection is closed.
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 128
    record_scans: bool = True
    history_size: int = 1000
    flush_interval: float = 1.0


def check_controller(c: ControllerConfig, loc: Locator) -> list[str]:
    errors: list[str] = []

    def bad(key: str, what: str) -> None:
        errors.append(f"{loc.where(('controller', key))}: controller.{key} {what}")

    for key in ("password", "enable_password"):
        if getattr(c, key):
            try:
                parse_hash(getattr(c, key))
            except HashError as exc:
                bad(key, f"is not a password hash ({exc}); paste what `pyspamc pw` prints")
    for net in bad_networks(c.secure_ip):
        bad("secure_ip", f"has {net!r}, which is not an address or CIDR network")
    try:
        host, _ = split_host_port(c.listen)
    except ValueError:
        bad("listen", f"is {c.listen!r}; write HOST:PORT, e.g. \"127.0.0.1:11334\"")
    else:
        if c.enabled and not is_local_host(host) and not (c.password or c.enable_password):
            bad("listen", f"is {c.listen}, reachable from other hosts, and no password is set: "
                "anyone there could read the scan history and train Bayes. Set "
                "controller.enable_password to a hash from `pyspamc pw`, or listen on "
                "127.0.0.1 (behind a reverse proxy)")
    if c.header_timeout <= 0 or c.body_timeout <= 0:
        bad("header_timeout", "and body_timeout must be positive (seconds)")
    for key in ("max_body", "max_rcpts", "scan_threads", "history_size", "max_connections"):
        if getattr(c, key) <= 0:
            bad(key, "must be positive")
    if c.flush_interval <= 0:
        bad("flush_interval", "must be positive (seconds)")
    return errors
