"""Maps whose file is an https:// address (rspamd's HTTP maps): fetched into [update]
dir/maps/ before the daemon builds its scanner, then polled every [update] map_refresh
seconds by a process of the master's own. A poll is a conditional request; a new copy,
checked against its signature when the map has a key, replaces the cached one in one
rename, and the workers' maps reload it as they do any edited map file. On any failure the
last good copy stays in use and one line says why."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from pathlib import Path

from pyspamd.config import Config, load_config
from pyspamd.policy.map_settings import MapConfig
from pyspamd.update.bundle import BundleError, public_key, verify
from pyspamd.update.fetch import FetchError, fetch, remember
from pyspamd.update.settings import UpdateConfig

log = logging.getLogger("pyspamd.maps")

SIGNATURE_SUFFIX = ".sig"  # the address of a map's signature: its own plus this


def remote_maps(config: Config) -> list[MapConfig]:
    return [m for m in config.maps if m.url]


def copy_age(m: MapConfig) -> float | None:
    """Seconds since the cached copy was last fetched or confirmed current; None: no copy."""
    try:
        return time.time() - Path(m.file).stat().st_mtime
    except OSError:
        return None


def describe_age(seconds: float | None) -> str:
    if seconds is None:
        return "no copy yet (the daemon fetches it at start)"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"copy of {seconds / size:.0f} {unit} ago"
    return f"copy of {seconds:.0f} s ago"


async def refresh(m: MapConfig, update: UpdateConfig) -> bool:
    """Fetch one map; True when a new copy was put in place. Errors are logged, not raised."""
    target = Path(m.file)
    download = target.with_name(target.name + ".download")
    state = target.with_name(target.name + ".fetch.json")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fetched, validators = await fetch(m.url, download, state if target.exists() else None,
                                          update.map_timeout, update.max_size, update.ca_file)
        if fetched.changed:
            data = download.read_bytes()
            if m.key:
                sig_path = target.with_name(target.name + ".sig.download")
                await fetch(m.url + SIGNATURE_SUFFIX, sig_path, None, update.map_timeout,
                            4096, update.ca_file)
                verify(public_key(m.key), data, sig_path.read_bytes(), f"{m.url}")
            tmp = target.with_name(f".{target.name}.{os.getpid()}")
            tmp.write_bytes(data)
            tmp.replace(target)
            remember(state, validators)
            log.info("map %s: fetched %s (%d bytes)", m.name, m.url, len(data))
            return True
        os.utime(target)  # confirmed current: the copy's age counts from now
        return False
    except (FetchError, BundleError, OSError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        log.error("map %s: %s; keeping the %s", m.name, why, describe_age(copy_age(m))
                  if copy_age(m) is not None else "map empty until a fetch succeeds")
        return False


async def refresh_all(config: Config) -> None:
    maps = remote_maps(config)
    if maps:
        await asyncio.gather(*(refresh(m, config.update) for m in maps))


def refresh_now(config: Config) -> None:
    """One round before the scanner is built, so the workers start with fresh copies."""
    if remote_maps(config):
        asyncio.run(refresh_all(config))


def poll_forever(config_path: Path | None, config: Config) -> int:
    """The map poller's process: a round every map_refresh seconds until SIGTERM; SIGHUP
    reads the config again (maps added or dropped)."""
    reload = [False]

    def on_hup(signum: int, frame: object) -> None:
        reload[0] = True

    signal.signal(signal.SIGHUP, on_hup)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    next_round = time.monotonic() + config.update.map_refresh
    while True:
        time.sleep(min(1.0, max(0.0, next_round - time.monotonic())))
        if reload[0]:
            reload[0] = False
            try:
                config = load_config(config_path)
            except Exception as exc:  # the master logs the refused config too
                log.error("map poller: new config refused, keeping the old one: %s", exc)
        if time.monotonic() >= next_round:
            asyncio.run(refresh_all(config))
            next_round = time.monotonic() + config.update.map_refresh
