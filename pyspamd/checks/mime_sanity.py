"""MIME sanity: scores what the parser noticed (broken encodings, charsets, limits)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from pyspamd.checks.base import Check
from pyspamd.symbols import Hits, SymbolDef
from pyspamd.task import Task

_G = "mime"

# anomaly name (set by Task/mime/textdecode) -> symbol
_ANOMALY_SYMBOLS = {
    "bad_base64": "MIME_BAD_BASE64",
    "bad_qp": "MIME_BAD_QP",
    "truncated": "MIME_TRUNCATED",
    "broken_multipart": "BROKEN_CONTENT_TYPE",
    "too_many_parts": "MIME_TOO_MANY_PARTS",
    "too_deep": "MIME_TOO_DEEP",
    "bad_charset": "R_BAD_CHARSET",
    "header_8bit": "HEADER_8BIT",
    "nul": "NUL_IN_MESSAGE",
    "header_body_separator": "BROKEN_HEADERS",
    "too_many_headers": "TOO_MANY_HEADERS",
    "too_many_encoded_words": "TOO_MANY_ENCODED_WORDS",
    "html_too_deep": "HTML_TOO_DEEP",
}
_BROKEN = frozenset(("bad_base64", "bad_qp", "truncated", "broken_multipart"))


class MimeSanity(Check):
    name = "mime_sanity"
    symbols: ClassVar[Mapping[str, SymbolDef]] = {
        "MIME_GOOD": SymbolDef(-0.1, "Well-formed text/plain or multipart/alternative", _G),
        "MIME_HTML_ONLY": SymbolDef(0.2, "Only an HTML part, no plain-text alternative", _G),
        "MIME_BAD_BASE64": SymbolDef(1.0, "Invalid base64 in a text part", _G),
        "MIME_BAD_QP": SymbolDef(0.5, "Invalid quoted-printable escapes", _G),
        "MIME_TRUNCATED": SymbolDef(1.0, "Multipart message without its closing boundary", _G),
        "BROKEN_CONTENT_TYPE": SymbolDef(1.5, "Multipart without a usable boundary", _G),
        "MIME_TOO_MANY_PARTS": SymbolDef(1.0, "More MIME parts than [scan] max_parts", _G),
        "MIME_TOO_DEEP": SymbolDef(1.0, "MIME nesting deeper than [scan] max_depth", _G),
        "R_BAD_CHARSET": SymbolDef(0.5, "Unknown charset, or text that does not decode", _G),
        "HEADER_8BIT": SymbolDef(1.0, "Raw 8-bit bytes in headers (not RFC 2047 encoded)", _G),
        "NUL_IN_MESSAGE": SymbolDef(1.0, "NUL bytes in the message", _G),
        "BROKEN_HEADERS": SymbolDef(1.0, "Header block not ended by an empty line", _G),
        "TOO_MANY_HEADERS": SymbolDef(1.0, "More header fields than [scan] max_headers", _G),
        "TOO_MANY_ENCODED_WORDS": SymbolDef(
            1.0, "A header with more RFC 2047 encoded words than are decoded", _G),
        "HTML_TOO_DEEP": SymbolDef(
            1.0, "HTML nested deeper than [scan] max_html_depth (text taken the cheap way)", _G),
        "HAS_ATTACHMENT": SymbolDef(0.0, "Message has attachments", _G),
    }

    def run(self, task: Task, hits: Hits) -> None:
        headers = task.headers
        # In header order, not a set's: options must come out the same in every process.
        for name in dict.fromkeys(n.lower() for n, _ in headers.items):
            headers.decoded(name)  # records 8-bit and charset problems in task.anomalies
        text_parts = task.text_parts
        anomalies = task.anomalies
        for anomaly, details in anomalies.items():
            symbol = _ANOMALY_SYMBOLS.get(anomaly)
            if symbol:
                hits.add(symbol, *details)
        if task.attachments:
            hits.add("HAS_ATTACHMENT", *(p.filename or p.content_type for p in task.attachments))
        if not any(p.text.strip() for p in text_parts):
            return
        if all(p.is_html for p in text_parts):
            hits.add("MIME_HTML_ONLY")
        elif not _BROKEN.intersection(anomalies):
            hits.add("MIME_GOOD", _structure(task))


def _structure(task: Task) -> str:
    top = task.parts[0].content_type
    return top if top.startswith("multipart/") else "text/plain"
