"""Map load and look-up time for big maps: 100,000 entries per type by default.

    python bench/maps.py [--entries N] [--lookups N]

Writes one map file per type into a temp directory (addresses, domains, IPv4/IPv6 hosts
and networks, Postfix regexp lines), loads each as the daemon does (MapSource: read, parse,
build), then looks up random values, half of them present. Prints a table.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pyspamd.config import MapConfig
from pyspamd.policy.maps import MapSource


def addresses(n: int, rnd: random.Random) -> tuple[list[str], list[str]]:
    keys = []
    for i in range(n):
        kind = i % 4
        domain = f"d{i}.example{i % 97}.test"
        keys.append([f"user{i}@{domain}", domain, f"@{domain}", f"user{i}@"][kind])
    probes = [f"user{rnd.randrange(n)}@mx.d{rnd.randrange(2 * n)}.example{rnd.randrange(97)}"
              ".test" for _ in range(1000)]
    return [f"{k} REJECT listed {k}" for k in keys], probes


def domains(n: int, rnd: random.Random) -> tuple[list[str], list[str]]:
    lines = [f"host{i}.zone{i % 1000}.test" for i in range(n)]
    picks = [rnd.randrange(2 * n) for _ in range(1000)]
    probes = [f"a.b.host{i}.zone{i % 1000}.test" for i in picks]
    return lines, probes


def networks(n: int, rnd: random.Random) -> tuple[list[str], list[str]]:
    lines = []
    for i in range(n):
        a, b, c = (i >> 16) & 255, (i >> 8) & 255, i & 255
        v4net = f"172.{16 + (i >> 12) % 16}.{(i >> 4) & 255}.{(i & 15) << 4}/28"
        lines.append([f"10.{a}.{b}.{c}", v4net,
                      f"2001:db8:{i >> 16:x}:{i & 0xffff:x}::/64",
                      f"2001:db8:ffff::{i >> 16:x}:{i & 0xffff:x}"][i % 4])
    probes = []
    for _ in range(1000):
        i = rnd.randrange(2 * n)
        probes.append(f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}" if i % 2 else
                      f"2001:db8:{i >> 16:x}:{i & 0xffff:x}::1")
    return lines, probes


def regexps(n: int, rnd: random.Random) -> tuple[list[str], list[str]]:
    lines = [f"/^From:.*@spam{i}\\.test/ REJECT listed {i}" for i in range(n)]
    probes = [f"From: x@spam{rnd.randrange(2 * n)}.test" for _ in range(100)]
    return lines, probes


KINDS: dict[str, tuple[str, str, Callable[[int, random.Random], tuple[list[str], list[str]]]]] = {
    "address": ("address", "envelope_from", addresses),
    "domain": ("domain", "hostname", domains),
    "ip": ("ip", "client_ip", networks),
    "regexp": ("regexp", "headers", regexps),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--regexp-entries", type=int, default=10_000,
                        help="regexp tables are scanned line by line, as Postfix does")
    parser.add_argument("--repeat", type=int, default=3, help="loads per type (best counts)")
    args = parser.parse_args()
    rnd = random.Random(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (kind, match, make) in KINDS.items():
            n = args.regexp_entries if kind == "regexp" else args.entries
            lines, probes = make(n, rnd)
            path = Path(tmp) / name
            path.write_text("\n".join(lines) + "\n")
            config = MapConfig(name=name, type=kind, match=match, file=str(path))
            loads = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                source = MapSource(config)
                loads.append(time.perf_counter() - start)
            assert not source.loaded.errors, source.loaded.errors[:3]
            table = source.table()
            times, found = [], 0
            for probe in probes:
                start = time.perf_counter()
                hit = table.lookup(probe)
                times.append(time.perf_counter() - start)
                found += hit is not None
            rows.append((name, len(table), path.stat().st_size / 1e6, min(loads),
                         statistics.median(times) * 1e6, max(times) * 1e6, found / len(probes)))
    print("| map type | entries | file MB | load s (best of "
          f"{args.repeat}) | look-up p50 µs | look-up max µs | hit rate |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, count, mb, load, p50, worst, rate in rows:
        print(f"| {name} | {count:,} | {mb:.1f} | {load:.2f} | {p50:.1f} | {worst:.1f} | "
              f"{rate:.0%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
