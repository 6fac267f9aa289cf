"""HTML as the reader sees it, beyond what a regex over the markup can tell: text an
inline style hides or colours like its background, mail that is an image and a link with
hardly a word (or a short paragraph beside images), and text stuffed with invisible
characters."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import ClassVar

from pyspamd.checks.base import Check
from pyspamd.symbols import Hits, SymbolDef
from pyspamd.task import Task

_G = "html"
_WORD_CHAR = re.compile(r"\w")
# Zero-width and other invisible format characters (not the soft hyphen: German
# newsletters use it for hyphenation, and not the BOM at the start of a part).
# Only between letters: newsletters pad their preview line with runs of &zwnj;.
_INVISIBLE = re.compile(
    "(?<=[^\\W\\d_])[\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\u180e\u034f]+(?=[^\\W\\d_])")
_INVISIBLE_ANY = re.compile("[\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\u180e\u034f]")
_HIDDEN_SOME = 40
_HIDDEN_LOTS = 300
_IMAGE_ONLY_CHARS = 60  # word characters of visible text an image-only mail stays under
_INVISIBLE_MANY = 5
_LOW_CONTRAST_SOME = 40  # word characters in a colour all but the background's
# Image spam of 2006-2008: an image or two carries the offer, a paragraph of text (often
# random words, to look like mail) carries nothing; more text than image-only mail has.
_IMAGE_TEXT_PER_IMAGE = 120
_IMAGE_TEXT_MAX = 400


class HtmlFeatures(Check):
    name = "html_features"
    symbols: ClassVar[Mapping[str, SymbolDef]] = {
        "HTML_HIDDEN_TEXT": SymbolDef(
            0.0, f"{_HIDDEN_SOME}+ letters in elements styled invisible", _G),
        "HTML_HIDDEN_TEXT_LOTS": SymbolDef(
            0.0, f"{_HIDDEN_LOTS}+ letters in elements styled invisible (filter poison)", _G),
        "HTML_IMAGE_ONLY": SymbolDef(
            0.0, "HTML mail that is images with hardly any text", _G),
        "HTML_IMAGE_ONLY_LINKED": SymbolDef(
            0.0, "HTML mail that is a linked image with hardly any text", _G),
        "HTML_PASSWORD_FORM": SymbolDef(
            0.0, "HTML form with a password field in the mail itself", _G),
        "HTML_LOW_CONTRAST_TEXT": SymbolDef(
            0.0, f"{_LOW_CONTRAST_SOME}+ letters in a colour all but that of their background",
            _G),
        "HTML_IMAGE_TEXT_RATIO": SymbolDef(
            0.0, "HTML mail of images with little text beside them (image spam)", _G),
        "TEXT_INVISIBLE_CHARS_MANY": SymbolDef(
            0.0, f"Zero-width characters between letters in {_INVISIBLE_MANY}+ places", _G),
    }

    def run(self, task: Task, hits: Hits) -> None:
        html_parts = [p for p in task.text_parts if p.html is not None]
        # the plain character search first: most mail has none, and it is far cheaper
        invisible = sum(len(_INVISIBLE.findall(p.text)) for p in task.text_parts
                        if _INVISIBLE_ANY.search(p.text))
        if invisible >= _INVISIBLE_MANY:
            hits.add("TEXT_INVISIBLE_CHARS_MANY", str(invisible))
        if not html_parts:
            return
        hidden = sum(p.html.hidden_chars for p in html_parts if p.html)
        if hidden >= _HIDDEN_SOME:
            hits.add("HTML_HIDDEN_TEXT", str(hidden))
        if hidden >= _HIDDEN_LOTS:
            hits.add("HTML_HIDDEN_TEXT_LOTS", str(hidden))
        if any(p.html.password_inputs for p in html_parts if p.html):
            hits.add("HTML_PASSWORD_FORM")
        low = sum(p.html.low_contrast_chars for p in html_parts if p.html)
        if low >= _LOW_CONTRAST_SOME:
            hits.add("HTML_LOW_CONTRAST_TEXT", str(low))
        images = sum(p.html.images for p in html_parts if p.html)
        # a part with much more text than the threshold cannot be image-only: not counted
        if images and all(len(p.text) < 4 * _IMAGE_ONLY_CHARS + hidden for p in task.text_parts):
            visible = max(len(_WORD_CHAR.findall(p.text)) - (p.html.hidden_chars if p.html else 0)
                          for p in task.text_parts)
            if visible < _IMAGE_ONLY_CHARS:
                hits.add("HTML_IMAGE_ONLY", str(images))
                if any(p.html.anchors for p in html_parts if p.html):
                    hits.add("HTML_IMAGE_ONLY_LINKED")
        if images and not hits.count("HTML_IMAGE_ONLY"):
            visible = max(len(_WORD_CHAR.findall(p.text)) for p in task.text_parts) - hidden
            if visible < min(_IMAGE_TEXT_MAX, _IMAGE_TEXT_PER_IMAGE * images):
                hits.add("HTML_IMAGE_TEXT_RATIO", f"{images} / {visible}")
