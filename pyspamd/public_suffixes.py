"""The Public Suffix List as the publicsuffixlist package ships it, read once per process
from the package's bundled copy (never fetched). Outside pyspamd.dns, whose package loads
the resolver and the config: link extraction, which the task module holds, needs it too."""

from __future__ import annotations

import functools

from publicsuffixlist import PublicSuffixList


@functools.cache
def public_suffixes() -> PublicSuffixList:
    return PublicSuffixList()  # the bundled snapshot: no network access


def known_suffix(name: str) -> bool:
    """Whether the name ends in a public suffix the list knows (not just any last label)."""
    text = name.strip(".").lower()
    return "." in text and public_suffixes().privatesuffix(text, accept_unknown=False) is not None
