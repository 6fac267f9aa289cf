"""The Debian package, end to end on this machine: build it from the checkout as the docs say
(dpkg-buildpackage), install it with apt, check the layout, run the unit's ExecStartPre and
ExecStart command lines as the unit's user (CI has no systemd), scan GTUBE through the milter,
run the nightly cron job, then remove and purge and check that nothing is left.

Marked `package` (about a minute with a warm pip cache): skip it in quick runs with
`-m "not package"`. It needs root, dpkg-buildpackage and debhelper (.ci/run installs them), and
it will not touch a machine where pyspamd is already installed.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.mta import MtaSession, free_port, wait_for_port

REPO = Path(__file__).resolve().parent.parent
GTUBE = (REPO / "corpus" / "malformed" / "gtube.eml").read_bytes()
UNIT = Path("/lib/systemd/system/pyspamd.service")
LOCAL = Path("/etc/pyspamd/local.d/90-package-test.toml")
# What the package puts on the machine, and what purge must take away again.
PACKAGE_PATHS = [Path(p) for p in (
    "/opt/pyspamd", "/usr/bin/pyspamd", "/usr/bin/pyspamc", "/usr/share/pyspamd",
    "/usr/lib/pyspamd", "/lib/systemd/system/pyspamd.service", "/etc/cron.d/pyspamd",
    "/etc/default/pyspamd", "/etc/pyspamd", "/var/lib/pyspamd", "/var/log/pyspamd",
    "/etc/logrotate.d/pyspamd",
    "/etc/systemd/system/multi-user.target.wants/pyspamd.service",
    "/usr/share/man/man8/pyspamd.8.gz", "/usr/share/man/man1/pyspamc.1.gz",
)]
# unsafe-io: no fsync per file while unpacking (a throw-away install; halves its time here).
APT = ["apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=300", "-o",
       "DPkg::Options::=--force-unsafe-io", "--no-install-recommends"]


def _installed(package: str) -> bool:
    out = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package],
                         capture_output=True, text=True)
    return out.returncode == 0 and "ok installed" in out.stdout


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "needs root (installs a package)"
    for tool in ("dpkg-buildpackage", "dh", "apt-get", "setpriv"):
        if shutil.which(tool) is None:
            return f"needs {tool} (.ci/run installs debhelper and dpkg-dev)"
    if Path("/var/lib/dpkg/info/pyspamd.list").exists() or _installed("pyspamd"):
        return "pyspamd is installed on this machine; not touching it"
    return None


pytestmark = [pytest.mark.package, pytest.mark.timeout(900),
              pytest.mark.skipif(_why_not() is not None, reason=_why_not() or "")]


# conftest.py points PYSPAMD_CONFIG and PYSPAMD_DATA_DIR at a private empty config for the
# other tests; the installed package must run as it would on the machine, without them.
_ENV = {k: v for k, v in os.environ.items() if k not in ("PYSPAMD_CONFIG", "PYSPAMD_DATA_DIR")}


def _run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    kw.setdefault("env", _ENV)
    out = subprocess.run(cmd, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    assert out.returncode == 0, (f"{shlex.join(cmd)}: exit {out.returncode}\n{out.stdout}\n"
                                 f"{out.stderr}")
    return out


def _as_pyspamd(cmd: list[str]) -> list[str]:
    """What User=pyspamd / Group=pyspamd in the unit do, for a machine without systemd."""
    return ["setpriv", "--reuid", "pyspamd", "--regid", "pyspamd", "--init-groups",
            "--reset-env", "--", *cmd]


def _unit_commands() -> dict[str, list[str]]:
    commands = {}
    for line in UNIT.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and key in ("ExecStartPre", "ExecStart"):
            commands[key] = shlex.split(value)
    return commands


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The .deb, built as the docs say, from a copy of the checkout's files."""
    build = tmp_path_factory.mktemp("deb")
    src = build / "pyspamd"
    files = _run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO).stdout.split()
    for name in files:
        if (REPO / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    _run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=src)
    debs = list(build.glob("pyspamd_*.deb"))
    assert len(debs) == 1, debs
    return debs[0]


