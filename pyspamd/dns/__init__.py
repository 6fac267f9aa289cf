"""DNS for the network checks: an asyncio stub resolver with a TTL cache (resolver.py),
where queries go (nameservers.py), and registrable domains from the Public Suffix List
(domains.py)."""

from __future__ import annotations

import threading
import weakref

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

_by_task: weakref.WeakKeyDictionary[Task, MessageDns] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def message_dns(task: Task, resolver: Resolver) -> MessageDns:
    """The one MessageDns of this message, so every check of it spends the same budget."""
    with _lock:
        lookups = _by_task.get(task)
        if lookups is None or lookups.resolver is not resolver:
            lookups = _by_task[task] = resolver.for_message()
        return lookups
