"""One log line per scanned message, in the spirit of rspamd's task log, so admins can grep
a queue id from the Postfix log straight into pyspamd's."""

from __future__ import annotations

from pyspamd.result import ScanResult
from pyspamd.task import Envelope


def task_log_line(result: ScanResult, envelope: Envelope, size: int) -> str:
    verdict = "T" if result.action == "reject" else "F"
    symbols = ",".join(f"{s.name}({s.score:.2f})" for s in result.logged_symbols())
    rcpts = ",".join(f"<{r}>" for r in envelope.rcpts)
    parts = [
        f"qid: {envelope.queue_id or '-'}",
        f"ip: {envelope.client_ip or '-'}",
        f"from: <{envelope.mail_from or ''}>",
        f"rcpts: {rcpts or '-'}",
        f"(default: {verdict} ({result.action}): [{result.score:.2f}/{result.required_score:.2f}]"
        f" [{symbols}])",
        f"len: {size}",
        f"time: {result.scan_time * 1000:.2f}ms",
        f"id: {result.message_id or '-'}",
    ]
    if envelope.user:
        parts.insert(2, f"user: {envelope.user}")
    if result.settings:
        parts.insert(-3, f"settings: {result.settings}")
    if result.errors:
        parts.append(f"errors: {'; '.join(result.errors)}")
    return ", ".join(parts)
