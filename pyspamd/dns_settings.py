"""`[dns]`: the resolver every network check uses, and the checks of its options.

Beside pyspamd/dns/ rather than in it: importing anything of that package runs its
__init__, which loads the resolver and, through it, pyspamd.config. So pyspamd.dns.nameservers
is imported where it is used, once the config module is loaded."""

from __future__ import annotations

from dataclasses import dataclass, field

from pyspamd.config_schema import Locator


@dataclass
class DnsConfig:
    """`[dns]`: the resolver every network check uses (pyspamd/dns/)."""

    # Network checks (RBL, URIBL, SPF, DKIM, DMARC, ARC): true, false, or "auto": on when
    # the resolver is a local one (see __post_init__).
    enabled: bool | str = "auto"
    nameservers: list[str] = field(default_factory=list)  # "IP", "IP:PORT", "[IPv6]:PORT"
    timeout: float = 1.0  # seconds per try
    retries: int = 1  # further tries after a timeout, over the nameservers in turn
    budget: float = 2.0  # seconds for all lookups of one message
    cache_size: int = 50000  # answers kept per worker
    max_ttl: int = 86400  # seconds an answer is kept at most, whatever its TTL says
    negative_ttl: int = 900  # at most, for "no such name" and "no such record"
    # What "auto" decided and why, or that the resolver did not answer the probe: one line
    # for the start-up log and configtest.
    auto_note: str = field(default="", init=False, compare=False)
    # "host:port" of the local resolver that "auto" turned the checks off for, because it
    # did not answer: the master asks it again every minute and reloads once it answers.
    unanswered: str = field(default="", init=False, compare=False)

    def __post_init__(self) -> None:
        auto = self.enabled == "auto"
        if auto:
            from pyspamd.dns.nameservers import local_resolver

            self.enabled, self.auto_note = local_resolver(self.nameservers)
        if self.enabled is True:
            self._probe(auto)

    def _probe(self, auto: bool) -> None:
        """Ask the first nameserver once (pyspamd/dns/probe.py). Silent under "auto": the
        checks go off, as a message would otherwise wait out `budget` on every lookup; under
        true they stay on, and a resolver that keeps silent is skipped per worker
        (pyspamd/dns/resolver.py)."""
        from pyspamd.dns.nameservers import parse_nameserver, system_nameservers
        from pyspamd.dns.probe import probe

        try:
            servers = [parse_nameserver(s) for s in self.nameservers] or system_nameservers()
        except ValueError:
            return  # check_dns says which entry is wrong
        host, port = servers[0]
        why = probe(host, port)
        where = f"{host}:{port}" if port != 53 else host
        if why is None:
            return
        if auto:
            self.enabled, self.unanswered = False, f"{host}:{port}"
            self.auto_note = (
                f"network checks (DNSBL, SPF, DKIM, DMARC) off: the local resolver {where} did "
                f"not answer ({why}); asked again every minute and on reload, they go on once "
                "it answers (start it, or set [dns] enabled = false)")
        else:
            self.auto_note = (
                f"warning: the resolver {where} did not answer ({why}); network checks stay "
                "on ([dns] enabled = true), and each worker skips lookups while it stays silent")


def check_dns(dns: DnsConfig, scan_timeout: float, loc: Locator) -> list[str]:
    """`scan_timeout`: milter.scan_timeout, which the DNS budget must stay under."""
    from pyspamd.dns.nameservers import parse_nameserver

    errors: list[str] = []
    for spec in dns.nameservers:
        try:
            parse_nameserver(spec)
        except ValueError as exc:
            errors.append(f"{loc.where(('dns', 'nameservers'))}: dns.nameservers: {exc}")
    if isinstance(dns.enabled, str):
        errors.append(f"{loc.where(('dns', 'enabled'))}: dns.enabled must be true, false or "
                      f"\"auto\", got {dns.enabled!r}")
    if dns.timeout <= 0 or dns.budget <= 0:
        errors.append(f"{loc.where(('dns', 'timeout'))}: dns.timeout and dns.budget must be "
                      "positive")
    if dns.enabled and dns.budget >= scan_timeout:
        errors.append(f"{loc.where(('dns', 'budget'))}: dns.budget ({dns.budget:g}s) must be "
                      f"below milter.scan_timeout ({scan_timeout:g}s), or the "
                      "scan gives up before the DNS answers it waits for")
    if dns.retries < 0 or dns.cache_size < 0 or dns.max_ttl < 0 or dns.negative_ttl < 0:
        errors.append(f"{loc.where(('dns', 'retries'))}: dns.retries, cache_size, max_ttl "
                      "and negative_ttl must be >= 0")
    return errors
