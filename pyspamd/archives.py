"""What an archive attachment holds: the names (and declared sizes) of its members, down
through nested archives, within fixed bounds, without writing anything to disk.

ZIP, tar, gzip, bzip2 and xz are read with the standard library: a ZIP's member list comes
from its central directory (nothing decompressed), and a compressed stream is decompressed
only up to `max_unpacked` bytes. RAR (4 and 5) and 7z are read with libarchive (Debian's
libarchive13, through libarchive-c), which lists their headers in C without an external
unrar or 7z program.

Nothing here raises on bad input: what could not be read is a problem in the listing.
"""

from __future__ import annotations

import bz2
import ctypes
import io
import lzma
import tarfile
import time
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

# Problems a listing reports, each a symbol option.
ENCRYPTED = "encrypted"
BOMB = "bomb"  # a member declares far more bytes than it is packed in
TOO_MANY = "too many members"
TOO_DEEP = "too deep"
TOO_BIG = "too big"  # over max_bytes packed or max_unpacked decompressed: not read whole
BROKEN = "broken"  # truncated or unreadable
TIMEOUT = "timeout"

ZIP_MAGIC = b"PK\x03\x04"
_ZIP_EMPTY = b"PK\x05\x06"
_RAR_MAGIC = b"Rar!\x1a\x07"
_7Z_MAGIC = b"7z\xbc\xaf\x27\x1c"
_GZIP_MAGIC = b"\x1f\x8b"
_BZ2_MAGIC = b"BZh"
_XZ_MAGIC = b"\xfd7zXZ\x00"


def archive_format(head: bytes) -> str:
    """"zip", "rar", "7z", "gzip", "bzip2", "xz", "tar" or "" from the first bytes."""
    if head[:4] in (ZIP_MAGIC, _ZIP_EMPTY):
        return "zip"
    if head.startswith(_RAR_MAGIC):
        return "rar"
    if head.startswith(_7Z_MAGIC):
        return "7z"
    if head.startswith(_GZIP_MAGIC):
        return "gzip"
    if head.startswith(_BZ2_MAGIC) and head[3:4].isdigit():
        return "bzip2"
    if head.startswith(_XZ_MAGIC):
        return "xz"
    if head[257:262] == b"ustar":
        return "tar"
    return ""


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    max_depth: int = 3  # archives inside archives looked into
    max_members: int = 1000  # members listed over all levels
    max_bytes: int = 10 << 20  # a (nested) archive larger than this is not opened
    max_unpacked: int = 32 << 20  # what a compressed stream is decompressed to, at most
    max_ratio: int = 200  # declared size / packed size above this is a bomb
    # A member is looked into (decompressed) when it is an archive; this bounds the time.
    time_budget: float = 0.5


@dataclass(slots=True)
class Member:
    path: str  # "outer.zip/inner.rar/evil.exe" for nested members
    name: str  # the last part of the path: what a user would see
    size: int  # declared unpacked size, -1 when unknown
    encrypted: bool = False
    inner: str = ""  # the name as its own archive records it ("docs/evil.exe")


@dataclass(slots=True)
class Listing:
    members: list[Member] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)  # problem -> where (first seen)

    def problem(self, kind: str, where: str) -> None:
        self.problems.setdefault(kind, where)


