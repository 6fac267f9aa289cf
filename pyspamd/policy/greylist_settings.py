"""`[greylist]`: how long a new (client, sender, recipient) triplet waits, who never waits,
and the checks of those values."""

from __future__ import annotations

from dataclasses import dataclass, field

from pyspamd.config_schema import Locator, bad_networks

# Client host names (verified reverse DNS, subdomains included) of large senders that retry
# from a different address of a big pool, so a retry would start a new triplet each time.
BIG_SENDER_HOSTS: tuple[str, ...] = ("google.com", "outlook.com", "amazonses.com", "yahoo.com",
                    "mimecast.com", "pphosted.com", "messagelabs.com", "icloud.com")


@dataclass
class GreylistConfig:
    enabled: bool = True
    delay: float = 300.0
    expire: float = 86400.0
    whitelist_expire: float = 35 * 86400.0
    ipv4_mask: int = 24
    ipv6_mask: int = 64
    recipients: list[str] = field(default_factory=list)
    whitelist_networks: list[str] = field(default_factory=list)
    whitelist_hosts: list[str] = field(default_factory=lambda: list(BIG_SENDER_HOSTS))
    whitelist_sender_domains: list[str] = field(default_factory=list)


def check_greylist(g: GreylistConfig, loc: Locator) -> list[str]:
    errors: list[str] = []

    def bad(key: str, what: str) -> None:
        errors.append(f"{loc.where(('greylist', key))}: greylist.{key} {what}")

    if g.delay < 0 or g.expire <= g.delay:
        bad("expire", "must be above greylist.delay, and delay must be >= 0")
    if g.whitelist_expire <= 0:
        bad("whitelist_expire", "must be positive")
    if not 8 <= g.ipv4_mask <= 32:
        bad("ipv4_mask", "must be 8 to 32")
    if not 16 <= g.ipv6_mask <= 128:
        bad("ipv6_mask", "must be 16 to 128")
    for net in bad_networks(g.whitelist_networks):
        bad("whitelist_networks", f"has {net!r}, which is not an address or CIDR network")
    return errors
