"""Bytes to text for mail: charsets that may be wrong, unknown or hostile, and RFC 2047 words.

Nothing here raises on bad input. A caller gets text plus a note of what was wrong, so
the scan can score the problem instead of failing on it.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable
from email.header import Header, decode_header
from email.utils import collapse_rfc2231_value
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


def header_text(value: object) -> str:
    """Any header or parameter value the email package hands back, as text.

    compat32 returns a str with surrogate-escaped 8-bit bytes, an email.header.Header when a
    header holds such bytes, a (charset, language, text) tuple for RFC 2231 parameters, or
    None; code that splits or matches the value must see a str whatever the sender wrote.
    """
    if value is None:
        return ""
    if isinstance(value, str):
        return surrogates_to_text(value)[0]
    if isinstance(value, tuple):
        return surrogates_to_text(collapse_rfc2231_value(value))[0]
    if isinstance(value, Header):
        try:
            chunks = decode_header(value)
        except Exception:  # a Header we cannot take apart still has a printable form
            return str(value)
        return "".join(
            c if isinstance(c, str) else decode_bytes(c, charset)[0] for c, charset in chunks
        )
    return str(value)


_FOLD = re.compile(r"\r?\n(?=[ \t])")
_ENCODED_WORD_GAP = re.compile(r"(\?=)[ \t]+(=\?)")


def unfold(value: str) -> str:
    if "\n" not in value:  # most header values are one line: skip the regex
        return value.strip()
    return _FOLD.sub("", value).strip()


# Encoded words decoded per header value: the stdlib decoder's cost grows faster than the
# number of words (10,000 take 0.08 s, 100,000 take 7 s); real headers hold a few dozen.
MAX_ENCODED_WORDS = 1000


def decode_header_value(raw: str, fallback: Callable[[], str | None] | None = None
                        ) -> tuple[str, list[str]]:
    """Unfold and decode one header value; return (text, problems).

    problems lists charsets that were unknown or did not decode, "8bit" when the header
    carried raw 8-bit bytes instead of encoded words (see surrogates_to_text for those), and
    "too_many_encoded_words" when only the first MAX_ENCODED_WORDS were decoded (the rest is
    kept as written).
    """
    value, had_8bit = surrogates_to_text(raw, fallback)
    problems: list[str] = ["8bit"] if had_8bit else []
    value = unfold(value)
    if "=?" not in value:
        return value, problems
    rest = ""
    if value.count("=?") > MAX_ENCODED_WORDS:  # each word opens with "=?": a cheap bound first
        cut = _nth_word_end(value, MAX_ENCODED_WORDS)
        if cut is not None:
            value, rest = value[:cut], value[cut:]
            problems.append("too_many_encoded_words")
    text, decode_problems = _decode_words(value)
    return text + rest, problems + decode_problems


_ENCODED_WORD = re.compile(r"=\?[^?\s]*\?[^?\s]*\?[^?\s]*\?=")


def _nth_word_end(value: str, n: int) -> int | None:
    for count, m in enumerate(_ENCODED_WORD.finditer(value), 1):
        if count == n:
            return m.end()
    return None


def _decode_words(value: str) -> tuple[str, list[str]]:
    problems: list[str] = []
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
