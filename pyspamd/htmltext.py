"""HTML parts as the reader sees them: visible text and the links behind it.

lexbor (through selectolax) parses broken real-world HTML the way browsers do and is fast
enough to run on every HTML part (about 0.2 ms for a 14 kB spam page).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from selectolax.lexbor import LexborHTMLParser, LexborNode

# Elements that start a new line when rendered. Inline elements add nothing, so
# "un<b>sub</b>scribe" stays one word, as the reader sees it, and body rules still match.
_BLOCK_TAGS = frozenset((
    "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "fieldset",
    "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header",
    "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table", "tbody", "td", "tfoot",
    "th", "thead", "title", "tr", "ul",
))
_INVISIBLE_TAGS = ["script", "style", "noscript", "template", "object", "applet"]
_LINK_SELECTOR = "a[href], area[href], img[src], form[action], iframe[src], link[href]"
_LINK_ATTRS = ("href", "src", "action")


# Anchors whose shown text is kept (for "text shows one domain, link goes to another");
# a newsletter has a few dozen, more adds nothing.
_MAX_ANCHORS = 100
# Inline styles that hide an element's text from the reader: display:none,
# visibility:hidden, a zero or one-pixel font, zero opacity, zero height with overflow hidden.
_HIDING_STYLE = re.compile(
    r"display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*[01](?:\.\d+)?\s*(?:px|pt)?"
    r"\s*(?:[;!]|$)|opacity\s*:\s*0(?:\.0+)?\s*(?:[;!]|$)|(?:max-)?height\s*:\s*0(?:px)?\s*;"
    r"[^\"]*overflow\s*:\s*hidden",
    re.IGNORECASE,
)
_WORD_CHAR = re.compile(r"\w")


@dataclass(slots=True)
class HtmlContent:
    text: str
    links: list[str] = field(default_factory=list)
    images: int = 0
    # (href, shown text) of the first _MAX_ANCHORS <a href> elements
    anchors: list[tuple[str, str]] = field(default_factory=list)
    hidden_chars: int = 0  # letters and digits in elements an inline style hides
    forms: int = 0
    password_inputs: int = 0


def html_to_text(markup: str) -> HtmlContent:
    tree = LexborHTMLParser(markup)
    links: list[str] = []
    anchors: list[tuple[str, str]] = []
    images = forms = 0
    for node in tree.css(_LINK_SELECTOR):
        tag = node.tag
        if tag == "img":
            images += 1
        elif tag == "form":
            forms += 1
        attrs = node.attributes
        for attr in _LINK_ATTRS:
            value = attrs.get(attr)
            if value:
                links.append(value.strip())
                if tag == "a" and len(anchors) < _MAX_ANCHORS:
                    text = node.text(deep=True)
                    # only a text that could be a domain is compared with its link
                    anchors.append((value.strip(), text.strip() if "." in text else ""))
                break
    hidden = _hidden_chars(tree)
    passwords = len(tree.css('input[type="password" i]')) if forms or "<input" in markup else 0
    tree.strip_tags(_INVISIBLE_TAGS)
    out: list[str] = []
    root = tree.root
    if root is not None:
        for node in root.traverse(include_text=True):
            tag = node.tag
            if tag == "-text":
                out.append(node.text_content or "")
            elif tag in _BLOCK_TAGS:
                out.append("\n")
    text = "".join(out)
    # Collapse layout whitespace but keep line structure for ^/$ in body rules.
    lines = (" ".join(line.split()) for line in text.splitlines())
    return HtmlContent(
        text="\n".join(line for line in lines if line), links=links, images=images,
        anchors=anchors, hidden_chars=hidden, forms=forms, password_inputs=passwords,
    )


def _hidden_chars(tree: LexborHTMLParser) -> int:
    """Word characters inside elements an inline style hides (outermost ones only)."""
    total = 0
    counted: list[LexborNode] = []
    for node in tree.css("[style]"):
        style = node.attributes.get("style") or ""
        if not _HIDING_STYLE.search(style):
            continue
        if any(_inside(node, outer) for outer in counted):
            continue
        counted.append(node)
        total += len(_WORD_CHAR.findall(node.text(deep=True)))
    return total


def _inside(node: LexborNode, outer: LexborNode) -> bool:
    parent = node.parent
    for _ in range(50):
        if parent is None:
            return False
        if parent == outer:
            return True
        parent = parent.parent
    return False
