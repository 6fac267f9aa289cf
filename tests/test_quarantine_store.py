"""The quarantine store, its release header, its fallbacks and the [actions] quarantine band,
on real files and SQLite (the Postfix round trip is test_quarantine_postfix.py)."""

from __future__ import annotations

import os
import pwd
import time
from pathlib import Path

import pytest
from support.messages import make_message
from support.ports import free_port

from pyspamd import actions
from pyspamd.actions import Thresholds
from pyspamd.cli import pyspamc
from pyspamd.config import Config, ConfigError, load_config
from pyspamd.milter.verdict import Reply, Verdict, decide, quarantine_fallback, released_action
from pyspamd.quarantine.release import HEADER, ReleaseCheck, release, release_header
from pyspamd.quarantine.settings import QuarantineConfig
from pyspamd.quarantine.store import HELD, Held, QuarantineError, QuarantineStore
from pyspamd.result import ScanResult, Symbol, result_headers

RAW = make_message(body="the numbers for the quarter\n").replace(b"\n", b"\r\n")


def _held(reason: str = "banned attachment: a.exe") -> Held:
    return Held(sender="alice@example.org", rcpts=["bob@example.test", "carol@example.test"],
                score=4.2, action="quarantine", reason=reason,
                symbols={"BANNED_EXECUTABLE_NAME": ["a.exe"]}, message_id="<m@x>",
                subject="Lunch on Friday", queue_id="4Q1D")


def _config(tmp_path: Path, **kw: object) -> QuarantineConfig:
    return QuarantineConfig(dir=str(tmp_path / "q"), **kw)  # type: ignore[arg-type]


def test_put_list_show_delete_expire(tmp_path: Path) -> None:
    store = QuarantineStore(_config(tmp_path, expire_days=1.0))
    first = store.put(RAW, _held())
    second = store.put(RAW + b"more\r\n", _held("Quarantined as spam"))
    assert [e.id for e in store.list()] == [second, first]
    entry = store.get(first)
    assert (entry.sender, entry.rcpts, entry.status) == (
        "alice@example.org", ["bob@example.test", "carol@example.test"], HELD)
    assert entry.symbols == {"BANNED_EXECUTABLE_NAME": ["a.exe"]} and entry.size == len(RAW)
    assert entry.expires == pytest.approx(entry.time + 86400)
    assert store.read(first) == RAW
    assert not list(store.messages.glob("*.tmp"))
    store.delete(second)
    assert [e.id for e in store.list()] == [first]
    with pytest.raises(QuarantineError, match="no message"):
        store.get(second)
    assert store.expire(now=time.time() + 2 * 86400) == 1
    assert store.list() == [] and not store.path_of(first).exists()


def test_ids_from_outside_are_checked(tmp_path: Path) -> None:
    store = QuarantineStore(_config(tmp_path))
    store.put(RAW, _held())
    for bad in ("../index.sqlite", "", "a/b", "x" * 65):
        with pytest.raises(QuarantineError, match="not a quarantine id"):
            store.read(bad)


def test_full_and_unwritable_quarantines_refuse_and_keep_nothing(tmp_path: Path) -> None:
    store = QuarantineStore(_config(tmp_path, max_size=len(RAW) * 2))
    store.put(RAW, _held())
    store.put(RAW, _held())
    with pytest.raises(QuarantineError, match="quarantine full"):
        store.put(RAW, _held())
    assert len(store.list()) == 2 and len(list(store.messages.iterdir())) == 2
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the quarantine should be")
    with pytest.raises(QuarantineError, match="cannot write"):
        QuarantineStore(QuarantineConfig(dir=str(blocked))).put(RAW, _held())


def test_release_header_frees_only_its_own_message(tmp_path: Path) -> None:
    config = _config(tmp_path)
    store = QuarantineStore(config)
    message_id = store.put(RAW, _held())
    value = release_header(store.dir, message_id, "admin (pyspamc)", RAW)
    check = ReleaseCheck(config)
    # The MTA hands back the same body with LF or CRLF and maybe a line end more.
    assert check.released([value], RAW.replace(b"\r\n", b"\n") + b"\n") == message_id
    assert check.released([value], RAW.replace(b"quarter", b"year")) is None
    forged = value[:-64] + "0" * 64
    assert check.released([forged], RAW) is None
    old = release_header(store.dir, message_id, "admin", RAW).replace(
        "t=", "t=1", 1)  # another time: the signature no longer matches
    assert check.released([old], RAW) is None
    other_key = ReleaseCheck(_config(tmp_path / "elsewhere"))
    assert other_key.released([value], RAW) is None  # no key there: nothing is released


