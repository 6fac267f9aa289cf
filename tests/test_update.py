"""`pyspamc update` against a real nginx over HTTPS (a test CA): install, nothing new (a
conditional request answered 304), a newer set, rollback, and every fault that must leave
the running set as it is: a tampered bundle, a wrong key, a truncated download, rules that
fail the config test, an older version, a 500, a server that hangs, a full disk."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.https_server import HttpsServer, https_server
from support.messages import make_message

from pyspamd.cli.pyspamc import main as pyspamc
from pyspamd.config import load_config
from pyspamd.config_schema import shipped_path
from pyspamd.scanner import Scanner
from pyspamd.update.bundle import generate_key, make_bundle, private_key
from pyspamd.update.install import FAILED, NOTHING_NEW, UPDATED

NEW_RULE = 'body CHANNEL_TEST_WORD /zorblaxian offer/i\nscore CHANNEL_TEST_WORD 3.5\n'


@pytest.fixture(scope="module")
def server() -> Iterator[HttpsServer]:
    with https_server() as srv:
        yield srv


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Path]:
    """(private key, its public key in base64, another private key)."""
    top = tmp_path_factory.mktemp("keys")
    public = generate_key(top / "channel.pem")
    generate_key(top / "other.pem")
    return top / "channel.pem", public, top / "other.pem"


def channel_source(tmp: Path, extra_rule: str = "", name: str = "src") -> Path:
    src = tmp / name
    shutil.copytree(shipped_path("rules"), src / "rules")
    if extra_rule:
        (src / "rules" / "90_channel.rules").write_text(extra_rule)
    (src / "maps").mkdir()
    (src / "maps" / "bad_senders.map").write_text("spammer@example.net REJECT go away\n")
    return src


def publish(server: HttpsServer, path: str, src: Path, key: Path, version: int) -> Path:
    out = server.root / path
    out.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    make_bundle(src, private_key(str(key)), out, version)
    out.chmod(0o644)
    return out


def write_config(tmp: Path, server: HttpsServer, path: str, public: str,
                 extra: str = "") -> Path:
    config = tmp / "pyspamd.toml"
    config.write_text(f"""
[storage]
path = "{tmp / 'store.sqlite'}"
[update]
dir = "{tmp / 'updates'}"
ca_file = "{server.ca_file}"
pidfile = "{tmp / 'pyspamd.pid'}"
timeout = 3.0
[[update.channels]]
name = "test"
url = "{server.url(path)}"
key = "{public}"
[[maps]]
name = "channel_senders"
type = "address"
file = "update:bad_senders.map"
{extra}
""")
    return config


def run(config: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = pyspamc(["-c", str(config), "update", *args])
    out = capsys.readouterr()
    return code, (out.out + out.err).strip()


def installed(tmp: Path) -> Path:
    return (tmp / "updates" / "test" / "current").resolve()


def test_no_channel_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "pyspamd.toml"
    config.write_text(f'[update]\ndir = "{tmp_path}"\n')
    code, text = run(config, capsys=capsys)
    assert code == NOTHING_NEW
    assert text.count("\n") == 0 and "no update channel configured" in text


def test_install_nothing_new_newer_and_rollback(
        tmp_path: Path, server: HttpsServer, keys: tuple[Path, str, Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    key, public, _ = keys
    publish(server, "main/bundle.tar.gz", channel_source(tmp_path, name="v1"), key, 100)
    config = write_config(tmp_path, server, "main/bundle.tar.gz", public)
    code, text = run(config, capsys=capsys)
    assert code == UPDATED, text
    assert "test: updated to version 100" in text
    assert "no running daemon found" in text  # no pidfile: said, not an error
    loaded = load_config(config)
    assert str(installed(tmp_path) / "rules") in loaded.rules.dirs
    assert str(shipped_path("rules")) not in loaded.rules.dirs
    assert loaded.maps[0].file == str(installed(tmp_path) / "maps" / "bad_senders.map")
    from pyspamd.cli.pyspamd import configtest

    assert configtest(str(config)) == 0
    shown = capsys.readouterr().out
    assert f"update channel test: version 100 in force ({installed(tmp_path)})" in shown
    assert f"map channel_senders: 1 entries from {installed(tmp_path)}/maps/" in shown

    code, text = run(config, capsys=capsys)  # nothing changed on the server
    assert (code, text) == (NOTHING_NEW, "test: version 100 is current (not modified)")
    assert server.statuses("main/bundle.tar.gz")[-1] == 304

    publish(server, "main/bundle.tar.gz", channel_source(tmp_path, NEW_RULE, "v2"), key, 200)
    code, text = run(config, capsys=capsys)
    assert code == UPDATED and "updated to version 200 (was 100)" in text
    scanner = Scanner.from_config(load_config(config))
    spam = make_message(body="A zorblaxian offer for you\n")
    assert "CHANNEL_TEST_WORD" in scanner.scan(spam).symbols

    code, text = run(config, "--rollback", capsys=capsys)
    assert code == UPDATED and "rolled back to version 100 (from 200)" in text
    assert "CHANNEL_TEST_WORD" not in Scanner.from_config(load_config(config)).scan(
        spam).symbols


def _tampered(bundle: Path) -> None:
    """Change one rule file's bytes and keep the signed manifest as it was."""
    with tarfile.open(bundle, "r:gz") as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore[union-attr]
    with tarfile.open(bundle, "w:gz") as tar:
        for member, data in members:
            if member.name == "rules/50_meta.rules":
                data += b"\nscore GTUBE -100\n"
                member.size = len(data)
            tar.addfile(member, io.BytesIO(data))


