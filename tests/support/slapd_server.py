"""A private slapd (Debian's package) for the LDAP map tests: its own port, directory and
database, filled from LDIF before it starts, stopped afterwards even when tests fail."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from support.mta import free_port, wait_for_port

SUFFIX = "dc=example,dc=org"
ADMIN_DN = f"cn=admin,{SUFFIX}"
ADMIN_PASSWORD = "test-secret"
READER_DN = f"uid=reader,ou=people,{SUFFIX}"
READER_PASSWORD = "reader-secret"

# The notes' account flag. LDAP attribute names cannot hold "_", so the notes'
# smtpd_sender_restrictions becomes smtpdSenderRestrictions here.
SCHEMA = """
attributetype ( 1.3.6.1.4.1.55555.1.1 NAME 'smtpdSenderRestrictions'
    DESC 'TRUE: this account may not send mail'
    EQUALITY booleanMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.7 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.55555.2.1 NAME 'pyspamdMailAccount' SUP top AUXILIARY
    MAY smtpdSenderRestrictions )
"""


def _person(uid: str, mail: str, restricted: str, extra: str = "") -> str:
    return (f"dn: uid={uid},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\n"
            f"objectClass: pyspamdMailAccount\nuid: {uid}\ncn: {uid}\nsn: {uid}\n"
            f"mail: {mail}\nsmtpdSenderRestrictions: {restricted}\n{extra}\n")


DATA = (f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\n"
        "dc: example\n\n"
        f"dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n\n"
        + _person("blocked", "blocked@example.org", "TRUE")
        + _person("alice", "alice@example.org", "FALSE")
        + _person("multi", "multi@example.org", "TRUE",
                  "description: HOLD second value\ndescription: REJECT first value\n")
        + _person("reader", "reader@example.org", "FALSE", f"userPassword: {READER_PASSWORD}\n"))


@dataclass
class Slapd:
    port: int
    root: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["/usr/sbin/slapd", "-f", str(self.root / "slapd.conf"), "-h", self.url + "/",
             "-d", "0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, timeout=20)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


@contextmanager
def slapd_server() -> Iterator[Slapd]:
    if not Path("/usr/sbin/slapd").exists() or shutil.which("slapadd") is None:
        raise RuntimeError("slapd is missing: apt-get install slapd (.ci/run installs it)")
    with tempfile.TemporaryDirectory(prefix="pyspamd-slapd-") as tmp:
        root = Path(tmp)
        (root / "db").mkdir()
        (root / "test.schema").write_text(SCHEMA)
        (root / "slapd.conf").write_text(f"""\
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include {root}/test.schema
pidfile {root}/slapd.pid
modulepath /usr/lib/ldap
moduleload back_mdb
access to attrs=userPassword by anonymous auth by * none
access to * by * read
database mdb
maxsize 10485760
suffix "{SUFFIX}"
rootdn "{ADMIN_DN}"
rootpw {ADMIN_PASSWORD}
directory {root}/db
""")
        (root / "data.ldif").write_text(DATA)
        subprocess.run(["slapadd", "-f", str(root / "slapd.conf"), "-l",
                        str(root / "data.ldif")], check=True, capture_output=True, timeout=60)
        server = Slapd(free_port(), root)
        server.start()
        try:
            yield server
        finally:
            server.stop()
            time.sleep(0.05)
