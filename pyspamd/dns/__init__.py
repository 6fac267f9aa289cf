"""DNS for the network checks: an asyncio stub resolver with a TTL cache (resolver.py),
where queries go (nameservers.py), and registrable domains from the Public Suffix List
(domains.py)."""

from __future__ import annotations

from pyspamd.dns.resolver import (
    Answer,
    DnsError,
    DnsServerFailure,
    DnsTimeout,
    MessageDns,
    Resolver,
)
from pyspamd.task import Task

__all__ = ["Answer", "DnsError", "DnsServerFailure", "DnsTimeout", "MessageDns", "Resolver",
           "message_dns"]



def message_dns(task: Task, resolver: Resolver) -> MessageDns:
    """The one MessageDns of this message, so every check of it spends the same budget."""
    lookups = task.scratch.get("dns")
    if not isinstance(lookups, MessageDns) or lookups.resolver is not resolver:
        lookups = task.scratch["dns"] = resolver.for_message()
    return lookups
