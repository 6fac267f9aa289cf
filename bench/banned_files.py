"""CPU cost of the banned-files check alone, per message, on parsed messages.

    python bench/banned_files.py [DIR ...] [--rounds N]

Each message is parsed first (the MIME walk is the scanner's, shared by every check, and
not counted); then the check's `run` is timed over all messages, N rounds, by process
CPU time. A second set, built here, holds one attachment each of the kinds the check opens
(a program, a document, a zip with members, a tar.gz, a nested zip), to show the cost where
there is something to look at. DIR defaults to the SpamAssassin corpus beside the checkout.
"""

from __future__ import annotations

import argparse
import base64
import io
import statistics
import sys
import tarfile
import time
import zipfile
from pathlib import Path

from tables import print_markdown

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from support.paths import corpus_dirs  # noqa: E402

from pyspamd.checks.banned_files import BannedFiles  # noqa: E402
from pyspamd.config import Config  # noqa: E402
from pyspamd.sources import iter_messages  # noqa: E402
from pyspamd.symbols import Hits  # noqa: E402
from pyspamd.task import Task  # noqa: E402


def _with_attachment(name: str, data: bytes) -> bytes:
    body = base64.encodebytes(data)
    return (b"From: a@example.org\nTo: b@example.test\nSubject: s\nMIME-Version: 1.0\n"
            b"Content-Type: multipart/mixed; boundary=B\n\n--B\nContent-Type: text/plain\n\n"
            b"hello\n--B\n" + f"Content-Type: application/octet-stream; name=\"{name}\"\n"
            f"Content-Disposition: attachment; filename=\"{name}\"\n"
            "Content-Transfer-Encoding: base64\n\n".encode() + body + b"--B--\n")


def _zip(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return out.getvalue()


def attachment_set() -> list[bytes]:
    tgz = io.BytesIO()
    with tarfile.open(fileobj=tgz, mode="w:gz") as archive:
        for i in range(20):
            info = tarfile.TarInfo(f"dir/file{i}.txt")
            info.size = 100
            archive.addfile(info, io.BytesIO(b"x" * 100))
    return [
        _with_attachment("setup.exe", b"MZ\x90\x00" + b"\0" * 30_000),
        _with_attachment("report.pdf", b"%PDF-1.4\n" + b"0" * 60_000),
        _with_attachment("photos.zip", _zip({f"img{i}.jpg": b"\xff\xd8\xff" + b"1" * 5000
                                             for i in range(20)})),
        _with_attachment("logs.tgz", tgz.getvalue()),
        _with_attachment("outer.zip", _zip({"inner.zip": _zip({"a.txt": b"a" * 1000})})),
    ]


def cpu_ms_per_message(check: BannedFiles, tasks: list[Task]) -> float:
    start = time.process_time()
    for task in tasks:
        check.run(task, Hits())
    return (time.process_time() - start) * 1000 / len(tasks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="*")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    corpus = [s.data for s in iter_messages(corpus_dirs(args.dirs)) if s.data]
    check = BannedFiles(Config().banned_files)
    rows = []
    for label, raws in (("corpus", corpus), ("one attachment each (5 kinds)", attachment_set())):
        tasks = [Task(raw) for raw in raws]
        for task in tasks:
            _ = task.parts  # parsed before the clock: the scanner does it once for all checks
        with_files = sum(1 for t in tasks if t.attachments)
        repeat = max(1, 2000 // len(tasks))
        times = [cpu_ms_per_message(check, tasks * repeat) for _ in range(args.rounds)]
        rows.append([label, str(len(tasks)), str(with_files),
                     f"{statistics.median(times):.4f}", f"{max(times):.4f}"])
    print_markdown(["messages", "count", "with attachments", "median CPU ms/msg",
                    "max CPU ms/msg"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
