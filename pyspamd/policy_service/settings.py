"""`[policy_service]`: the sockets of the Postfix policy service, which decisions it makes,
and what it answers when the store does not."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from pyspamd.config_schema import Locator, beside_config


@dataclass
class PolicyServiceConfig:
    # inet:PORT@HOST or unix:/PATH, like milter.listen; empty: no policy service (default).
    listen: list[str] = field(default_factory=list)
    socket_mode: str = "0660"
    socket_group: str = ""  # e.g. "postfix", so smtpd may connect to a unix socket
    greylist: bool = True  # the [greylist] keys apply, as for the milter
    spf: bool = False
    spf_config: str = ""  # a policyd-spf.conf, read unchanged; empty: policyd-spf's defaults
    maps: bool = False  # [[maps]] whose match is known at RCPT time
    ratelimit: bool = False  # [ratelimit] limits, one token per recipient request
    rbl: bool = False  # [[rbl.lists]] of type ip matching client_ip
    rbl_reject_message: str = "Service unavailable; client [{ip}] blocked using {zone}"
    # postgrey's own files, read unchanged (hostnames, domains, IPs, CIDR, /regex/).
    whitelist_clients: list[str] = field(default_factory=list)
    whitelist_recipients: list[str] = field(default_factory=list)
    # postgrey --auto-whitelist-clients: a client passing this many triplets is no longer
    # greylisted (0: never).
    auto_whitelist_clients: int = 5
    greylist_text: str = "Greylisted, see https://postgrey.schweikert.ch/help/{domain}.html"
    store_down: str = "DUNNO"  # the answer when the store cannot be asked in time
    # Seconds one request may take; under Postfix's smtpd_policy_service_timeout (100 s)
    # and well under the time an SMTP client waits.
    request_timeout: float = 5.0
    idle_timeout: float = 300.0  # a connection with no request this long is closed
    max_connections: int = 500
    health_check_interval: float = 10.0
    health_check_timeout: float = 10.0


_LISTEN = re.compile(r"(?:inet6?:\d{1,5}(?:@\S+)?|(?:unix|local):/\S+)\Z")
_ACTION = re.compile(r"(?i)(DUNNO|OK|DEFER_IF_PERMIT|DEFER|4\d\d|5\d\d)(\s.*)?\Z")
_TEXT_FIELDS = {"domain": "", "sender": "", "recipient": "", "ip": "", "zone": "",
                "seconds": 0}


def check_policy_service(p: PolicyServiceConfig, config_path: Path | None,
                         loc: Locator) -> list[str]:
    """Also resolves the file names beside the config file."""
    errors: list[str] = []

    def bad(key: str, what: str) -> None:
        errors.append(f"{loc.where(('policy_service', key))}: policy_service.{key} {what}")

    for spec in p.listen:
        if not _LISTEN.match(spec):
            bad("listen", f"has {spec!r}; write inet:PORT@HOST, inet6:PORT@HOST or unix:/PATH")
    try:
        int(p.socket_mode, 8)
    except ValueError:
        bad("socket_mode", f"must be an octal mode like \"0660\", got {p.socket_mode!r}")
    if not _ACTION.match(p.store_down):
        bad("store_down", f"must be a Postfix access action such as DUNNO or \"451 4.3.0 "
            f"Try again later\", got {p.store_down!r}")
    for key in ("greylist_text", "rbl_reject_message"):
        try:
            getattr(p, key).format(**_TEXT_FIELDS)
        except (KeyError, ValueError, IndexError) as exc:
            bad(key, f"is not a valid template ({exc}); fields: {', '.join(_TEXT_FIELDS)}")
    if p.request_timeout <= 0 or p.idle_timeout <= 0:
        bad("request_timeout", "and idle_timeout must be positive (seconds)")
    if p.max_connections < 1:
        bad("max_connections", "must be 1 or more")
    if p.auto_whitelist_clients < 0:
        bad("auto_whitelist_clients", "must be 0 (off) or more")
    if p.health_check_interval < 0 or p.health_check_timeout <= 0:
        bad("health_check_interval", "must be 0 (off) or positive, and health_check_timeout "
            "positive (seconds)")
    p.whitelist_clients = [beside_config(f, config_path) for f in p.whitelist_clients]
    p.whitelist_recipients = [beside_config(f, config_path) for f in p.whitelist_recipients]
    if p.spf_config:
        p.spf_config = beside_config(p.spf_config, config_path)
        if not Path(p.spf_config).is_file():
            bad("spf_config", f"names {p.spf_config}, which is not a file")
    for path in [*p.whitelist_clients, *p.whitelist_recipients]:
        if not Path(path).is_file():
            bad("whitelist_clients", f"or whitelist_recipients names {path}, which is not a "
                "file")
    return errors
