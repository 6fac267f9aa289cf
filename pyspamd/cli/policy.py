"""pyspamc commands for the policy parts: `maps check`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pyspamd.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, load_config_or_exit

COMMANDS = ("maps",)


def add_commands(commands: Any) -> None:
    maps = commands.add_parser("maps", help="look values up in the configured maps")
    maps_sub = maps.add_subparsers(dest="maps_command", required=True, metavar="ACTION")
    check = maps_sub.add_parser(
        "check", help="what would map MAP return for VALUE (exit 0: a hit, 1: no hit)")
    check.add_argument("map_name", metavar="MAP", help="the map's name in [[maps]]")
    check.add_argument("value", metavar="VALUE",
                       help="an IP, address, domain, or a header line / text for regexp maps "
                            "(\"\" or <> for the null sender)")


def run(args: argparse.Namespace) -> int:
    return cmd_maps_check(args)


def cmd_maps_check(args: argparse.Namespace) -> int:
    from pyspamd.policy.maps import MapSource

    config = load_config_or_exit(args.config)
    chosen = next((m for m in config.maps if m.name == args.map_name), None)
    if chosen is None:
        names = ", ".join(m.name for m in config.maps) or "none configured"
        print(f"no map named {args.map_name!r} (maps: {names})", file=sys.stderr)
        return EXIT_USAGE
    loaded = MapSource(chosen).loaded
    for problem in [*loaded.errors, *loaded.warnings]:
        print(problem, file=sys.stderr)
    found = loaded.table.lookup(args.value)
    if found is None or found[1].stop:
        why = f" ({found[1].describe()})" if found is not None else ""
        print(f"{chosen.name}: no match for {args.value!r}{why}")
        return EXIT_FAILED
    key, entry = found
    action = entry.action if entry.verb else (chosen.action or None)
    print(f"{chosen.name}: {args.value!r} matches {key} -> {entry.describe()}")
    print(f"symbol: {chosen.symbol} ({chosen.score:.2f}); action: {action or 'none (score only)'}"
          + (f"; text: {entry.text or chosen.message}" if entry.text or chosen.message else ""))
    return EXIT_OK

