"""An update bundle: a tar.gz of rules/, maps/ and model/, with manifest.json (the version
and each file's sha256) and manifest.sig (an Ed25519 signature of manifest.json's bytes).

Nothing in a bundle is trusted before the signature over the manifest checks out with the
configured key and every file's bytes hash to what the manifest says; members that are not
plain files with plain relative names, or that the manifest does not list, refuse the bundle.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import tarfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from pyspamd.update.settings import key_is_path

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
FORMAT = 1
TOP_DIRS = ("rules", "maps", "model")  # what a set may hold
MAX_MANIFEST = 16 << 20  # bytes of manifest.json, read before its signature is checked
MAX_UNPACKED = 2 << 30  # bytes of all files: a small download must not unpack to the disk


class BundleError(Exception):
    """Why a bundle (or a key) cannot be used: one line."""


@dataclass(frozen=True)
class Manifest:
    version: int
    created: str
    files: dict[str, str]  # relative path -> sha256 hex

    def to_bytes(self) -> bytes:
        return json.dumps({"format": FORMAT, "version": self.version, "created": self.created,
                           "files": self.files}, indent=1, sort_keys=True).encode() + b"\n"

    @classmethod
    def parse(cls, data: bytes) -> Manifest:
        try:
            raw = json.loads(data)
            version, files = raw["version"], raw["files"]
            if raw.get("format") != FORMAT or not isinstance(version, int) \
                    or not isinstance(files, dict):
                raise ValueError("unknown format")
            for name, digest in files.items():
                _check_member_name(name)
                if not (isinstance(digest, str) and len(digest) == 64):
                    raise ValueError(f"bad sha256 for {name}")
        except (ValueError, KeyError, TypeError) as exc:
            raise BundleError(f"manifest is not valid: {exc}") from exc
        return cls(version, str(raw.get("created", "")), dict(files))


def _check_member_name(name: str) -> None:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts \
            or path.parts[0] not in TOP_DIRS or len(path.parts) < 2 or str(path) != name:
        raise ValueError(f"file name {name!r} is not allowed (rules/, maps/ or model/ only)")


# --- keys ---
def public_key(key: str) -> Ed25519PublicKey:
    """A configured key: 32 bytes in base64, or a PEM file (public, or a private key)."""
    try:
        if key_is_path(key):
            data = Path(key).read_bytes()
            if b"PRIVATE KEY" in data:
                return _private_from_pem(data, key).public_key()
            loaded = serialization.load_pem_public_key(data)
            if not isinstance(loaded, Ed25519PublicKey):
                raise BundleError(f"{key}: not an Ed25519 public key")
            return loaded
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(key, validate=True))
    except OSError as exc:
        raise BundleError(f"cannot read key {key}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise BundleError(f"key {key[:60]} is not an Ed25519 key: {exc}") from exc


def private_key(path: str) -> Ed25519PrivateKey:
    try:
        return _private_from_pem(Path(path).read_bytes(), path)
    except OSError as exc:
        raise BundleError(f"cannot read key {path}: {exc.strerror or exc}") from exc


def _private_from_pem(data: bytes, label: str) -> Ed25519PrivateKey:
    try:
        loaded = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise BundleError(f"{label}: not a PEM private key without passphrase: {exc}") from exc
    if not isinstance(loaded, Ed25519PrivateKey):
        raise BundleError(f"{label}: not an Ed25519 private key")
    return loaded


def public_base64(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def generate_key(path: Path) -> str:
    """A new private key in PEM at `path` (mode 0600); returns its public key in base64."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    return public_base64(key.public_key())


def sign(key: Ed25519PrivateKey, data: bytes) -> bytes:
    return base64.b64encode(key.sign(data)) + b"\n"


def verify(key: Ed25519PublicKey, data: bytes, signature: bytes, what: str) -> None:
    try:
        key.verify(base64.b64decode(signature.strip(), validate=True), data)
    except (InvalidSignature, ValueError) as exc:
        raise BundleError(f"{what}: bad signature (not signed by the configured key, "
                          "or altered)") from exc


# --- making a bundle ---
def make_bundle(source: Path, key: Ed25519PrivateKey, out: Path, version: int | None) -> Manifest:
    """Bundle rules/, maps/ and model/ of `source` into `out` (written whole, then renamed)."""
    files: dict[str, bytes] = {}
    for top in TOP_DIRS:
        base = source / top
        if base.is_dir():
            for path in sorted(p for p in base.rglob("*") if p.is_file()):
                files[path.relative_to(source).as_posix()] = path.read_bytes()
    if not any(name.startswith("rules/") for name in files):
        raise BundleError(f"{source}: no rules/ directory with rule files to publish")
    manifest = Manifest(version or int(time.strftime("%Y%m%d%H%M%S", time.gmtime())),
                        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        {name: hashlib.sha256(data).hexdigest() for name, data in files.items()})
    body = manifest.to_bytes()
    tmp = out.with_name(out.name + ".tmp")
    with tarfile.open(tmp, "w:gz", compresslevel=6) as tar:
        for name, data in ((MANIFEST, body), (SIGNATURE, sign(key, body)), *files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
            tar.addfile(info, io.BytesIO(data))
    tmp.replace(out)
    return manifest


# --- reading one ---
def unpack_verified(bundle: Path, key: Ed25519PublicKey, staging: Path) -> Manifest:
    """Check the signature and every hash, then write the files under `staging`.
    Raises BundleError (or OSError from writing) and leaves the caller to remove staging."""
    try:
        with tarfile.open(bundle, "r:gz") as tar:
            members = {m.name: m for m in tar.getmembers()}
            for name in (MANIFEST, SIGNATURE):
                if name not in members:
                    raise BundleError(f"not a pyspamd update bundle: no {name}")
                if members[name].size > MAX_MANIFEST:
                    raise BundleError(f"{name} is {members[name].size} bytes; refused")
            if sum(m.size for m in members.values()) > MAX_UNPACKED:
                raise BundleError(f"bundle unpacks to more than {MAX_UNPACKED >> 20} MB; "
                                  "refused")
            body = _read(tar, members[MANIFEST])
            verify(key, body, _read(tar, members[SIGNATURE]), "bundle manifest")
            manifest = Manifest.parse(body)
            extra = set(members) - set(manifest.files) - {MANIFEST, SIGNATURE}
            if extra:
                raise BundleError(f"bundle holds files its manifest does not list: "
                                  f"{', '.join(sorted(extra)[:3])}")
            contents: dict[str, bytes] = {}
            for name, digest in manifest.files.items():
                member = members.get(name)
                if member is None:
                    raise BundleError(f"bundle lacks {name}, which its manifest lists")
                if not member.isfile():
                    raise BundleError(f"{name} is not a plain file (a link or device)")
                data = _read(tar, member)
                if hashlib.sha256(data).hexdigest() != digest:
                    raise BundleError(f"{name}: sha256 differs from the manifest (altered)")
                contents[name] = data
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise BundleError(f"bundle is damaged or truncated: {type(exc).__name__}: "
                          f"{exc}") from exc
    for name, data in contents.items():
        target = staging / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
    (staging / MANIFEST).write_bytes(body)
    return manifest


def _read(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = tar.extractfile(member)
    if handle is None:
        raise BundleError(f"{member.name} is not a plain file")
    return handle.read()


def installed_version(set_dir: Path | None) -> int | None:
    if set_dir is None:
        return None
    try:
        return Manifest.parse((set_dir / MANIFEST).read_bytes()).version
    except (OSError, BundleError):
        return None
