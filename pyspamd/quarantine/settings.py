"""`[quarantine]`: where held messages are kept, how much and how long, what happens when
they cannot be kept, and where a released message goes; the checks of its options."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pyspamd.config_schema import Locator, beside_config, split_host_port

# When a message cannot be kept (the store is full or unwritable): Postfix's hold queue,
# or the reply the MTA gives.
FALLBACKS = ("hold", "reject", "tempfail", "accept")


@dataclass
class QuarantineConfig:
    enabled: bool = True  # off: the quarantine action is Postfix's hold queue, as before
    dir: str = ""  # empty: quarantine/ in the state directory (beside pyspamd.sqlite)
    max_size: int = 1 << 30  # bytes of held messages, all together
    expire_days: float = 30.0
    fallback_action: str = "hold"
    release_smtp: str = "127.0.0.1:25"  # HOST:PORT of the MTA a released message goes to
    release_timeout: float = 30.0
    learn_ham_on_release: bool = False  # also `pyspamc quarantine release --learn-ham`


def check_quarantine(q: QuarantineConfig, config_path: Path | None, loc: Locator) -> list[str]:
    """Also resolves quarantine.dir beside the config file."""
    errors: list[str] = []

    def bad(key: str, what: str) -> None:
        errors.append(f"{loc.where(('quarantine', key))}: quarantine.{key} {what}")

    if q.dir:
        q.dir = beside_config(q.dir, config_path)
    if q.max_size <= 0:
        bad("max_size", "must be positive")
    if q.expire_days <= 0:
        bad("expire_days", "must be positive")
    if q.fallback_action not in FALLBACKS:
        bad("fallback_action", f"must be one of {', '.join(FALLBACKS)}, got "
            f"{q.fallback_action!r}")
    try:
        split_host_port(q.release_smtp)
    except ValueError:
        bad("release_smtp", f"is {q.release_smtp!r}; write HOST:PORT (127.0.0.1:25)")
    if q.release_timeout <= 0:
        bad("release_timeout", "must be positive")
    return errors
