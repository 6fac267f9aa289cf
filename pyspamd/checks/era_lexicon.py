"""The lexicons of the botnet years (pills, replica watches, stock tips), read through the
disguises that spam wrote them in: look-alike letters of other scripts and fullwidth
or styled ones (Unicode confusables), accents, digits and signs for letters (V1agra,
Vi@gra, C!al!s), and letters spaced or dotted apart (v i a g r a, V.I.A.G.R.A). Words cut
by HTML comments or empty tags reach this check whole: the HTML is read as the reader sees
it (htmltext), and rules/88_html_tricks.rules scores the cut itself.

A drug or replica word that is only there once the text is read through its disguise is
the strong sign: nobody disguises a word in honest mail. Plainly written, the words alone
prove little (a doctor's letter, a watch collectors' list), so those symbols need several
of them together.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import ClassVar

import re2

from pyspamd.checks.base import Check
from pyspamd.lookalikes import latin_skeleton
from pyspamd.symbols import Hits, SymbolDef
from pyspamd.task import Task

_G = "phrases"
_MAX_CHARS = 6_000  # an offer sits near the top; a long message would add only cost

_PHARMA = (
    "viagra", "cialis", "levitra", "sildenafil", "tadalafil", "vardenafil", "phentermine",
    "xanax", "valium", "tramadol", "ambien", "propecia", "meridia", "xenical", "vicodin",
    "oxycontin", "hydrocodone", "adipex", "carisoprodol", "alprazolam", "diazepam",
    "lorazepam", "clonazepam", "zolpidem", "finasteride", "kamagra", "vigrx", "acomplia",
)
_LUXURY = (
    "rolex", "breitling", "cartier", "omega", "tag heuer", "patek philippe", "panerai",
    "bvlgari", "bulgari", "hublot", "audemars piguet", "louis vuitton", "gucci", "chanel",
    "prada", "hermes", "tiffany",
)
_REPLICA = ("replica", "replicas", "swiss made replica", "fake watches", "luxury watches")
# Pump-and-dump tips of 2005-2008: a ticker and the words around it.
_STOCK = (
    r"strong buy", r"stock alert", r"hot stock", r"penny stocks?", r"pink sheets",
    r"otc ?bb", r"otc markets?", r"(?:current|recent) price", r"(?:target|projected) price",
    r"(?:\d+|five|ten) day target", r"(?:short|long)[- ]term target", r"shares outstanding",
    r"symbol ?: ?[a-z]{3,5}\b", r"ticker ?: ?[a-z]{3,5}\b", r"expected to (?:explode|soar)",
    r"investor alert", r"trade date", r"watch this stock", r"about to explode",
    r"momentum", r"breaking news",
)


def _words(words: tuple[str, ...]) -> re2._Regexp:
    # RE2: one linear pass for the whole word list, several times faster than re here
    return re2.compile(r"\b(" + "|".join(re.escape(w) for w in words) + r")\b")


_ALL_WORDS = _words(_PHARMA + _LUXURY + _REPLICA)
_PHARMA_SET, _LUXURY_SET, _REPLICA_SET = frozenset(_PHARMA), frozenset(_LUXURY), frozenset(
    _REPLICA)
_STOCK_RE = re2.compile(r"\b(" + "|".join(_STOCK) + r")")
_STOCK_HINTS = ("price", "stock", "symbol", "ticker", "otc", "shares", "investor")

# Letters set apart by spaces or signs: "v i a g r a", "V.I.A.G.R.A", "c-i-a-l-i-s".
_SPACED = re.compile(
    r"(?<![\w@$!|])(?:[a-z0-9@$!|][ \t.\-_*,+~/]{1,3}){3,}[a-z0-9@$!|](?![\w@$!|])")
# The same shape without the look-arounds, for RE2: most texts have no such run, and this
# one linear pass spares them the slower search above.
_SPACED_HINT = re2.compile(r"(?:[a-z0-9@$!|][ \t.\-_*,+~/]{1,3}){3}[a-z0-9@$!|]")
_SEPARATORS = re.compile(r"[ \t.\-_*,+~/]+")
# A word with signs or digits among its letters: "v1agra", "vi@gra", "c!al!s", "via-gra",
# or at one end of it ("viagr@", "1evitra"). Only such words are matched: plain words and
# words before a comma or full stop, nearly all of a text, never reach the Python callback.
# Each try starts where a word starts (the look-behind), so a plain word costs one try.
_TOKEN = re.compile(r"(?<![a-z0-9@$!|*._-])(?:[0-9@$!|]?[a-z]+(?:[0-9@$!|*._-]+[a-z]+)+[0-9@$!|]?"
                    r"|[a-z]{3,}[0-9@$!|](?![a-z0-9])|[0-9@$!|][a-z]{3,}\b)")
_COMBINING = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]+")
_LEET = str.maketrans({"1": "i", "!": "i", "|": "i", "0": "o", "3": "e", "4": "a", "@": "a",
                       "$": "s", "5": "s", "7": "t"})
# "1" and "|" stand for l as often as for i (Rep1ica, Ro|ex): such a word is read both ways.
_LEET_L = str.maketrans({"1": "l", "|": "l"})
_NOT_LETTER = re.compile(r"[^a-z]+")


def _fix_token(match: re.Match[str]) -> str:
    token = match.group(0)
    read = _NOT_LETTER.sub("", token.translate(_LEET))
    if "1" in token or "|" in token:
        return f"{read} {_NOT_LETTER.sub('', token.translate(_LEET_L).translate(_LEET))}"
    return read


def read_through(text: str) -> str:
    """The text as a reader takes it in: look-alike letters, accents, leet signs and
    spacing undone, lower case."""
    text = latin_skeleton(text)
    if not text.isascii():
        text = _COMBINING.sub("", unicodedata.normalize("NFKD", text))
    text = text.lower()
    if _SPACED_HINT.search(text):
        text = _SPACED.sub(lambda m: _SEPARATORS.sub("", m.group(0)), text)
    return _TOKEN.sub(_fix_token, text)


class EraLexicon(Check):
    name = "era_lexicon"
    symbols: ClassVar[Mapping[str, SymbolDef]] = {
        "LEX_PHARMA_OBFUSCATED": SymbolDef(
            2.5, "A drug name written in disguise (V1agra, v i a g r a, look-alike letters)", _G),
        "LEX_REPLICA_OBFUSCATED": SymbolDef(
            2.5, "A replica or luxury-brand word written in disguise", _G),
        "LEX_PHARMA_MANY": SymbolDef(1.5, "Three or more drug names (an online pill shop)", _G),
        "LEX_REPLICA_WATCHES": SymbolDef(
            1.5, "Replicas offered with two or more luxury brands", _G),
        "LEX_STOCK_TIP": SymbolDef(
            1.5, "Four or more terms of a stock tip (ticker, target price, strong buy)", _G),
    }

    def run(self, task: Task, hits: Hits) -> None:
        text = f"{task.subject}\n{task.body_text}"[:_MAX_CHARS]
        read = read_through(text)
        found = set(_ALL_WORDS.findall(read))
        if found:
            hidden = found - set(_ALL_WORDS.findall(text.lower()))
            pharma, luxury, replica = (found & _PHARMA_SET, found & _LUXURY_SET,
                                       found & _REPLICA_SET)
            if hidden & _PHARMA_SET:
                hits.add("LEX_PHARMA_OBFUSCATED", *sorted(hidden & _PHARMA_SET))
            if len(pharma) >= 3:
                hits.add("LEX_PHARMA_MANY", *sorted(pharma))
            if replica and hidden - _PHARMA_SET:
                hits.add("LEX_REPLICA_OBFUSCATED", *sorted(hidden - _PHARMA_SET))
            if replica and len(luxury) >= 2:
                hits.add("LEX_REPLICA_WATCHES", *sorted(luxury))
        if any(hint in read for hint in _STOCK_HINTS):
            stock = {m.group(1).split(":")[0].strip() for m in _STOCK_RE.finditer(read)}
            if len(stock) >= 4:
                hits.add("LEX_STOCK_TIP", *sorted(stock))
