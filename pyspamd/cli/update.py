"""`pyspamc update`: install signed rule, map and model updates (as sa-update does), roll
back, and publish a channel (`--make-channel`, `--gen-key`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pyspamd.config import ConfigError, load_config, resolve_config_path


def add_command(commands: Any) -> None:
    update = commands.add_parser(
        "update", add_help=False,
        help="download, verify, test and install the [update] channels' signed rules, maps "
             "and model (exit 0 updated, 1 nothing new, 4 error), as sa-update")
    update.add_argument("--help", action="help", help="show this help and exit")
    update.add_argument("--rollback", action="store_true",
                        help="go back to each channel's previous set")
    update.add_argument("--channel", metavar="NAME", help="only this channel")
    update.add_argument("--make-channel", metavar="DIR",
                        help="build a signed bundle of DIR's rules/, maps/ and model/")
    update.add_argument("--key", metavar="KEY.pem",
                        help="the channel's Ed25519 private key (with --make-channel or --sign)")
    update.add_argument("--out", metavar="FILE", default="bundle.tar.gz",
                        help="where --make-channel writes the bundle (default bundle.tar.gz)")
    update.add_argument("--set-version", type=int, metavar="N",
                        help="the bundle's version (default: the time, YYYYMMDDhhmmss)")
    update.add_argument("--gen-key", metavar="KEY.pem",
                        help="write a new Ed25519 private key and print its public key")
    update.add_argument("--sign", metavar="FILE",
                        help="write FILE.sig, the signature of a map served over https:// "
                             "(with --key)")


def cmd_update(args: argparse.Namespace) -> int:
    # here, not at the top: pyspamc imports every command's module to build its parser, and
    # these bring aiohttp and cryptography (0.1-0.2 s) to every other command's start
    from pyspamd.update.bundle import BundleError, generate_key, make_bundle, private_key
    from pyspamd.update.install import FAILED, UPDATED, run_update

    if args.gen_key:
        try:
            public = generate_key(Path(args.gen_key))
        except OSError as exc:
            print(f"pyspamc update: cannot write {args.gen_key}: {exc.strerror or exc}",
                  file=sys.stderr)
            return FAILED
        print(f"Private key written to {args.gen_key} (mode 0600; keep it off the mail "
              "servers). Public key for [[update.channels]] key =")
        print(public)
        return UPDATED
    if args.sign:
        return _sign_file(Path(args.sign), args.key)
    if args.make_channel:
        if not args.key:
            print("pyspamc update: --make-channel needs --key KEY.pem", file=sys.stderr)
            return FAILED
        try:
            manifest = make_bundle(Path(args.make_channel), private_key(args.key),
                                   Path(args.out), args.set_version)
        except BundleError as exc:
            print(f"pyspamc update: {exc}", file=sys.stderr)
            return FAILED
        except OSError as exc:
            print(f"pyspamc update: {exc.filename or ''}: {exc.strerror or exc}",
                  file=sys.stderr)
            return FAILED
        print(f"bundle {args.out}: version {manifest.version}, {len(manifest.files)} files, "
              "signed")
        return UPDATED
    try:
        config = load_config(resolve_config_path(args.config))
    except ConfigError as exc:  # exit 1 would read as "nothing new"
        for line in exc.errors:
            print(line, file=sys.stderr)
        return FAILED
    code, lines = run_update(config, args.rollback, args.channel)
    for line in lines:
        print(line, file=sys.stderr if code == FAILED else sys.stdout)
    return code


def _sign_file(path: Path, key: str | None) -> int:
    from pyspamd.policy.remote_maps import SIGNATURE_SUFFIX
    from pyspamd.update.bundle import BundleError, private_key, sign
    from pyspamd.update.install import FAILED, UPDATED

    if not key:
        print("pyspamc update: --sign needs --key KEY.pem", file=sys.stderr)
        return FAILED
    try:
        signature = sign(private_key(key), path.read_bytes())
        path.with_name(path.name + SIGNATURE_SUFFIX).write_bytes(signature)
    except BundleError as exc:
        print(f"pyspamc update: {exc}", file=sys.stderr)
        return FAILED
    except OSError as exc:
        print(f"pyspamc update: {exc.filename or path}: {exc.strerror or exc}", file=sys.stderr)
        return FAILED
    print(f"signature written to {path}{SIGNATURE_SUFFIX}")
    return UPDATED
