"""The Pyzor check: PYZOR_CHECK (the spam and whitelist counts as options) when the Pyzor
servers know the message's digest as spam, weighted by how many reported it; PYZOR_FAIL
when no server answered within [pyzor] timeout (and the scan's budget), so a slow or dead
server costs at most that and the verdict comes from the other checks."""

from __future__ import annotations

import logging
from collections.abc import Coroutine, Mapping
from typing import ClassVar

from pyspamd.checks.base import Check
from pyspamd.checks.pyzor_settings import score_steps
from pyspamd.config import Config
from pyspamd.pyzor_client import Counts, PyzorError, check_all, digest_of
from pyspamd.services import Services
from pyspamd.symbols import Hits, SymbolDef
from pyspamd.task import Task

log = logging.getLogger("pyspamd.pyzor")


class PyzorCheck(Check):
    name = "pyzor"
    is_async = True
    symbols: ClassVar[Mapping[str, SymbolDef]] = {
        "PYZOR_CHECK": SymbolDef(2.0, "Listed in Pyzor (spam reports, whitelist reports); "
                                      "the score times the weight [pyzor] scores gives the "
                                      "count"),
        "PYZOR_FAIL": SymbolDef(0.0, "No Pyzor server answered in time; not scored"),
    }

    @classmethod
    def build(cls, config: Config, services: Services) -> PyzorCheck | None:
        return cls(config) if config.pyzor.enabled else None

    def __init__(self, config: Config) -> None:
        self.settings = config.pyzor
        self.steps = score_steps(self.settings)

    def run(self, task: Task, hits: Hits) -> Coroutine[None, None, None] | None:
        digest = digest_of(task.message)
        return None if digest is None else self._check(digest, task, hits)

    async def _check(self, digest: str, task: Task, hits: Hits) -> None:
        left = task.time_left()
        timeout = self.settings.timeout if left is None else min(self.settings.timeout, left)
        answers = await check_all(digest, self.settings.servers, timeout)
        counts = [a for a in answers if isinstance(a, Counts)]
        failures = [a for a in answers if isinstance(a, PyzorError)]
        if failures:
            log.warning("qid: %s: pyzor: %s", task.envelope.queue_id or "-",
                        "; ".join(map(str, failures)))
        if not counts:
            hits.add("PYZOR_FAIL", "timeout" if any("no answer" in str(f) for f in failures)
                     else "error")
            return
        best = max(counts, key=lambda c: c.count)
        whitelist = max(c.whitelist for c in counts)
        if whitelist >= self.settings.whitelist_min or (
                best.count and whitelist / best.count >= self.settings.whitelist_factor):
            return
        for minimum, weight in self.steps:
            if best.count >= minimum:
                hits.add("PYZOR_CHECK", f"count={best.count}", f"wl={whitelist}",
                         weight=weight)
                return
