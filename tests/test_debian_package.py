"""The Debian package, end to end on this machine, as an admin without systemd meets it:
build it from the checkout as the docs say (dpkg-buildpackage) with an empty wheel cache and
no pip configuration, as on a user's machine; install it with apt, check the layout, run the
unit's ExecStartPre and ExecStart command lines as the unit's user (CI has no systemd), scan
GTUBE through the milter, run the nightly cron job; then, with the daemon started by the init
script, upgrade to a second build (the daemon restarts on the new code), remove (it stops),
reinstall (it starts cleanly) and purge with the daemon up (it stops, and nothing is left).

Marked `package` (about three minutes, most of it the build from PyPI): skip it in quick runs
with `-m "not package"`. It needs root, dpkg-buildpackage and debhelper (.ci/run installs
them), and it will not touch a machine where pyspamd is already installed.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
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
    "/etc/init.d/pyspamd", "/run/pyspamd",
)]
PIDFILE = Path("/run/pyspamd/pyspamd.pid")
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


@dataclass(frozen=True)
class Debs:
    first: Path  # 0.1.0-1, from the checkout as it is
    second: Path  # 0.1.0-2: the same tree with one more changelog entry, to upgrade to


def _build(src: Path, wheels: Path) -> Path:
    # What a user's machine has: no pip configuration (this machine's adds a local wheel
    # source) and no pip cache; PYSPAMD_WHEELS is the module's own directory, empty at first.
    env = {k: v for k, v in _ENV.items() if not k.startswith("PIP_")}
    env |= {"PIP_CONFIG_FILE": "/dev/null", "PIP_NO_CACHE_DIR": "1",
            "PYSPAMD_WHEELS": str(wheels)}
    _run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=src, env=env)
    debs = list(src.parent.glob("pyspamd_*.deb"))
    assert len(debs) == 1, debs
    return debs[0]


@pytest.fixture(scope="module")
def debs(tmp_path_factory: pytest.TempPathFactory) -> Debs:
    """Two versions, built as the docs say, from copies of the checkout's files; the first
    from PyPI alone, the second from the wheels the first one left (a rebuild)."""
    wheels = tmp_path_factory.mktemp("wheels")
    first = tmp_path_factory.mktemp("deb1") / "pyspamd"
    files = _run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO).stdout.split()
    for name in files:
        if (REPO / name).is_file() and not name.startswith(".venv/"):
            (first / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, first / name)
    second = tmp_path_factory.mktemp("deb2") / "pyspamd"
    shutil.copytree(first, second, symlinks=True)
    changelog = second / "debian" / "changelog"
    changelog.write_text(
        "pyspamd (0.1.0-2) unstable; urgency=medium\n\n  * A rebuild to upgrade to.\n\n"
        " -- pyspamd developers <pyspamd@example.org>  Fri, 04 Dec 2026 07:30:00 +0000\n\n"
        + changelog.read_text())
    return Debs(_build(first, wheels), _build(second, wheels))


@pytest.fixture(scope="module")
def installed(debs: Debs) -> Iterator[Path]:
    milter_port, controller_port = free_port(), free_port()
    try:
        # The admin's way to change settings, there before the install (ports of our own).
        LOCAL.parent.mkdir(parents=True, exist_ok=True)
        _write_local(milter_port, controller_port)
        out = _run([*APT, "install", str(debs.first)])
        # No init system runs services here (no runlevel, a policy-rc.d): not started, and
        # the install says so and how.
        assert "not started (no init system starts services here): service pyspamd start" \
            in out.stdout, out.stdout
        assert not PIDFILE.exists()
        yield debs.first
    finally:
        subprocess.run([*APT, "purge", "pyspamd"], capture_output=True)
        shutil.rmtree("/etc/pyspamd", ignore_errors=True)


def _write_local(milter_port: int, controller_port: int) -> None:
    LOCAL.write_text(f'[milter]\nlisten = ["inet:{milter_port}@127.0.0.1"]\nworkers = 1\n'
                     f'[controller]\nlisten = "127.0.0.1:{controller_port}"\n')


def _milter_port() -> int:
    listen = LOCAL.read_text().split('"inet:', 1)[1]
    return int(listen.split("@", 1)[0])


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
    # The init script, and its links (update-rc.d) for a machine that boots with sysvinit.
    init = Path("/etc/init.d/pyspamd")
    assert os.access(init, os.X_OK) and "/etc/init.d/pyspamd" in conffiles
    assert "### BEGIN INIT INFO" in init.read_text()
    assert list(Path("/etc/rc2.d").glob("S*pyspamd")) and list(Path("/etc/rc0.d").glob(
        "K*pyspamd"))
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
    milter_port = _milter_port()
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
        # No syslog daemon here: the job's summary is in its own log file.
        if not os.path.exists("/dev/log"):
            daily = Path("/var/log/pyspamd/daily.log").read_text()
            assert "pyspamd-daily[" in daily and "learned" in daily, daily
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        output, _ = proc.communicate(timeout=90)
    # Started in the foreground, as systemd does: the log goes to stderr (the journal).
    assert "qid: 4PKGTEST" in output, output
    assert "GTUBE" in output


def _pid() -> int:
    return int(PIDFILE.read_text())


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def _owner(pid: int) -> str:
    return pwd.getpwuid(Path(f"/proc/{pid}").stat().st_uid).pw_name


def _deleted_code(pid: int) -> list[str]:
    """Files of the package the process has mapped that are no longer on disk (replaced)."""
    maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
    return [line.split()[-2] for line in maps
            if line.endswith("(deleted)") and "/opt/pyspamd/" in line]


def _service(action: str) -> subprocess.CompletedProcess[str]:
    return _run(["service", "pyspamd", action])


def _answers(port: int) -> bool:
    session = MtaSession(port)
    try:
        return session.send(GTUBE, queue_id="4PKGLIFE").reply.startswith("554 5.7.1")
    finally:
        session.close()


def test_lifecycle_without_systemd(installed: Path, debs: Debs) -> None:
    """service start, upgrade, remove, reinstall, purge: the init script and the maintainer
    scripts stop and start the daemon with no systemd, and purge with it up leaves nothing."""
    milter_port = _milter_port()
    _service("start")
    first = _pid()
    assert _alive(first) and _owner(first) == "pyspamd"
    wait_for_port(milter_port, timeout=60)
    assert _answers(milter_port)
    assert _service("start").returncode == 0 and _pid() == first  # started already: no-op
    assert "is running" in _service("status").stdout
    if not os.path.exists("/dev/log"):  # the detached daemon's log, no syslog daemon here
        log = Path("/var/log/pyspamd/pyspamd.log").read_text()
        assert f"listening on inet:{milter_port}@127.0.0.1" in log, log

    # Upgrade with the daemon up: it is restarted and runs the new version's files.
    out = _run([*APT, "install", str(debs.second)])
    assert f"restarting the daemon (pid {first})" in out.stdout, out.stdout
    assert not _alive(first)
    second = _pid()
    assert second != first and _alive(second) and _owner(second) == "pyspamd"
    assert _run(["dpkg-query", "-W", "-f=${Version}", "pyspamd"]).stdout == "0.1.0-2"
    assert not _deleted_code(second), _deleted_code(second)
    wait_for_port(milter_port, timeout=60)
    assert _answers(milter_port)

    # Remove: stopped, its socket closed; the config, the state and the user stay.
    LOCAL.with_name("50-site.toml").write_text("[actions]\nreject = 14.0\n")
    Path("/etc/pyspamd/rules.d/local.rules").write_text("score GTUBE 900\n")
    _run([*APT, "remove", "pyspamd"])
    assert not _alive(second) and not PIDFILE.exists()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", milter_port), timeout=2).close()
    for path in ("/opt/pyspamd", "/usr/bin/pyspamd", "/usr/share/pyspamd"):
        assert not os.path.lexists(path), path
    assert Path("/etc/pyspamd/pyspamd.toml").exists() and LOCAL.exists()
    assert Path("/var/lib/pyspamd/pyspamd.sqlite").exists()
    pwd.getpwnam("pyspamd")

    # Reinstall: a clean start, no "already running".
    out = _run([*APT, "install", str(debs.second)])
    assert "not started" in out.stdout, out.stdout
    started = _service("start")
    assert "already running" not in started.stdout + started.stderr
    third = _pid()
    assert third not in (first, second) and _alive(third)
    wait_for_port(milter_port, timeout=60)
    assert _answers(milter_port)

    # Purge with the daemon up, and another process of the pyspamd user (a pyspamd under a
    # supervisor of the admin's): both stop, and nothing of the package is left.
    other = subprocess.Popen(_as_pyspamd(["sleep", "600"]), start_new_session=True)
    # Reaped as soon as it ends: a zombie would still count as the user's process.
    reaper = threading.Thread(target=other.wait, daemon=True)
    reaper.start()
    try:
        _run([*APT, "purge", "pyspamd"])
        assert not _alive(third)
        reaper.join(timeout=10)
        assert other.returncode == -signal.SIGTERM
    finally:
        if other.poll() is None:
            other.kill()
    left = [str(p) for p in PACKAGE_PATHS if os.path.lexists(p)]
    assert not left, left
    assert not list(Path("/etc").glob("rc?.d/*pyspamd"))
    with pytest.raises(KeyError):
        pwd.getpwnam("pyspamd")
    assert subprocess.run(["getent", "group", "pyspamd"], capture_output=True).returncode == 2
    assert not _installed("pyspamd")
    enabled = Path("/var/lib/systemd/deb-systemd-helper-enabled")
    assert not list(enabled.rglob("pyspamd*")) if enabled.exists() else True
