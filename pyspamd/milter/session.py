"""One SMTP connection as the MTA reports it over the milter protocol.

The worker's milter protocol (protocol.py: stages in its event loop, end of message in a
thread; or libmilter, a thread per connection) calls these methods. All decisions are made at
end of message, where the whole message is known; earlier stages only collect.

Stages before end of message are @noreply: Postfix sends them without waiting for an
answer. With Postfix that is 1.8 ms per message faster than answering every stage (A/B on
this machine, 400 corpus messages x 3 rounds: p50 7.6 vs 9.6 ms) and shows no Nagle stall.
The DATA stage is the exception: see data().
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from email.utils import getaddresses
from typing import Any, ClassVar

import Milter
import milter

from pyspamd.auth.dkim_sign import Signer
from pyspamd.faultlog import FaultLog
from pyspamd.milter.recipients import DEFER_CODE, RecipientGate, RecipientPolicy
from pyspamd.milter.verdict import (
    ALL_ACTIONS,
    SMFIF_ADDHDRS,
    VERDICT_HEADERS,
    Verdict,
    decide,
    fit_to_mta,
    quarantine_fallback,
    released_action,
    unscanned,
)
from pyspamd.policy.trusted import TrustedNetworks
from pyspamd.quarantine.release import HEADER as RELEASE_HEADER
from pyspamd.quarantine.release import ReleaseCheck
from pyspamd.quarantine.store import Held, QuarantineError, QuarantineStore
from pyspamd.result import ScanResult
from pyspamd.scanner import Scanner
from pyspamd.stats.recorder import ScanRecorder
from pyspamd.storage.sqlite_store import release_thread_connections
from pyspamd.task import Envelope
from pyspamd.tasklog import task_log_line

log = logging.getLogger("pyspamd.milter")
task_log = logging.getLogger("pyspamd.task")
faults = FaultLog(log)

_FAIL_TEXT = "Temporary local problem, please try again later"


class MilterApp:
    """What all sessions of one worker share: the scanner, the config, the session count."""

    def __init__(self, scanner: Scanner, server_name: str) -> None:
        self.scanner = scanner
        self.config = scanner.config
        self.server_name = server_name
        self.trusted = TrustedNetworks(self.config.milter.trusted_networks)
        self.recipients = RecipientGate(scanner)
        self._active = 0
        self._idle = threading.Condition()
        self.signer: Signer | None = None
        # Authentication-Results headers from outside that claim to be ours are removed
        # (RFC 8601 5): only while we add our own.
        self.authserv_id = ""
        if self.config.dns.enabled and self.config.auth.authentication_results:
            self.authserv_id = (self.config.auth.authserv_id or server_name).lower()
        if self.config.dkim_signing.keys:
            try:
                self.signer = Signer(self.config.dkim_signing)
            except OSError as exc:  # configtest read the keys; a key gone since is logged
                log.error("DKIM signing is off: cannot read a key: %s", exc)
        # Told the new count whenever a session opens or closes (the worker's Gate, gate.py).
        self.on_sessions_changed: Callable[[int], None] = lambda active: None
        # Counters and history for the controller; set in the worker (its thread is there).
        self.recorder: ScanRecorder | None = None
        # pyspamd's own quarantine; without it the quarantine action is Postfix's hold queue.
        self.quarantine: QuarantineStore | None = None
        self.release_check: ReleaseCheck | None = None
        if self.config.quarantine.enabled:
            self.quarantine = QuarantineStore(self.config.quarantine)
            self.release_check = ReleaseCheck(self.config.quarantine)

    def may_sign(self, user: str | None, client_ip: str | None) -> bool:
        """Outbound mail: from an authenticated sender or a trusted network, as configured."""
        if self.signer is None:
            return False
        signing = self.config.dkim_signing
        return bool(user and signing.authenticated) or (
            signing.trusted_networks and self.is_trusted(client_ip))

    def is_trusted(self, ip: str | None) -> bool:
        return ip in self.trusted

    @property
    def active(self) -> int:
        return self._active

    def session_started(self) -> None:
        with self._idle:
            self._active += 1
            active = self._active
        self.on_sessions_changed(active)

    def session_ended(self) -> None:
        with self._idle:
            self._active -= 1
            active = self._active
            self._idle.notify_all()
        self.on_sessions_changed(active)

    def wait_idle(self, timeout: float) -> bool:
        """After libmilter stops accepting: let the sessions in flight finish."""
        with self._idle:
            return self._idle.wait_for(lambda: self._active <= 0, timeout)


class MilterSession(Milter.Base):
    app: ClassVar[MilterApp]

    def __init__(self) -> None:
        # Built by pymilter's negotiate callback, the first thing after accept(): counting the
        # session from here on keeps a draining worker from exiting under it.
        self.client_ip: str | None = None
        self.client_hostname: str | None = None
        self.helo: str | None = None
        self.mta_actions = ALL_ACTIONS  # what the MTA offered; set at negotiation
        self.app.session_started()
        self._counted = True
        self._reset_message()

    def negotiate(self, opts: list[int]) -> int:
        # opts[0]: the actions the MTA offers; the verdict keeps to them (fit_to_mta)
        self.mta_actions = int(opts[0])
        return int(super().negotiate(opts))

    def _reset_message(self) -> None:
        self.mail_from: str | None = None
        self.user: str | None = None
        self.rcpts: list[str] = []
        self.policy: RecipientPolicy | None = None  # the first accepted recipient's
        self.header_lines: list[bytes] = []
        self.body_chunks: list[bytes] = []
        self.size = 0
        self.oversized = False
        self.foreign: dict[str, list[str]] = {}
        self.may_sign = False  # known from MAIL FROM on: keep the whole message to sign it
        self.auth_results_seen = 0
        self.forged_auth_results: list[int] = []  # their index among Authentication-Results

    # --- stages before end of message: collect, never answer ---------------------------

    @Milter.noreply
    def connect(self, hostname: str, family: int, hostaddr: Any) -> int:
        if family in (socket.AF_INET, socket.AF_INET6) and hostaddr:
            # libmilter gives (ip, port[, flow, scope]); some callers give the bare address
            self.client_ip = str(hostaddr[0] if isinstance(hostaddr, tuple) else hostaddr)
        else:
            self.client_ip = self.getsymval("{client_addr}") or None
        self.client_hostname = hostname or None
        return Milter.CONTINUE

    @Milter.noreply
    def hello(self, heloname: str) -> int:
        self.helo = heloname
        return Milter.CONTINUE

    @Milter.noreply
    def envfrom(self, mailfrom: str, *esmtp: str) -> int:
        self._reset_message()  # a new transaction on the same connection
        self.mail_from = mailfrom.strip().strip("<>")
        self.user = self.getsymval("{auth_authen}") or None
        self.may_sign = self.app.may_sign(self.user, self.client_ip)
        return Milter.CONTINUE

    def envrcpt(self, to: str, *esmtp: str) -> int:
        # Answered only when recipients can differ in policy (session_class); else @noreply.
        rcpt = to.strip().strip("<>")
        try:
            self.policy, take = self.app.recipients.admit(
                self.policy, self.client_ip, self.mail_from, self.user, rcpt)
        except Exception as exc:  # taken: the message is scanned with the first's policy
            faults.report("recipient policy", f"recipient {rcpt}: policy lookup failed, "
                          "taken with the transaction's", exc)
            take = True
        if not take:
            log.info("ip: %s, from: <%s>, rcpt: <%s>: deferred, its policy differs from the "
                     "first recipient's (%s)", self.client_ip or "-", self.mail_from or "",
                     rcpt, self.policy.describe() if self.policy else "-")
            self.setreply(*DEFER_CODE)
            return Milter.TEMPFAIL
        self.rcpts.append(rcpt)
        return Milter.CONTINUE

    def data(self) -> int:
        # Answered on purpose: Postfix sends the DATA-stage macros even when a milter opts out
        # of the DATA step, and those macros, unanswered, meet Nagle and our delayed ACK: a
        # 42 ms stall per message, measured on loopback. Taking the step costs one round trip.
        return Milter.CONTINUE

    @Milter.noreply
    @Milter.decode("bytes")
    def header(self, name: Any, value: Any) -> int:
        name_text = name.decode("ascii", "replace") if isinstance(name, bytes) else str(name)
        raw = value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogateescape")
        if name_text.lower() in VERDICT_HEADERS:
            # libmilter numbers headers per name without regard to case
            self.foreign.setdefault(name_text.title(), []).append(raw.decode("utf-8", "replace"))
            return Milter.CONTINUE  # not scanned: a forged verdict must not sway ours
        if name_text.lower() == "authentication-results" and self.app.authserv_id:
            self.auth_results_seen += 1
            claimed = raw.split(b";", 1)[0].split(b"(", 1)[0].strip().lower()
            if claimed.decode("utf-8", "replace") == self.app.authserv_id:
                self.forged_auth_results.append(self.auth_results_seen)
        line = name_text.encode("ascii", "replace") + b": " + raw.replace(b"\n", b"\r\n")
        self._grow(len(line) + 2)
        if not self.oversized or self.may_sign:
            self.header_lines.append(line)
        return Milter.CONTINUE

    @Milter.noreply
    def body(self, chunk: bytes) -> int:
        self._grow(len(chunk))
        if not self.oversized or self.may_sign:
            self.body_chunks.append(chunk)
        return Milter.CONTINUE

    def _grow(self, count: int) -> None:
        self.size += count
        if self.size > self.app.config.milter.max_size and not self.oversized:
            self.oversized = True
            if not self.may_sign:
                self.header_lines, self.body_chunks = [], []  # keep no more than we will use

    # --- end of message: scan and act --------------------------------------------------

    def eom(self) -> int:
        queue_id = self.getsymval("i") or ""
        envelope = Envelope(
            client_ip=self.client_ip, client_hostname=self.client_hostname, helo=self.helo,
            mail_from=self.mail_from, rcpts=tuple(self.rcpts), user=self.user,
            queue_id=queue_id,
        )
        try:
            try:
                verdict = self._verdict(envelope, queue_id)
            except Exception as exc:  # never lose mail over our own fault
                faults.report("scan", f"qid: {queue_id or '-'}: scan failed, applying "
                              f"fail_action={self.app.config.milter.fail_action}", exc)
                return self._fail(queue_id, exc)
            dropped = fit_to_mta(verdict, self.mta_actions)
            if dropped:
                faults.report("mta actions", f"qid: {queue_id or '-'}: the MTA did not offer "
                              f"these actions, left out: {'; '.join(dropped)}",
                              level=logging.WARNING)
            try:
                return self._apply(verdict)
            except milter.error as exc:
                # libmilter could not send a header or reply: almost always the MTA or its
                # client has gone at end of message. The scan is not at fault, and telling
                # the MTA more (the fail path) would fail the same way.
                faults.report("apply", f"qid: {queue_id or '-'}: verdict not sent to the MTA "
                              "(connection closed?)", exc, level=logging.WARNING)
                return self._fail_code()
            except Exception as exc:  # e.g. Milter.DisabledAction: never pymilter's own 451
                faults.report("apply", f"qid: {queue_id or '-'}: verdict not applied, "
                              f"applying fail_action={self.app.config.milter.fail_action}",
                              exc)
                return self._fail(queue_id, exc)
        finally:
            self._reset_message()

    def _verdict(self, envelope: Envelope, queue_id: str) -> Verdict:
        skip = self._skip_reason(envelope)
        raw = b"\r\n".join(self.header_lines) + b"\r\n\r\n" + b"".join(self.body_chunks)
        signature = self._dkim_signature(raw, queue_id) if self.may_sign else None
        if skip:
            log.info("qid: %s, ip: %s, not scanned: %s", queue_id or "-",
                     self.client_ip or "-", skip)
            verdict = Verdict("accept", add_headers=unscanned(
                f"skipped; {skip}", self.app.server_name, queue_id))
        else:
            scanner = self.app.scanner
            task = scanner.task(raw, envelope)
            result = scanner.scan_task(task, budget=self.app.config.milter.scan_timeout)
            self._honour_release(task.headers.raw(RELEASE_HEADER.lower()), raw, result,
                                 queue_id)
            task_log.info("%s", task_log_line(result, envelope, len(raw)))
            if self.app.recorder is not None:
                self.app.recorder.record(result, envelope, len(raw))
            verdict = decide(result, self.app.config, queue_id, self.app.server_name,
                             self.foreign, task.add_headers)
            for index in reversed(self.forged_auth_results):
                verdict.change_headers.append(("Authentication-Results", index, ""))
            if verdict.quarantine and self.app.quarantine is not None:
                verdict = self._hold(verdict, raw, envelope, result)
        if signature is not None:
            verdict.insert_headers.append(signature)
        return verdict

    def _honour_release(self, values: list[str], raw: bytes, result: ScanResult,
                        queue_id: str) -> None:
        """A message released from the quarantine a moment ago is delivered, not held,
        refused or deferred again; its headers still say what the scan found."""
        check = self.app.release_check
        if check is None or not values:
            return
        released = check.released(values, raw)
        if released is None:
            return
        was = result.action
        released_action(result)
        log.info("qid: %s: released from the quarantine (%s): %s instead of %s",
                 queue_id or "-", released, result.action, was)

    def _hold(self, verdict: Verdict, raw: bytes, envelope: Envelope,
              result: ScanResult) -> Verdict:
        """Into pyspamd's quarantine, then discarded for the MTA: only once the bytes are
        synced to disk. A store that is full or unwritable costs one log line and
        [quarantine] fallback_action, never the message."""
        assert self.app.quarantine is not None
        queue_id = envelope.queue_id or "-"
        held = Held(sender=envelope.mail_from or "", rcpts=list(envelope.rcpts),
                    score=result.score, action=result.action, reason=verdict.quarantine,
                    symbols={s.name: s.options for s in result.sorted_symbols()},
                    message_id=result.message_id, subject=result.subject,
                    queue_id=envelope.queue_id or "")
        try:
            quarantine_id = self.app.quarantine.put(raw, held)
        except QuarantineError as exc:
            fallback = self.app.config.quarantine.fallback_action
            log.warning("qid: %s: not quarantined, fallback_action=%s: %s", queue_id,
                        fallback, exc)
            return quarantine_fallback(verdict, fallback)
        log.info("qid: %s: quarantined as %s (from=<%s>, rcpts=%s, score=%.2f): %s", queue_id,
                 quarantine_id, held.sender, ",".join(held.rcpts), held.score, held.reason)
        return Verdict("discard")

    def _dkim_signature(self, raw: bytes, queue_id: str) -> tuple[str, str] | None:
        """A DKIM-Signature for outbound mail; a failure costs the signature, not the mail."""
        assert self.app.signer is not None
        try:
            froms = [line for line in self.header_lines if line[:5].lower() == b"from:"]
            if len(froms) != 1:
                return None  # no author, or several: nobody to sign for
            from_value = froms[0][5:].decode("utf-8", "replace")
            domain = getaddresses([from_value])[0][1].rpartition("@")[2]
            signature = self.app.signer.sign(raw, domain)
            if signature is None:
                log.debug("qid: %s: no DKIM key for %s", queue_id or "-", domain)
            return signature
        except Exception as exc:
            log.error("qid: %s: DKIM signing failed, sending unsigned: %s", queue_id or "-", exc)
            return None

    def _skip_reason(self, envelope: Envelope) -> str:
        m = self.app.config.milter
        if self.oversized:
            return f"message size {self.size} > max_size {m.max_size}"
        if envelope.user and not m.scan_authenticated:
            return "authenticated sender"
        if not m.scan_trusted and self.app.is_trusted(envelope.client_ip):
            return "trusted network"
        return ""

    def _apply(self, verdict: Verdict) -> int:
        for name, index, value in verdict.change_headers:
            self.chgheader(name, index, value)
        for name, value in verdict.add_headers:
            self.addheader(name, value)
        if verdict.disposition == "accept":
            for name, value in verdict.insert_headers:
                self.addheader(name, value, 0)
        if verdict.quarantine:
            self.quarantine(verdict.quarantine)
        if verdict.reply is not None:
            self.setreply(verdict.reply.code, verdict.reply.status, verdict.reply.text)
        if verdict.disposition == "reject":
            return Milter.REJECT
        if verdict.disposition == "tempfail":
            return Milter.TEMPFAIL
        if verdict.disposition == "discard":
            return Milter.DISCARD
        return Milter.ACCEPT

    def _fail(self, queue_id: str, exc: BaseException) -> int:
        if self.app.config.milter.fail_action == "tempfail":
            try:
                self.setreply("451", "4.7.1", _FAIL_TEXT)
            except Exception as reply_exc:
                faults.report("fail reply", "could not set the tempfail reply", reply_exc,
                              level=logging.WARNING)
            return Milter.TEMPFAIL
        if not self.mta_actions & SMFIF_ADDHDRS:
            return Milter.ACCEPT
        try:
            reason = f"failed; {type(exc).__name__}"
            for name, value in unscanned(reason, self.app.server_name, queue_id):
                self.addheader(name, value)
        except Exception as header_exc:
            faults.report("fail header", "could not add the scan-failed header; accepting "
                          "without it", header_exc, level=logging.WARNING)
        return Milter.ACCEPT

    def _fail_code(self) -> int:
        return Milter.TEMPFAIL if self.app.config.milter.fail_action == "tempfail" else (
            Milter.ACCEPT)

    def abort(self) -> int:
        self._reset_message()
        return Milter.CONTINUE

    def close(self) -> int:
        # This session's Python thread state ends after this callback (pymilter makes one per
        # connection): its storage connections go back for the next session.
        release_thread_connections()
        if self._counted:
            self._counted = False
            self.app.session_ended()
        return Milter.CONTINUE


def session_class(app: MilterApp) -> type[MilterSession]:
    """A session class bound to this worker's app (pymilter builds sessions by calling it)."""
    attrs: dict[str, Any] = {"app": app}
    if not app.recipients.active:
        attrs["envrcpt"] = Milter.noreply(MilterSession.envrcpt)
    return type("BoundMilterSession", (MilterSession,), attrs)
