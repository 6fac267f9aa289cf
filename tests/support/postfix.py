"""A private Postfix instance for end-to-end tests: loopback only, own ports and directories.

Mail for bob@example.test is delivered by virtual(8) into a Maildir under the instance's
directory (as uid nobody), so no system user or system Postfix setting is touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email import message_from_bytes
from email.message import Message
from email.policy import compat32
from pathlib import Path

import aiosmtplib

from support.mta import free_port, wait_for_port

MAILBOX = "bob@example.test"


@dataclass
class Postfix:
    root: Path
    smtp_port: int
    milter_port: int

    @property
    def conf(self) -> Path:
        return self.root / "conf"

    @property
    def maildir(self) -> Path:
        return self.mailbox_dir(MAILBOX)

    def mailbox_dir(self, address: str) -> Path:
        """The Maildir of one of the instance's mailboxes (MAILBOX and `mailboxes`)."""
        return self.root / "vmail" / address.partition("@")[0]

    def delivered_to(self, address: str) -> list[Message]:
        folder = self.mailbox_dir(address) / "new"
        return [message_from_bytes(p.read_bytes(), policy=compat32)
                for p in sorted(folder.iterdir())] if folder.is_dir() else []

    def send_many(self, raw: bytes, rcpts: list[str], sender: str = "alice@example.org"
                  ) -> tuple[int, str, dict[str, tuple[int, str]]]:
        """One SMTP transaction to several recipients: the DATA reply's (code, text), and
        each recipient the server refused at RCPT with its (code, text)."""

        async def go() -> tuple[int, str, dict[str, tuple[int, str]]]:
            refused: dict[str, tuple[int, str]] = {}
            async with aiosmtplib.SMTP(hostname="127.0.0.1", port=self.smtp_port,
                                       timeout=30) as smtp:
                await smtp.mail(sender)
                for rcpt in rcpts:
                    try:
                        await smtp.rcpt(rcpt)
                    except aiosmtplib.SMTPRecipientRefused as exc:
                        refused[rcpt] = (exc.code, exc.message)
                if len(refused) == len(rcpts):
                    return 0, "", refused
                try:
                    reply = await smtp.data(raw)
                except aiosmtplib.SMTPResponseException as exc:
                    return exc.code, exc.message, refused
                return reply.code, reply.message, refused

        return asyncio.run(go())

    def postfix(self, *args: str) -> subprocess.CompletedProcess[str]:
        # postfix writes its errors to stderr only on a terminal; `script` gives it one.
        command = " ".join(["postfix", "-c", str(self.conf), *args])
        return subprocess.run(["script", "-qec", command, "/dev/null"], capture_output=True,
                              text=True, check=False, timeout=60)

    def send(self, raw: bytes, sender: str = "alice@example.org") -> tuple[int, str]:
        """One SMTP transaction to MAILBOX: (250, reply) or the refusal's (code, text)."""

        async def go() -> tuple[int, str]:
            try:
                async with aiosmtplib.SMTP(hostname="127.0.0.1", port=self.smtp_port,
                                           timeout=30) as smtp:
                    _, reply = await smtp.sendmail(sender, [MAILBOX], raw)
                    return 250, reply
            except aiosmtplib.SMTPResponseException as exc:
                return exc.code, exc.message

        return asyncio.run(go())

    def master_pid(self) -> int:
        """Postfix's master process; raises FileNotFoundError/ValueError when not running."""
        return int((self.root / "queue" / "pid" / "master.pid").read_text().split()[0])

    def log(self) -> str:
        path = self.root / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""

    def delivered(self) -> list[Message]:
        folder = self.maildir / "new"
        if not folder.is_dir():
            return []
        return [message_from_bytes(p.read_bytes(), policy=compat32)
                for p in sorted(folder.iterdir())]

    def wait_delivered(self, count: int, timeout: float = 20.0) -> list[Message]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            messages = self.delivered()
            if len(messages) >= count:
                return messages
            time.sleep(0.1)
        raise AssertionError(f"{len(self.delivered())} of {count} messages delivered:\n"
                             + self.log()[-3000:])

    def wait_for(self, address: str, count: int, timeout: float = 20.0) -> list[Message]:
        """The messages in `address`'s mailbox once there are `count` of them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            messages = self.delivered_to(address)
            if len(messages) >= count:
                return messages
            time.sleep(0.1)
        raise AssertionError(f"{len(self.delivered_to(address))} of {count} messages "
                             f"delivered to {address}:\n" + self.log()[-3000:])

    def clear_mailbox(self) -> None:
        for sub in ("new", "cur"):
            folder = self.maildir / sub
            if folder.is_dir():
                for path in folder.iterdir():
                    path.unlink()


def _common_cf(root: Path) -> str:
    """What every test instance needs: its own directories and log, loopback only."""
    return f"""\
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
meta_directory = /etc/postfix
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
alias_maps =
alias_database =
"""


def _receiving_cf(root: Path, milter_port: int, default_action: str,
                  mailboxes: tuple[str, ...] = ()) -> str:
    nobody = pwd.getpwnam("nobody")
    boxes = ", ".join(f"{a}={a.partition('@')[0]}/" for a in (MAILBOX, *mailboxes))
    return _common_cf(root) + f"""\
