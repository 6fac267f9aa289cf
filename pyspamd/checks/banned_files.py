"""Banned files: attachments (and members of archive attachments) refused or quarantined
for their name, a double extension or what their bytes say they are ([banned_files]).

The content type is detected from the first bytes (the `filetype` library's magic numbers)
and compared with the declared one; archives are listed by pyspamd.archives within its
bounds, so a bomb, a huge member list or a broken archive costs a symbol, not the scan.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import filetype

from pyspamd import archives
from pyspamd.checks.attachment_content import scanned_attachments
from pyspamd.checks.banned_settings import BannedFilesConfig, BannedRule, all_rules
from pyspamd.checks.base import Check
from pyspamd.config import Config
from pyspamd.mime import MimePart, payload_bytes
from pyspamd.services import Services
from pyspamd.symbols import Hits, SymbolDef
from pyspamd.task import Task

_G = "banned"
_HEAD_BYTES = 512  # enough for every magic number filetype knows, and tar's at 257
# Declared types that say nothing of the content.
_GENERIC = frozenset(("application/octet-stream", "application/unknown", "binary/octet-stream",
                      "application/x-download", "application/force-download", ""))
_ARCHIVE_PROBLEM_SYMBOLS = {
    archives.ENCRYPTED: "ARCHIVE_ENCRYPTED", archives.BOMB: "ARCHIVE_BOMB",
    archives.TOO_MANY: "ARCHIVE_LIMITS", archives.TOO_DEEP: "ARCHIVE_LIMITS",
    archives.TOO_BIG: "ARCHIVE_LIMITS", archives.TIMEOUT: "ARCHIVE_LIMITS",
    archives.BROKEN: "ARCHIVE_BROKEN",
}


def _kind(mime: str) -> str:
    """A coarse class of a MIME type, for declared-vs-detected: types of one class (zip and
    x-zip-compressed, jpeg and pjpeg) never count as a mismatch."""
    if mime in ("application/x-msdownload", "application/vnd.microsoft.portable-executable",
                "application/x-executable", "application/x-mach-binary",
                "application/x-msdos-program", "application/x-dosexec"):
        return "program"
    if mime.startswith(("image/", "audio/", "video/", "font/")):
        return mime.split("/", 1)[0]
    if mime == "application/pdf":
        return "pdf"
    if re.search(r"zip|rar|7z|compress|gzip|tar|bzip|xz|archive", mime):
        return "archive"
    if re.search(r"msword|ms-excel|ms-powerpoint|officedocument|opendocument|rtf", mime):
        return "document"
    return ""


@dataclass(frozen=True, slots=True)
class _CompiledRule:
    rule: BannedRule
    names: re.Pattern[str] | None
    types: frozenset[str]


class BannedFiles(Check):
    name = "banned_files"

    @classmethod
    def build(cls, config: Config, services: Services) -> BannedFiles | None:
        return cls(config.banned_files) if config.banned_files.enabled else None

    def __init__(self, settings: BannedFilesConfig) -> None:
        self.settings = settings
        self.rules = [_CompiledRule(rule, re.compile("|".join(f"(?:{p})" for p in rule.names),
                                                     re.I) if rule.names else None,
                                    frozenset(t.lower() for t in rule.types))
                      for rule in all_rules(settings)]
        self.exempt = frozenset(settings.exempt)
        self.limits = archives.ArchiveLimits(
            settings.max_depth, settings.max_members, settings.max_archive_size,
            settings.max_unpacked, settings.max_ratio, settings.time_budget)
        self.symbols: Mapping[str, SymbolDef] = {  # type: ignore[misc]  # rules: per config
            **{r.rule.name: SymbolDef(r.rule.score, r.rule.description
                                      or f"Banned attachment ({r.rule.name})", _G)
               for r in self.rules},
            "ATTACHMENT_TYPE_MISMATCH": SymbolDef(
                2.0, "An attachment's bytes are another kind of file than its declared type",
                _G),
            "ARCHIVE_ENCRYPTED": SymbolDef(1.0, "A password-protected archive (not looked "
                                                "into)", _G),
            "ARCHIVE_BOMB": SymbolDef(4.0, "An archive that unpacks to far more than its size "
                                           "(a decompression bomb)", _G),
            "ARCHIVE_LIMITS": SymbolDef(0.5, "An archive over [banned_files] limits (too "
                                             "many members, too deep, too big): not read "
                                             "whole", _G),
            "ARCHIVE_BROKEN": SymbolDef(1.0, "A truncated or unreadable archive", _G),
        }

    def exempt_for(self, task: Task) -> frozenset[str]:
        """The rules not applied to this message: [banned_files] exempt, and the
        `banned_exempt` of the [[settings]] entry its recipients get."""
        if task.settings is None or not task.settings.banned_exempt:
            return self.exempt
        return self.exempt | task.settings.banned_exempt

    def run(self, task: Task, hits: Hits) -> None:
        parts = scanned_attachments(task)
        if not parts:
            return
        exempt = self.exempt_for(task)
        for part in parts:
            self._part(part, task, hits, exempt)

    def matches(self, name: str, detected: str, exempt: frozenset[str],
                in_archive: bool = False) -> BannedRule | None:
        """The first rule (not exempt) that bans a file of this name and detected type."""
        for compiled in self.rules:
            rule = compiled.rule
            if rule.name in exempt or (in_archive and not rule.archives):
                continue
            if compiled.names is not None and name and compiled.names.search(name):
                return rule
            if detected and detected in compiled.types:
                return rule
        return None

    def _part(self, part: MimePart, task: Task, hits: Hits, exempt: frozenset[str]) -> None:
        name = part.filename or ""
        head, _ = payload_bytes(part, _HEAD_BYTES)
        detected = (filetype.guess_mime(head) or "") if head else ""
        label = name or part.content_type
        rule = self.matches(name, detected, exempt)
        if rule is not None:
            self._ban(rule, label, hits)
        declared = part.content_type
        if detected and declared not in _GENERIC:
            seen, said = _kind(detected), _kind(declared)
            if seen and said and seen != said:
                hits.add("ATTACHMENT_TYPE_MISMATCH", f"{label}: {declared} is {detected}")
        if not self.settings.archives or not archives.archive_format(head):
            return
        data, _ = payload_bytes(part, self.limits.max_bytes + 1)
        listing = archives.list_archive(data, name or "archive", self.limits, task.deadline)
        for member in listing.members:
            rule = self.matches(member.name, "", exempt, in_archive=True)
            if rule is not None:
                self._ban(rule, member.path, hits)
        for problem, where in listing.problems.items():
            hits.add(_ARCHIVE_PROBLEM_SYMBOLS[problem], where)
        if archives.ENCRYPTED in listing.problems and self.settings.encrypted_action:
            hits.force_action(self.settings.encrypted_action,
                              self.settings.reply.format(file=label, rule="ARCHIVE_ENCRYPTED"),
                              "ARCHIVE_ENCRYPTED")

    def _ban(self, rule: BannedRule, file: str, hits: Hits) -> None:
        hits.add(rule.name, file)
        if rule.action:
            hits.force_action(rule.action, self.settings.reply.format(file=file,
                                                                      rule=rule.name),
                              rule.name)
