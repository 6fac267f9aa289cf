"""`[antivirus]`: messages sent to clamd during the scan, and the checks of its options."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pyspamd.actions import FORCEABLE
from pyspamd.checks.clamav_families import FamilyTableError, load_families
from pyspamd.config_schema import SYMBOL, Locator, beside_config, split_host_port


@dataclass
class AntivirusConfig:
    """`[antivirus]`: messages sent to clamd (zINSTREAM) during the scan."""

    enabled: bool = False
    address: str = "/var/run/clamav/clamd.ctl"  # a unix socket path, or HOST:PORT
    scan: str = "message"  # "message": all of it; "attachments": each non-text part
    max_size: int = 25 << 20  # bytes; keep at or below clamd's StreamMaxLength (25M)
    timeout: float = 10.0  # seconds for clamd's answer; below milter.scan_timeout
    # The table of third-party signature families (rules/clamav-families.toml; "": that
    # shipped one), the admin's prefixes over it (symbol -> name prefixes), and the classes
    # whose findings get virus_action; the other classes are scored only.
    families_file: str = ""
    families: dict[str, list[str]] = field(default_factory=dict)
    reject_classes: list[str] = field(default_factory=lambda: ["malware"])
    virus_action: str = "reject"  # forced for CLAM_VIRUS; "" scores it only
    virus_message: str = "Message refused: it contains a virus ({virus})"
    fail_action: str = "accept"  # "accept" (with a header) or "tempfail"


def check_antivirus(a: AntivirusConfig, scan_timeout: float, config_path: Path | None,
                    loc: Locator) -> list[str]:
    """`scan_timeout`: milter.scan_timeout, which clamd's timeout must stay under. Also
    resolves families_file beside the config and reads the family table."""
    errors: list[str] = []

    def bad(key: str, what: str) -> None:
        errors.append(f"{loc.where(('antivirus', key))}: antivirus.{key} {what}")

    if not a.address.startswith("/"):
        try:
            split_host_port(a.address)
        except ValueError:
            bad("address", f"is {a.address!r}; write a unix socket path "
                "(/var/run/clamav/clamd.ctl) or HOST:PORT (127.0.0.1:3310)")
    if a.scan not in ("message", "attachments"):
        bad("scan", f"must be \"message\" or \"attachments\", got {a.scan!r}")
    if a.max_size <= 0 or a.timeout <= 0:
        bad("max_size", "and antivirus.timeout must be positive")
    if a.enabled and a.timeout >= scan_timeout:
        bad("timeout", f"({a.timeout:g}s) must be below milter.scan_timeout "
            f"({scan_timeout:g}s), or the scan gives up before clamd answers "
            "and the message gets no CLAM_FAIL and no header")
    for symbol in a.families:
        if not SYMBOL.match(symbol):
            bad("families", f"has {symbol!r}, which is not a symbol name")
    if a.families_file:
        a.families_file = beside_config(a.families_file, config_path)
    try:
        table = load_families(a.families_file, a.families)
    except FamilyTableError as exc:
        bad("families_file", f"cannot be used: {exc}")
    else:
        for klass in a.reject_classes:
            if klass not in table.classes:
                bad("reject_classes", f"has {klass!r}; the family table's classes are "
                    f"{', '.join(table.classes)}")
    if a.virus_action and a.virus_action not in FORCEABLE:
        bad("virus_action", f"must be one of {', '.join(FORCEABLE)} or \"\", "
            f"got {a.virus_action!r}")
    try:
        a.virus_message.format(virus="X")
    except (KeyError, ValueError, IndexError) as exc:
        bad("virus_message", f"is not a valid template ({exc}); its field is {{virus}}")
    if a.fail_action not in ("accept", "tempfail"):
        bad("fail_action", f"must be \"accept\" or \"tempfail\", got {a.fail_action!r}")
    return errors
