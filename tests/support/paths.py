"""Where the repository and its test corpus are."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "corpus"
# The SpamAssassin corpus beside the checkout (../shared), which benchmarks use when present;
# a git worktree further down (../wt/NAME) finds it beside the checkout above it.
SHARED_SPAMASSASSIN = next(
    (found for up in REPO.parents if (found := up / "shared" / "corpus" / "spamassassin").is_dir()),
    REPO.parent / "shared" / "corpus" / "spamassassin",
)


def corpus_dirs(given: list[str]) -> list[str]:
    """The folders a benchmark reads: those given, else the SpamAssassin corpus beside the
    checkout, else the repository's own sample."""
    if given:
        return given
    base = SHARED_SPAMASSASSIN if SHARED_SPAMASSASSIN.is_dir() else CORPUS
    return [str(base / "ham"), str(base / "spam")]
