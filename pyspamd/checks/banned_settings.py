"""`[banned_files]`: attachments refused or quarantined for what they are (amavisd's
banned_filename_re, rspamd's mime_types), the shipped rules, and the checks of its options.

A rule's name is its symbol. `exempt` lists rules not applied; a caller with its own policy
(per-recipient settings) passes its own set to BannedFiles.matches instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pyspamd.actions import QUARANTINE, REJECT
from pyspamd.config_schema import SYMBOL, Locator

RULE_ACTIONS = (REJECT, QUARANTINE, "")  # "": scored only
_PROGRAM_EXT = ("exe|com|scr|pif|bat|cmd|vbs|vbe|js|jse|wsf|wsh|hta|lnk|cpl|msi|msp|mst|reg"
                "|ps1|psm1|scf|sct|shs|shb|inf|ins|isp|chm|hlp|application|gadget|msc|jar"
                "|appx|msix|appxbundle|msixbundle|dll|sys|ocx|vb|ade|adp|mda|mdb|mde|url")


@dataclass
class BannedRule:
    name: str = ""  # its symbol
    names: list[str] = field(default_factory=list)  # regexes searched in file names
    types: list[str] = field(default_factory=list)  # detected MIME types (exact)
    action: str = REJECT  # reject, quarantine, or "" to score only
    score: float = 10.0
    description: str = ""
    archives: bool = True  # also applies to members of archives


# amavisd's default banned_filename_re, written again: programs and scripts Windows runs
# on a double click, names that hide one behind a document's extension, and what is a
# Windows program by its bytes whatever it is called.
SHIPPED_RULES: tuple[BannedRule, ...] = (
    BannedRule("BANNED_DOUBLE_EXTENSION",
               [r"\.[a-z0-9]{1,5}[\s._-]*\.(?:" + _PROGRAM_EXT + r")[\s.]*$"],
               description="A program behind a document's extension (invoice.pdf.exe)"),
    BannedRule("BANNED_EXECUTABLE_NAME", [r"\.(?:" + _PROGRAM_EXT + r")[\s.]*$"],
               description="A program or script by its name (.exe, .scr, .js, .lnk ...)"),
    BannedRule("BANNED_EXECUTABLE_TYPE", [],
               ["application/x-msdownload", "application/vnd.microsoft.portable-executable",
                "application/x-executable", "application/x-mach-binary"],
               description="A program by its bytes (Windows PE, ELF, Mach-O)"),
)


@dataclass
class BannedFilesConfig:
    enabled: bool = True
    shipped_rules: bool = True  # the rules above, before `rules`
    rules: list[BannedRule] = field(default_factory=list)
    exempt: list[str] = field(default_factory=list)  # rule names not applied
    reply: str = "banned attachment: {file}"  # the reject reply / quarantine reason
    archives: bool = True  # look into zip/rar/7z/tar/gzip/bzip2/xz attachments
    encrypted_action: str = ""  # forced for an encrypted archive: "" scores only
    max_depth: int = 3
    max_members: int = 1000
    max_archive_size: int = 10 << 20
    max_unpacked: int = 32 << 20
    max_ratio: int = 200
    time_budget: float = 0.5


def all_rules(config: BannedFilesConfig) -> list[BannedRule]:
    return [*(SHIPPED_RULES if config.shipped_rules else ()), *config.rules]


def check_banned_files(b: BannedFilesConfig, loc: Locator) -> list[str]:
    errors: list[str] = []

    def bad(keys: tuple[str, ...], what: str) -> None:
        errors.append(f"{loc.where(('banned_files', *keys))}: banned_files.{keys[0]} {what}")

    seen = set()
    for index, rule in enumerate(b.rules):
        here = ("rules", str(index))
        if not SYMBOL.match(rule.name):
            bad(here, f"has name {rule.name!r}, which is not a symbol name")
        if rule.name in seen:
            bad(here, f"has {rule.name!r} twice")
        seen.add(rule.name)
        if not rule.names and not rule.types:
            bad(here, f"({rule.name}) needs `names` (regexes) or `types` (MIME types)")
        for pattern in rule.names:
            try:
                re.compile(pattern)
            except re.error as exc:
                bad(here, f"({rule.name}) has the regex {pattern!r}, which is wrong: {exc}")
        if rule.action not in RULE_ACTIONS:
            bad(here, f"({rule.name}) action must be \"reject\", \"quarantine\" or \"\", "
                f"got {rule.action!r}")
    if b.encrypted_action not in RULE_ACTIONS:
        bad(("encrypted_action",), f"must be \"reject\", \"quarantine\" or \"\", got "
            f"{b.encrypted_action!r}")
    names = {r.name for r in all_rules(b)}
    for name in b.exempt:
        if name not in names:
            bad(("exempt",), f"names {name!r}, which is no rule; rules: {', '.join(sorted(names))}")
    try:
        b.reply.format(file="x", rule="R")
    except (KeyError, ValueError, IndexError) as exc:
        bad(("reply",), f"is not a valid template ({exc}); its fields are {{file}}, {{rule}}")
    for key in ("max_depth", "max_members", "max_archive_size", "max_unpacked", "max_ratio",
                "time_budget"):
        if not getattr(b, key) > 0:
            bad((key,), "must be positive")
    return errors