@pytest.fixture(scope="module")
def installed(deb: Path) -> Iterator[Path]:
    try:
        _run([*APT, "install", str(deb)])
        yield deb
    finally:
        LOCAL.unlink(missing_ok=True)
        subprocess.run([*APT, "purge", "pyspamd"], capture_output=True)


def test_layout(installed: Path) -> None:
    user = pwd.getpwnam("pyspamd")
    assert user.pw_dir == "/var/lib/pyspamd"
    assert user.pw_shell in ("/usr/sbin/nologin", "/bin/false")
    state = Path("/var/lib/pyspamd")
    assert state.stat().st_uid == user.pw_uid
    assert os.readlink("/usr/bin/pyspamd") == "/opt/pyspamd/bin/pyspamd"
    assert (Path("/usr/share/pyspamd/rules") / "90_gtube.rules").exists()
    assert Path("/etc/pyspamd/rules.d").is_dir() and Path("/etc/pyspamd/local.d").is_dir()
    conffiles = Path("/var/lib/dpkg/info/pyspamd.conffiles").read_text().split()
    assert "/etc/pyspamd/pyspamd.toml" in conffiles and "/etc/cron.d/pyspamd" in conffiles
    # The cron job: the pyspamd user, full paths, and a script that is there.
    cron = [line.split() for line in Path("/etc/cron.d/pyspamd").read_text().splitlines()
            if line[:1].isdigit()]
    assert cron and cron[0][5] == "pyspamd" and "/usr/lib/pyspamd/daily" in cron[0]
    assert os.access("/usr/lib/pyspamd/daily", os.X_OK)
    # Enabled (the symlink deb-systemd-helper makes) and valid for systemd.
    assert Path("/etc/systemd/system/multi-user.target.wants/pyspamd.service").is_symlink()
    verify = subprocess.run(["systemd-analyze", "verify", str(UNIT)], capture_output=True,
                            text=True)
    problems = [line for line in (verify.stdout + verify.stderr).splitlines()
                if "pyspamd.service" in line]
    assert not problems, problems
    for page in ("pyspamd", "pyspamc"):
        out = _run(["man", "-P", "cat", page], env={**_ENV, "MANWIDTH": "80"}).stdout
        assert "SYNOPSIS" in out
    version = _run(["/usr/bin/pyspamc", "--version"]).stdout
    assert version.startswith("pyspamc 0.1.0")
    # The Redis backend's Lua scripts are package data: all there, and read as it reads them.
    scripts = _run(["/opt/pyspamd/bin/python3", "-c", "from pyspamd.storage.redis_conn import "
                    "read_scripts; print(' '.join(sorted(read_scripts())))"]).stdout.split()
    assert "learn" in scripts and "take_token" in scripts and len(scripts) >= 10, scripts


