"""Reading the statistics back: totals over all processes and hosts that wrote them."""

from __future__ import annotations

import time
from typing import Any

from pyspamd.actions import SPAM_ACTIONS, STRENGTH
from pyspamd.classifiers.bayes import learned_tokenizer
from pyspamd.classifiers.tokenizer import TOKENIZER_VERSION
from pyspamd.config import Config
from pyspamd.stats import keys
from pyspamd.stats.recorder import history_entry
from pyspamd.storage.base import HAM, NO_TOKENS, SPAM, Storage, StorageMissing

# rspamc stat's order; discard and quarantine (forced, or [actions] quarantine) follow when
# they occurred.
STAT_ACTIONS = ("reject", "soft reject", "rewrite subject", "add header", "greylist",
                "no action")


def _int(value: bytes | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def rspamd_stat_fields(stat: dict[str, Any]) -> dict[str, Any]:
    """rspamd's names for what `stat` holds, which rspamc stat prints: its "Messages
    learned", a "Statfile:" line per class and "Total learns"."""
    bayes = stat["bayes"]
    learned = bayes["learned"][SPAM] + bayes["learned"][HAM]
    statfiles = [{"symbol": symbol, "type": bayes["backend"], "revision": bayes["learned"][label],
                  "users": 1, "languages": 0, "size": bayes["size_bytes"],
                  "total": bayes["tokens"], "used": bayes["tokens"]}
                 for symbol, label in (("BAYES_SPAM", SPAM), ("BAYES_HAM", HAM))]
    return {"learned": learned, "total_learns": learned, "statfiles": statfiles,
            "fuzzy_hashes": {"local": stat["fuzzy"]["hashes"]}}


class StatsReader:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    def counters(self) -> dict[str, int]:
        """Every "stat:" counter; a store not made yet has none."""
        try:
            rows = self.storage.scan_prefix("stat:", limit=1_000_000)
        except StorageMissing:
            return {}
        return {key: _int(value) for key, value in rows}

    def scans(self, counters: dict[str, int] | None = None) -> dict[str, Any]:
        c = self.counters() if counters is None else counters
        actions = {a: c.get(keys.ACTION + a, 0) for a in STAT_ACTIONS}
        for action in STRENGTH:
            if action not in actions and c.get(keys.ACTION + action):
                actions[action] = c[keys.ACTION + action]
        spam = sum(n for a, n in actions.items() if a in SPAM_ACTIONS)
        scanned = c.get(keys.SCANNED, 0)
        learns = {k[len(keys.LEARN):]: n for k, n in c.items() if k.startswith(keys.LEARN)}
        return {"scanned": scanned, "actions": actions, "spam_count": spam,
                "ham_count": scanned - spam, "learns": learns,
                "started": c.get(keys.STARTED, 0) or None}

    def stat(self, config: Config) -> dict[str, Any]:
        """What `pyspamc stat` and GET /stat show. Raises StorageError if the store fails."""
        counters = self.counters()
        out = self.scans(counters)
        bayes = self.storage.bayes_stats()
        out["bayes"] = {
            "backend": bayes.backend, "location": bayes.location,
            "learned": {SPAM: bayes.learned[SPAM], HAM: bayes.learned[HAM]},
            "tokens": bayes.tokens, "size_bytes": bayes.size_bytes,
            "min_learns": config.bayes.min_learns if config.bayes.enabled else None,
            "classifier": config.bayes.classifier,
            "model_tokens": self.storage.token_counts(NO_TOKENS).model_tokens,
            "fit_messages": {SPAM: bayes.fit_messages[SPAM], HAM: bayes.fit_messages[HAM]},
            "max_fit_messages": config.bayes.max_fit_messages,
            "tokenizer": {"learned": learned_tokenizer(self.storage),
                          "current": TOKENIZER_VERSION},
        }
        out["fuzzy"] = {"hashes": self.storage.fuzzy_count()}
        out.update(rspamd_stat_fields(out))
        out["events"] = {k[len(keys.EVENT):]: n for k, n in counters.items()
                         if k.startswith(keys.EVENT)}
        return out

    def history(self, limit: int = 100) -> list[dict[str, Any]]:
        try:
            raw = self.storage.list_recent(keys.HISTORY, limit)
        except StorageMissing:
            return []
        # A damaged entry costs itself, not the listing.
        return [entry for entry in map(history_entry, raw) if entry is not None]

    def symbol_hits(self, counters: dict[str, int] | None = None) -> dict[str, int]:
        c = self.counters() if counters is None else counters
        return {k[len(keys.SYMBOL):]: n for k, n in c.items() if k.startswith(keys.SYMBOL)}

    def time_histogram(self, counters: dict[str, int] | None = None
                       ) -> tuple[list[tuple[float, int]], float]:
        """Non-cumulative (upper bound, count) per bucket, +inf last; and the sum (seconds)."""
        c = self.counters() if counters is None else counters
        bounds = [*keys.TIME_BOUNDS, float("inf")]
        buckets = [(bound, c.get(keys.TIME + str(i), 0)) for i, bound in enumerate(bounds)]
        return buckets, c.get(keys.TIME_SUM_US, 0) / 1e6

    def graph(self, step_name: str, now: float | None = None) -> dict[str, Any]:
        """Scans per action per bucket, oldest first, for the last `points` buckets."""
        step = keys.GRAPH_STEPS[step_name]
        now = time.time() if now is None else now
        last = int(now // step.seconds) * step.seconds
        starts = [last - step.seconds * i for i in range(step.points - 1, -1, -1)]
        index = {start: n for n, start in enumerate(starts)}
        series: dict[str, list[int]] = {}
        try:
            rows = self.storage.scan_prefix(f"{keys.GRAPH}{step_name}:", limit=1_000_000)
        except StorageMissing:
            rows = []
        prefix = len(keys.GRAPH) + len(step_name) + 1
        for key, value in rows:
            start_text, _, action = key[prefix:].partition(":")
            try:
                n = index.get(int(start_text))
            except ValueError:
                continue
            if n is None:
                continue
            series.setdefault(action, [0] * step.points)[n] += _int(value)
        return {"step": step.seconds, "starts": starts, "actions": series}
