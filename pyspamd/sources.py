"""Where messages come from for the CLI: files, directories, Maildirs, mbox files, stdin.

Every unreadable input becomes one MessageSource with an error, so a run over a big tree
reports it and goes on.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

# "From sender date" with a time in it: the mbox separator. Requiring the time keeps a body
# line that happens to start with "From " from splitting a message.
_MBOX_FROM = re.compile(rb"^From \S+ .*\d\d?:\d\d", re.MULTILINE)
_MBOX_QUOTED = re.compile(rb"^>(>*From )", re.MULTILINE)
_HEADER_START = re.compile(rb"^(?:From |[!-9;-~]{1,100}:)")
# Every byte but the control characters that do not occur in text mail (all below 32 but
# tab, newline, vertical tab, form feed, carriage return): what deleting these leaves of a
# message's head is its control characters, counted in C rather than byte by byte (a learn
# run checks every message twice, and the Python loop cost 0.2 ms a message).
_NOT_CONTROL = bytes(b for b in range(256) if not (b < 9 or 13 < b < 32))


@dataclass(slots=True)
class MessageSource:
    label: str
    data: bytes | None = None
    error: str | None = None
    mtime: float | None = None
    part: int = 0  # the message's number in an mbox file; 0 or 1: a file's first

    @property
    def starts_file(self) -> bool:
        return self.part <= 1


def is_mbox(data: bytes) -> bool:
    return data.startswith(b"From ") and _MBOX_FROM.match(data) is not None


def split_mbox(data: bytes) -> list[bytes]:
    """Messages of an mbox, separator lines removed and `>From ` unquoted (mboxrd)."""
    starts = [
        m.start() for m in _MBOX_FROM.finditer(data)
        if m.start() == 0 or data.endswith((b"\n\n", b"\n\r\n"), 0, m.start())
    ]
    messages: list[bytes] = []
    for index, start in enumerate(starts):
        end = starts[index + 1] if index + 1 < len(starts) else len(data)
        chunk = data[start:end]
        body_start = chunk.find(b"\n") + 1
        message = chunk[body_start:] if body_start > 0 else b""
        if message.endswith(b"\n\n"):
            message = message[:-1]  # the blank line before the next separator belongs to it
        messages.append(_MBOX_QUOTED.sub(rb"\1", message))
    return messages


def _from_bytes(label: str, data: bytes, mtime: float | None) -> Iterator[MessageSource]:
    if is_mbox(data):
        messages = split_mbox(data)
        if len(messages) == 1:
            yield MessageSource(label, messages[0], mtime=mtime)
            return
        for number, message in enumerate(messages, 1):
            yield MessageSource(f"{label}:{number}", message, mtime=mtime, part=number)
        return
    yield MessageSource(label, data, mtime=mtime)


def _read_file(path: Path) -> Iterator[MessageSource]:
    try:
        with path.open("rb") as handle:
            mtime = os.fstat(handle.fileno()).st_mtime
            data = handle.read()
    except OSError as exc:
        yield MessageSource(str(path), error=exc.strerror or str(exc))
        return
    yield from _from_bytes(str(path), data, mtime)


def is_maildir(path: Path) -> bool:
    return (path / "cur").is_dir() or (path / "new").is_dir()


def _walk_dir(root: Path) -> Iterator[MessageSource]:
    for item in _dir_files(root):
        yield from _read_file(item) if isinstance(item, Path) else (item,)


def count_files(paths: list[str]) -> int:
    """How many files iter_messages(paths) reads (stdin counts as one), without reading
    them: the total a progress bar counts up to."""
    total = 0
    for name in paths:
        path = Path(name)
        total += sum(1 for _ in _dir_files(path)) if name != "-" and path.is_dir() else 1
    return total


def _dir_files(root: Path) -> Iterator[Path | MessageSource]:
    """The files below `root` to read, or a MessageSource with the error of a folder that
    cannot be listed. Maildir: cur/ and new/ only (Maildir++ subfolders like .Spam are
    separate folders and must be named explicitly, or learning ~/Maildir as ham would learn
    its .Spam too). Other directories: every non-hidden file below, in name order."""
    if is_maildir(root):
        for sub in ("cur", "new"):
            folder = root / sub
            if folder.is_dir():
                yield from _files_in(folder, recurse=False)
        return
    yield from _files_in(root, recurse=True)


def folders_named(paths: list[str], names: frozenset[str]) -> list[tuple[str, int]]:
    """Folders that reading `paths` would descend into whose name (leading dot and case
    aside) is one of `names`, with the messages each holds: a ham folder holding a `spam/`
    folder would have its spam learned as ham. Outermost matches only."""
    found: list[tuple[str, int]] = []

    def visit(folder: Path) -> None:
        if is_maildir(folder):
            return  # its subfolders are not read (_walk_dir)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            return
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            if entry.name.lower() in names:
                count = sum(1 for s in _walk_dir(Path(entry.path)) if s.error is None)
                found.append((entry.path, count))
            else:
                visit(Path(entry.path))

    for name in paths:
        if name != "-" and Path(name).is_dir():
            visit(Path(name))
    return found


def _files_in(folder: Path, recurse: bool) -> Iterator[Path | MessageSource]:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        yield MessageSource(str(folder), error=exc.strerror or str(exc))
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        try:
            is_dir = entry.is_dir()
        except OSError:
            is_dir = False
        if is_dir:
            if recurse:
                yield from _dir_files(path)
        else:
            yield path

def iter_messages(paths: list[str], stdin: BinaryIO | None = None) -> Iterator[MessageSource]:
    for name in paths:
        if name == "-":
            stream = stdin or sys.stdin.buffer
            yield from _from_bytes("stdin", stream.read(), None)
            continue
        path = Path(name)
        if path.is_dir():
            yield from _walk_dir(path)
        elif path.exists():
            yield from _read_file(path)
        else:
            yield MessageSource(name, error="no such file or directory")


def not_a_message(data: bytes) -> str | None:
    """Why `data` is not a mail message, or None. Learning junk would teach Bayes junk."""
    if not data.strip():
        return "empty file"
    head = data[:4096]
    controls = len(head.translate(None, _NOT_CONTROL))
    if controls > len(head) // 10:
        return "binary data, not a mail message"
    if not _HEADER_START.match(data.lstrip(b"\r\n")):
        return "not a mail message (no header line at the start)"
    return None
