"""`[milter]`: the sockets, workers and replies of the milter, and their checks."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pyspamd.config_schema import Locator, bad_networks


@dataclass
class MilterConfig:
    listen: list[str] = field(default_factory=lambda: ["inet:11332@127.0.0.1"])
    workers: int = 0  # 0: one per CPU
    # "asyncio": pyspamd's own milter protocol (protocol.py); "libmilter": Sendmail's library
    # through pymilter, with a thread per connection.
    transport: str = "asyncio"
    socket_mode: str = "0660"
    socket_group: str = ""
    timeout: int = 300
    scan_timeout: float = 20.0
    max_size: int = 10 << 20
    scan_authenticated: bool = False
    trusted_networks: list[str] = field(default_factory=list)
    scan_trusted: bool = False
    fail_action: str = "accept"
    reject_message: str = (
        "Message rejected as spam (score {score:.1f} of {required:.1f}: {symbols})")
    soft_reject_message: str = "Try again later: message looks like spam ({symbols})"
    # Why a message is held, when the score put it in [actions] quarantine's band.
    quarantine_message: str = "Quarantined as spam (score {score:.1f}: {symbols})"
    greylist_message: str = "Greylisted, please try again later"
    foreign_headers: str = "remove"
    server_name: str = ""
    shutdown_timeout: float = 30.0
    # The master connects to each listener this often and expects an OPTNEG reply within
    # health_check_timeout; three failures in a row replace the pool's workers (0: no checks).
    health_check_interval: float = 10.0
    health_check_timeout: float = 10.0
    # Recipients of one message whose [[settings]] differ: "defer" answers 452 to those
    # unlike the first, so the sender delivers them in a transaction of their own; "strictest"
    # takes them all and scans with the strictest of their settings.
    mixed_settings: str = "defer"


TRANSPORTS = ("asyncio", "libmilter")
_LISTEN = re.compile(r"(?:inet6?:\d{1,5}(?:@\S+)?|(?:unix|local):/\S+)\Z")
_TEMPLATE_FIELDS = {"score": 0.0, "required": 0.0, "symbols": "", "action": "", "queue_id": ""}


def check_milter(m: MilterConfig, loc: Locator) -> list[str]:
    """Values that TOML types cannot express: socket specs, networks, templates, choices."""
    errors: list[str] = []

    def bad(key: str, what: str) -> None:
        errors.append(f"{loc.where(('milter', key))}: milter.{key} {what}")

    for spec in m.listen:
        if not _LISTEN.match(spec):
            bad("listen", f"has {spec!r}; write inet:PORT@HOST, inet6:PORT@HOST or unix:/PATH")
    if not m.listen:
        bad("listen", "is empty; give at least one socket, e.g. \"inet:11332@127.0.0.1\"")
    if m.transport not in TRANSPORTS:
        bad("transport", f"must be \"asyncio\" or \"libmilter\", got {m.transport!r}")
    if m.workers < 0:
        bad("workers", "must be 0 (one per CPU) or more")
    try:
        int(m.socket_mode, 8)
    except ValueError:
        bad("socket_mode", f"must be an octal mode like \"0660\", got {m.socket_mode!r}")
    for net in bad_networks(m.trusted_networks):
        bad("trusted_networks", f"has {net!r}, which is not an address or CIDR network")
    if m.fail_action not in ("accept", "tempfail"):
        bad("fail_action", f"must be \"accept\" or \"tempfail\", got {m.fail_action!r}")
    if m.foreign_headers not in ("remove", "rename", "keep"):
        bad("foreign_headers", "must be \"remove\", \"rename\" or \"keep\"")
    for key in ("reject_message", "soft_reject_message", "greylist_message",
                "quarantine_message"):
        try:
            getattr(m, key).format(**_TEMPLATE_FIELDS)
        except (KeyError, ValueError, IndexError) as exc:
            bad(key, f"is not a valid template ({exc}); fields: {', '.join(_TEMPLATE_FIELDS)}")
    if m.mixed_settings not in ("defer", "strictest"):
        bad("mixed_settings", f"must be \"defer\" or \"strictest\", got {m.mixed_settings!r}")
    if m.max_size <= 0 or m.timeout <= 0 or m.scan_timeout <= 0 or m.shutdown_timeout <= 0:
        bad("max_size", "and the timeouts must be positive")
    if m.health_check_interval < 0 or m.health_check_timeout <= 0:
        bad("health_check_interval", "must be 0 (off) or positive, and health_check_timeout "
            "positive (seconds)")
    return errors
