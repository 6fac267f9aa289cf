"""A From display name that is itself an address of another domain, as in
`"service@paypal.com" <billing@example.test>`: most mail programs show the name, not the
address. rspamd's SPOOF_DISPLAY_NAME."""

from __future__ import annotations

import re
from typing import ClassVar

from pyspamd.checks.base import Check
from pyspamd.dns.domains import registrable_domain
from pyspamd.symbols import Hits, SymbolDef
from pyspamd.task import Task

_ADDRESS = re.compile(r"[\w.+-]+@([\w-]+(?:\.[\w-]+)+)")


class DisplayNameSpoof(Check):
    name = "display_name"
    symbols: ClassVar = {
        "SPOOF_DISPLAY_NAME": SymbolDef(
            2.0, "From display name is an address of another domain than the sender's",
            "headers"),
    }

    def run(self, task: Task, hits: Hits) -> None:
        for display, address in task.headers.addresses("from")[:1]:
            found = _ADDRESS.search(display)
            if found is None:
                continue
            shown = registrable_domain(found.group(1))
            real = registrable_domain(address.rpartition("@")[2])
            # Both must be real domains: "user@localhost" or a bare word says nothing.
            if shown and real and shown != real:
                hits.add("SPOOF_DISPLAY_NAME", found.group(0).lower())
