"""Structure features of a message for the shipped model, as tokens like the Bayes ones.

The Bayes tokens say which words, headers and hosts a message has; these say how it is
built: how much of it is HTML, how its links look, which scripts its text mixes, what it
attaches. Numbers are put into a few ranges ("bucket") so that every feature is a token
and the model stays one weight per hashed token.
"""

from __future__ import annotations

import re

import re2

from pyspamd.ruleset.regex import re2_options
from pyspamd.task import Task

# Bump when a token below changes: a model records the version it was trained with.
FEATURES_VERSION = 1
TEXT_CHARS = 5000

# Scripts by code-point range (first match wins); ASCII letters are Latin.
_SCRIPT_RANGES = (
    ("latin", 0x00C0, 0x024F), ("greek", 0x0370, 0x03FF), ("cyrillic", 0x0400, 0x04FF),
    ("hebrew", 0x0590, 0x05FF), ("arabic", 0x0600, 0x06FF), ("thai", 0x0E00, 0x0E7F),
    ("cjk", 0x3040, 0x30FF), ("cjk", 0x4E00, 0x9FFF), ("cjk", 0xAC00, 0xD7AF),
)
_ASCII_LETTER = re.compile(r"[A-Za-z]")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
# A word that mixes Latin with Cyrillic or Greek letters is a homograph trick.
_MIXED_WORD = re.compile(
    r"[A-Za-z][\u0370-\u03FF\u0400-\u04FF]|[\u0370-\u03FF\u0400-\u04FF][A-Za-z]"
)
_INVISIBLE = re.compile(r"[\u00AD\u034F\u180E\u200B-\u200F\u202A-\u202E\u2060-\u2064\uFEFF]")
_UPPER_RUN = re.compile(r"[A-Z]{4,}")
_DIGITS = re.compile(r"\d")
_MONEY = re.compile(r"[$€£]\s?\d")
_PERCENT = re.compile(r"\d\s?%")
_BTC = re.compile(r"\b(?:bc1|[13])[a-km-zA-HJ-NP-Z1-9]{25,40}\b")
_EMAIL_IN_NAME = re.compile(r"@[\w.-]+\.[a-z]{2,}", re.IGNORECASE)
_PHONE = re.compile(r"\+?\d[\d ()-]{8,14}\d")
SHORTENERS = frozenset({
    "bit.ly", "tinyurl.com", "t.co", "goo.gl", "ow.ly", "is.gd", "buff.ly", "rebrand.ly",
    "cutt.ly", "shorturl.at", "rb.gy", "t.ly", "tiny.cc", "s.id", "bl.ink", "lnkd.in",
})
EXECUTABLE_EXT = frozenset({
    "exe", "scr", "pif", "com", "bat", "cmd", "vbs", "vbe", "js", "jse", "wsf", "hta",
    "jar", "msi", "ps1", "lnk", "cpl", "dll", "reg",
})
DISK_EXT = frozenset({"iso", "img", "vhd", "vhdx", "dmg"})
ARCHIVE_EXT = frozenset({"zip", "rar", "7z", "gz", "tgz", "ace", "arj", "cab", "r00"})
DOC_MACRO_EXT = frozenset({"docm", "xlsm", "pptm", "xlsb", "doc", "xls"})


def bucket(n: float, edges: tuple[float, ...]) -> str:
    """The range n falls in: '<e0', 'e0+', 'e1+' ... for sorted edges."""
    label = f"<{edges[0]:g}"
    for edge in edges:
        if n >= edge:
            label = f"{edge:g}+"
    return label


def structure_tokens(task: Task) -> list[str]:
    out: list[str] = []
    out.extend(_text_tokens(task))
    out.extend(_url_tokens(task))
    out.extend(_header_tokens(task))
    out.extend(_attachment_tokens(task))
    return [f"st:{t}" for t in out]


