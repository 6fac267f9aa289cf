"""Logging for the daemon: stderr (systemd's journal), a file, or syslog's mail facility.

target = "auto" (the default) follows how pyspamd was started, as Postfix's own logging does:
in the foreground (under systemd, whose journal reads stderr, or in a terminal) to stderr;
detached with --daemon, where stderr is /dev/null, to syslog's mail facility, next to
Postfix's lines in /var/log/mail.log or `journalctl -t pyspamd` (in a container with no
syslog daemon: a file of its own in /var/log/pyspamd when the package made that directory:
pyspamd.log for /etc/pyspamd/pyspamd.toml, a name made from the config's path for any other
instance, so two daemons on one host never write one file).
"""

from __future__ import annotations

import dataclasses
import logging
import logging.handlers
import os
import sys
from pathlib import Path

from pyspamd.config import DEFAULT_CONFIG_PATH, LoggingConfig

_FORMAT = "%(asctime)s pyspamd[%(process)d]: %(levelname)s %(name)s: %(message)s"
# The journal and syslog stamp time, program and pid themselves.
_BARE_FORMAT = "%(levelname)s %(name)s: %(message)s"
SYSLOG_SOCKET = "/dev/log"
# The Debian package makes this directory (owned by pyspamd) and rotates its *.log files.
DAEMON_LOG_DIR = Path("/var/log/pyspamd")


def daemon_log_file(config_path: Path | None) -> Path:
    """The log file of the instance run with this config, where no syslog daemon runs:
    pyspamd.log for the package's config (or none), else named after the config's path as
    systemd names instances (/srv/mx2/pyspamd.toml: pyspamd-srv-mx2-pyspamd.log)."""
    if config_path is None or config_path.resolve() == DEFAULT_CONFIG_PATH.resolve():
        return DAEMON_LOG_DIR / "pyspamd.log"
    name = str(config_path.resolve().with_suffix("")).strip("/")
    name = "".join(c if c.isalnum() or c in "._" else "-" for c in name)
    return DAEMON_LOG_DIR / f"pyspamd-{name}.log"


def resolve_target(target: str, daemon: bool, config_path: Path | None = None) -> str:
    """The target "auto" stands for: "syslog" when detaching, else "stderr". Detaching on a
    machine with no syslog daemon (a container: no /dev/log), this instance's log file, when
    this user may write its directory; else syslog all the same (and a warning)."""
    if target != "auto":
        return target
    if not daemon:
        return "stderr"
    if not os.path.exists(SYSLOG_SOCKET) and os.access(DAEMON_LOG_DIR, os.W_OK):
        return str(daemon_log_file(config_path))
    return "syslog"


def stderr_is_journal() -> bool:
    """True when systemd connected our stderr to the journal ($JOURNAL_STREAM names it)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(2)
    except OSError:
        return False
    return stream == f"{st.st_dev}:{st.st_ino}"


def describe_target(config: LoggingConfig, daemon: bool,
                    config_path: Path | None = None) -> str:
    """Where the log goes, for the start-up line on the terminal and for configtest."""
    target = resolve_target(config.target, daemon, config_path)
    if target == "syslog":
        where = f"syslog (facility {config.syslog_facility})"
        if not os.path.exists(SYSLOG_SOCKET):
            where += f", but {SYSLOG_SOCKET} is missing: no syslog daemon runs to receive it"
        return where
    if target == "stderr":
        return "the journal" if stderr_is_journal() else "stderr"
    return target


def setup_logging(config: LoggingConfig, daemon: bool = False,
                  config_path: Path | None = None) -> None:
    target = resolve_target(config.target, daemon, config_path)
    handler: logging.Handler
    if target == "stderr":
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(
            _BARE_FORMAT if stderr_is_journal() else _FORMAT))
    elif target == "syslog":
        address = SYSLOG_SOCKET if os.path.exists(SYSLOG_SOCKET) else ("localhost", 514)
        handler = logging.handlers.SysLogHandler(
            address=address, facility=config.syslog_facility.lower())
        # The tag syslog files the line under ("pyspamd[PID]:"), as Postfix writes its own.
        handler.setFormatter(logging.Formatter("pyspamd[%(process)d]: " + _BARE_FORMAT))
    else:
        # WatchedFileHandler reopens the file after logrotate moves it.
        handler = logging.handlers.WatchedFileHandler(target)
        handler.setFormatter(logging.Formatter(_FORMAT))
    root = logging.getLogger("pyspamd")
    root.handlers[:] = [handler]
    root.setLevel(config.level.upper())
    root.propagate = False
    if daemon:
        # The last thing the admin sees before the terminal is let go.
        print(f"pyspamd: detaching; logging to {describe_target(config, daemon, config_path)}",
              file=sys.stderr)


def setup_admin_logging(config: LoggingConfig, config_path: Path | None = None) -> None:
    """For pyspamc commands that change what the daemon keeps (a quarantine release): their
    lines go where the daemon's go, a file or syslog (which the journal also collects)."""
    target = resolve_target(config.target, daemon=True, config_path=config_path)
    setup_logging(dataclasses.replace(config, target="syslog" if target == "stderr"
                                      else target))