myhostname = mail.example.test
mydomain = example.test
myorigin = example.test
mynetworks = 127.0.0.0/8
smtpd_peername_lookup = no
virtual_mailbox_domains = example.test
virtual_mailbox_base = {root}/vmail
virtual_mailbox_maps = inline:{{ {boxes} }}
virtual_uid_maps = static:{nobody.pw_uid}
virtual_gid_maps = static:{nobody.pw_gid}
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_milters = inet:127.0.0.1:{milter_port}
non_smtpd_milters = inet:127.0.0.1:{milter_port}
milter_default_action = {default_action}
milter_protocol = 6
milter_connect_macros = j {{daemon_name}} {{daemon_addr}} {{client_addr}} {{client_name}} v _
milter_mail_macros = i {{auth_type}} {{auth_authen}} {{auth_author}} {{mail_addr}}
# Test and benchmark clients are refused on purpose, many times per connection: no penalty.
smtpd_error_sleep_time = 0
smtpd_soft_error_limit = 100000
smtpd_hard_error_limit = 100000
"""


@contextlib.contextmanager
def _instance(prefix: str, main_cf: Callable[[Path], str], smtp_port: int,
              milter_port: int) -> Iterator[Postfix]:
    """Start a Postfix from `main_cf(root)`; with smtp_port 0 it listens on no SMTP port.
    Always stopped and removed afterwards, whatever happened."""
    if shutil.which("postfix") is None:
        raise RuntimeError(
            "postfix is not installed: .ci/run installs it (apt-get install postfix)")
    # Postfix's daemons run as user postfix and must reach these directories: not under
    # pytest's 0700 temp root.
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)
    instance = Postfix(root, smtp_port, milter_port)
    try:
        conf = root / "conf"
        conf.mkdir()
        (root / "queue").mkdir()
        data = root / "data"
        data.mkdir()
        os.chown(data, pwd.getpwnam("postfix").pw_uid, grp.getgrnam("postfix").gr_gid)
        vmail = root / "vmail"
        vmail.mkdir()
        nobody = pwd.getpwnam("nobody")
        os.chown(vmail, nobody.pw_uid, nobody.pw_gid)
        (conf / "main.cf").write_text(main_cf(root))
        lines = []
        for line in Path("/etc/postfix/master.cf").read_text().splitlines():
            if line.startswith("smtp ") and " inet " in line:
                if not smtp_port:
                    continue
                line = f"127.0.0.1:{smtp_port} inet n - n - - smtpd"
            lines.append(line)
        (conf / "master.cf").write_text("\n".join(lines) + "\n")
        subprocess.run(["postconf", "-c", str(conf), "-F", "*/*/chroot = n"], check=True)
        started = instance.postfix("start")
        if started.returncode != 0:
            raise RuntimeError(f"postfix start failed: {started.stdout}{started.stderr}")
        if smtp_port:
            wait_for_port(smtp_port, timeout=30)
        yield instance
    finally:
        instance.postfix("stop")
        time.sleep(0.2)
        with contextlib.suppress(FileNotFoundError, ValueError):
            pid = instance.master_pid()
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def running_postfix(milter_port: int, default_action: str = "accept",
                    mailboxes: tuple[str, ...] = (), extra_cf: str = "") -> Iterator[Postfix]:
    """The receiving instance: SMTP on a free port, the milter, delivery to MAILBOX and to
    `mailboxes` (more addresses of example.test); `extra_cf`: more main.cf lines
    (smtpd_recipient_restrictions with a policy service)."""
    with _instance("pyspamd-postfix-",
                   lambda root: _receiving_cf(root, milter_port, default_action, mailboxes)
                   + extra_cf,
                   free_port(), milter_port) as instance:
        yield instance


@contextlib.contextmanager
def sending_postfix(relay_port: int) -> Iterator[Postfix]:
    """A Postfix that only sends: mail submitted with its sendmail goes to the receiving
    instance on 127.0.0.1:relay_port. It listens on no SMTP port of its own."""
    def main_cf(root: Path) -> str:
        return _common_cf(root) + f"""\
myhostname = mx.sender.test
mydomain = sender.test
myorigin = sender.test
relayhost = [127.0.0.1]:{relay_port}
smtp_tls_security_level = none
"""

    with _instance("pyspamd-postfix-sender-", main_cf, 0, 0) as instance:
        yield instance
