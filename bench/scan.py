"""Scan throughput on one core: messages, msgs/s, p50/p99 ms per message, peak RSS.

    python bench/scan.py [DIR ...] [--config PATH] [--repeat N]
    python bench/scan.py --dns [DIR ...] [--limit N]
    python bench/scan.py --fuzzy [DIR ...] [--limit N]

DIR defaults to ../shared/corpus/spamassassin when it exists, else corpus/. Messages are
read into memory first, so the figures are the scan alone (parse, checks, rules, scoring),
as a milter worker does it.

--ab-model scans every message twice, with the content model ([model]) on and off, in
alternating order, and prints the CPU time per message of each and the difference: what
the model costs (its tokenizing too, when Bayes has not tokenized the message).

--dns turns the network checks on against a local resolver (Unbound in front of Knot, as
the tests run them; both must be installed) and scans each message with the envelope a
milter would have seen (client address of the first Received hop, Return-Path sender),
twice: the first pass asks the resolver, the second is answered from pyspamd's DNS cache.
--fuzzy scans each message with and without the fuzzy check (A/B, alternating) against a
store holding the fuzzy hashes of the corpus's spam, and prints what the check adds.
The resolver's queries to Knot are delayed by --upstream-ms (default 20), standing for the
internet between a resolver and the authoritative servers; Knot then answers every name.
"""

from __future__ import annotations

import argparse
import gc
import resource
import statistics
import sys
import time
from pathlib import Path

from tables import print_measures

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from support.paths import corpus_dirs  # noqa: E402

from pyspamd.config import load_config  # noqa: E402
from pyspamd.scanner import Scanner  # noqa: E402
from pyspamd.sources import iter_messages  # noqa: E402


def default_dirs() -> list[str]:
    return corpus_dirs([])


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="*", help="folders, Maildirs or mbox files to scan")
    parser.add_argument("--config", help="pyspamd config (default: built-in defaults)")
    parser.add_argument("--repeat", type=int, default=1, help="passes over the messages")
    parser.add_argument("--dns", action="store_true",
                        help="network checks on, against a local resolver: two passes")
    parser.add_argument("--fuzzy", action="store_true",
                        help="A/B: what the fuzzy check adds per message")
    parser.add_argument("--limit", type=int, default=0, help="scan the first N messages only")
    parser.add_argument("--ab-model", action="store_true",
                        help="CPU per message with the content model on and off, alternating")
    parser.add_argument("--upstream-ms", type=float, default=20.0,
                        help="with --dns: delay added to each query the local resolver sends "
                             "to the authoritative server, as the internet would (0: none)")
    args = parser.parse_args()
    dirs = corpus_dirs(args.dirs)
    if args.dns:
        from bench_dns import run_dns_bench

        return run_dns_bench(dirs, args.limit, args.upstream_ms)
    if args.fuzzy:
        from bench_fuzzy import run_fuzzy_bench

        return run_fuzzy_bench(dirs, args.config, args.limit, max(args.repeat, 3))

    if args.ab_model:
        return ab_model(args.config, dirs, args.limit, args.repeat)

    load_start = time.perf_counter()
    scanner = Scanner.from_config(load_config(args.config))
    load_time = time.perf_counter() - load_start
    messages = [s.data for s in iter_messages(dirs) if s.data is not None]
    if not messages:
        print(f"no messages under {', '.join(dirs)}", file=sys.stderr)
        return 1
    rss_loaded = peak_rss_mib()

    scanner.scan(messages[0])  # warm caches (charset lookups, lazy imports)
    gc.collect()
    times: list[float] = []
    actions: dict[str, int] = {}
    wall_start = time.perf_counter()
    cpu_start = time.process_time()
    for _ in range(args.repeat):
        for raw in messages:
            start = time.perf_counter()
            result = scanner.scan(raw)
            times.append(time.perf_counter() - start)
            actions[result.action] = actions.get(result.action, 0) + 1
    wall = time.perf_counter() - wall_start
    cpu = time.process_time() - cpu_start

    times_ms = sorted(t * 1000 for t in times)
    p99 = times_ms[min(len(times_ms) - 1, int(len(times_ms) * 0.99))]
    rows = [
        ("corpus", ", ".join(dirs)),
        ("rules loaded", f"{len(scanner.ruleset.rules)} in {load_time * 1000:.0f} ms"),
        ("messages", f"{len(times)}"),
        ("mean size", f"{sum(map(len, messages)) / len(messages) / 1024:.1f} KiB"),
        ("msgs/s (one core)", f"{len(times) / wall:.0f}"),
        ("CPU ms/msg", f"{cpu * 1000 / len(times):.3f}"),
        ("p50 ms/msg", f"{statistics.median(times_ms):.2f}"),
        ("p99 ms/msg", f"{p99:.2f}"),
        ("max ms/msg", f"{times_ms[-1]:.2f}"),
        ("peak RSS MiB", f"{peak_rss_mib():.0f} (corpus in memory: {rss_loaded:.0f})"),
        ("actions", ", ".join(f"{k}: {v}" for k, v in sorted(actions.items()))),
    ]
    print_measures(rows)
    return 0


def ab_model(config_path: str | None, dirs: list[str], limit: int, repeat: int) -> int:
    on = Scanner.from_config(load_config(config_path))
    config_off = load_config(config_path)
    config_off.model.enabled = False
    off = Scanner.from_config(config_off)
    messages = [s.data for s in iter_messages(dirs) if s.data is not None]
    if limit:
        messages = messages[:limit]
    if not messages:
        print(f"no messages under {', '.join(dirs)}", file=sys.stderr)
        return 1
    on.scan(messages[0])
    off.scan(messages[0])
    gc.collect()
    cpu = {"on": 0.0, "off": 0.0}
    hits = 0
    for n in range(repeat):
        for i, raw in enumerate(messages):
            order = (("on", on), ("off", off)) if (i + n) % 2 == 0 else (("off", off), ("on", on))
            for name, scanner in order:
                start = time.process_time()
                result = scanner.scan(raw)
                cpu[name] += time.process_time() - start
                if name == "on":
                    hits += "MODEL_SPAM" in result.symbols or "MODEL_HAM" in result.symbols
    count = len(messages) * repeat
    on_ms, off_ms = cpu["on"] / count * 1000, cpu["off"] / count * 1000
    # The model's own tokenizing, which it skips when Bayes (once it votes) has tokenized
    # the message already: timed alone on parsed messages.
    from pyspamd.classifiers.tokenizer import TokenizerLimits, tokenize

    tok = 0.0
    for raw in messages:
        task = on.task(raw)
        _ = task.body_text, task.urls, task.received
        start = time.process_time()
        tokenize(task, TokenizerLimits())
        tok += time.process_time() - start
    tok_ms = tok / len(messages) * 1000
    print_measures([
        ("corpus", ", ".join(dirs)),
        ("messages", f"{count} (each scanned with the model on and off, alternating)"),
        ("CPU ms/msg, model on", f"{on_ms:.3f}"),
        ("CPU ms/msg, model off", f"{off_ms:.3f}"),
        ("model costs", f"{on_ms - off_ms:.3f} ms/msg (on/off = {on_ms / off_ms:.2f})"),
        ("of which tokenizing", f"{tok_ms:.3f} ms/msg (shared with Bayes once Bayes votes)"),
        ("MODEL_* symbols", f"{hits / count:.1%} of messages"),
    ])
    return 0


if __name__ == "__main__":
    sys.exit(main())
