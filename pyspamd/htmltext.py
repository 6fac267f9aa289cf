"""HTML parts as the reader sees them: visible text and the links behind it.

lexbor (through selectolax) parses broken real-world HTML the way browsers do and is fast
enough to run on every HTML part (about 0.2 ms for a 14 kB spam page).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from selectolax.lexbor import LexborHTMLParser

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


@dataclass(slots=True)
class HtmlContent:
    text: str
    links: list[str] = field(default_factory=list)
    images: int = 0


def html_to_text(markup: str) -> HtmlContent:
    tree = LexborHTMLParser(markup)
    links: list[str] = []
    images = 0
    for node in tree.css(_LINK_SELECTOR):
        if node.tag == "img":
            images += 1
        attrs = node.attributes
        for attr in _LINK_ATTRS:
            value = attrs.get(attr)
            if value:
                links.append(value.strip())
                break
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
    return HtmlContent(text="\n".join(line for line in lines if line), links=links, images=images)
