"""What attachments hold, not just what they are called: programs inside ZIP archives,
password-protected archives, Office documents with macros, HTML and SVG files that
run scripts or ask for passwords, and programs or disk images under harmless names.

Only the first bytes of a part are decoded for the magic numbers, and a ZIP's member
list is read from its central directory by pyspamd.archives (no member is decompressed),
so a large attachment costs little more than its base64 decoding.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import ClassVar

from pyspamd import archives
from pyspamd.checks.base import Check
from pyspamd.mime import MimePart, payload_bytes
from pyspamd.symbols import Hits, SymbolDef
from pyspamd.task import Task

_G = "attachment"
_MAX_ARCHIVE_BYTES = 8 << 20  # ZIPs larger than this are not opened
# The member list of the ZIP itself: nested archives are banned_files' to open.
_ZIP_LIMITS = archives.ArchiveLimits(max_depth=0, max_members=500,
                                     max_bytes=_MAX_ARCHIVE_BYTES)
_HEAD_BYTES = 64 << 10  # what is decoded of other attachments to look at
_EXEC_EXT = re.compile(
    r"\.(?:exe|scr|pif|com|bat|cmd|cpl|msi|msp|dll|js|jse|vbs|vbe|wsf|wsh|hta|ps1|lnk|jar"
    r"|reg|sct|appx|msix|gadget|scf|inf)\s*$", re.I)
_IMAGE_EXT = re.compile(r"\.(?:iso|img|vhdx?)\s*$", re.I)
_WEB_EXT = re.compile(r"\.(?:html?|shtml|xhtml|svg|mht|mhtml)\s*$", re.I)
_ARCHIVE_EXT = re.compile(r"\.(?:zip|rar|7z|gz|tgz|tar|cab|ace|arj|lzh|xz|bz2|zst)\s*$", re.I)
_DOC_EXT = re.compile(
    r"\.(?:pdf|docx?|xlsx?|pptx?|rtf|txt|jpe?g|png|gif)[\s._-]*\.[a-z0-9]{2,4}\s*$", re.I)
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_VBA_OLE = "_VBA_PROJECT".encode("utf-16-le")
_PE_NAME_OK = re.compile(r"\.(?:exe|dll|scr|sys|com|cpl|ocx|msi|efi|drv)\s*$", re.I)
# Script in a web-page attachment that sends the reader on or builds the page at run time.
_WEB_ACTIVE = re.compile(
    rb"window\.location|location\.(?:href|replace|assign)|document\.write|\batob\s*\("
    rb"|\bunescape\s*\(|\beval\s*\(|fromCharCode|http-equiv\s*=\s*[\"']?refresh"
    rb"|\bfetch\s*\(|XMLHttpRequest|\$\.(?:ajax|post)\b", re.I)
_WEB_PASSWORD = re.compile(
    rb"type\s*=\s*[\"']?password|name\s*=\s*[\"']?(?:pass(?:word|wd)?|pwd)\b", re.I)
_SVG_SCRIPT = re.compile(rb"<script\b|<foreignObject\b|\bon(?:load|click|mouseover)\s*=", re.I)
_PDF_ACTIVE = re.compile(rb"/(?:JavaScript|JS|Launch|EmbeddedFile|OpenAction|AA)\b")
# A PDF name may write any byte as #xx (PDF 1.2+, 7.3.5): `/J#61vaScript` is /JavaScript to
# every reader, and malicious files write their actions so to pass keyword scanners.
_PDF_ESCAPED_NAME = re.compile(rb"/[^\s/<>\[\]()%{}]*#[0-9A-Fa-f]{2}[^\s/<>\[\]()%{}]*")
_PDF_HEX = re.compile(rb"#([0-9A-Fa-f]{2})")


def pdf_names_decoded(data: bytes) -> bytes:
    """The PDF bytes with every #xx escape in a name written as the byte it stands for."""
    if b"#" not in data:
        return data
    return _PDF_ESCAPED_NAME.sub(
        lambda m: _PDF_HEX.sub(lambda h: bytes((int(h.group(1), 16),)), m.group(0)), data)


def _name(part: MimePart) -> str:
    return part.filename or ""


def scanned_attachments(task: Task) -> list[MimePart]:
    """The parts that are files someone sent: attachments, and application/* parts however
    they are marked; not containers (multipart, message/rfc822)."""
    return [part for part in task.parts
            if not (part.content_type.startswith("multipart/")
                    or part.content_type == "message/rfc822")
            and (part.is_attachment or part.content_type.startswith("application/"))]


