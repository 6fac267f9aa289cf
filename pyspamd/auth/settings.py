"""`[auth]` (verifying SPF, DKIM, DMARC and ARC of inbound mail) and `[dkim_signing]` (signing
outbound mail), and their checks."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pyspamd.config_schema import Locator, beside_config

# Headers whose change would change what the reader sees or replies to. From twice guards
# against a second From added after signing (oversigning).
DKIM_SIGNED_HEADERS: tuple[str, ...] = ("from", "from", "to", "cc", "subject", "date", "message-id",
                       "reply-to", "in-reply-to", "references", "mime-version",
                       "content-type", "content-transfer-encoding", "list-unsubscribe")


@dataclass
class AuthConfig:
    """`[auth]`: SPF, DKIM, DMARC and ARC verification of inbound mail."""

    spf: bool = True
    received_spf: bool = True  # add a Received-SPF header like policyd-spf
    dkim: bool = True
    dmarc: bool = True
    arc: bool = True
    dmarc_reject: bool = False  # p=reject failures get the reject action
    authentication_results: bool = True
    authserv_id: str = ""  # empty: the milter's server name
    min_key_bits: int = 1024  # shorter DKIM keys are a failure (RFC 8301)
    sender_domain: bool = True  # MAIL FROM domain without MX/A, or not existing at all


@dataclass
class DkimKeyConfig:
    selector: str = ""
    key: str = ""  # PEM private key file (pyspamc dkim-keygen writes one)


@dataclass
class DkimSigningConfig:
    """`[dkim_signing]`: sign outbound mail (authenticated senders, trusted networks)."""

    keys: dict[str, DkimKeyConfig] = field(default_factory=dict)  # domain -> selector, key
    authenticated: bool = True
    trusted_networks: bool = True
    headers: list[str] = field(default_factory=lambda: list(DKIM_SIGNED_HEADERS))


def check_auth(auth: AuthConfig, loc: Locator) -> list[str]:
    if auth.min_key_bits < 512:
        return [f"{loc.where(('auth', 'min_key_bits'))}: auth.min_key_bits must be at "
                "least 512"]
    return []


def check_dkim_signing(signing: DkimSigningConfig, config_path: Path | None,
                       loc: Locator) -> list[str]:
    """Each key's file must be there and hold a PEM private key (resolved beside the config)."""
    errors: list[str] = []
    for domain, key in signing.keys.items():
        where = _key_table_line(loc, domain)
        if not key.selector or not key.key:
            errors.append(f"{where}: dkim_signing.keys.{domain} needs selector and key")
            continue
        key.key = beside_config(key.key, config_path)
        try:
            text = Path(key.key).read_bytes()
        except OSError as exc:
            errors.append(f"{where}: dkim_signing.keys.{domain}: cannot read key {key.key}: "
                          f"{exc.strerror or exc}")
            continue
        if b"PRIVATE KEY" not in text:
            errors.append(f"{where}: dkim_signing.keys.{domain}: {key.key} is not a PEM private "
                          "key (pyspamc dkim-keygen DOMAIN SELECTOR writes one)")
    return errors


def _key_table_line(loc: Locator, domain: str) -> str:
    """FILE:LINE of [dkim_signing.keys."DOMAIN"] (the locator splits names at their dots)."""
    for path, lines in [*reversed(loc.overlays), (loc.path, loc.lines)]:
        for number, line in enumerate(lines, 1):
            text = line.strip().replace(" ", "")
            if text.startswith("[dkim_signing.keys.") and domain in text:
                return f"{path}:{number}"
    return str(loc.path)
