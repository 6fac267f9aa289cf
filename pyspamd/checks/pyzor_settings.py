"""`[pyzor]`: the Pyzor servers asked about each message's digest and told of learned spam,
and the checks of those options."""

from __future__ import annotations

from dataclasses import dataclass, field

from pyspamd.config_schema import Locator, split_host_port


@dataclass
class PyzorConfig:
    """`[pyzor]`: the collaborative checksum network (docs/pyzor.md)."""

    enabled: bool = False
    servers: list[str] = field(default_factory=lambda: ["public.pyzor.org:24441"])
    timeout: float = 3.0  # seconds for every server's answer; below milter.scan_timeout
    # Reports (spam count) -> the weight of PYZOR_CHECK (its score times this); the highest
    # count reached wins, under the lowest PYZOR_CHECK is not added.
    scores: dict[str, float] = field(default_factory=lambda: {"5": 1.0, "20": 1.5, "100": 2.0})
    # No PYZOR_CHECK when this many or more reported it as not spam (whitelisted it), or
    # when whitelist reports reach this share of the spam reports (SpamAssassin's defaults).
    whitelist_min: int = 10
    whitelist_factor: float = 0.2
    # `pyspamc learn_spam` reports each message it learns to the servers (as --report does).
    learn_spam: bool = False


def score_steps(p: PyzorConfig) -> list[tuple[int, float]]:
    """(minimum count, weight), highest count first."""
    return sorted(((int(count), weight) for count, weight in p.scores.items()), reverse=True)


def check_pyzor(p: PyzorConfig, scan_timeout: float, loc: Locator) -> list[str]:
    errors: list[str] = []

    def bad(key: str, what: str) -> None:
        errors.append(f"{loc.where(('pyzor', key))}: pyzor.{key} {what}")

    for server in p.servers:
        try:
            split_host_port(server)
        except ValueError:
            bad("servers", f"has {server!r}; write HOST:PORT (public.pyzor.org:24441)")
    if p.enabled and not p.servers:
        bad("servers", "is empty; name at least one HOST:PORT or set enabled = false")
    if p.timeout <= 0:
        bad("timeout", "must be positive")
    elif p.enabled and p.timeout >= scan_timeout:
        bad("timeout", f"({p.timeout:g}s) must be below milter.scan_timeout "
            f"({scan_timeout:g}s), or the scan gives up before PYZOR_FAIL can say why")
    for count, weight in p.scores.items():
        if not count.isdigit() or int(count) < 1 or weight <= 0:
            bad("scores", f"has {count!r} = {weight!r}; keys are counts (1 or more) and "
                "values positive weights, e.g. {{ \"5\" = 1.0, \"20\" = 1.5 }}")
    if p.enabled and not p.scores:
        bad("scores", "is empty; PYZOR_CHECK would never be added")
    if p.whitelist_min < 1 or not 0 < p.whitelist_factor <= 1:
        bad("whitelist_min", "must be 1 or more and whitelist_factor between 0 and 1")
    return errors
