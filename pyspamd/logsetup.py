"""Logging for the daemon: stderr (systemd's journal), a file, or syslog's mail facility."""

from __future__ import annotations

import logging
import logging.handlers
import os

from pyspamd.config import LoggingConfig

_FORMAT = "%(asctime)s pyspamd[%(process)d]: %(levelname)s %(name)s: %(message)s"


def setup_logging(config: LoggingConfig) -> None:
    target = config.target
    handler: logging.Handler
    if target == "stderr":
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(_FORMAT))
    elif target == "syslog":
        address = "/dev/log" if os.path.exists("/dev/log") else ("localhost", 514)
        handler = logging.handlers.SysLogHandler(
            address=address, facility=config.syslog_facility.lower())
        handler.setFormatter(logging.Formatter("pyspamd[%(process)d]: %(name)s: %(message)s"))
    else:
        # WatchedFileHandler reopens the file after logrotate moves it.
        handler = logging.handlers.WatchedFileHandler(target)
        handler.setFormatter(logging.Formatter(_FORMAT))
    root = logging.getLogger("pyspamd")
    root.handlers[:] = [handler]
    root.setLevel(config.level.upper())
    root.propagate = False
