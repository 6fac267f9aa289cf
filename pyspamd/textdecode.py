"""Bytes to text for mail: charsets that may be wrong, unknown or hostile, and RFC 2047 words.

Nothing here raises on bad input. A caller gets text plus a note of what was wrong, so
the scan can score the problem instead of failing on it.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable
from email.header import decode_header
from functools import lru_cache

# Charsets mail clients write that Python's codec registry does not know by that name.
_CHARSET_ALIASES = {
    "unicode-1-1-utf-7": "utf-7",
    "x-unknown": "",
    "unknown-8bit": "",
    "x-user-defined": "",
    "ks_c_5601-1987": "cp949",
    "x-mac-roman": "mac_roman",
    "windows-874": "cp874",
    "x-sjis": "shift_jis",
    "gb2312": "gb18030",  # gb18030 is a superset and many "gb2312" mails use its extra glyphs
    "iso-8859-8-i": "iso-8859-8",
}


@lru_cache(maxsize=512)
def resolve_charset(name: str) -> str | None:
    """The Python codec for a MIME charset name, or None when it is unknown or not a text codec.

    Codecs like "zlib" or "base64" exist in Python but turn bytes into bytes; a message must
    not be able to pick those, so only text encodings count.
    """
    key = name.strip().strip("\"'").lower()
    key = _CHARSET_ALIASES.get(key, key)
    if not key:
        return None
    try:
        info = codecs.lookup(key)
    except (LookupError, ValueError):
        return None
    if not getattr(info, "_is_text_encoding", True):
        return None
    if info.name in {"unicode_escape", "raw_unicode_escape", "idna", "punycode", "rot-13"}:
        return None
    return info.name


def decode_bytes(data: bytes, charset: str | None) -> tuple[str, str | None]:
    """Decode a text part; return (text, problem) where problem names a bad or wrong charset.

    Order of fall-backs: the declared charset, UTF-8, then windows-1252, which maps every
    byte so it always succeeds and is what most mislabelled Western mail really is.
    """
    problem: str | None = None
    if charset:
        codec = resolve_charset(charset)
        if codec is None:
            problem = charset[:40]
        else:
            try:
                return data.decode(codec), None
            except (UnicodeDecodeError, LookupError, ValueError):
                problem = charset[:40]
    if data.isascii():
        return data.decode("ascii"), problem
    try:
        return data.decode("utf-8"), problem
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace"), problem


def surrogates_to_text(value: str, fallback: Callable[[], str | None] | None = None
                       ) -> tuple[str, bool]:
    """Undo the surrogateescape that compat32 applies to raw 8-bit header bytes.

    Returns (text, had_8bit). Raw 8-bit in headers is mostly UTF-8 today; what is not UTF-8
    is read in the message's own declared charset (`fallback` names it, asked only then: a
    KOI8-R or ISO-8859-2 mailer writes its headers in the charset of its body), and last in
    windows-1252, which maps every byte (Latin-1 in old Western mail).
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raw = value.encode("utf-8", "surrogateescape")
        try:
            return raw.decode("utf-8"), True
        except UnicodeDecodeError:
            pass
        declared = fallback() if fallback is not None else None
        codec = resolve_charset(declared) if declared else None
        if codec is not None and codec not in ("ascii", "utf-8"):
            try:
                return raw.decode(codec), True
            except (UnicodeDecodeError, LookupError, ValueError):
                pass
        return raw.decode("cp1252", errors="replace"), True
    return value, False


_FOLD = re.compile(r"\r?\n(?=[ \t])")
_ENCODED_WORD_GAP = re.compile(r"(\?=)[ \t]+(=\?)")


def unfold(value: str) -> str:
    if "\n" not in value:  # most header values are one line: skip the regex
        return value.strip()
    return _FOLD.sub("", value).strip()


def decode_header_value(raw: str, fallback: Callable[[], str | None] | None = None
                        ) -> tuple[str, list[str]]:
    """Unfold and decode one header value; return (text, problems).

    problems lists charsets that were unknown or did not decode, and "8bit" when the header
    carried raw 8-bit bytes instead of encoded words (see surrogates_to_text for those).
    """
    value, had_8bit = surrogates_to_text(raw, fallback)
    problems: list[str] = ["8bit"] if had_8bit else []
    value = unfold(value)
    if "=?" not in value:
        return value, problems
    try:
        # Whitespace between adjacent encoded words is not part of the text (RFC 2047 6.2).
        chunks = decode_header(_ENCODED_WORD_GAP.sub(r"\1\2", value))
    except Exception:  # email.errors.HeaderParseError and friends: keep the text as written
        return value, [*problems, "encoded-word"]
    out: list[str] = []
    for chunk, charset in chunks:
        if isinstance(chunk, str):
            out.append(chunk)
            continue
        text, problem = decode_bytes(chunk, charset)
        if problem:
            problems.append(problem)
        out.append(text)
    return "".join(out), problems
