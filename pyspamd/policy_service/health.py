"""The master's health probe of the policy service: one request the way Postfix sends it,
at CONNECT time with no client, which every decision passes on, so it costs no DNS and no
store; the probe expects an `action=` answer."""

from __future__ import annotations

from pyspamd.milter.health import Probe

PROBE_REQUEST = b"request=smtpd_access_policy\nprotocol_state=CONNECT\nprotocol_name=SMTP\n\n"


class PolicyProbe(Probe):
    request = PROBE_REQUEST
    goodbye = b""
    reply_name = "policy answer"

    def judge_reply(self, reply: bytes) -> str | None:
        if not reply.endswith(b"\n\n"):
            return None if len(reply) < 4096 else "no end to the answer"
        return "" if reply.startswith(b"action=") else f"unexpected answer {reply[:60]!r}"