class AttachmentContent(Check):
    name = "attachment_content"
    symbols: ClassVar[Mapping[str, SymbolDef]] = {
        "ATT_ZIP_EXECUTABLE": SymbolDef(0.0, "ZIP attachment holds a program or script", _G),
        "ATT_ZIP_DISK_IMAGE": SymbolDef(0.0, "ZIP attachment holds a disk image", _G),
        "ATT_ZIP_WEB_PAGE": SymbolDef(0.0, "ZIP attachment holds an HTML or SVG file", _G),
        "ATT_ZIP_DOUBLE_EXT": SymbolDef(
            0.0, "ZIP attachment holds a file with a double extension", _G),
        "ATT_ZIP_NESTED": SymbolDef(0.0, "ZIP attachment holds another archive", _G),
        "ATT_ZIP_ENCRYPTED": SymbolDef(0.0, "ZIP attachment is password-protected", _G),
        "ATT_ZIP_SINGLE_FILE": SymbolDef(0.0, "ZIP attachment holds exactly one file", _G),
        "ATT_OFFICE_MACRO": SymbolDef(0.0, "Office document with VBA macros", _G),
        "ATT_PE_DISGUISED": SymbolDef(
            0.0, "Windows program under a name that does not say so", _G),
        "ATT_DISK_IMAGE_CONTENT": SymbolDef(0.0, "Attachment is an ISO disk image", _G),
        "ATT_WEB_ACTIVE": SymbolDef(
            0.0, "HTML/SVG attachment with script that redirects or builds the page", _G),
        "ATT_WEB_PASSWORD": SymbolDef(0.0, "HTML/SVG attachment asks for a password", _G),
        "ATT_SVG_SCRIPT": SymbolDef(0.0, "SVG image with script in it", _G),
        "ATT_PDF_ACTIVE": SymbolDef(
            0.0, "PDF with JavaScript, an embedded file or an automatic action", _G),
    }

    def run(self, task: Task, hits: Hits) -> None:
        for part in scanned_attachments(task):
            self._part(part, hits)

    def _part(self, part: MimePart, hits: Hits) -> None:
        name = _name(part)
        head, _ = payload_bytes(part, _HEAD_BYTES)
        if not head:
            return
        label = name or part.content_type
        if head[:4] == b"PK\x03\x04":
            data = head
            if len(head) >= _HEAD_BYTES:
                data, _ = payload_bytes(part, _MAX_ARCHIVE_BYTES)
            self._zip(data, label, hits)
        elif head.startswith(_OLE_MAGIC):
            if _VBA_OLE in head or (len(head) >= _HEAD_BYTES
                                    and _VBA_OLE in payload_bytes(part, _MAX_ARCHIVE_BYTES)[0]):
                hits.add("ATT_OFFICE_MACRO", label)
        elif head[:2] == b"MZ" and not _PE_NAME_OK.search(name):
            hits.add("ATT_PE_DISGUISED", label)
        elif head[:5] == b"%PDF-":
            if _PDF_ACTIVE.search(pdf_names_decoded(head)):
                hits.add("ATT_PDF_ACTIVE", label)
        elif len(head) > 0x8006 and head[0x8001:0x8006] == b"CD001":
            hits.add("ATT_DISK_IMAGE_CONTENT", label)
        if _WEB_EXT.search(name) or part.content_type in ("text/html", "image/svg+xml"):
            if not part.is_attachment:
                return
            if _WEB_ACTIVE.search(head):
                hits.add("ATT_WEB_ACTIVE", label)
            if _WEB_PASSWORD.search(head):
                hits.add("ATT_WEB_PASSWORD", label)
            if (name.lower().endswith(".svg") or part.content_type == "image/svg+xml") and (
                    _SVG_SCRIPT.search(head)):
                hits.add("ATT_SVG_SCRIPT", label)

    def _zip(self, data: bytes, label: str, hits: Hits) -> None:
        listing = archives.list_archive(data, label, _ZIP_LIMITS)
        if archives.BROKEN in listing.problems and not listing.members:
            return
        members = listing.members
        names = [m.inner for m in members]
        if any(m.encrypted for m in members):
            hits.add("ATT_ZIP_ENCRYPTED", label)
        if len(names) == 1:
            hits.add("ATT_ZIP_SINGLE_FILE", names[0])
        if any(n.lower().endswith("vbaproject.bin") for n in names):
            hits.add("ATT_OFFICE_MACRO", label)
            return
        if any(n.startswith(("word/", "xl/", "ppt/")) for n in names):
            return  # an Office document, not an archive someone packed
        for member in names:
            base = member.rsplit("/", 1)[-1]
            if _EXEC_EXT.search(base):
                hits.add("ATT_ZIP_EXECUTABLE", base)
            elif _IMAGE_EXT.search(base):
                hits.add("ATT_ZIP_DISK_IMAGE", base)
            elif _WEB_EXT.search(base):
                hits.add("ATT_ZIP_WEB_PAGE", base)
            elif _ARCHIVE_EXT.search(base):
                hits.add("ATT_ZIP_NESTED", base)
            if _DOC_EXT.search(base) and (_EXEC_EXT.search(base) or _IMAGE_EXT.search(base)):
                hits.add("ATT_ZIP_DOUBLE_EXT", base)
