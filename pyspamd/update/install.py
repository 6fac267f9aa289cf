"""`pyspamc update`: download each channel's bundle, verify it, test it in a staging
directory as the daemon would load it, switch `current` to it in one rename, and tell the
daemon to reload. The set in force is never touched until the new one passed every check;
the one before stays as `previous` for `--rollback`.

Layout of DIR/CHANNEL/: bundle.tar.gz (the last download), fetch.json (its validators),
sets/VERSION-TIME/ (installed sets), current and previous (symlinks into sets/), and
staging-PID/ while a set is being tested, and .lock (one update of a channel at a time).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pyspamd.config import Config, ConfigError, load_config
from pyspamd.milter.instance import is_pyspamd
from pyspamd.update.bundle import BundleError, installed_version, public_key, unpack_verified
from pyspamd.update.fetch import FetchError, fetch_sync, remember
from pyspamd.update.settings import ChannelConfig, active_set, channel_dir

# sa-update's exit codes, so cron jobs can chain `&& reload`.
UPDATED = 0
NOTHING_NEW = 1
FAILED = 4


class UpdateError(Exception):
    """Why a channel was not updated: one line; the set in force is untouched."""


@dataclass(frozen=True)
class Outcome:
    channel: str
    updated: bool
    line: str


@contextlib.contextmanager
def channel_lock(config: Config, channel: ChannelConfig) -> Iterator[None]:
    """One `pyspamc update` per channel at a time (cron and an admin at once)."""
    base = channel_dir(config.update, channel.name)
    try:
        base.mkdir(parents=True, exist_ok=True)
        fd = os.open(base / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise UpdateError(f"cannot create {base}: {exc.strerror or exc}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UpdateError("another pyspamc update of this channel is running") from None
        yield
    finally:
        os.close(fd)


def update_channel(config: Config, channel: ChannelConfig) -> Outcome:
    base = channel_dir(config.update, channel.name)
    key = _key(channel)
    current = active_set(config.update, channel.name)
    bundle, state = base / "bundle.tar.gz", base / "fetch.json"
    try:
        fetched, validators = fetch_sync(channel.url, bundle, state if current else None,
                                         config.update.timeout, config.update.max_size,
                                         config.update.ca_file)
    except FetchError as exc:
        raise UpdateError(str(exc)) from exc
    if not fetched.changed:
        return Outcome(channel.name, False,
                       f"version {installed_version(current)} is current (not modified)")
    for left in base.glob("staging-*"):  # of a run that was killed (we hold the lock)
        shutil.rmtree(left, ignore_errors=True)
    staging = base / f"staging-{os.getpid()}"
    try:
        try:
            staging.mkdir()
            manifest = unpack_verified(bundle, key, staging)
        except BundleError as exc:
            raise UpdateError(str(exc)) from exc
        except OSError as exc:
            raise UpdateError(f"cannot write the new set in {staging}: "
                              f"{exc.strerror or exc}") from exc
        running = installed_version(current)
        if running is not None and manifest.version == running:
            remember(state, validators)
            return Outcome(channel.name, False, f"version {running} is current")
        if running is not None and manifest.version < running:
            raise UpdateError(f"bundle version {manifest.version} is older than the "
                              f"installed {running}; refused (use --rollback to go back)")
        errors = test_set(config, channel.name, staging)
        if errors:
            raise UpdateError(f"version {manifest.version} fails the config test, not "
                              f"installed: {errors[0]}"
                              + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""))
        target = base / "sets" / f"{manifest.version}-{int(time.time())}"
        try:
            target.parent.mkdir(exist_ok=True)
            staging.rename(target)
            switch(base, target)
            remember(state, validators)
        except OSError as exc:
            raise UpdateError(f"cannot install the new set in {base}: "
                              f"{exc.strerror or exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    prune(base)
    return Outcome(channel.name, True, f"updated to version {manifest.version}"
                   + (f" (was {running})" if running is not None else ""))


def _key(channel: ChannelConfig) -> Ed25519PublicKey:
    try:
        return public_key(channel.key)
    except BundleError as exc:
        raise UpdateError(str(exc)) from exc


def test_set(config: Config, channel: str, staging: Path) -> list[str]:
    """The configtest of the daemon's config with this channel's set in `staging`: the
    config, every rule file, the content model and every map, loaded as the daemon would."""
    from pyspamd.checks.model import open_model
    from pyspamd.cli.pyspamd import configured_checks
    from pyspamd.model.linear import ModelError
    from pyspamd.policy.maps import MapSource
    from pyspamd.scanner import load_ruleset

    try:
        trial = load_config(config.path, staged={**config.update.staged, channel: str(staging)})
    except ConfigError as exc:
        return exc.errors
    errors = list(load_ruleset(trial, configured_checks(trial)).errors)
    if trial.model.enabled:
        try:
            open_model(trial.model)
        except ModelError as exc:
            errors.append(f"content model: {exc}")
    for map_config in trial.maps:
        if map_config.file.startswith(str(staging)):
            errors.extend(MapSource(map_config).loaded.errors)
    return errors


def _point(link: Path, target: Path) -> None:
    """Make `link` point at `target` in one rename: a reader sees the old or the new."""
    tmp = link.with_name(f".{link.name}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(os.path.relpath(target, link.parent))
    tmp.replace(link)


def switch(base: Path, target: Path) -> None:
    current = base / "current"
    old = current.resolve() if current.is_symlink() else None
    _point(current, target)
    if old is not None and old != target.resolve():
        _point(base / "previous", old)


def rollback(config: Config, channel: ChannelConfig) -> Outcome:
    base = channel_dir(config.update, channel.name)
    previous, current = base / "previous", base / "current"
    if not previous.is_dir():
        raise UpdateError("no previous set to roll back to")
    old, new = current.resolve(), previous.resolve()
    try:
        _point(current, new)
        _point(previous, old)
    except OSError as exc:
        raise UpdateError(f"cannot switch {current}: {exc.strerror or exc}") from exc
    return Outcome(channel.name, True, f"rolled back to version {installed_version(new)} "
                   f"(from {installed_version(old)})")


def prune(base: Path) -> None:
    """Keep the current and the previous set; drop older ones."""
    keep = {(base / name).resolve() for name in ("current", "previous")
            if (base / name).is_symlink()}
    sets = base / "sets"
    if sets.is_dir():
        for entry in sets.iterdir():
            if entry.resolve() not in keep:
                shutil.rmtree(entry, ignore_errors=True)


def signal_daemon(pidfile: str) -> str:
    """SIGHUP to the daemon of `pidfile`: it reloads config, rules, maps and model (and
    keeps the running set if the new one fails, as on any reload). Returns what happened."""
    try:
        text = Path(pidfile).read_text().strip()
    except OSError:
        return f"no running daemon found (no {pidfile}); the new set is used at its start"
    if not text.isdigit():
        return f"{pidfile} holds no pid; reload pyspamd yourself"
    if not is_pyspamd(int(text)):
        return f"pid {text} of {pidfile} is not a running pyspamd; the new set is used at its start"
    try:
        os.kill(int(text), signal.SIGHUP)
    except ProcessLookupError:
        return f"the daemon of {pidfile} is not running; the new set is used at its start"
    except PermissionError:
        return f"not allowed to signal pid {text}; run systemctl reload pyspamd"
    return f"told pyspamd (pid {text}) to reload"


def run_update(config: Config, rollback_only: bool = False,
               only: str | None = None) -> tuple[int, list[str]]:
    """Update (or roll back) every channel; (exit code, one line per channel)."""
    channels = [c for c in config.update.channels if only in (None, c.name)]
    if not channels:
        where = f" named {only}" if only else ""
        return NOTHING_NEW, [f"no update channel{where} configured ([[update.channels]] in "
                        f"{config.path or 'the config'}); nothing to do"]
    lines, updated, failed = [], False, False
    for channel in channels:
        try:
            with channel_lock(config, channel):
                outcome = rollback(config, channel) if rollback_only \
                    else update_channel(config, channel)
        except UpdateError as exc:
            failed = True
            lines.append(f"{channel.name}: update failed, running set kept: {exc}")
            continue
        updated = updated or outcome.updated
        lines.append(f"{channel.name}: {outcome.line}")
    if updated:
        lines.append(signal_daemon(config.update.pidfile))
    code = FAILED if failed else UPDATED if updated else NOTHING_NEW
    return code, lines