def _text_tokens(task: Task) -> list[str]:
    parts = task.text_parts
    html = [p for p in parts if p.is_html]
    plain = [p for p in parts if not p.is_html]
    kinds = [k for k, present in (("html", html), ("text", plain)) if present]
    out = [f"parts:{'+'.join(kinds) or 'none'}"]
    # The start of the text says enough, and bounds the regex work per message.
    text = task.body_text[:TEXT_CHARS]
    visible = sum(len(p.text) for p in parts)
    out.append(f"textlen:{bucket(visible, (50, 200, 1000, 5000, 20000))}")
    if html:
        markup = sum(len(p.markup) for p in html)
        shown = sum(len(p.text.strip()) for p in html)
        out.append(f"htmlratio:{bucket(shown / max(markup, 1), (0.02, 0.05, 0.1, 0.2, 0.4))}")
        if shown < 30:
            out.append("html:almost-no-text")
        lowered = " ".join(p.markup[:50_000].lower() for p in html)
        for marker, token in (("<form", "html:form"), ("<script", "html:script"),
                              ("<iframe", "html:iframe"), ("display:none", "html:hidden"),
                              ("font-size:0", "html:tiny"), ("font-size:1px", "html:tiny"),
                              ("data:image", "html:inline-image"),
                              ("<input", "html:input"), ("javascript:", "html:javascript")):
            if marker in lowered:
                out.append(token)
        out.append(f"html:imgs:{bucket(lowered.count('<img'), (1, 2, 5, 10))}")
    out.extend(_char_tokens(text))
    charsets = {p.part.charset.lower() for p in parts if p.part.charset}
    if len(charsets) > 1:
        out.append("charset:several")
    if any(c.startswith(("koi8", "windows-125", "gb", "big5", "shift_jis", "euc", "iso-2022"))
           for c in charsets):
        out.append("charset:national")
    for anomaly in sorted(task.anomalies)[:10]:
        out.append(f"anomaly:{anomaly}")
    return out


def _char_tokens(text: str) -> list[str]:
    """What the characters of the text say: scripts, invisible characters, capitals, digits,
    money, percentages, Bitcoin addresses, phone numbers. Most mail is ASCII, which has no
    other script and no invisible character to look for, and whose digits str.count finds;
    RE2 reads it once for the two patterns that cost most in Python's engine."""
    ascii_only = text.isascii()
    out: list[str] = []
    scripts = scripts_of(text)
    out.append(f"scripts:{'+'.join(scripts) or 'none'}")
    if len(scripts) > 1:
        out.append("scripts:mixed")
        if ("cyrillic" in scripts or "greek" in scripts) and _MIXED_WORD.search(text):
            out.append("text:mixed-script-word")
    invisible = 0 if ascii_only else len(_INVISIBLE.findall(text))
    if invisible:
        out.append(f"text:invisible:{bucket(invisible, (1, 5, 20))}")
    upper_words = len(_UPPER_RUN.findall(text))
    out.append(f"text:capswords:{bucket(upper_words, (1, 3, 10, 30))}")
    if text:
        count = sum(map(text.count, "0123456789")) if ascii_only else len(_DIGITS.findall(text))
        out.append(f"text:digits:{bucket(count / len(text), (0.02, 0.06, 0.15))}")
    out.append(f"text:excl:{bucket(text.count('!'), (1, 3, 10))}")
    # Each pattern needs its sign in the text; `in` looks far faster than the regex engine.
    if ("$" in text or "€" in text or "£" in text) and _MONEY.search(text):
        out.append("text:money")
    if "%" in text and _PERCENT.search(text):
        out.append("text:percent")
    if ascii_only:
        found = _ASCII_SET.Match(text.encode("ascii")) or ()
        btc, phone = 0 in found, 1 in found
    else:
        btc, phone = bool(_BTC.search(text)), bool(_PHONE.search(text))
    if btc:
        out.append("text:btc-address")
    if phone:
        out.append("text:phone")
    return out


def _ascii_set() -> re2.Set:
    """_BTC and _PHONE for ASCII text, where RE2's word boundary and digit (ASCII) are
    Python's (Unicode), so the set finds a match exactly when the Python patterns do."""
    patterns = re2.Set.SearchSet(re2_options())
    for pattern in (_BTC, _PHONE):
        patterns.Add(pattern.pattern)
    patterns.Compile()
    return patterns


_ASCII_SET = _ascii_set()


def scripts_of(text: str) -> list[str]:
    """The scripts whose letters the text uses, in a fixed order."""
    found = {"latin"} if _ASCII_LETTER.search(text) else set()
    if text.isascii():
        return [name for name in _SCRIPT_ORDER if name in found]
    for char in set(_NON_ASCII.findall(text)):
        code = ord(char)
        for name, low, high in _SCRIPT_RANGES:
            if low <= code <= high:
                found.add(name)
                break
    return [name for name in _SCRIPT_ORDER if name in found]


_SCRIPT_ORDER = ("latin", "cyrillic", "greek", "cjk", "arabic", "hebrew", "thai")


