"""`pyspamc dkim-keygen DOMAIN SELECTOR`: a signing key pair and the DNS record to publish."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pyspamd.auth.dkim_sign import generate_key, zone_line
from pyspamd.cli.common import EXIT_FAILED, EXIT_OK

DEFAULT_KEY_DIR = "/etc/pyspamd/dkim"


def add_command(commands: Any) -> None:
    keygen = commands.add_parser(
        "dkim-keygen", help="write a DKIM key pair and print the DNS TXT record to publish")
    keygen.add_argument("domain", metavar="DOMAIN", help="the signing domain (d=)")
    keygen.add_argument("selector", metavar="SELECTOR", help="the selector (s=), e.g. 2026a")
    keygen.add_argument("--dir", default=DEFAULT_KEY_DIR,
                        help=f"where the private key goes (default {DEFAULT_KEY_DIR})")
    keygen.add_argument("--bits", type=int, default=2048, help="RSA key size (default 2048)")


def cmd_keygen(args: argparse.Namespace) -> int:
    try:
        path, record = generate_key(args.domain, args.selector, Path(args.dir), args.bits)
    except FileExistsError as exc:
        print(f"pyspamc: {exc.filename} exists; pick a new selector to roll the key",
              file=sys.stderr)
        return EXIT_FAILED
    except (ValueError, OSError) as exc:
        print(f"pyspamc: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"Private key written to {path} (mode 0600; make it readable by pyspamd's user).")
    print("Publish this TXT record, then add to pyspamd.toml:")
    print(f'  [dkim_signing.keys."{args.domain}"]\n  selector = "{args.selector}"\n'
          f'  key = "{path}"')
    print()
    print(zone_line(args.domain, args.selector, record))
    return EXIT_OK
