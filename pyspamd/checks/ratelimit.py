"""The ratelimit check: one token per message from each configured bucket (one per
recipient for `rcpt`); an empty bucket gives `soft reject` (451 4.7.1) with a text naming
the limit, and the symbol RATELIMITED. Nothing is taken from an empty bucket, so a sender
that keeps retrying too fast stays deferred only until the bucket refills."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import ClassVar

from pyspamd import actions
from pyspamd.checks.base import Check
from pyspamd.config import Config
from pyspamd.policy.greylist import client_network
from pyspamd.policy.keyed import LoadProblems, NetworkTable
from pyspamd.policy.ratelimit import NOUNS, Limit, parse_limit
from pyspamd.policy.verbs import Entry
from pyspamd.services import Services
from pyspamd.storage.base import StateStore, StorageError
from pyspamd.symbols import Hits, SymbolDef
from pyspamd.task import Envelope, Task

log = logging.getLogger("pyspamd.ratelimit")


def bucket_keys(limit: Limit, env: Envelope) -> Iterator[tuple[str, str]]:
    """(storage key, what the reply shows) for each bucket this message draws from."""
    kind = limit.key_type
    if kind == "ip" and env.client_ip:
        # An IPv6 host usually has a whole /64; counting per address would be no limit.
        shown = env.client_ip
        net = client_network(env.client_ip, 32, 64)
        if net is not None:
            yield f"ratelimit:ip:{net}", shown
    elif kind == "user" and env.user:
        yield f"ratelimit:user:{env.user.lower()}", env.user
    elif kind in ("sender", "sender_domain") and env.mail_from:
        # The null sender (bounces) comes from everywhere; it has no bucket of its own.
        sender = env.mail_from.lower()
        if kind == "sender":
            yield f"ratelimit:sender:{sender}", sender
        elif "@" in sender:
            domain = sender.rpartition("@")[2]
            yield f"ratelimit:sender_domain:{domain}", domain
    elif kind == "rcpt":
        for rcpt in dict.fromkeys(r.strip("<>").lower() for r in env.rcpts):
            yield f"ratelimit:rcpt:{rcpt}", rcpt


def _period(limit: Limit) -> str:
    return limit.text.split("/", 1)[1].strip()


class RateLimit(Check):
    name = "ratelimit"
    symbols: ClassVar = {
        "RATELIMITED": SymbolDef(0.0, "A rate limit was exceeded (soft reject)"),
    }

    @classmethod
    def build(cls, config: Config, services: Services) -> RateLimit | None:
        return cls(config, services) if config.ratelimit.limits else None

    def __init__(self, config: Config, services: Services) -> None:
        self.config = config
        self.clock = services.clock
        self.storage: Callable[[], StateStore] = services.storage_opener(writes=True)
        self.limits = [parse_limit(k, v) for k, v in config.ratelimit.limits.items()]
        self.exempt = NetworkTable()
        problems = LoadProblems()
        for index, net in enumerate(config.ratelimit.exempt_networks):
            self.exempt.add(net, Entry("", None, "", f"exempt_networks[{index}]"), problems)

    @staticmethod
    def _exceeded(limit: Limit, shown: str, hits: Hits) -> None:
        noun = NOUNS[limit.key_type]
        hits.add("RATELIMITED", f"{limit.key_type}:{shown}")
        hits.force_action(actions.SOFT_REJECT, f"Rate limit exceeded: {limit.count} messages "
                          f"per {_period(limit)} {noun} {shown}", "RATELIMITED")
        log.info("rate limit %s exceeded %s %s", limit.text, noun, shown)

    def run(self, task: Task, hits: Hits) -> None:
        env = task.envelope
        if env.client_ip and self.exempt.lookup(env.client_ip) is not None:
            return
        now = self.clock()
        try:
            for limit in self.limits:
                for key, shown in bucket_keys(limit, env):
                    taken, _ = self.storage().take_token(key, limit.count, limit.rate, now)
                    if not taken:
                        self._exceeded(limit, shown, hits)
                        # Stop here: a deferred message takes nothing from the buckets
                        # after this one (those before it did count the attempt).
                        return
        except StorageError as exc:
            log.error("rate limits skipped: %s", exc)  # fail open: never defer all mail
