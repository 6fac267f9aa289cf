"""The fitted scores file: a rule file of `score` lines alone, so the rule loader reads it
like any other (docs/scores.md: where it goes and what wins over it)."""

from __future__ import annotations

from pathlib import Path

from pyspamd.config import Config
from pyspamd.rescore.fit import FitResult
from pyspamd.ruleset.loader import RuleSet, load_rules, rule_files

# First line of every file `pyspamc rescore` writes: how the fit tells its own earlier
# output from rule files written by hand.
MARKER = "# pyspamd fitted scores"


def is_fitted(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8") as handle:
            return handle.readline().startswith(MARKER)
    except (OSError, UnicodeDecodeError):
        return False


def written_rules(config: Config, builtin: dict) -> RuleSet:
    """The rules as written by hand: every rule file of the config but fitted-scores files.
    Their scores give each symbol's default and, by their sign, what it was written for."""
    files = [f for f in rule_files([Path(d) for d in config.rules.dirs]) if not is_fitted(f)]
    return load_rules(files, builtin)


def render(fit: FitResult, command: str) -> str:
    lines = [
        f"{MARKER}, written by `pyspamc rescore`; edits here are lost at the next fit.",
        f"# {command}",
        f"# {fit.spam} spam and {fit.ham} ham symbol vectors; scale {fit.scale:.4f} logit "
        "per point. Format: score NAME SCORE  # written score, hits on spam / ham",
        "# Rules files read after this one (rules.d) and the config's [scores] win over it.",
    ]
    for s in fit.scores:
        if s.why == "fitted":
            lines.append(f"score {s.name:<28} {s.new:6.2f}  # was {s.old:.2f}; "
                         f"{s.spam_hits} / {s.ham_hits}")
    return "\n".join(lines) + "\n"


def write(path: Path, text: str) -> None:
    """Replace the file whole (a worker reloading mid-write reads the old or the new)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
