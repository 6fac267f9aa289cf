"""`bench/scan.py --fuzzy`: what the fuzzy check adds to a scan, A/B in one run.

The store (SQLite in a temporary directory) holds the fuzzy hashes of every spam message
of the corpus, so about a third of the scans find a match, as a store fed by users'
reports would. Each message is scanned by a scanner without the fuzzy check (A) and one
with it (B), alternating which goes first, so drift of the machine's speed hits both; each
pair is repeated and the fastest time of each kept, so that other processes on a shared
machine (which pause a scan now and then) do not decide the figures. Greylisting is off in
both: it writes state only for messages whose verdict is "greylist", and the fuzzy symbol
changes verdicts, so it would add the cost of other writes to one side.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from tables import print_measures

from pyspamd.config import load_config
from pyspamd.fuzzy.store import find_matches, fuzzy_add, hashes_of
from pyspamd.scanner import Scanner
from pyspamd.sources import iter_messages
from pyspamd.storage import open_storage
from pyspamd.symbols import Hits
from pyspamd.task import Task


def _ms(values: list[float]) -> str:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (f"mean {statistics.fmean(values) * 1000:.3f}, p50 "
            f"{statistics.median(values) * 1000:.3f}, p99 {p99 * 1000:.3f}")


def _time_check(scanner: Scanner) -> list[float]:
    """Wrap the scanner's fuzzy check so each run leaves its duration in the list returned."""
    from pyspamd.checks.fuzzy import FuzzyCheck

    last = [0.0]
    check = next(c for c in scanner.checks if isinstance(c, FuzzyCheck))
    run = check.run

    def timed(task: Task, hits: Hits) -> None:
        start = time.perf_counter()
        run(task, hits)
        last[0] = time.perf_counter() - start

    check.run = timed  # type: ignore[method-assign]
    return last


def run_fuzzy_bench(dirs: list[str], config_path: str | None, limit: int,
                    repeat: int = 3) -> int:
    sources = [s for s in iter_messages(dirs) if s.data is not None]
    if limit:
        sources = sources[:limit]
    messages = [s.data for s in sources if s.data is not None]
    with tempfile.TemporaryDirectory(prefix="pyspamd-bench-fuzzy-") as tmp:
        base = Path(config_path).read_text() if config_path else ""
        store = Path(tmp) / "store.sqlite"
        configs = {}
        for name, enabled in (("A", "false"), ("B", "true")):
            path = Path(tmp) / f"{name}.toml"
            path.write_text(f'{base}\n[storage]\npath = "{store}"\n'
                            f"[fuzzy]\nenabled = {enabled}\n[greylist]\nenabled = false\n")
            configs[name] = load_config(path)
        storage = open_storage(configs["B"].storage)
        fill_start = time.perf_counter()
        reported = 0
        for source in sources:
            if "/spam/" in source.label and source.data is not None:
                fuzzy_add(storage, Task(source.data), configs["B"].fuzzy, 1)
                reported += 1
        fill = time.perf_counter() - fill_start
        stored = storage.fuzzy_count()
        scanners = {name: Scanner.from_config(config) for name, config in configs.items()}
        for scanner in scanners.values():
            scanner.scan(messages[0])  # warm caches
        check_time = _time_check(scanners["B"])

        times: dict[str, list[float]] = {"A": [], "B": []}
        in_scan: list[float] = []
        hits = 0
        for index, raw in enumerate(messages):
            best = {"A": float("inf"), "B": float("inf")}
            check_best = float("inf")
            for round_ in range(max(1, repeat)):
                order = ("A", "B") if (index + round_) % 2 == 0 else ("B", "A")
                for name in order:
                    start = time.perf_counter()
                    result = scanners[name].scan(raw)
                    best[name] = min(best[name], time.perf_counter() - start)
                    if name == "B":
                        check_best = min(check_best, check_time[0])
                        if round_ == 0 and "FUZZY_DENIED" in result.symbols:
                            hits += 1
            for name in best:
                times[name].append(best[name])
            in_scan.append(check_best)
        added = [b - a for a, b in zip(times["A"], times["B"], strict=True)]

        # The check's two steps alone, on parsed messages (text already decoded).
        tasks = [Task(raw) for raw in messages]
        for task in tasks:
            _ = task.text_parts
        settings = configs["B"].fuzzy
        hashing: list[float] = []
        lookup: list[float] = []
        for task in tasks:
            fastest = [float("inf"), float("inf")]
            for _ in range(max(1, repeat)):
                start = time.perf_counter()
                hashes = hashes_of(task, settings)
                middle = time.perf_counter()
                find_matches(storage, hashes, settings.min_similarity)
                fastest = [min(fastest[0], middle - start),
                           min(fastest[1], time.perf_counter() - middle)]
            hashing.append(fastest[0])
            lookup.append(fastest[1])
        storage.close()

    print_measures([
        ("corpus", ", ".join(dirs)),
        ("messages", f"{len(messages)}, fastest of {max(1, repeat)} runs each"),
        ("store", f"SQLite, {stored} hashes of {reported} spam messages "
                  f"(added in {fill:.1f} s)"),
        ("A: scan without fuzzy, ms", _ms(times["A"])),
        ("B: scan with fuzzy, ms", _ms(times["B"])),
        ("B - A per message, ms", _ms(added)),
        ("the fuzzy check inside B's scans, ms", _ms(in_scan)),
        ("hashing alone, ms", _ms(hashing)),
        ("store look-up alone, ms", _ms(lookup)),
        ("FUZZY_DENIED in B", f"{hits} of {len(messages)}"),
    ])
    return 0
