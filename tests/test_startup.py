"""Starting the daemon as an admin would, and what stops it with one line: a second daemon
on the same sockets or pidfile, paths the daemon's user cannot write; where the log goes;
pyspamc's rspamc-shaped command line."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.mta import Daemon, free_port, running_daemon, wait_for_port
from support.paths import CORPUS

from pyspamd.cli.pyspamc import main as pyspamc
from pyspamd.cli.pyspamc import rspamc_argv
from pyspamd.config import LoggingConfig
from pyspamd.logsetup import resolve_target, setup_logging

REPO = Path(__file__).resolve().parent.parent
GTUBE = CORPUS / "malformed" / "gtube.eml"
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def _pyspamd(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pyspamd.cli.pyspamd", *args],
                          capture_output=True, text=True, env=ENV, timeout=timeout)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    controller = free_port()
    with running_daemon(tmp_path, f'[controller]\nlisten = "127.0.0.1:{controller}"\n'
                                  f'[storage]\npath = "{tmp_path}/s.sqlite"\n',
                        workers=1) as d:
        yield d


# --- one daemon per socket ------------------------------------------------------------

def test_second_daemon_on_the_same_sockets_is_refused_in_one_line(daemon: Daemon) -> None:
    config = str(daemon.workdir / "pyspamd.toml")
    for extra in ([], ["--daemon", "--pidfile", str(daemon.workdir / "second.pid")]):
        out = _pyspamd("--config", config, *extra)
        assert out.returncode == 1
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1, out.stderr
        assert lines[0].startswith("pyspamd not started: milter.listen inet:")
        assert "address in use" in lines[0] and "controller.listen" in lines[0]
        assert "Traceback" not in out.stderr
    # Refused before it forked: no pidfile of an orphan, and the first daemon still serves.
    assert not (daemon.workdir / "second.pid").exists()
    wait_for_port(daemon.port, timeout=5)


def test_locked_pidfile_names_the_live_daemon_and_is_kept(tmp_path: Path) -> None:
    pidfile = tmp_path / "pyspamd.pid"
    config = tmp_path / "c.toml"
    config.write_text(f'[milter]\nlisten = ["inet:{free_port()}@127.0.0.1"]\nworkers = 1\n'
                      '[controller]\nenabled = false\n'
                      f'[storage]\npath = "{tmp_path}/s.sqlite"\n'
                      f'[logging]\ntarget = "{tmp_path}/log"\n')
    first = _pyspamd("--config", str(config), "--daemon", "--pidfile", str(pidfile))
    assert first.returncode == 0, first.stderr
    assert first.stderr.strip() == f"pyspamd: detaching; logging to {tmp_path}/log"
    pid = int(pidfile.read_text())
    try:
        # Another config (other port) but the same pidfile: the lock says who runs.
        other = tmp_path / "other.toml"
        other.write_text(f'[milter]\nlisten = ["inet:{free_port()}@127.0.0.1"]\n'
                         '[controller]\nenabled = false\n'
                         f'[storage]\npath = "{tmp_path}/s.sqlite"\n')
        second = _pyspamd("--config", str(other), "--daemon", "--pidfile", str(pidfile))
        assert second.returncode == 1
        assert second.stderr.strip() == (
            f"pyspamd is already running (pid {pid}, pidfile {pidfile} is locked)")
        assert int(pidfile.read_text()) == pid and _alive(pid)
    finally:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
    assert not pidfile.exists()  # the daemon removed its own pidfile


def test_stale_pidfile_does_not_block_a_start(tmp_path: Path) -> None:
    pidfile = tmp_path / "pyspamd.pid"
    pidfile.write_text("999999\n")  # left by a crash: nobody holds its lock
    config = tmp_path / "c.toml"
    port = free_port()
    config.write_text(f'[milter]\nlisten = ["inet:{port}@127.0.0.1"]\nworkers = 1\n'
                      '[controller]\nenabled = false\n'
                      f'[storage]\npath = "{tmp_path}/s.sqlite"\n'
                      f'[logging]\ntarget = "{tmp_path}/log"\n')
    assert _pyspamd("--config", str(config), "--daemon", "--pidfile", str(pidfile)).returncode == 0
    pid = int(pidfile.read_text())
    try:
        assert pid != 999999
        wait_for_port(port)
    finally:
        os.kill(pid, signal.SIGTERM)


def test_live_unix_socket_is_not_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "milter.sock"
    with socket.socket(socket.AF_UNIX) as holder:
        holder.bind(str(path))
        holder.listen()
        config = tmp_path / "c.toml"
        config.write_text(f'[milter]\nlisten = ["unix:{path}"]\n[controller]\nenabled = false\n'
                          f'[storage]\npath = "{tmp_path}/s.sqlite"\n')
        out = _pyspamd("--config", str(config))
        assert out.returncode == 1
        assert f"milter.listen unix:{path}: address in use" in out.stderr
        assert path.exists()


def test_a_pool_that_cannot_listen_stops_the_daemon_instead_of_looping(tmp_path: Path) -> None:
    # Two listeners that each pass the check alone but not together: the second pool's
    # socket is refused by the kernel. The daemon says so once and exits non-zero.
    port = free_port()
    config = tmp_path / "c.toml"
    log = tmp_path / "log"
    config.write_text(f'[milter]\nlisten = ["inet:{port}@127.0.0.1", "inet:{port}@0.0.0.0"]\n'
                      'workers = 1\n[controller]\nenabled = false\n'
                      f'[storage]\npath = "{tmp_path}/s.sqlite"\n[logging]\ntarget = "{log}"\n')
    out = _pyspamd("--config", str(config), timeout=60)
    assert out.returncode == 1
    text = log.read_text()
    assert text.count("cannot listen on inet:") == 1, text
    assert "address in use" in text and "restarting" not in text


# --- permissions ------------------------------------------------------------------------

@pytest.fixture
def root_owned_store(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to run as another user")
    top = Path("/tmp") / f"pyspamd-perm-{os.getpid()}"
    top.mkdir(mode=0o755)
    try:
        config = top / "c.toml"
        config.write_text(f'[storage]\npath = "{top}/s.sqlite"\n'
                          f'[milter]\nlisten = ["inet:{free_port()}@127.0.0.1"]\n'
                          '[controller]\nenabled = false\n')
        assert pyspamc(["-c", str(config), "learn_spam", str(GTUBE)]) == 0
        yield config
    finally:
        shutil.rmtree(top, ignore_errors=True)


def _as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NOBODY, sys.executable, *args], capture_output=True, text=True,
                          env=ENV, cwd="/")


def test_configtest_and_start_name_the_unwritable_store(root_owned_store: Path) -> None:
    store = root_owned_store.parent / "s.sqlite"
    check = _as_nobody("-m", "pyspamd.cli.pyspamd", "-c", str(root_owned_store), "configtest")
    assert check.returncode == 1
    assert (f"storage.path {store}: not writable by user nobody (owner root, mode 0644)"
            in check.stdout)
    assert f"state directory {store.parent}: not writable by user nobody" in check.stdout
    start = _as_nobody("-m", "pyspamd.cli.pyspamd", "-c", str(root_owned_store))
    assert start.returncode == 1
    assert start.stderr.startswith("pyspamd not started: storage.path")
    assert len(start.stderr.strip().splitlines()) == 1


def test_pyspamc_storage_error_is_one_line_and_non_zero(root_owned_store: Path) -> None:
    for command in (["symbols", str(GTUBE)], ["stat"], ["learn_ham", str(GTUBE)]):
        out = _as_nobody("-m", "pyspamd.cli.pyspamc", "-c", str(root_owned_store), *command)
        assert out.returncode == 1, (command, out.stdout, out.stderr)
        assert "Traceback" not in out.stderr
        assert out.stderr.startswith("pyspamc: storage.path"), out.stderr


def test_unix_socket_directory_must_be_writable(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[milter]\nlisten = ["unix:{tmp_path}/missing/milter.sock"]\n'
                      f'[storage]\npath = "{tmp_path}/s.sqlite"\n')
    out = _pyspamd("--config", str(config), "configtest")
    assert out.returncode == 1
    assert f"directory {tmp_path}/missing does not exist" in out.stdout


# --- logging ----------------------------------------------------------------------------

def test_auto_target_follows_how_pyspamd_was_started(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    syslog = tmp_path / "log.sock"
    logfile = tmp_path / "var-log-pyspamd" / "pyspamd.log"
    monkeypatch.setattr("pyspamd.logsetup.SYSLOG_SOCKET", str(syslog))
    monkeypatch.setattr("pyspamd.logsetup.DAEMON_LOG_DIR", logfile.parent)
    assert resolve_target("auto", daemon=False) == "stderr"
    assert resolve_target("auto", daemon=True) == "syslog"  # no syslog, no log directory
    logfile.parent.mkdir()
    assert resolve_target("auto", daemon=True) == str(logfile)  # a container
    assert resolve_target("auto", True, Path("/etc/pyspamd/pyspamd.toml")) == str(logfile)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(syslog))
        assert resolve_target("auto", daemon=True) == "syslog"
    assert resolve_target("/var/log/x.log", daemon=True) == "/var/log/x.log"


def test_each_instance_has_its_own_fallback_log_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two daemons of one host without a syslog daemon: two files, named after their
    configs, never one file both write (and rotate) at once."""
    monkeypatch.setattr("pyspamd.logsetup.SYSLOG_SOCKET", str(tmp_path / "no-syslog"))
    monkeypatch.setattr("pyspamd.logsetup.DAEMON_LOG_DIR", tmp_path)
    first, second = tmp_path / "mx1" / "pyspamd.toml", tmp_path / "mx2" / "pyspamd.toml"
    targets = {resolve_target("auto", True, first), resolve_target("auto", True, second),
               resolve_target("auto", True, None)}
    assert len(targets) == 3, targets
    mx2 = resolve_target("auto", True, second)
    assert Path(mx2).parent == tmp_path
    assert Path(mx2).name == "pyspamd-" + str(second.with_suffix("")).strip("/").replace(
        "/", "-") + ".log"
    # A detached daemon says which file it is, before it lets go of the terminal.
    out = subprocess.run(
        [sys.executable, "-c", "import sys; from pathlib import Path; "
         "import pyspamd.logsetup as l; l.SYSLOG_SOCKET = sys.argv[1]; "
         "l.DAEMON_LOG_DIR = Path(sys.argv[2]); from pyspamd.config import LoggingConfig; "
         "l.setup_logging(LoggingConfig(), daemon=True, config_path=Path(sys.argv[3])); "
         "import logging; logging.getLogger('pyspamd.t').info('mx2 here')",
         str(tmp_path / "no-syslog"), str(tmp_path), str(second)],
        capture_output=True, text=True, env=ENV, check=True)
    assert f"logging to {mx2}" in out.stderr
    assert "mx2 here" in Path(mx2).read_text()


