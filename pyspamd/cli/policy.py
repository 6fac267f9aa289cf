"""pyspamc commands for the policy parts: `maps check`, `greylist list|add|del`,
`ratelimit reset`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pyspamd.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, load_config_or_exit

COMMANDS = ("maps", "greylist", "ratelimit")


def add_commands(commands: Any) -> None:
    maps = commands.add_parser("maps", help="look values up in the configured maps")
    maps_sub = maps.add_subparsers(dest="maps_command", required=True, metavar="ACTION")
    check = maps_sub.add_parser(
        "check", help="what would map MAP return for VALUE (exit 0: a hit, 1: no hit)")
    check.add_argument("map_name", metavar="MAP", help="the map's name in [[maps]]")
    check.add_argument("value", metavar="VALUE",
                       help="an IP, address, domain, or a header line / text for regexp maps "
                            "(\"\" or <> for the null sender)")
    grey = commands.add_parser("greylist", help="manage greylisting triplets")
    grey_sub = grey.add_subparsers(dest="greylist_command", required=True, metavar="ACTION")
    grey_sub.add_parser("list", help="triplets waiting for a retry, triplets that passed, "
                        "and clients counted for auto-whitelisting")
    add = grey_sub.add_parser("add", help="let a triplet pass from now on, as if its retry "
                              "had come")
    delete = grey_sub.add_parser("del", help="forget a triplet (it is greylisted again), or "
                                 "with IP alone the client's auto-whitelisting")
    for sub in (add, delete):
        sub.add_argument("ip", metavar="IP", help="client address (its network is used)")
    add.add_argument("sender", metavar="SENDER", help="envelope sender, <> for none")
    add.add_argument("rcpt", metavar="RCPT", help="recipient")
    delete.add_argument("sender", metavar="SENDER", nargs="?",
                        help="envelope sender, <> for none")
    delete.add_argument("rcpt", metavar="RCPT", nargs="?", help="recipient")
    rate = commands.add_parser("ratelimit", help="manage rate-limit buckets")
    rate_sub = rate.add_subparsers(dest="ratelimit_command", required=True, metavar="ACTION")
    rate_sub.add_parser("list", help="buckets in use, with the tokens they have left")
    reset = rate_sub.add_parser("reset", help="refill a bucket (forget what it counted)")
    reset.add_argument("key_type", metavar="TYPE",
                       help="ip, user, sender, sender_domain or rcpt")
    reset.add_argument("key", metavar="KEY", help="the address, login or domain")


def run(args: argparse.Namespace) -> int:
    if args.command == "maps":
        return cmd_maps_check(args)
    if args.command == "ratelimit":
        if args.ratelimit_command == "list":
            return cmd_list(args, "ratelimit:")
        return cmd_ratelimit_reset(args)
    if args.greylist_command == "list":
        return cmd_list(args, "greylist:")
    return cmd_greylist_edit(args)


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


def cmd_greylist_edit(args: argparse.Namespace) -> int:
    """`greylist add` and `greylist del`."""
    from pyspamd.policy.greylist import AWL_PREFIX, Greylister, Timing, Triplet, client_network
    from pyspamd.storage import StorageError, open_storage

    config = load_config_or_exit(args.config)
    g = config.greylist
    network = client_network(args.ip, g.ipv4_mask, g.ipv6_mask)
    if network is None:
        print(f"{args.ip!r} is not an IP address", file=sys.stderr)
        return EXIT_USAGE
    if (args.sender is None) != (args.rcpt is None):
        print("give SENDER and RCPT both (a triplet), or neither (the client)",
              file=sys.stderr)
        return EXIT_USAGE
    triplet = Triplet.make(network, args.sender, args.rcpt) if args.rcpt is not None \
        else None
    try:
        with open_storage(config.storage, create=args.greylist_command == "add") as storage:
            greylister = Greylister(storage, Timing(g.delay, g.expire, g.whitelist_expire))
            if args.greylist_command == "add":
                assert triplet is not None
                greylister.mark_passed(triplet)
                print(f"{triplet.key}: added (passes until {g.whitelist_expire / 86400:g} "
                      "days without mail)")
                return EXIT_OK
            if triplet is None:
                address = args.ip.strip("[]")
                gone = storage.delete(f"{AWL_PREFIX}{address}")
                label = f"client {address}"
            else:
                gone = greylister.forget(triplet)
                label = triplet.key
    except StorageError as exc:
        print(exc, file=sys.stderr)
        return EXIT_FAILED
    print(f"{label}: {'deleted' if gone else 'not found'}")
    return EXIT_OK if gone else EXIT_FAILED


def cmd_ratelimit_reset(args: argparse.Namespace) -> int:
    from pyspamd.checks.ratelimit import bucket_keys
    from pyspamd.policy.ratelimit import KEY_TYPES, Limit
    from pyspamd.storage import StorageError, open_storage
    from pyspamd.task import Envelope

    if args.key_type not in KEY_TYPES:
        print(f"unknown key type {args.key_type!r}; use {', '.join(KEY_TYPES)}", file=sys.stderr)
        return EXIT_USAGE
    config = load_config_or_exit(args.config)
    # The same key the check would use (an IPv6 client's /64, lower case addresses).
    key = args.key
    fields = {"ip": {"client_ip": key}, "user": {"user": key}, "sender": {"mail_from": key},
              "sender_domain": {"mail_from": f"x@{key}"}, "rcpt": {"rcpts": (key,)}}
    envelope = Envelope(**fields[args.key_type])
    keys = [k for k, _ in bucket_keys(Limit(args.key_type, 1, 1.0, ""), envelope)]
    if not keys:
        print(f"{key!r} is not a valid {args.key_type} key", file=sys.stderr)
        return EXIT_USAGE
    try:
        with open_storage(config.storage, create=False) as storage:
            gone = storage.delete(keys[0])
    except StorageError as exc:
        print(exc, file=sys.stderr)
        return EXIT_FAILED
    print(f"{keys[0]}: {'reset' if gone else 'not found (the bucket is full)'}")
    return EXIT_OK if gone else EXIT_FAILED


def cmd_list(args: argparse.Namespace, prefix: str) -> int:
    import datetime

    from pyspamd.policy.greylist import list_triplets
    from pyspamd.storage import StorageError, StorageMissing, open_storage

    def when(stamp: float) -> str:
        return datetime.datetime.fromtimestamp(stamp, datetime.UTC).strftime(
            "%Y-%m-%d %H:%M:%S UTC")

    config = load_config_or_exit(args.config)
    try:
        with open_storage(config.storage, create=False) as storage:
            if prefix == "greylist:":
                listed = list_triplets(storage)
                for item in listed:
                    if item.state == "client":
                        print(f"{item.key}  client  {item.passes} pass(es), last "
                              f"{when(item.stamp)}")
                        continue
                    label = "first seen" if item.state == "waiting" else "last passed"
                    print(f"{item.key}  {item.state}  {label} {when(item.stamp)}")
                count = len(listed)
            else:
                rows = storage.scan_prefix(prefix)
                for key, value in rows:
                    tokens, _, last = value.decode(errors="replace").partition("|")
                    try:
                        print(f"{key[len(prefix):]}  {float(tokens):.2f} tokens left at "
                              f"{when(float(last))}")
                    except ValueError:
                        print(f"{key[len(prefix):]}  (unreadable: {value!r})")
                count = len(rows)
    except StorageMissing:
        count = 0
    except StorageError as exc:
        print(exc, file=sys.stderr)
        return EXIT_FAILED
    print(f"{count} {'triplet' if prefix == 'greylist:' else 'bucket'}(s)")
    return EXIT_OK