def _url_tokens(task: Task) -> list[str]:
    urls = task.urls
    out = [f"urls:{bucket(len(urls), (1, 2, 5, 10, 30))}"]
    if not urls:
        return out
    hosts = {u.host for u in urls}
    domains = {".".join(h.split(".")[-2:]) for h in hosts}
    out.append(f"urldomains:{bucket(len(domains), (1, 2, 4, 8, 15))}")
    tlds = {h.rpartition(".")[2] for h in hosts if "." in h and not h[-1].isdigit()}
    out.extend(f"tld:{t[:12]}" for t in sorted(tlds)[:10])
    if any(u.is_ip for u in urls):
        out.append("url:ip-host")
    if any(u.has_userinfo for u in urls):
        out.append("url:userinfo")
    if any("xn--" in h for h in hosts):
        out.append("url:punycode")
    if hosts & SHORTENERS:
        out.append("url:shortener")
    if any(u.scheme == "http" for u in urls):
        out.append("url:http")
    if all(u.scheme == "https" for u in urls):
        out.append("url:all-https")
    if any(h.count(".") >= 4 for h in hosts):
        out.append("url:deep-host")
    if any(len(u.path) > 80 for u in urls):
        out.append("url:long-path")
    if any(u.path.lower().endswith((".php", ".html", ".htm")) and "login" in u.path.lower()
           for u in urls):
        out.append("url:login-page")
    sender = task.from_address.rpartition("@")[2]
    if sender:
        sender_dom = ".".join(sender.split(".")[-2:])
        out.append("url:sender-domain" if sender_dom in domains else "url:other-domain")
    return out


def _header_tokens(task: Task) -> list[str]:
    headers = task.headers
    out: list[str] = []
    from_pairs = headers.addresses("from")
    if from_pairs:
        name, address = from_pairs[0]
        if _EMAIL_IN_NAME.search(name):
            named = _EMAIL_IN_NAME.search(name).group(0)[1:].lower()  # type: ignore[union-attr]
            out.append("from:name-other-address" if not address.endswith(named)
                       else "from:name-same-address")
        if "=?" in "".join(headers.raw("from")):
            out.append("from:encoded")
    else:
        out.append("from:none")
    reply = headers.addresses("reply-to")
    if reply and from_pairs:
        rdom = reply[0][1].rpartition("@")[2]
        fdom = from_pairs[0][1].rpartition("@")[2]
        out.append("replyto:same-domain" if rdom == fdom else "replyto:other-domain")
    to = headers.addresses("to")
    out.append(f"to:{bucket(len(to), (1, 2, 5, 20))}")
    if to and from_pairs and to[0][1] == from_pairs[0][1]:
        out.append("to:is-from")
    subject = task.subject
    if subject:
        letters = [c for c in subject if c.isalpha()]
        if letters and sum(c.isupper() for c in letters) / len(letters) > 0.7 and len(letters) > 5:
            out.append("subj:caps")
        if "=?" in "".join(headers.raw("subject")):
            out.append("subj:encoded")
        if any(ord(c) > 0x2000 for c in subject):
            out.append("subj:symbols")
        if subject.lower().startswith(("re:", "fwd:", "fw:", "aw:", "sv:")):
            out.append("subj:reply")
    else:
        out.append("subj:none")
    for name in ("list-id", "list-unsubscribe", "precedence", "in-reply-to", "references",
                 "dkim-signature", "x-mailer", "user-agent", "organization", "mime-version"):
        if name in headers:
            out.append(f"has:{name}")
    return out


def _attachment_tokens(task: Task) -> list[str]:
    out: list[str] = []
    attachments = task.attachments
    out.append(f"attach:{bucket(len(attachments), (1, 2, 5))}")
    for part in attachments[:10]:
        name = (part.filename or "").lower().strip()
        ext = name.rpartition(".")[2] if "." in name else ""
        if ext in EXECUTABLE_EXT:
            out.append("attach:executable")
        if ext in DISK_EXT:
            out.append("attach:disk-image")
        if ext in ARCHIVE_EXT:
            out.append("attach:archive")
        if ext in DOC_MACRO_EXT:
            out.append("attach:office-macro-type")
        if ext in ("htm", "html", "shtml", "svg") or part.content_type in ("text/html",
                                                                         "image/svg+xml"):
            out.append("attach:html")
        stem = name.rpartition(".")[0]
        if "." in stem and ext and len(stem.rpartition(".")[2]) in (3, 4):
            out.append("attach:double-ext")
        if "\u202e" in name:
            out.append("attach:rtl-override")
        out.append(f"attach:type:{part.content_type[:40]}")
    return out