def test_detached_daemon_logs_to_the_mail_facility(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # A real syslog socket of our own in place of /dev/log.
    path = tmp_path / "log.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as syslog:
        syslog.bind(str(path))
        syslog.settimeout(5)
        monkeypatch.setattr("pyspamd.logsetup.SYSLOG_SOCKET", str(path))
        setup_logging(LoggingConfig(), daemon=True)
        import logging

        logging.getLogger("pyspamd.test").info("hello admin")
        datagram = syslog.recv(4096).decode()
    # <22>: facility mail (2) * 8 + severity info (6), then the tag, as Postfix's lines.
    assert datagram.startswith(f"<22>pyspamd[{os.getpid()}]: INFO pyspamd.test: hello admin")


def test_journal_stream_gets_lines_without_our_own_timestamp(tmp_path: Path) -> None:
    code = ("import os, logging; st = os.fstat(2); "
            "os.environ['JOURNAL_STREAM'] = f'{st.st_dev}:{st.st_ino}'; "
            "from pyspamd.config import LoggingConfig; from pyspamd.logsetup import setup_logging; "
            "setup_logging(LoggingConfig()); logging.getLogger('pyspamd.t').info('x')")
    with open(tmp_path / "err", "w") as err:
        subprocess.run([sys.executable, "-c", code], stderr=err, env=ENV, check=True)
    assert (tmp_path / "err").read_text() == "INFO pyspamd.t: x\n"


# --- pyspamc's command line ------------------------------------------------------------

COMMANDS = {"symbols", "stat", "learn_spam", "history"}


@pytest.mark.parametrize(("argv", "expected"), [
    (["-i", "1.2.3.4", "symbols", "f"], ["-i", "1.2.3.4", "symbols", "f"]),
    (["symbols", "-j", "-i", "1.2.3.4", "f"], ["-j", "-i", "1.2.3.4", "symbols", "f"]),
    (["f.eml", "-h", "mx:11334"], ["-h", "mx:11334", "symbols", "f.eml"]),
    (["-j", "a", "b"], ["-j", "symbols", "a", "b"]),
    (["-", "--ip=192.0.2.1"], ["--ip=192.0.2.1", "symbols", "-"]),
    (["stat", "-P", "pw"], ["-P", "pw", "stat"]),
    (["history", "--limit", "5", "-j"], ["-j", "history", "--limit", "5"]),
    (["symbols", "--", "-j"], ["symbols", "--", "-j"]),
])
def test_rspamc_argv(argv: list[str], expected: list[str]) -> None:
    assert rspamc_argv(argv, COMMANDS) == expected


def test_options_before_the_command_and_the_default_command(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert pyspamc(["-j", "-i", "203.0.113.5", "-F", "a@x.test", "-H", "x.test", str(GTUBE)]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["action"] == "reject"
    assert pyspamc(["symbols", str(GTUBE), "--json", "--ip", "203.0.113.5"]) == 0
    assert json.loads(capsys.readouterr().out)["action"] == "reject"
    assert pyspamc([str(GTUBE)]) == 0
    assert "Action: reject" in capsys.readouterr().out


def test_version_of_both_commands() -> None:
    for module, name in (("pyspamd.cli.pyspamc", "pyspamc"), ("pyspamd.cli.pyspamd", "pyspamd")):
        out = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True,
                             text=True, env=ENV)
        assert out.stdout.strip() == f"{name} 0.1.0"



def test_root_configtest_checks_as_the_state_directorys_owner(tmp_path: Path) -> None:
    # root's pyspamc left a root-owned store in the daemon user's directory: the admin's
    # configtest (as root) says the daemon will not write it; root's own pyspamc still works
    # and hands the file back.
    if os.geteuid() != 0:
        pytest.skip("needs root")
    state = tmp_path / "state"
    state.mkdir()
    os.chown(state, 65534, 65534)
    config = tmp_path / "c.toml"
    config.write_text(f'[storage]\npath = "{state}/s.sqlite"\n')
    store = state / "s.sqlite"
    from pyspamd.storage.sqlite_store import SqliteStorage

    with SqliteStorage(store) as made:  # by root, as a root pyspamc before the package
        made.set("x", b"1")
    assert store.stat().st_uid == 0
    out = _pyspamd("--config", str(config), "configtest")
    assert out.returncode == 1
    assert f"storage.path {store}: not writable by user nobody (owner root" in out.stdout
    assert pyspamc(["-c", str(config), "learn_spam", str(GTUBE)]) == 0
    assert store.stat().st_uid == 65534
    assert _pyspamd("--config", str(config), "configtest").returncode == 0


def test_pidfile_naming_a_live_pyspamd_without_a_lock_is_respected(
        daemon: Daemon, tmp_path: Path) -> None:
    # A daemon of an older version wrote its pid and took no lock.
    assert daemon.proc is not None
    pidfile = tmp_path / "old.pid"
    pidfile.write_text(f"{daemon.proc.pid}\n")
    config = tmp_path / "other.toml"
    config.write_text(f'[milter]\nlisten = ["inet:{free_port()}@127.0.0.1"]\n'
                      '[controller]\nenabled = false\n'
                      f'[storage]\npath = "{tmp_path}/s.sqlite"\n')
    out = _pyspamd("--config", str(config), "--daemon", "--pidfile", str(pidfile))
    assert out.returncode == 1
    assert out.stderr.strip() == f"pyspamd is already running (pid {daemon.proc.pid} in {pidfile})"
    assert pidfile.read_text() == f"{daemon.proc.pid}\n"


def test_every_pyspamc_command_is_in_its_man_page() -> None:
    from pyspamd.cli.pyspamc import _parser

    page = (REPO / "docs" / "man" / "pyspamc.1").read_text()
    described = {m.replace("\\-", "-") for m in re.findall(
        r'^\.(?:B|BI|BR) "?([a-z_\\-]+)', page, re.MULTILINE)}
    described |= {m.replace("\\-", "-") for m in re.findall(
        r'"\\fR, " ([a-z_]+)', page)}
    _, commands = _parser()
    assert sorted(commands - described) == []
