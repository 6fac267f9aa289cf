"""DKIM signing of outbound mail (RFC 6376, RFC 8301: RSA of at least 1024 bits, SHA-256),
and key generation for `pyspamc dkim-keygen`."""

from __future__ import annotations

import base64
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from pyspamd.auth.settings import DkimSigningConfig
from pyspamd.dns.domains import normalize_domain

log = logging.getLogger("pyspamd.dkim")


@dataclass(frozen=True, slots=True)
class SigningKey:
    domain: str
    selector: str
    private_key: bytes  # PEM


class Signer:
    """The configured keys by domain; a subdomain uses its parent's key when it has none."""

    def __init__(self, config: DkimSigningConfig) -> None:
        self.headers = [h.lower().encode("ascii") for h in config.headers]
        self.keys: dict[str, SigningKey] = {}
        for domain, key in config.keys.items():
            name = normalize_domain(domain)
            self.keys[name] = SigningKey(name, key.selector, Path(key.key).read_bytes())

    def key_for(self, domain: str) -> SigningKey | None:
        name = normalize_domain(domain)
        while name:
            if name in self.keys:
                return self.keys[name]
            name = name.partition(".")[2]
        return None

    def sign(self, raw: bytes, from_domain: str) -> tuple[str, str] | None:
        """("DKIM-Signature", value) for the message, or None without a key for the domain.

        The signing domain is the key's domain, so the signature aligns with From for
        DMARC (relaxed alignment for a subdomain's mail).
        """
        key = self.key_for(from_domain)
        if key is None:
            return None
        present = {line.split(b":", 1)[0].strip().lower()
                   for line in _header_block(raw).splitlines() if line[:1] not in b" \t"}
        # Sign only headers present, plus From twice (a second From added later breaks it).
        include = [h for h in self.headers if h in present or h == b"from"]
        signature = dkim.sign(raw, key.selector.encode(), key.domain.encode(), key.private_key,
                              canonicalize=(b"relaxed", b"relaxed"), include_headers=include,
                              linesep=b"\r\n")
        name, _, value = signature.decode("ascii").partition(":")
        # dkimpy folds with CRLF; the milter protocol wants LF between header lines.
        return name, value.strip().replace("\r\n", "\n")


def _header_block(raw: bytes) -> bytes:
    for sep in (b"\r\n\r\n", b"\n\n"):
        at = raw.find(sep)
        if at >= 0:
            return raw[:at]
    return raw


def generate_key(domain: str, selector: str, directory: Path, bits: int = 2048) -> tuple[Path,
                                                                                          str]:
    """Write DIRECTORY/DOMAIN.SELECTOR.key (mode 0600) and return it with the DNS record."""
    name = normalize_domain(domain)
    if not name or "." not in name:
        raise ValueError(f"{domain!r} is not a domain name")
    if not selector or not all(c.isalnum() or c in "-_." for c in selector):
        raise ValueError(f"{selector!r} is not a selector (letters, digits, -, _ and .)")
    if bits < 1024:
        raise ValueError("DKIM keys must have at least 1024 bits (RFC 8301)")
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.{selector}.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    record = f"v=DKIM1; k=rsa; p={base64.b64encode(public).decode('ascii')}"
    return path, record


def zone_line(domain: str, selector: str, record: str) -> str:
    """The record as a zone-file line, split into strings of at most 255 octets."""
    chunks = [record[i:i + 250] for i in range(0, len(record), 250)]
    quoted = " ".join(f'"{c}"' for c in chunks)
    return f"{selector}._domainkey.{normalize_domain(domain)}. IN TXT ( {quoted} )"
