"""`pyspamc dkim-keygen DOMAIN SELECTOR`: a signing key pair and the DNS record to publish."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pyspamd.cli.common import EXIT_FAILED, EXIT_OK
from pyspamd.config import local_dir, resolve_config_path

DEFAULT_KEY_DIR = "/etc/pyspamd/dkim"  # without a config file


def add_command(commands: Any) -> None:
    keygen = commands.add_parser(
        "dkim-keygen", help="write a DKIM key pair and print the DNS TXT record to publish")
    keygen.add_argument("domain", metavar="DOMAIN", help="the signing domain (d=)")
    keygen.add_argument("selector", metavar="SELECTOR", help="the selector (s=), e.g. 2026a")
    keygen.add_argument("--dir", help="where the private key goes (default: dkim/ beside "
                                      f"the config file, -c; {DEFAULT_KEY_DIR} without one)")
    keygen.add_argument("--bits", type=int, default=2048, help="RSA key size (default 2048)")


def cmd_keygen(args: argparse.Namespace) -> int:
    # here, not at the top: pyspamc imports every command's module to build its parser
    from pyspamd.auth.dkim_sign import generate_key, zone_line

    config_path = resolve_config_path(args.config)
    key_dir = Path(args.dir) if args.dir else (
        config_path.parent / "dkim" if config_path is not None else Path(DEFAULT_KEY_DIR))
    try:
        path, record = generate_key(args.domain, args.selector, key_dir, args.bits)
    except FileExistsError as exc:
        print(f"pyspamc: {exc.filename} exists; pick a new selector to roll the key",
              file=sys.stderr)
        return EXIT_FAILED
    except (ValueError, OSError) as exc:
        print(f"pyspamc: {exc}", file=sys.stderr)
        return EXIT_FAILED
    settings = (local_dir(config_path) / f"dkim-{args.domain}.toml" if config_path is not None
                else Path("local.d") / f"dkim-{args.domain}.toml")
    print(f"Private key written to {path} (mode 0600; make it readable by pyspamd's user: "
          f"chown pyspamd {path}).")
    print()
    print(f"1. Publish this TXT record in the DNS zone of {args.domain}:")
    print()
    print(zone_line(args.domain, args.selector, record))
    print()
    print(f"2. Once it resolves, write these lines to {settings} (a local.d file: the "
          "main config is left as shipped), then run pyspamd configtest and reload:")
    print()
    print(f'[dkim_signing.keys."{args.domain}"]\nselector = "{args.selector}"\n'
          f'key = "{path}"')
    return EXIT_OK
