"""A private clamd (Debian's clamav-daemon) for the tests: its own config, unix socket and
DatabaseDirectory holding only signatures the tests write, so no freshclam, no network and
no system service is used. Stopped afterwards even when tests fail.

The EICAR test string is put together at run time, so no file of the repository is one
that virus scanners on developers' machines would flag.
"""

from __future__ import annotations

import hashlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

EICAR = (b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$" + b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*")
EICAR_SIGNATURE = "Eicar-Test-Signature"
# A made-up third-party phishing signature: a hex (.ndb) body pattern.
PHISH_TEXT = b"confirm-your-mailbox-password-now.example"
PHISH_SIGNATURE = "Sanesecurity.Phishing.Test"
JUNK_TEXT = b"cheapest-replica-watches-in-town.example"
JUNK_SIGNATURE = "Sanesecurity.Junk.Test"
# Spam signatures of other third-party feeds, named as SecuriteInfo's and Porcupine's are.
SECURITEINFO_SPAM_TEXT = b"securiteinfo-spam-campaign-4711.example"
SECURITEINFO_SPAM_SIGNATURE = "SecuriteInfo.com.Spam.4711"
PORCUPINE_JUNK_TEXT = b"porcupine-junk-offer-8080.example"
PORCUPINE_JUNK_SIGNATURE = "Porcupine.Junk.8080"
MAX_FILES = 10  # clamd's MaxFiles: an archive with more reports Heuristics.Limits.Exceeded


@dataclass
class ClamdServer:
    root: Path
    socket_path: Path
    proc: subprocess.Popen[bytes]

    @property
    def log(self) -> str:
        path = self.root / "clamd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def write_signatures(db: Path) -> None:
    db.mkdir(parents=True, exist_ok=True)
    # .hdb: MD5:size:name of a whole file (or stream); .ndb: name:target:offset:hex.
    (db / "test.hdb").write_text(f"{hashlib.md5(EICAR).hexdigest()}:{len(EICAR)}:"
                                 f"{EICAR_SIGNATURE}\n")
    (db / "test.ndb").write_text(f"{PHISH_SIGNATURE}:0:*:{PHISH_TEXT.hex()}\n"
                                 f"{JUNK_SIGNATURE}:0:*:{JUNK_TEXT.hex()}\n")
    (db / "thirdparty.ndb").write_text(
        f"{SECURITEINFO_SPAM_SIGNATURE}:0:*:{SECURITEINFO_SPAM_TEXT.hex()}\n"
        f"{PORCUPINE_JUNK_SIGNATURE}:0:*:{PORCUPINE_JUNK_TEXT.hex()}\n")


def start_clamd(root: Path, tcp_port: int = 0) -> ClamdServer:
    """clamd on a unix socket in `root`, and on 127.0.0.1:`tcp_port` too if given."""
    binary = shutil.which("clamd") or "/usr/sbin/clamd"
    if not Path(binary).exists():
        raise RuntimeError("clamd is missing: apt-get install clamav-daemon (.ci/run "
                           "installs it)")
    write_signatures(root / "db")
    sock = root / "clamd.sock"
    conf = root / "clamd.conf"
    conf.write_text(f"""\
Foreground yes
LocalSocket {sock}
DatabaseDirectory {root / "db"}
TemporaryDirectory {root}
LogFile {root / "clamd.log"}
PidFile {root / "clamd.pid"}
StreamMaxLength 2M
AlertEncrypted yes
AlertExceedsMax yes
MaxFiles {MAX_FILES}
SelfCheck 0
""" + (f"TCPSocket {tcp_port}\nTCPAddr 127.0.0.1\n" if tcp_port else ""))
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)
    server = ClamdServer(root, sock, proc)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"clamd exited with {proc.returncode}:\n{server.log}")
        try:
            with socket.socket(socket.AF_UNIX) as probe:
                probe.settimeout(2)
                probe.connect(str(sock))
                probe.sendall(b"zPING\0")
                if probe.recv(16).startswith(b"PONG"):
                    return server
        except OSError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"clamd did not answer PING within 60s:\n{server.log}")


@contextmanager
def clamd_server() -> Iterator[ClamdServer]:
    with tempfile.TemporaryDirectory(prefix="pyspamd-clamd-") as tmp:
        server = start_clamd(Path(tmp))
        try:
            yield server
        finally:
            server.stop()
