"""pyspamc rescore: fit every symbol's score from labelled mail (pyspamd.rescore.fit) and
write the scores file; from a corpus (cross-validated scans), cached vectors, or the
vectors the store kept of learned messages (--from-store)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import asdict, replace
from pathlib import Path

from pyspamd.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, load_config_or_exit
from pyspamd.config import Config
from pyspamd.rescore import mass_check, scores_file
from pyspamd.rescore.fit import FitParams, FitResult, fit_scores
from pyspamd.rescore.mass_check import Scanned
from pyspamd.rescore.vectors import SymbolVector, read_jsonl, stored_vectors, write_jsonl
from pyspamd.scanner import Scanner, builtin_symbols
from pyspamd.storage import StorageError, StorageMissing, open_storage

# Never fitted: a test pattern must keep deciding alone whatever the corpus says.
ALWAYS_PINNED = frozenset(("GTUBE",))
# The rules' scoring policy (tests/test_default_rules.py), which fitted scores keep too: no
# single heuristic marks a message alone, so one rule that misfires on a kind of ham it was
# not fitted on cannot; a sign of ham is worth little, since spam can forge it. Attachments
# that Windows runs may score up to 7. Checks (Bayes, MIME sanity) have only max_score.
RULE_RANGE = (-1.0, 3.5)
ATTACHMENT_RANGE = (-1.0, 7.0)


def add_command(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("rescore", add_help=False,
                            help="fit symbol scores from labelled mail and write a scores file")
    p.add_argument("--help", action="help", help="show this help and exit")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--split-dir", type=Path, metavar="DIR",
                        help="a fixed split (as pyspamc eval): only its train part is used")
    source.add_argument("--vectors", type=Path, nargs="+", metavar="FILE",
                        help="symbol vectors saved by --save-vectors or `pyspamc eval`")
    source.add_argument("--from-store", action="store_true",
                        help="the vectors the store kept of learned messages")
    p.add_argument("--spam", nargs="+", default=[], metavar="PATH", help="spam messages")
    p.add_argument("--ham", nargs="+", default=[], metavar="PATH", help="ham messages")
    p.add_argument("--folds", type=int, default=5,
                   help="cross-validation folds for a corpus (default 5)")
    p.add_argument("--seed", type=int, default=42, help="fold seed (default 42)")
    p.add_argument("--save-vectors", type=Path, metavar="FILE",
                   help="also write the cross-validated vectors (a cache for later fits)")
    p.add_argument("--output", "-o", type=Path, metavar="FILE",
                   help="write the scores file here (default: print what changed only)")
    p.add_argument("--pin", nargs="+", default=[], metavar="SYMBOL",
                   help="keep these symbols' scores")
    defaults = FitParams()
    p.add_argument("--min-hits", type=int, default=defaults.min_hits,
                   help=f"messages a symbol must fire on to be fitted (default "
                        f"{defaults.min_hits})")
    p.add_argument("--l2", type=float, default=defaults.l2,
                   help=f"L2 penalty (default {defaults.l2})")
    p.add_argument("--ham-cost", type=float, default=defaults.ham_cost,
                   help=f"weight of a ham message against a spam one (default "
                        f"{defaults.ham_cost})")


def pinned_symbols(config: Config, extra: list[str]) -> set[str]:
    """GTUBE, the admin's [scores], the symbols of maps (their action is the admin's), and
    what --pin names."""
    out = set(ALWAYS_PINNED) | set(config.scores) | set(extra)
    out |= {m.symbol for m in config.maps if m.symbol}
    return out


def fit(config: Config, vectors: list[SymbolVector], pin: list[str],
        params: FitParams) -> FitResult:
    scanner = Scanner.from_config(config)
    # The checks' own symbol table (class attributes), not the scanner's, which a fitted
    # scores file has already changed.
    rules = scores_file.written_rules(
        config, builtin_symbols([*scanner.checks, *scanner.post_checks]))
    defaults = {name: d.score for name, d in rules.defs.items()}
    # The fit runs on the vectors in a fixed order, so the same vectors give the same scores
    # whatever order a store or a folder listing gave them in.
    ordered = sorted(vectors, key=lambda v: (v.digest, v.name, not v.spam,
                                             sorted(v.factors.items())))
    threshold = scanner.thresholds.spam_score
    reject = scanner.thresholds.by_action.get("reject", threshold + 9.0)
    ranges = {name: ATTACHMENT_RANGE if rules.defs[name].group == "attachment" else RULE_RANGE
              for name in rules.rules}
    return fit_scores(ordered, defaults, pinned_symbols(config, pin),
                      replace(params, threshold=threshold, reject=reject), ranges)


def fit_from_scanned(config: Config, scanned: list[Scanned],
                     params: FitParams | None = None) -> FitResult:
    return fit(config, [s.vector() for s in scanned if not s.error], [],
               params or FitParams())


def print_fit(result: FitResult) -> None:
    print(f"fitted from {result.spam} spam and {result.ham} ham; scale {result.scale:.4f}")
    print("| symbol | old | new | spam hits | ham hits | |\n|---|---:|---:|---:|---:|---|")
    for s in sorted(result.scores, key=lambda s: (s.why != "fitted", -abs(s.new - s.old),
                                                  s.name)):
        print(f"| {s.name} | {s.old:.2f} | {s.new:.2f} | {s.spam_hits} | {s.ham_hits} | "
              f"{s.why} |")


def collect_vectors(config: Config, args: argparse.Namespace) -> list[SymbolVector] | int:
    if args.vectors:
        try:
            return [v for path in args.vectors for v in read_jsonl(path)]
        except (OSError, ValueError) as exc:
            print(f"pyspamc rescore: {exc}", file=sys.stderr)
            return EXIT_FAILED
    if args.from_store:
        try:
            storage = open_storage(config.storage, create=False)
            try:
                return list(stored_vectors(storage, config.bayes.max_fit_messages))
            finally:
                storage.close()
        except (StorageMissing, StorageError) as exc:
            print(f"pyspamc rescore: {exc}", file=sys.stderr)
            return EXIT_FAILED
    errors: list[str] = []
    if args.split_dir is not None:
        try:
            messages = (mass_check.load_messages(
                mass_check.read_list(args.split_dir / "train_spam.txt"), True, errors)
                + mass_check.load_messages(
                mass_check.read_list(args.split_dir / "train_ham.txt"), False, errors))
        except OSError as exc:
            print(f"pyspamc rescore: {exc}", file=sys.stderr)
            return EXIT_FAILED
    elif args.spam and args.ham:
        messages = (mass_check.load_messages(args.spam, True, errors)
                    + mass_check.load_messages(args.ham, False, errors))
    else:
        print("pyspamc rescore: give --spam and --ham, --split-dir, --vectors or --from-store",
              file=sys.stderr)
        return EXIT_USAGE
    for error in errors:
        print(f"skipped: {error}", file=sys.stderr)
    counts = sum(m.spam for m in messages), sum(not m.spam for m in messages)
    if min(counts) < args.folds:
        print(f"pyspamc rescore: {args.folds} folds need at least {args.folds} messages of "
              f"each class, got {counts[0]} spam and {counts[1]} ham", file=sys.stderr)
        return EXIT_FAILED
    scanned = mass_check.cross_validated(config, messages, args.folds, args.seed,
                                         lambda line: print(line, file=sys.stderr))
    vectors = [s.vector() for s in scanned if not s.error]
    if args.save_vectors:
        write_jsonl(args.save_vectors, vectors)
    return vectors


def cmd_rescore(args: argparse.Namespace, argv: list[str]) -> int:
    config = load_config_or_exit(args.config)
    if args.folds < 2:
        print("pyspamc rescore: --folds must be at least 2", file=sys.stderr)
        return EXIT_USAGE
    vectors = collect_vectors(config, args)
    if isinstance(vectors, int):
        return vectors
    params = FitParams(min_hits=args.min_hits, l2=args.l2, ham_cost=args.ham_cost)
    result = fit(config, vectors, args.pin, params)
    if not result.spam or not result.ham:
        print(f"pyspamc rescore: need vectors of both classes, got {result.spam} spam and "
              f"{result.ham} ham", file=sys.stderr)
        return EXIT_FAILED
    if args.output:
        scores_file.write(args.output, scores_file.render(
            result, "pyspamc " + shlex.join(argv)))
    if args.json:
        print(json.dumps({"spam": result.spam, "ham": result.ham, "scale": result.scale,
                          "scores": [asdict(s) for s in result.scores]}, indent=1))
    else:
        print_fit(result)
    return EXIT_OK


def refit_from_store(config: Config, output: Path) -> int:
    """`learn_* --rescore FILE`: fit from the store's vectors, write FILE, say so in a line."""
    vectors = collect_vectors(config, argparse.Namespace(vectors=None, from_store=True))
    if isinstance(vectors, int):
        return vectors
    result = fit(config, vectors, [], FitParams())
    if not result.spam or not result.ham:
        print(f"rescore: not written; the store holds vectors of {result.spam} spam and "
              f"{result.ham} ham, and a fit needs both")
        return EXIT_OK
    scores_file.write(output, scores_file.render(
        result, f"pyspamc rescore --from-store -o {shlex.quote(str(output))}"))
    print(f"rescore: {len(result.changed())} scores fitted from {result.spam} spam and "
          f"{result.ham} ham symbol vectors, written to {output} (reload pyspamd to use them)")
    return EXIT_OK
def vars_of(score: object) -> dict[str, object]:
    return {k: getattr(score, k) for k in score.__dataclass_fields__}  # type: ignore[attr-defined]