def test_daemon_as_the_unit_runs_it(installed: Path) -> None:
    milter_port, controller_port = free_port(), free_port()
    # The admin's way to change settings: a local.d file over the packaged config.
    LOCAL.write_text(f'[milter]\nlisten = ["inet:{milter_port}@127.0.0.1"]\nworkers = 1\n'
                     f'[controller]\nlisten = "127.0.0.1:{controller_port}"\n')
    commands = _unit_commands()
    assert commands["ExecStart"][0] == "/usr/bin/pyspamd"
    # RuntimeDirectory= and StateDirectory=, which systemd would make.
    _run(["install", "-d", "-o", "pyspamd", "-g", "pyspamd", "/run/pyspamd"])
    check = _run(_as_pyspamd(commands["ExecStartPre"]))
    assert "OK" in check.stdout
    proc = subprocess.Popen(_as_pyspamd(commands["ExecStart"]), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        wait_for_port(milter_port, timeout=60)
        session = MtaSession(milter_port)
        try:
            result = session.send(GTUBE, queue_id="4PKGTEST")
        finally:
            session.close()
        assert result.reply.startswith("554 5.7.1 Message rejected as spam")
        # A second copy on the same sockets is refused with one line, before it forks.
        second = subprocess.run(_as_pyspamd(commands["ExecStart"]), capture_output=True,
                                text=True, timeout=60)
        assert second.returncode != 0
        # (the unit's --pidfile is locked by the first: that is what it says)
        assert "already running" in second.stderr or "in use" in second.stderr, second.stderr
        # root learning with pyspamc (as admins do, to read users' Maildirs) leaves the
        # store to the pyspamd user: the nightly job, as cron runs it, can still write it.
        _run(["/usr/bin/pyspamc", "learn_spam", str(REPO / "corpus" / "spam")])
        Path("/etc/default/pyspamd").write_text(
            f'TRAIN_SPAM=""\nTRAIN_HAM="{REPO}/corpus/ham"\n')
        _run(_as_pyspamd(["/usr/lib/pyspamd/daily"]))
        stat = _run(["/usr/bin/pyspamc", "stat"]).stdout
        assert "Statfile: BAYES_HAM type: sqlite3; learned: 100" in stat, stat
        assert Path("/var/lib/pyspamd/pyspamd.sqlite").stat().st_uid == pwd.getpwnam(
            "pyspamd").pw_uid
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        output, _ = proc.communicate(timeout=90)
    # Started in the foreground, as systemd does: the log goes to stderr (the journal).
    assert "qid: 4PKGTEST" in output, output
    assert "GTUBE" in output


def test_start_without_systemd_as_docs_say(installed: Path) -> None:
    """docs/debian.md's fallback (and README command 1's, where systemctl cannot start it):
    the pyspamd user, detached, a pidfile in /run/pyspamd; with no syslog daemon here the
    log goes to /var/log/pyspamd/pyspamd.log."""
    milter_port = free_port()
    LOCAL.write_text(f'[milter]\nlisten = ["inet:{milter_port}@127.0.0.1"]\nworkers = 1\n'
                     '[controller]\nenabled = false\n')
    pidfile = Path("/run/pyspamd/pyspamd.pid")
    out = _run(["runuser", "-u", "pyspamd", "--", "pyspamd", "--daemon", "--pidfile",
                str(pidfile)])
    pid = int(pidfile.read_text())
    try:
        wait_for_port(milter_port, timeout=60)
        if not os.path.exists("/dev/log"):
            assert "logging to /var/log/pyspamd/pyspamd.log" in out.stderr
            log = Path("/var/log/pyspamd/pyspamd.log").read_text()
            assert f"listening on inet:{milter_port}@127.0.0.1" in log
    finally:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    assert not pidfile.exists()


def test_remove_then_purge_leaves_nothing(installed: Path) -> None:
    LOCAL.unlink(missing_ok=True)
    _run([*APT, "remove", "pyspamd"])
    for path in ("/opt/pyspamd", "/usr/bin/pyspamd", "/usr/share/pyspamd"):
        assert not os.path.lexists(path), path
    # remove keeps the admin's config, the learned state and the user.
    assert Path("/etc/pyspamd/pyspamd.toml").exists()
    assert Path("/var/lib/pyspamd").is_dir()
    pwd.getpwnam("pyspamd")
    _run([*APT, "purge", "pyspamd"])
    left = [str(p) for p in PACKAGE_PATHS if os.path.lexists(p)]
    assert not left, left
    with pytest.raises(KeyError):
        pwd.getpwnam("pyspamd")
    assert subprocess.run(["getent", "group", "pyspamd"], capture_output=True).returncode == 2
    assert not _installed("pyspamd")
    enabled = Path("/var/lib/systemd/deb-systemd-helper-enabled")
    assert not list(enabled.rglob("pyspamd*")) if enabled.exists() else True
