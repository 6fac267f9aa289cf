"""Downloads over HTTPS with conditional requests (ETag / Last-Modified), for update bundles
and remote maps: nothing is downloaded when the server says nothing changed, and a download
is written to a temporary file that only a complete, in-size body replaces the target with."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

import aiohttp


class FetchError(Exception):
    """Why a download failed: one line."""


@dataclass(frozen=True)
class Fetched:
    changed: bool  # False: 304, the copy we have is current
    path: Path


def _validators(state: Path) -> dict[str, str]:
    try:
        data = json.loads(state.read_text())
        return {k: v for k, v in data.items() if k in ("etag", "last_modified")
                and isinstance(v, str)}
    except (OSError, ValueError, AttributeError):
        return {}


def remember(state: Path, validators: dict[str, str]) -> None:
    """Keep the validators of a download that was put to use (not before: a bundle that
    failed its checks must be downloaded again next time, not answered with 304)."""
    tmp = state.with_name(state.name + ".tmp")
    tmp.write_text(json.dumps(validators))
    tmp.replace(state)


def ssl_context(ca_file: str) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(ca_file)
    return context


async def fetch(url: str, target: Path, state: Path | None, timeout: float, max_size: int,
                ca_file: str = "") -> tuple[Fetched, dict[str, str]]:
    """GET `url` into `target` (replaced only by a complete body). `state`: the file that
    keeps the last download's validators, sent as If-None-Match / If-Modified-Since.
    Returns the result and the new validators (for `remember`)."""
    headers = {}
    old = _validators(state) if state is not None and target.exists() else {}
    if "etag" in old:
        headers["If-None-Match"] = old["etag"]
    if "last_modified" in old:
        headers["If-Modified-Since"] = old["last_modified"]
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        connector = aiohttp.TCPConnector(ssl=ssl_context(ca_file))
        async with aiohttp.ClientSession(connector=connector,
                                         timeout=aiohttp.ClientTimeout(total=timeout)) as s, \
                s.get(url, headers=headers) as response:
            if response.status == 304:
                return Fetched(False, target), old
            if response.status != 200:
                raise FetchError(f"{url}: server answered {response.status} {response.reason}")
            if (response.content_length or 0) > max_size:
                raise FetchError(f"{url}: {response.content_length} bytes is over the "
                                 f"limit of {max_size}")
            size = 0
            with tmp.open("wb") as out:
                async for chunk in response.content.iter_chunked(1 << 16):
                    size += len(chunk)
                    if size > max_size:
                        raise FetchError(f"{url}: more than {max_size} bytes")
                    out.write(chunk)
            if response.content_length is not None and size != response.content_length:
                raise FetchError(f"{url}: download truncated ({size} of "
                                 f"{response.content_length} bytes)")
            fresh = {k: v for k, v in (("etag", response.headers.get("ETag")),
                                       ("last_modified", response.headers.get("Last-Modified")))
                     if v}
        tmp.replace(target)
        return Fetched(True, target), fresh
    except TimeoutError as exc:
        raise FetchError(f"{url}: no complete answer within {timeout:g}s") from exc
    except aiohttp.ClientPayloadError as exc:
        raise FetchError(f"{url}: download truncated ({exc})") from exc
    except (aiohttp.ClientError, ssl.SSLError) as exc:
        raise FetchError(f"{url}: {type(exc).__name__}: {exc}") from exc
    except OSError as exc:
        raise FetchError(f"cannot write {tmp}: {exc.strerror or exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)


def fetch_sync(url: str, target: Path, state: Path | None, timeout: float, max_size: int,
               ca_file: str = "") -> tuple[Fetched, dict[str, str]]:
    return asyncio.run(fetch(url, target, state, timeout, max_size, ca_file))
