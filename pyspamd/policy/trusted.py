"""`milter.trusted_networks`: our own hosts. Their mail is outbound: the milter does not scan
it (unless scan_trusted) and signs it, greylisting never defers it, and HELO checks do not
judge it. One decision for all of them."""

from __future__ import annotations

from pyspamd.policy.keyed import LoadProblems, NetworkTable
from pyspamd.policy.verbs import Entry


class TrustedNetworks:
    def __init__(self, networks: list[str]) -> None:
        # The config check has validated every entry, so nothing is left in `problems`.
        self._table = NetworkTable()
        problems = LoadProblems()
        for index, network in enumerate(networks):
            self._table.add(network, Entry("", None, "", f"trusted_networks[{index}]"),
                            problems)

    def __contains__(self, ip: str | None) -> bool:
        return bool(ip) and self._table.count > 0 and self._table.lookup(ip or "") is not None
