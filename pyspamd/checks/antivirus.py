"""The antivirus check: the message (or each attachment) sent to clamd while the other
checks run, within the scan's time budget.

A signature name decides the symbol: third-party feeds' families by prefix, through the
family table (pyspamd/checks/clamav_families.py: e.g. SecuriteInfo.com.Spam.* -> spam ->
CLAM_SPAM), encrypted archives and clamd's scan limits by clamd's own heuristic names,
anything else is a virus (CLAM_VIRUS). Findings of a class in [antivirus] reject_classes
(malware by default) are rejected with the name in the reply. When clamd is down, slow or answers an
error the message is not lost: CLAM_FAIL, one log line, and [antivirus] fail_action.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine

from pyspamd import actions
from pyspamd.checks.base import Check
from pyspamd.checks.clamav_families import MALWARE, load_families
from pyspamd.clamd import Clamd, ClamdError, ClamdReply
from pyspamd.config import Config
from pyspamd.mime import payload_bytes
from pyspamd.services import Services
from pyspamd.symbols import Hits, SymbolDef
from pyspamd.task import Task

log = logging.getLogger("pyspamd.antivirus")

ENCRYPTED_PREFIX = "Heuristics.Encrypted."  # clamd's AlertEncrypted* findings
LIMITS_PREFIX = "Heuristics.Limits.Exceeded"  # clamd's AlertExceedsMax findings
MAX_PARTS = 20  # parts sent per message in "attachments" mode; more is a symbol
HEADER = "X-Pyspamd-Antivirus"
# A virus outranks what admin maps force (priority 0): mail from a whitelisted sender
# with a virus is still refused. CLAM_FAIL's tempfail stays at 0, so a map's reject wins.
VIRUS_PRIORITY = 10


def display_name(name: str) -> str:
    """The signature name without clamd's ".UNOFFICIAL" mark of third-party databases, so
    the symbol's option (at most 32 characters) keeps the part that says what it is."""
    return name.removesuffix(".UNOFFICIAL")


def items_to_send(task: Task, scan: str, limit: int, hits: Hits) -> list[tuple[str, bytes]]:
    """(label, bytes) to send to clamd: the whole message ("message"), or each attachment
    and non-text part, decoded ("attachments"). What is over `limit` (clamd's
    StreamMaxLength) or past MAX_PARTS is not sent, and CLAM_SKIPPED says so."""
    if scan == "message":
        if len(task.raw) > limit:
            hits.add("CLAM_SKIPPED", f"size>{limit}")
            return []
        return [("message", task.raw)]
    items: list[tuple[str, bytes]] = []
    for index, part in enumerate(task.parts):
        ctype = part.content_type
        if ctype.startswith(("multipart/", "message/")):
            continue  # their parts come on their own
        if ctype in ("text/plain", "text/html") and not part.is_attachment:
            continue
        data, _ = payload_bytes(part, limit + 1)
        if not data:
            continue
        if len(data) > limit:
            hits.add("CLAM_SKIPPED", f"size>{limit}")
            continue
        if len(items) >= MAX_PARTS:
            hits.add("CLAM_SKIPPED", f"parts>{MAX_PARTS}")
            break
        items.append((part.filename or f"part {index} ({ctype})", data))
    return items


def _describe(symbol: str, classes: dict[str, tuple[str, float]]) -> str:
    klass = next((k for k, (s, _) in classes.items() if s == symbol), "")
    if klass == MALWARE:
        return "clamd found a virus (the signature's name)"
    if klass:
        return f"clamd: a third-party signature of {klass} (the signature's name)"
    return f"clamd: a signature family of [antivirus.families] ({symbol.lower()})"


class AntivirusCheck(Check):
    name = "antivirus"
    is_async = True

    @classmethod
    def build(cls, config: Config, services: Services) -> AntivirusCheck | None:
        return cls(config) if config.antivirus.enabled else None

    def __init__(self, config: Config) -> None:
        self.settings = config.antivirus
        self.clamd = Clamd(self.settings.address)
        self.table = load_families(self.settings.families_file, self.settings.families)
        self.reject_classes = frozenset(self.settings.reject_classes)
        self.symbols = {  # type: ignore[misc]  # per instance: families come from the config
            "CLAM_ENCRYPTED": SymbolDef(2.0, "An encrypted archive clamd cannot look into"),
            "CLAM_LIMITS": SymbolDef(1.0, "An archive over clamd's scan limits (not scanned "
                                          "whole)"),
            "CLAM_FAIL": SymbolDef(0.0, "The antivirus check failed (clamd down, slow or "
                                        "answering an error); not scored"),
            "CLAM_SKIPPED": SymbolDef(0.0, "Not sent to clamd: over [antivirus] max_size or "
                                           "too many parts"),
            **{symbol: SymbolDef(score, _describe(symbol, self.table.classes))
               for symbol, score in self.table.scores().items()},
        }

    def run(self, task: Task, hits: Hits) -> Coroutine[None, None, None] | None:
        items = items_to_send(task, self.settings.scan, self.settings.max_size, hits)
        if not items:
            return None
        return self._scan(items, task, hits)

    async def _scan(self, items: list[tuple[str, bytes]], task: Task, hits: Hits) -> None:
        replies = await asyncio.gather(
            *(self.clamd.instream(data, self.settings.timeout) for _, data in items),
            return_exceptions=True)
        failure: ClamdError | None = None
        for (label, _), reply in zip(items, replies, strict=True):
            if isinstance(reply, ClamdError):
                failure = failure or reply
            elif isinstance(reply, BaseException):
                raise reply
            else:
                self._found(reply, label, hits)
        if failure is not None:
            self._failed(failure, task, hits)

    def _found(self, reply: ClamdReply, label: str, hits: Hits) -> None:
        name = reply.found
        if name is None:
            return
        shown = display_name(name)
        if name.startswith(ENCRYPTED_PREFIX):
            hits.add("CLAM_ENCRYPTED", shown)
            return
        if name.startswith(LIMITS_PREFIX):
            hits.add("CLAM_LIMITS", shown)
            return
        family = self.table.classify(name)
        hits.add(family.symbol, shown)
        if family.klass == MALWARE:
            log.info("virus %s found in %s", name, label)
        action = self.settings.virus_action
        if action and family.klass in self.reject_classes:
            hits.force_action(actions.ACCEPT_WORDS.get(action, action),
                              self.settings.virus_message.format(virus=shown), family.symbol,
                              priority=VIRUS_PRIORITY)

    def _failed(self, error: ClamdError, task: Task, hits: Hits) -> None:
        reason = str(error)
        kind = ("timeout" if "did not answer" in reason
                else "down" if "connect" in reason or "closed" in reason else "error")
        hits.add("CLAM_FAIL", kind)
        queue_id = task.envelope.queue_id or "-"
        log.warning("qid: %s: antivirus check failed, fail_action=%s: %s", queue_id,
                    self.settings.fail_action, reason)
        if self.settings.fail_action == "tempfail":
            hits.force_action(actions.SOFT_REJECT,
                              "Antivirus check unavailable, please try again later",
                              "CLAM_FAIL")
        else:
            task.add_headers.append((HEADER, f"failed ({kind}); message not checked for "
                                             "viruses"))
