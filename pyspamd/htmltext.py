"""HTML parts as the reader sees them: visible text and the links behind it.

lexbor (through selectolax) parses broken real-world HTML the way browsers do and is fast
enough to run on every HTML part (about 0.2 ms for a 14 kB spam page). Its time grows with
the square of the nesting depth, though (50,000 nested <div> take seconds), so markup nested
deeper than a budget is read by a cheaper linear tag scanner instead, which the caller
scores as a symbol: a sender gains nothing from nesting that deep.
"""

from __future__ import annotations

import html
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

# Tags that never nest: void elements, and those a new sibling closes implicitly (<p>, <li>,
# <td> ...), so a page of 5,000 unclosed <p> is not mistaken for deep nesting.
_FLAT_TAGS = frozenset((
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
    "source", "track", "wbr", "p", "li", "dt", "dd", "option", "optgroup", "tr", "td", "th",
    "tbody", "thead", "tfoot", "rb", "rt", "rp", "html", "head", "body",
))
# [^<>] rather than [^>]: a tag without its ">" ends at the next "<", so scanning stays
# linear however many unfinished tags the markup holds.
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9]*)[^<>]*>?")
# Run on the lower-cased markup: without re.I the engine skips each flat-tag alternative on
# its first letter, which made this bound 2.5x cheaper on the corpus's large HTML parts.
# Still an upper bound on the nesting tags _TAG finds (those start with an ASCII letter).
_NESTING_OPEN = re.compile(rf"<(?!(?:{'|'.join(_FLAT_TAGS)})[\s/>])[a-z]")
_ANY_TAG = re.compile(r"</?[A-Za-z][^<>]*>?")
_BLOCK_TAG = re.compile(rf"</?(?:{'|'.join(sorted(_BLOCK_TAGS))})\b[^<>]*>?", re.I)
_LINK_TAG = re.compile(r"<(a|area|img|form|iframe|link)\b([^<>]*)", re.I)
_HIDDEN_START = re.compile(rf"<!--|<({'|'.join(_INVISIBLE_TAGS)})\b", re.I)
_LINK_ATTR = re.compile(
    r"""\b(?:href|src|action)[ \t\r\n]*=[ \t\r\n]*("[^"]*"|'[^']*'|[^\s"'>]+)""", re.I
)


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
# Text colour and background in inline styles and the old attributes.
_STYLE_COLOR = re.compile(r"(?:^|[;\s\"'])color\s*:\s*([^;!\"']+)", re.I)
_STYLE_BACKGROUND = re.compile(r"background(?:-color)?\s*:\s*([^;!\"']+)", re.I)
_HEX_COLOR = re.compile(r"#?([0-9a-f]{3}|[0-9a-f]{6})$", re.I)
_RGB_COLOR = re.compile(r"rgba?\(\s*(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})", re.I)
_TRANSPARENT = re.compile(r"transparent|rgba\([^)]*,\s*0(?:\.0*)?\s*\)|#[0-9a-f]{6}00\b", re.I)
_NAMED_COLORS = {
    "white": (255, 255, 255), "black": (0, 0, 0), "silver": (192, 192, 192),
    "gray": (128, 128, 128), "grey": (128, 128, 128), "red": (255, 0, 0),
    "maroon": (128, 0, 0), "yellow": (255, 255, 0), "olive": (128, 128, 0),
    "lime": (0, 255, 0), "green": (0, 128, 0), "aqua": (0, 255, 255), "cyan": (0, 255, 255),
    "teal": (0, 128, 128), "blue": (0, 0, 255), "navy": (0, 0, 128),
    "fuchsia": (255, 0, 255), "magenta": (255, 0, 255), "purple": (128, 0, 128),
    "snow": (255, 250, 250), "ivory": (255, 255, 240), "whitesmoke": (245, 245, 245),
    "ghostwhite": (248, 248, 255), "floralwhite": (255, 250, 240), "azure": (240, 255, 255),
    "mintcream": (245, 255, 250), "lightgray": (211, 211, 211),
    "lightgrey": (211, 211, 211), "gainsboro": (220, 220, 220),
}
_WHITE = (255, 255, 255)
# WCAG contrast ratio under which text is all but invisible on its background (1 is the
# same colour; body text is meant to have 4.5). Light grey #eeeeee on white is 1.16.
_LOW_CONTRAST = 1.2


@dataclass(slots=True)
class HtmlContent:
    text: str
    links: list[str] = field(default_factory=list)
    images: int = 0
    too_deep: bool = False  # read by the cheap scanner, not by the HTML parser
    # (href, shown text) of the first _MAX_ANCHORS <a href> elements
    anchors: list[tuple[str, str]] = field(default_factory=list)
    hidden_chars: int = 0  # letters and digits in elements an inline style hides
    low_contrast_chars: int = 0  # letters and digits in a colour all but that of the ground
    forms: int = 0
    password_inputs: int = 0


def html_to_text(markup: str, max_depth: int = 512) -> HtmlContent:
    """Visible text and links of an HTML part; nesting beyond max_depth takes the cheap way."""
    if _nesting_exceeds(markup, max_depth):
        return _scan_tags(markup)
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
    low_contrast = _low_contrast_chars(tree, "background" in markup.lower())
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
        low_contrast_chars=low_contrast,
    )


def _nesting_exceeds(markup: str, max_depth: int) -> bool:
    # Cheap bounds first: markup cannot nest deeper than it has tags that nest.
    if markup.count("<") <= max_depth or len(_NESTING_OPEN.findall(markup.lower())) <= max_depth:
        return False
    depth = 0
    for closing, name in _TAG.findall(markup):
        name = name.lower()
        if name in _FLAT_TAGS:
            continue
        if closing:
            depth = max(depth - 1, 0)
        else:
            depth += 1
            if depth > max_depth:
                return True
    return False