class _Walk:
    def __init__(self, limits: ArchiveLimits, deadline: float | None) -> None:
        self.limits = limits
        self.listing = Listing()
        own = time.monotonic() + limits.time_budget
        self.deadline = own if deadline is None else min(own, deadline)

    def full(self, where: str) -> bool:
        if len(self.listing.members) >= self.limits.max_members:
            self.listing.problem(TOO_MANY, where)
            return True
        if time.monotonic() > self.deadline:
            self.listing.problem(TIMEOUT, where)
            return True
        return False

    def add(self, prefix: str, name: str, size: int, encrypted: bool) -> Member:
        member = Member(f"{prefix}/{name}", name.rstrip("/").rsplit("/", 1)[-1], size,
                        encrypted, name)
        self.listing.members.append(member)
        if encrypted:
            self.listing.problem(ENCRYPTED, member.path)
        return member

    def nested(self, member: Member, read: Callable[[int], bytes | None], depth: int) -> None:
        """Looks into a member that is itself an archive, if depth and size allow."""
        if not _looks_archive(member.name):
            return
        if depth >= self.limits.max_depth:
            self.listing.problem(TOO_DEEP, member.path)
            return
        if member.size > self.limits.max_bytes or member.encrypted:
            return
        data = read(self.limits.max_bytes)
        if data:
            self.walk(data, member.path, depth + 1)

    def walk(self, data: bytes, where: str, depth: int) -> None:
        kind = archive_format(data[:512])
        if not kind:
            return
        if len(data) > self.limits.max_bytes:
            self.listing.problem(TOO_BIG, where)
            return
        if kind == "zip":
            self._zip(data, where, depth)
        elif kind in ("gzip", "bzip2", "xz"):
            self._stream(kind, data, where, depth)
        elif kind == "tar":
            self._tar(data, where, depth)
        else:
            self._libarchive(data, where, depth)

    def _zip(self, data: bytes, where: str, depth: int) -> None:
        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
            infos = archive.infolist()
        except (zipfile.BadZipFile, ValueError, EOFError, OSError, NotImplementedError):
            self.listing.problem(BROKEN, where)
            return
        for info in infos:
            if self.full(where):
                return
            if info.is_dir():
                continue
            member = self.add(where, info.filename, info.file_size, bool(info.flag_bits & 1))
            if info.file_size > max(info.compress_size, 1) * self.limits.max_ratio:
                self.listing.problem(BOMB, member.path)
                continue

            def read(limit: int, info: zipfile.ZipInfo = info) -> bytes | None:
                try:
                    with archive.open(info) as stream:
                        return stream.read(limit)
                except (zipfile.BadZipFile, ValueError, EOFError, OSError, RuntimeError,
                        NotImplementedError, zlib.error):
                    self.listing.problem(BROKEN, f"{where}/{info.filename}")
                    return None

            self.nested(member, read, depth)

    def _stream(self, kind: str, data: bytes, where: str, depth: int) -> None:
        """A single compressed file: its one member is the archive's name without .gz
        (or the name gzip recorded), and a tar inside is listed."""
        maker: Callable[[], object] = {
            "gzip": lambda: zlib.decompressobj(wbits=47), "bzip2": bz2.BZ2Decompressor,
            "xz": lzma.LZMADecompressor}[kind]
        decompressor = maker()
        limit = self.limits.max_unpacked
        try:
            out = decompressor.decompress(data, limit + 1)  # type: ignore[attr-defined]
        except (zlib.error, OSError, EOFError, ValueError, lzma.LZMAError):
            self.listing.problem(BROKEN, where)
            return
        if len(out) > limit:
            self.listing.problem(BOMB if len(out) > len(data) * self.limits.max_ratio
                                 else TOO_BIG, where)
            out = out[:limit]
        elif not getattr(decompressor, "eof", True):
            self.listing.problem(BROKEN, where)
        if archive_format(out[:512]) == "tar":
            self._tar(out, where, depth)
            return
        inner = _gzip_name(data) if kind == "gzip" else ""
        name = inner or where.rsplit("/", 1)[-1].rsplit(".", 1)[0] or "data"
        member = self.add(where, name, len(out), False)
        self.nested(member, lambda limit: out[:limit], depth)

    def _tar(self, data: bytes, where: str, depth: int) -> None:
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
                while not self.full(where):
                    try:
                        info = archive.next()
                    except (tarfile.TarError, EOFError, OSError, ValueError):
                        self.listing.problem(BROKEN, where)
                        return
                    if info is None:
                        return
                    if not info.isfile():
                        continue
                    member = self.add(where, info.name, info.size, False)

                    def read(limit: int, info: tarfile.TarInfo = info) -> bytes | None:
                        stream = archive.extractfile(info)
                        return stream.read(limit) if stream else None

                    self.nested(member, read, depth)
        except (tarfile.TarError, EOFError, OSError, ValueError):
            self.listing.problem(BROKEN, where)

    def _libarchive(self, data: bytes, where: str, depth: int) -> None:
        import libarchive  # imported on the first RAR or 7z: most messages never need it

        try:
            with libarchive.memory_reader(data) as archive:
                for entry in archive:
                    if self.full(where):
                        return
                    if entry.isdir:
                        continue
                    encrypted = bool(_entry_is_encrypted(entry._entry_p) > 0)
                    size = entry.size if entry.size is not None else -1
                    member = self.add(where, entry.pathname or "", size, encrypted)

                    def read(limit: int, entry: libarchive.ArchiveEntry = entry) -> bytes:
                        out = bytearray()
                        for block in entry.get_blocks():
                            out += block
                            if len(out) >= limit:
                                break
                        return bytes(out[:limit])

                    self.nested(member, read, depth)
        except libarchive.ArchiveError as exc:
            text = str(exc).lower()
            self.listing.problem(ENCRYPTED if "encrypt" in text or "passphrase" in text
                                 else BROKEN, where)


@cache
def _is_encrypted_function() -> Callable[[object], int]:
    """libarchive's archive_entry_is_encrypted, which libarchive-c does not wrap."""
    from libarchive import ffi

    function = ffi.libarchive.archive_entry_is_encrypted
    function.argtypes = [ctypes.c_void_p]
    function.restype = ctypes.c_int
    return function


def _entry_is_encrypted(entry_p: object) -> int:
    return int(_is_encrypted_function()(entry_p))


_ARCHIVE_NAME = (".zip", ".rar", ".7z", ".gz", ".tgz", ".tar", ".bz2", ".tbz", ".xz",
                 ".txz", ".jar")


def _looks_archive(name: str) -> bool:
    return name.lower().endswith(_ARCHIVE_NAME)


def _gzip_name(data: bytes) -> str:
    """The original file name a gzip header may carry (FNAME, RFC 1952 2.3.1)."""
    if len(data) < 10 or not data[3] & 0x08:
        return ""
    start = 10
    if data[3] & 0x04:  # FEXTRA comes first
        if len(data) < 12:
            return ""
        start += 2 + int.from_bytes(data[10:12], "little")
    end = data.find(b"\x00", start, start + 1024)
    return data[start:end].decode("latin-1") if end > start else ""


def list_archive(data: bytes, label: str, limits: ArchiveLimits,
                 deadline: float | None = None) -> Listing:
    """Every member of the archive in `data` (any format archive_format knows), nested ones
    with their path, within `limits` and the monotonic `deadline`."""
    walk = _Walk(limits, deadline)
    walk.walk(data, label, 0)
    return walk.listing
