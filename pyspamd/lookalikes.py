"""Letters of other scripts and styles that look like Latin ones, from Unicode's
confusables data (UTS #39) as the confusable-homoglyphs package ships it: about 1,000
letters (Cyrillic, Greek, Armenian, Cherokee, fullwidth, mathematical, small capitals...)
where a hand-made table held 55. Read once, on first use."""

from __future__ import annotations

import functools
import json
import unicodedata
from importlib import resources

# Lower-case letters that pass for Latin small capitals or for a Latin letter in most
# fonts, which the confusables data leaves out (it maps only what is alike at any size).
_EXTRA = {"в": "b", "к": "k", "м": "m", "н": "h", "т": "t", "τ": "t", "κ": "k", "χ": "x",
          "ԍ": "g"}


@functools.cache
def latin_lookalikes() -> dict[str, str]:
    """Non-ASCII letter -> the ASCII letter it passes for (lower case)."""
    data = json.loads((resources.files("confusable_homoglyphs") / "confusables.json")
                      .read_text(encoding="utf-8"))
    table: dict[str, str] = {}
    for latin in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ":
        for entry in data.get(latin, ()):
            char = entry.get("c", "")
            if len(char) == 1 and not char.isascii() and char.isalpha():
                table.setdefault(char, latin.lower())
    for char, latin in _EXTRA.items():
        table.setdefault(char, latin)
    return table


@functools.cache
def _translation() -> dict[int, str]:
    return {ord(char): latin for char, latin in latin_lookalikes().items()}


def is_lookalike(char: str) -> bool:
    return char in latin_lookalikes()


def latin_skeleton(text: str) -> str:
    """The text with every look-alike letter replaced by the Latin letter it imitates
    (after NFKC, which already turns fullwidth and styled letters into plain ones)."""
    if text.isascii():
        return text
    text = unicodedata.normalize("NFKC", text)
    return text if text.isascii() else text.translate(_translation())
