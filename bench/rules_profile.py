"""Where the regex rules' time goes, per target group and phase, on the corpus.

    python bench/rules_profile.py [DIR ...] [--limit N]

Each message's task views (headers, text parts, body text, URLs) are built before the
clock starts, as other checks need them anyway; then RegexRules.run is timed, and again
piece by piece: the text each group reads (_target_values), its encoding, each RE2 Set's
Match calls, and the Python glue that turns Set results into hits (with the second search
for the matched text). The meta rules are timed over the hits of the full scan. CPU time
(process_time) per message, summed over the corpus.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections import Counter

from scan import default_dirs
from tables import print_markdown

from pyspamd.checks.regex_rules import RegexRules, _target_values
from pyspamd.config import load_config
from pyspamd.scanner import Scanner
from pyspamd.sources import iter_messages
from pyspamd.symbols import Hits


def _warm(task: object) -> None:
    for view in ("headers", "parts", "text_parts", "body_text", "rawbody_text", "urls",
                 "full_bytes", "subject"):
        getattr(task, view)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="*")
    parser.add_argument("--limit", type=int, default=0)
    args = parser.parse_args()
    scanner = Scanner.from_config(load_config(None))
    rules = next(c for c in scanner.checks if isinstance(c, RegexRules))
    messages = [s.data for s in iter_messages(args.dirs or default_dirs()) if s.data]
    if args.limit:
        messages = messages[: args.limit]
    clock = time.process_time
    cost: Counter[str] = Counter()
    gc.collect()
    for raw in messages:
        task = scanner.task(raw)
        _warm(task)
        start = clock()
        rules.run(task, Hits())
        cost["run (all)"] += clock() - start
        hits = Hits()
        for group in rules.groups:
            name = "/".join(p for p in group.key if p) + (" latin1" if group.encode_text else "")
            t0 = clock()
            values = _target_values(task, group.key)
            t1 = clock()
            cost[f"values {group.key[0]}"] += t1 - t0
            if id(group) in rules.absent_hits and group.key[1] not in task.headers:
                continue
            codec = "latin-1" if group.encode_text else "utf-8"
            data = [v if isinstance(v, bytes) else v.encode(codec, "replace") for v in values]
            t2 = clock()
            cost[f"encode {group.key[0]}"] += t2 - t1
            for index, (matcher, _, _) in enumerate(group.sets):
                ts = clock()
                for value in data:
                    matcher.Match(value)
                cost[f"set {name} #{index}"] += clock() - ts
            t3 = clock()
            cost[f"match {group.key[0]}"] += t3 - t2
            rules._match_sets(group, values, hits)
            cost[f"sets+glue {group.key[0]}"] += clock() - t3
        full = scanner.scan(raw)
        counts = {n: 1 for n in full.symbols}
        t4 = clock()
        for rule in scanner.metas:
            assert rule.expr is not None
            rule.expr.evaluate(counts)
        cost["meta evaluate (all metas)"] += clock() - t4
    n = len(messages)
    rows = [(k, f"{v * 1000 / n:.4f}") for k, v in sorted(cost.items(), key=lambda kv: -kv[1])]
    print(f"{n} messages, {len(rules.groups)} groups, {len(scanner.metas)} metas")
    print_markdown(["part", "CPU ms/msg"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
