"""The policy service through a real Postfix: `check_policy_service inet:127.0.0.1:PORT` in
smtpd_recipient_restrictions, the real daemon (milter and policy service sharing the store)
and the DNS lab for SPF.

A new triplet is refused 450 at RCPT and the client never gets to DATA; its retry after the
delay is delivered with X-Greylist and the milter's headers, and the milter does not
greylist it a second time. An SPF Fail is refused 550 5.7.23 at RCPT. postgrey's whitelist
files let their clients and recipients through at once.
"""

from __future__ import annotations

import smtplib
import time
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path

import pytest
from support.greylisting import CONFIG as GREYLISTING
from support.greylisting import DELAY
from support.messages import make_message
from support.mta import Daemon, free_port, running_daemon
from support.network_lab import Lab
from support.paths import REPO
from support.postfix import MAILBOX, Postfix, running_postfix

pytestmark = pytest.mark.postfix

# Greylisting after scoring would defer every message of this suite (score band); here the
# policy service does it, so the milter's band is out of reach.
MARKER_RULES = "body GREY_ME /greylist-me-please/\nscore GREY_ME 45\n"
CONFIG = GREYLISTING + """
[rules]
dirs = ["{shipped}", "{rules}"]
[policy_service]
listen = ["inet:{port}@127.0.0.1"]
greylist = true
spf = true
spf_config = "{spf_conf}"
whitelist_clients = ["{clients}"]
whitelist_recipients = ["{recipients}"]
auto_whitelist_clients = 0
"""
# policyd-spf.conf as an admin has it, but checking 127.0.0.1 (the test client).
SPF_CONF = """\
debugLevel = 1
TestOnly = 1
HELO_reject = Fail
Mail_From_reject = Fail
PermError_reject = False
TempError_Defer = False
skip_addresses = 10.255.255.0/24
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, lab: Lab
          ) -> Iterator[tuple[Postfix, Daemon, Path]]:
    workdir = tmp_path_factory.mktemp("policy-e2e")
    (workdir / "policyd-spf.conf").write_text(SPF_CONF)
    (workdir / "whitelist_clients").write_text("# postgrey's format\n/^never\\./\n")
    (workdir / "whitelist_recipients").write_text("postmaster@\nwhitelisted.test\n")
    rules = workdir / "rules"
    rules.mkdir()
    (rules / "markers.rules").write_text(MARKER_RULES)
    port = free_port()
    config = lab.config(extra=CONFIG.format(
        shipped=REPO / "rules", rules=rules, store=workdir / "store.sqlite", delay=DELAY, port=port,
        spf_conf=workdir / "policyd-spf.conf", clients=workdir / "whitelist_clients",
        recipients=workdir / "whitelist_recipients"))
    # lab.config turns greylisting off for the network suites; here it is the subject.
    config = config.replace("[greylist]\nenabled = false\n", "")
    restrictions = (f"smtpd_recipient_restrictions = check_policy_service "
                    f"inet:127.0.0.1:{port}\nvirtual_alias_maps = inline:{{ "
                    f"postmaster@example.test={MAILBOX}, anyone@whitelisted.test={MAILBOX} }}\n"
                    "virtual_alias_domains = whitelisted.test\n")
    with running_daemon(workdir, config, workers=1) as daemon, \
            running_postfix(daemon.port, extra_cf=restrictions) as postfix:
        yield postfix, daemon, workdir


def _send(postfix: Postfix, sender: str, rcpt: str = MAILBOX,
          body: str = "hello from the policy suite\n") -> tuple[int, str, bool]:
    """One SMTP transaction: (code, text) of the first refusal or of DATA's end, and whether
    DATA was sent."""
    raw = make_message([("To", rcpt), ("From", sender), ("Subject", "policy"),
                        ("Date", formatdate())], body)
    with smtplib.SMTP("127.0.0.1", postfix.smtp_port, timeout=30) as smtp:
        smtp.ehlo("client.example.org")
        code, text = smtp.mail(sender)
        if code != 250:
            return code, text.decode(), False
        code, text = smtp.rcpt(rcpt)
        if code != 250:
            return code, text.decode(), False
        code, text = smtp.data(raw)
        return code, text.decode(), True


def test_new_triplet_deferred_at_rcpt_retry_delivered_with_x_greylist(
        stack: tuple[Postfix, Daemon, Path]) -> None:
    postfix, daemon, _ = stack
    postfix.clear_mailbox()
    # The body scores in the milter's greylist band: only the shared triplet store keeps
    # the milter from deferring the retry a second time.
    body = "greylist-me-please\n"
    code, text, data_sent = _send(postfix, "alice@nospf.example.test", body=body)
    assert (code, data_sent) == (450, False), text
    assert "Greylisted, see https://postgrey.schweikert.ch/help/example.test.html" in text
    start = time.monotonic()
    assert _send(postfix, "alice@nospf.example.test", body=body)[0] == 450  # too early
    time.sleep(max(0.0, DELAY + 0.3 - (time.monotonic() - start)))
    code, text, data_sent = _send(postfix, "alice@nospf.example.test", body=body)
    assert (code, data_sent) == (250, True), text
    (message,) = postfix.wait_delivered(1)
    assert message["X-Greylist"].startswith("delayed ")
    assert " seconds by pyspamd-" in message["X-Greylist"]
    assert message["X-Spamd-Result"]  # the milter scanned it
    # One Received-SPF: the policy service's result (receiver= is the recipient's domain,
    # as policyd-spf writes it), added by the milter from the store, not looked up again.
    (spf,) = message.get_all("Received-SPF")
    assert spf.startswith("None (mailfrom)") and "receiver=example.test" in spf, spf
    # The milter found the triplet passed: it did not defer the message a second time.
    assert "Greylisted, please try again later" not in postfix.log()
    assert "GREYLIST(0.00)[pass]" in "".join(message["X-Spamd-Result"].split())
    tasks = [line for line in daemon.log().splitlines() if "pyspamd.task" in line]
    assert len(tasks) == 1  # only the delivered attempt reached DATA
    assert "action=greylist, reason=new" in daemon.log()


def test_spf_fail_refused_at_rcpt(stack: tuple[Postfix, Daemon, Path]) -> None:
    postfix, _, _ = stack
    # example.test allows 192.0.2.25 and 198.51.100.0/24 only (-all): 127.0.0.1 fails.
    code, text, data_sent = _send(postfix, "mallory@example.test")
    assert (code, data_sent) == (550, False)
    assert text.startswith("5.7.23 ") and "SPF fail - not authorized" in text, text


def test_postgrey_whitelist_files_honoured(stack: tuple[Postfix, Daemon, Path]) -> None:
    postfix, _, _ = stack
    postfix.clear_mailbox()
    # First sight of both triplets, delivered at once: postmaster@ (any domain) and the
    # whitelisted.test domain are in whitelist_recipients.
    for rcpt in ("postmaster@example.test", "anyone@whitelisted.test"):
        code, text, _ = _send(postfix, "carol@nospf.example.test", rcpt)
        assert code == 250, text
    delivered = postfix.wait_delivered(2)
    assert all(m["X-Greylist"] is None for m in delivered)