def test_release_to_a_closed_port_loses_nothing(tmp_path: Path) -> None:
    config = _config(tmp_path, release_smtp=f"127.0.0.1:{free_port()}", release_timeout=3.0)
    store = QuarantineStore(config)
    message_id = store.put(RAW, _held())
    with pytest.raises(QuarantineError, match="not released"):
        release(store, config, message_id, "admin")
    assert store.get(message_id).status == HELD and store.read(message_id) == RAW
    # Two releases at once: one takes it, the other is told so.
    assert store.claim(message_id, "alice") and not store.claim(message_id, "bob")
    with pytest.raises(QuarantineError, match="released already by alice"):
        release(store, config, message_id, "bob")
    store.unclaim(message_id)
    assert store.get(message_id).status == HELD


def _result(action: str, score: float, message: str = "") -> ScanResult:
    return ScanResult(action=action, score=score, required_score=15.0, spam_score=6.0,
                      symbols={"X": Symbol("X", score)}, message=message,
                      forced_by="BANNED_X" if message else "")


def test_quarantined_mail_never_carries_contradictory_headers() -> None:
    headers = dict(result_headers(_result("quarantine", -3.1, "banned attachment: a.exe"),
                                  Config().headers))
    assert headers["X-Spam-Flag"] == "NO"
    assert headers["X-Spam-Status"].startswith("No, score=-3.1")
    headers = dict(result_headers(_result("quarantine", 9.0), Config().headers))
    assert headers["X-Spam-Flag"] == "YES"
    verdict = decide(_result("quarantine", -3.1, "banned attachment: a.exe"), Config(), "Q1",
                     "mx", {})
    assert verdict.quarantine == "banned attachment: a.exe"
    assert ("X-Pyspamd-Quarantine", "banned attachment: a.exe") in verdict.add_headers


def test_fallbacks_and_release_override() -> None:
    def held() -> Verdict:
        return Verdict("accept", quarantine="banned attachment: a.exe")

    assert quarantine_fallback(held(), "hold").quarantine  # Postfix's hold queue
    assert quarantine_fallback(held(), "reject").reply == Reply(
        "554", "5.7.1", "banned attachment: a.exe")
    assert quarantine_fallback(held(), "tempfail").disposition == "tempfail"
    accepted = quarantine_fallback(held(), "accept")
    assert accepted.disposition == "accept" and not accepted.quarantine
    result = _result("reject", 20.0, "banned attachment: a.exe")
    released_action(result)
    assert (result.action, result.message) == ("add header", "")
    result = _result("quarantine", 1.0)
    released_action(result)
    assert result.action == "no action"
    assert HEADER == "X-Pyspamd-Release"


def test_quarantine_band(tmp_path: Path) -> None:
    path = tmp_path / "pyspamd.toml"
    path.write_text("[actions]\nadd_header = 6\nquarantine = 10\nreject = 15\n")
    thresholds = Thresholds.from_config(load_config(path).actions)
    assert [thresholds.choose(s) for s in (7, 12, 16)] == [
        actions.ADD_HEADER, actions.QUARANTINE, actions.REJECT]
    path.write_text("[actions]\nquarantine = 20\nreject = 15\n")
    with pytest.raises(ConfigError, match=r"pyspamd.toml:3: actions.reject \(15\) must be "
                                          r"above actions.quarantine \(20\), or quarantine "
                                          "never happens"):
        load_config(path)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_pyspamc_as_root_leaves_the_quarantine_to_the_daemons_user(tmp_path: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    config = _config(tmp_path)
    store = QuarantineStore(config)
    store.put(RAW, _held())
    os.chown(store.dir, nobody.pw_uid, nobody.pw_gid)  # as the package makes it
    path = tmp_path / "pyspamd.toml"
    path.write_text(f'[quarantine]\ndir = "{store.dir}"\n')
    assert pyspamc.main(["--config", str(path), "quarantine", "list"]) == 0
    assert pyspamc.main(["--config", str(path), "quarantine", "expire"]) == 0
    assert store.index.stat().st_uid == nobody.pw_uid


def test_configtest_says_where_held_mail_goes(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from pyspamd.cli.pyspamd import configtest

    path = tmp_path / "pyspamd.toml"
    path.write_text(f'[quarantine]\ndir = "{tmp_path / "held"}"\nfallback_action = "reject"\n'
                    '[banned_files]\nexempt = ["BANNED_EXECUTABLE_NAME"]\n')
    assert configtest(str(path)) == 0
    out = capsys.readouterr().out
    assert f"quarantine: {tmp_path / 'held'} (max 1073741824 bytes" in out
    assert "full or unwritable: reject" in out
    assert "banned files: BANNED_DOUBLE_EXTENSION, BANNED_EXECUTABLE_TYPE\n" in out
