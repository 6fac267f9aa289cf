"""pyspamc model-train: train a content model on the site's own mail, in the shipped format.

The result replaces the shipped model when `[model] path` names it. The same code builds
the shipped model (pyspamd.model.train), so the file has the same checks on load.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import sys
from pathlib import Path

from pyspamd.cli.common import EXIT_FAILED, EXIT_OK
from pyspamd.config import resolve_config_path
from pyspamd.model.train import (
    DEFAULT_C,
    DEFAULT_HASH_BITS,
    TrainError,
    print_figures,
    read_paths,
    train_model,
)


def add_command(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "model-train", add_help=False,
        help="train a content model (MODEL_SPAM/MODEL_HAM) on labelled mail")
    p.add_argument("--help", action="help", help="show this help and exit")
    p.add_argument("--spam", nargs="+", required=True, metavar="PATH",
                   help="spam: files, directories, Maildirs or mbox files")
    p.add_argument("--ham", nargs="+", required=True, metavar="PATH", help="ham, likewise")
    p.add_argument("--test-spam", nargs="+", default=[], metavar="PATH",
                   help="held-out spam to report figures on (never trained on)")
    p.add_argument("--test-ham", nargs="+", default=[], metavar="PATH",
                   help="held-out ham to report figures on")
    p.add_argument("--output", "-o", required=True, type=Path, metavar="FILE",
                   help="model file to write (.npz); its figures go next to it (.json)")
    p.add_argument("--version", default="", help="version string (default: site-DATE)")
    p.add_argument("--hash-bits", type=int, default=DEFAULT_HASH_BITS,
                   help=f"2^N weights (default {DEFAULT_HASH_BITS})")
    p.add_argument("--c", type=float, default=DEFAULT_C,
                   help=f"inverse regularisation strength (default {DEFAULT_C})")
    p.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    p.add_argument("--calibrate", action="store_true",
                   help="choose the thresholds on the verdict of the training mail with "
                        "this config's rules (scans it once more; docs/model.md)")


def cmd_model_train(args: argparse.Namespace) -> int:
    if not 8 <= args.hash_bits <= 24:
        print("pyspamc model-train: --hash-bits must be 8 to 24", file=sys.stderr)
        return EXIT_FAILED
    if not args.c > 0:
        print("pyspamc model-train: --c must be above 0", file=sys.stderr)
        return EXIT_FAILED
    version = args.version or f"site-{dt.datetime.now(dt.UTC):%Y%m%d}"
    train = itertools.chain(read_paths(args.spam, "spam", "spam"),
                            read_paths(args.ham, "ham", "ham"))
    test = itertools.chain(read_paths(args.test_spam, "spam", "spam"),
                           read_paths(args.test_ham, "ham", "ham"))
    try:
        config_path = resolve_config_path(args.config)
        report = train_model(train, test, version, args.output, args.hash_bits, args.c,
                             jobs=args.jobs, calibrate=args.calibrate,
                             config_path=str(config_path) if config_path else None)
    except TrainError as exc:
        print(f"pyspamc model-train: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print_figures(report)
    print(f"to use it: [model] path = \"{args.output.resolve()}\", then pyspamd configtest")
    return EXIT_OK