def _scan_tags(markup: str) -> HtmlContent:
    """Text and links by regular expressions over the tags, without building a tree."""
    visible = _drop_hidden(markup)
    links: list[str] = []
    images = 0
    for name, attrs in _LINK_TAG.findall(visible):
        images += name.lower() == "img"
        found = _LINK_ATTR.search(attrs)
        if found:
            links.append(found.group(1).strip("\"'").strip())
    text = html.unescape(_ANY_TAG.sub("", _BLOCK_TAG.sub("\n", visible)))
    lines = (" ".join(line.split()) for line in text.splitlines())
    return HtmlContent("\n".join(line for line in lines if line), links, images, too_deep=True)


def _drop_hidden(markup: str) -> str:
    """The markup without comments and invisible elements; one left open hides the rest,
    as in a browser."""
    lowered = markup.lower()
    out: list[str] = []
    pos = 0
    while (m := _HIDDEN_START.search(markup, pos)) is not None:
        out.append(markup[pos : m.start()])
        if m.group(1) is None:
            close = markup.find("-->", m.end())
            pos = len(markup) if close < 0 else close + 3
        else:
            close = lowered.find(f"</{m.group(1).lower()}", m.end())
            pos = len(markup) if close < 0 else close
    out.append(markup[pos:])
    return "".join(out)



def _hidden_chars(tree: LexborHTMLParser) -> int:
    """Word characters inside elements an inline style hides (outermost ones only)."""
    total = 0
    counted: set[int] = set()
    for node in tree.css("[style]"):
        style = node.attributes.get("style") or ""
        if not _HIDING_STYLE.search(style):
            continue
        total += _outermost_chars(node, counted)
    return total


def parse_color(text: str) -> tuple[int, int, int] | None:
    """An RGB triple for a CSS or HTML colour: #rgb, #rrggbb, rgb(), the common names."""
    value = text.strip().lower()
    if m := _HEX_COLOR.match(value):
        digits = m.group(1)
        if len(digits) == 3:
            digits = "".join(c * 2 for c in digits)
        return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)
    if m := _RGB_COLOR.match(value):
        r, g, b = (min(int(x), 255) for x in m.groups())
        return r, g, b
    return _NAMED_COLORS.get(value)


def contrast(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    """WCAG 2 contrast ratio of two colours, 1 (same) to 21 (black on white)."""
    def luminance(rgb: tuple[int, int, int]) -> float:
        channels = []
        for c in rgb:
            x = c / 255
            channels.append(x / 12.92 if x <= 0.03928 else ((x + 0.055) / 1.055) ** 2.4)
        return 0.2126 * channels[0] + 0.7152 * channels[1] + 0.0722 * channels[2]
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def _own_background(node: LexborNode) -> tuple[int, int, int] | None:
    attrs = node.attributes
    style = attrs.get("style") or ""
    if "background" in style.lower() and (m := _STYLE_BACKGROUND.search(style)):
        value = m.group(1)
        if _TRANSPARENT.match(value.strip()):
            return None  # the parent's ground shows through
        # a background image or gradient: its colour is unknown, never judged
        if "url(" in value or "gradient" in value:
            return (-1, -1, -1)
        return parse_color(value.split()[0]) if value.split() else None
    if attrs.get("background"):  # <td background="image">: the ground is a picture
        return (-1, -1, -1)
    bgcolor = attrs.get("bgcolor")
    return parse_color(bgcolor) if bgcolor else None


def _low_contrast_chars(tree: LexborHTMLParser, stylesheet_backgrounds: bool) -> int:
    """Word characters in elements whose text colour is all but their background's: the
    nearest background an inline style or bgcolor sets, else white, unless the markup sets
    backgrounds elsewhere (a style sheet) that an inline look cannot follow."""
    total = 0
    counted: set[int] = set()
    for node in tree.css("[style], font[color]"):
        attrs = node.attributes
        style = attrs.get("style") or ""
        found = _STYLE_COLOR.search(style) if "color" in style.lower() else None
        fg = parse_color(found.group(1)) if found else (
            parse_color(attrs.get("color") or "") if node.tag == "font" else None)
        if fg is None:
            continue
        bg: tuple[int, int, int] | None = None
        current: LexborNode | None = node
        for _ in range(30):
            if current is None:
                break
            bg = _own_background(current)
            if bg is not None:
                break
            current = current.parent
        if bg is None:
            if stylesheet_backgrounds:
                continue
            bg = _WHITE
        if bg[0] < 0 or contrast(fg, bg) >= _LOW_CONTRAST:
            continue
        total += _outermost_chars(node, counted)
    return total


def _outermost_chars(node: LexborNode, counted: set[int]) -> int:
    """The node's word characters, unless an element already counted holds it."""
    if _inside_any(node, counted):
        return 0
    counted.add(node.mem_id)
    return len(_WORD_CHAR.findall(node.text(deep=True)))


def _inside_any(node: LexborNode, counted: set[int]) -> bool:
    """Whether one of the node's ancestors (50 levels up at most) is in `counted`, by node
    identity (mem_id): a node's `==` compares the serialised HTML of both subtrees, which
    cost a serialisation of every ancestor per counted node and matched look-alike ones."""
    parent = node.parent
    for _ in range(50):
        if parent is None:
            return False
        if parent.mem_id in counted:
            return True
        parent = parent.parent
    return False
