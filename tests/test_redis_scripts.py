"""The Redis backend's Lua scripts (pyspamd/storage/lua/): every file compiles in a real
Redis, each says what it takes, and a missing file is a clear error instead of a
traceback at the first learn."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import redis
from support.redis_server import RedisServer

from pyspamd.storage.errors import StorageError
from pyspamd.storage.redis_conn import LUA_DIR, SCRIPTS, read_script, read_scripts


def test_every_script_file_is_run_and_documented() -> None:
    assert sorted(p.stem for p in LUA_DIR.glob("*.lua")) == sorted(SCRIPTS)
    for name in SCRIPTS:
        header = (LUA_DIR / f"{name}.lua").read_text().split("\n\n")[0]
        for part in ("-- KEYS:", "-- ARGV:", "-- Returns:"):
            assert part in header, f"{name}.lua: its header lacks {part}"


def test_every_script_loads_into_redis(redis_proc: RedisServer) -> None:
    client = redis.Redis.from_url(redis_proc.url)
    for name, text in read_scripts().items():
        # SCRIPT LOAD compiles the script: a syntax error or a missing library fails here.
        sha = client.script_load(text)
        assert sha == hashlib.sha1(text.encode()).hexdigest(), name
        assert client.script_exists(sha) == [True]
    # A library is really put before the script that requires it.
    assert "local function split" in read_script("learn")
    assert "local function trim" in read_script("learn")
    assert "local function trim" not in read_script("read_tokens")


@pytest.mark.parametrize("missing", ["take_token.lua", "lib/split.lua"])
def test_a_missing_script_file_is_named(tmp_path: Path, missing: str) -> None:
    copy = tmp_path / "lua"
    shutil.copytree(LUA_DIR, copy)
    (copy / missing).unlink()
    with pytest.raises(StorageError) as caught:
        read_scripts(copy)
    message = str(caught.value)
    assert str(copy / missing) in message
    assert "installation is incomplete" in message