FAULTS = ["tampered", "wrong_key", "truncated", "configtest", "older", "error500", "hang"]


@pytest.mark.parametrize("fault", FAULTS)
def test_faults_keep_the_running_set(
        fault: str, tmp_path: Path, server: HttpsServer, keys: tuple[Path, str, Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    key, public, other = keys
    path = f"f-{fault}/bundle.tar.gz"
    publish(server, path, channel_source(tmp_path, name="v1"), key, 100)
    config = write_config(tmp_path, server, path, public)
    assert run(config, capsys=capsys)[0] == UPDATED
    before = installed(tmp_path)
    version = 50 if fault == "older" else 300
    rule = "body BROKEN_RULE /unclosed(/\n" if fault == "configtest" else NEW_RULE
    bundle = publish(server, path, channel_source(tmp_path, rule, "v2"),
                     other if fault == "wrong_key" else key, version)
    if fault == "tampered":
        _tampered(bundle)
    elif fault == "truncated":
        bundle.write_bytes(bundle.read_bytes()[: bundle.stat().st_size // 2])
    elif fault in ("error500", "hang"):
        url = server.url("error" if fault == "error500" else "hang/bundle.tar.gz")
        config.write_text(config.read_text().replace(server.url(path), url))
    code, text = run(config, capsys=capsys)
    assert code == FAILED
    assert text.count("\n") == 0, text
    assert text.startswith("test: update failed, running set kept: ")
    expected = {"tampered": "sha256 differs from the manifest", "wrong_key": "bad signature",
                "truncated": "damaged or truncated", "configtest": "fails the config test",
                "older": "older than the installed 100", "error500": "answered 500",
                "hang": "no complete answer within 3s"}[fault]
    assert expected in text
    assert installed(tmp_path) == before
    assert not list((tmp_path / "updates" / "test").glob("staging-*"))
    assert len(list((tmp_path / "updates" / "test" / "sets").iterdir())) == 1


def test_full_disk_keeps_the_running_set(
        tmp_path: Path, server: HttpsServer, keys: tuple[Path, str, Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    key, public, _ = keys
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                      capture_output=True, check=False).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        publish(server, "disk/bundle.tar.gz", channel_source(tmp_path, name="v1"), key, 100)
        config = write_config(tmp_path, server, "disk/bundle.tar.gz", public)
        config.write_text(config.read_text().replace(str(tmp_path / "updates"),
                                                     str(mount / "updates")))
        code, text = run(config, capsys=capsys)
        assert code == UPDATED, text
        before = (mount / "updates" / "test" / "current").resolve()
        publish(server, "disk/bundle.tar.gz", channel_source(tmp_path, NEW_RULE, "v2"), key,
                200)
        with (mount / "filler").open("wb") as filler:  # leave less than a set needs
            free = shutil.disk_usage(mount).free
            filler.write(b"\0" * max(0, free - 200_000))
        code, text = run(config, capsys=capsys)
        assert code == FAILED and text.count("\n") == 0, text
        assert "No space left on device" in text
        assert (mount / "updates" / "test" / "current").resolve() == before
        assert not list((mount / "updates" / "test").glob("staging-*"))
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_remote_map_fetch_304_age_and_errors(
        tmp_path: Path, server: HttpsServer, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    from pyspamd.cli.pyspamd import configtest
    from pyspamd.policy.maps import MapSource
    from pyspamd.policy.remote_maps import refresh_now

    served = server.root / "plain.map"
    served.write_text("10.9.8.0/24 REJECT from the remote map\n")
    served.chmod(0o644)
    config = tmp_path / "pyspamd.toml"
    config.write_text(f'[storage]\npath = "{tmp_path / "s.sqlite"}"\n[update]\n'
                      f'dir = "{tmp_path / "updates"}"\nca_file = "{server.ca_file}"\n'
                      f'[[maps]]\nname = "remote_ips"\ntype = "ip"\n'
                      f'file = "{server.url("plain.map")}"\n')
    assert configtest(str(config)) == 0  # before the first fetch: said, not an error
    assert "no copy yet" in capsys.readouterr().out
    refresh_now(load_config(config))
    refresh_now(load_config(config))
    assert server.statuses("plain.map")[-2:] == [200, 304]
    assert configtest(str(config)) == 0
    out = capsys.readouterr().out
    assert f"map remote_ips: 1 entries from {server.url('plain.map')} (copy of " in out
    # The server fails: the copy stays, one line says so.
    config.write_text(config.read_text().replace(server.url("plain.map"), server.url("error")))
    loaded = load_config(config)
    caplog.clear()
    with caplog.at_level("ERROR", logger="pyspamd.maps"):
        refresh_now(loaded)
    (line,) = [r.getMessage() for r in caplog.records if r.name == "pyspamd.maps"]
    assert re.fullmatch(f"map remote_ips: {re.escape(server.url('error'))}: server answered "
                        r"500 Internal Server Error; keeping the copy of \d+ s ago", line)
    assert MapSource(loaded.maps[0]).table().lookup("10.9.8.7") is not None


def test_keys_bundles_and_signatures_from_the_command_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pyspamd.update.bundle import public_key, unpack_verified, verify

    assert pyspamc(["update", "--gen-key", str(tmp_path / "k.pem")]) == 0
    public = capsys.readouterr().out.strip().splitlines()[-1]
    assert (tmp_path / "k.pem").stat().st_mode & 0o777 == 0o600
    # A key made with openssl, as docs/updates.md says, works as well (a PEM path as key).
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out",
                    str(tmp_path / "o.pem")], check=True, capture_output=True)
    subprocess.run(["openssl", "pkey", "-in", str(tmp_path / "o.pem"), "-pubout", "-out",
                    str(tmp_path / "o.pub")], check=True, capture_output=True)
    src = channel_source(tmp_path, NEW_RULE)
    for key, checker in ((tmp_path / "k.pem", public), (tmp_path / "o.pem",
                                                        str(tmp_path / "o.pub"))):
        out = tmp_path / f"{key.stem}.tar.gz"
        assert pyspamc(["update", "--make-channel", str(src), "--key", str(key), "--out",
                        str(out), "--set-version", "7"]) == 0
        assert "version 7" in capsys.readouterr().out
        staging = tmp_path / f"staging-{key.stem}"
        staging.mkdir()
        manifest = unpack_verified(out, public_key(checker), staging)
        assert (staging / "rules" / "90_channel.rules").read_text() == NEW_RULE
        assert "maps/bad_senders.map" in manifest.files
    map_file = src / "maps" / "bad_senders.map"
    assert pyspamc(["update", "--sign", str(map_file), "--key", str(tmp_path / "k.pem")]) == 0
    verify(public_key(public), map_file.read_bytes(),
           (src / "maps" / "bad_senders.map.sig").read_bytes(), "map")
    assert pyspamc(["update", "--make-channel", str(tmp_path / "nothing"), "--key",
                    str(tmp_path / "k.pem")]) == FAILED
    assert "no rules/ directory" in capsys.readouterr().err


def test_stale_pidfile_and_a_second_run(
        tmp_path: Path, server: HttpsServer, keys: tuple[Path, str, Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    import fcntl
    import os

    key, public, _ = keys
    publish(server, "lock/bundle.tar.gz", channel_source(tmp_path, name="v1"), key, 100)
    config = write_config(tmp_path, server, "lock/bundle.tar.gz", public)
    base = tmp_path / "updates" / "test"
    base.mkdir(parents=True)
    fd = os.open(base / ".lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as a pyspamc update running now would
        code, text = run(config, capsys=capsys)
        assert (code, text) == (FAILED, "test: update failed, running set kept: another "
                                        "pyspamc update of this channel is running")
    finally:
        os.close(fd)
    # A pidfile whose pid now belongs to another program: not signalled.
    other = subprocess.Popen(["sleep", "30"])
    try:
        (tmp_path / "pyspamd.pid").write_text(f"{other.pid}\n")
        code, text = run(config, capsys=capsys)
        assert code == UPDATED
        assert f"pid {other.pid} of {tmp_path / 'pyspamd.pid'} is not a running pyspamd" in text
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


@pytest.mark.parametrize("trick", ["traversal", "unlisted", "link"])
def test_bundle_members_outside_the_set_are_refused(
        tmp_path: Path, keys: tuple[Path, str, Path], trick: str) -> None:
    """Even signed with the right key: names outside rules/, maps/, model/, members the
    manifest does not list, and links never reach the disk."""
    import hashlib

    from pyspamd.update.bundle import (
        MANIFEST,
        SIGNATURE,
        BundleError,
        Manifest,
        public_key,
        sign,
        unpack_verified,
    )

    key, public, _ = keys
    data = b"body X /x/\n"
    name = "rules/../../escaped.rules" if trick == "traversal" else "rules/a.rules"
    body = Manifest(5, "", {name: hashlib.sha256(data).hexdigest()}).to_bytes()
    bundle = tmp_path / "b.tar.gz"
    with tarfile.open(bundle, "w:gz") as tar:
        entries = [(MANIFEST, body), (SIGNATURE, sign(private_key(str(key)), body)),
                   (name, data)]
        if trick == "unlisted":
            entries.append(("rules/extra.rules", data))
        for member_name, content in entries:
            info = tarfile.TarInfo(member_name)
            info.size = len(content)
            if trick == "link" and member_name == name:
                info.type, info.linkname, info.size = tarfile.SYMTYPE, "/etc/passwd", 0
                content = b""
            tar.addfile(info, io.BytesIO(content))
    staging = tmp_path / "staging"
    staging.mkdir()
    with pytest.raises(BundleError) as info:
        unpack_verified(bundle, public_key(public), staging)
    assert {"traversal": "is not allowed", "unlisted": "does not list",
            "link": "rules/a.rules is not a plain file"}[trick] in str(info.value)
    assert list(staging.iterdir()) == []
    assert not (tmp_path / "escaped.rules").exists()


def test_a_config_error_is_a_failure_not_nothing_new(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "pyspamd.toml"
    config.write_text('[[update.channels]]\nname = "x"\nurl = "http://example.org/b.tar.gz"\n')
    code, text = run(config, capsys=capsys)
    assert code == FAILED
    assert f"{config}:3: update channel x: url must be https://..." in text
    assert f"{config}:1: update channel x: key is required" in text
