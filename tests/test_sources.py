"""Message sources for the CLI: files, Maildir, nested folders, mbox, stdin, unreadable files."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from support.messages import make_message
from support.paths import CORPUS, REPO

from pyspamd.sources import is_mbox, iter_messages, split_mbox


def test_maildir_reads_cur_and_new_only(tmp_path: Path) -> None:
    maildir = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp", ".Spam/cur"):
        (maildir / sub).mkdir(parents=True)
    (maildir / "cur" / "1:2,S").write_bytes(make_message())
    (maildir / "new" / "2").write_bytes(make_message())
    (maildir / "new" / ".gitkeep").write_bytes(b"")
    (maildir / "tmp" / "half-written").write_bytes(b"From: x")
    (maildir / ".Spam" / "cur" / "3").write_bytes(make_message())
    labels = [s.label for s in iter_messages([str(maildir)])]
    assert labels == [str(maildir / "cur" / "1:2,S"), str(maildir / "new" / "2")]
    # A Maildir++ subfolder is a Maildir of its own when named explicitly
    assert [s.label for s in iter_messages([str(maildir / ".Spam")])] == [
        str(maildir / ".Spam" / "cur" / "3")]


def test_corpus_folders_are_maildirs() -> None:
    ham = list(iter_messages([str(CORPUS / "ham")]))
    assert 90 <= len(ham) <= 110 and all(s.data for s in ham)


def test_plain_directory_is_walked_recursively(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "one.eml").write_bytes(make_message())
    (tmp_path / "a" / "b" / "two.eml").write_bytes(make_message())
    assert len(list(iter_messages([str(tmp_path)]))) == 2


def test_mbox_is_detected_split_and_unquoted() -> None:
    data = (CORPUS / "malformed" / "mixed.mbox").read_bytes()
    assert is_mbox(data)
    messages = split_mbox(data)
    assert len(messages) == 3
    assert all(not m.startswith(b"From ") for m in messages)
    joined = b"".join(messages)
    assert b"\nFrom the desk of" in joined and b"\n>From the desk" not in joined
    labels = [s.label for s in iter_messages([str(CORPUS / "malformed" / "mixed.mbox")])]
    assert labels[0].endswith("mixed.mbox:1") and len(labels) == 3


def test_single_message_with_from_line_is_one_message() -> None:
    path = next((CORPUS / "spam" / "cur").iterdir())
    sources = list(iter_messages([str(path)]))
    assert len(sources) == 1 and sources[0].label == str(path)
    assert sources[0].data is not None and not sources[0].data.startswith(b"From ")


def test_body_line_starting_with_from_does_not_split() -> None:
    data = (b"From a@b Mon Jan  6 10:00:00 2003\nSubject: x\n\nhello\n"
            b"From here on we talk business\n\nFrom what I heard\n")
    assert len(split_mbox(data)) == 1


def test_stdin() -> None:
    sources = list(iter_messages(["-"], stdin=io.BytesIO(make_message())))
    assert [s.label for s in sources] == ["stdin"] and sources[0].data


def test_unreadable_file_is_an_error_and_the_walk_goes_on() -> None:
    # Root reads any file whatever its mode, so as root the walk runs as "nobody".
    folder = Path(tempfile.mkdtemp(prefix="pyspamd-unreadable-"))
    try:
        folder.chmod(0o755)
        for name in ("a.eml", "b.eml", "c.eml"):
            (folder / name).write_bytes(make_message())
            (folder / name).chmod(0o644)
        (folder / "b.eml").chmod(0)
        code = ("import sys; from pyspamd.sources import iter_messages; "
                "print([s.error is None for s in iter_messages([sys.argv[1]])])")
        command = [sys.executable, "-c", code, str(folder)]
        if os.geteuid() == 0:
            if shutil.which("setpriv") is None:
                pytest.skip("setpriv (util-linux) is needed to drop root for this test")
            command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        out = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
        assert out.stdout.strip() == "[True, False, True]"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_unreadable_entries_as_root_too(tmp_path: Path) -> None:
    # Root can read any mode, so make entries that cannot be read by anyone: a dangling
    # symlink and a FIFO-free stand-in (a directory where a file is expected is walked).
    (tmp_path / "a.eml").write_bytes(make_message())
    (tmp_path / "b.eml").symlink_to(tmp_path / "missing-target")
    (tmp_path / "c.eml").write_bytes(make_message())
    sources = list(iter_messages([str(tmp_path), str(tmp_path / "nope")]))
    assert [s.error is None for s in sources] == [True, False, True, False]
    assert sources[1].error and "No such file" in sources[1].error
    assert sources[3].error == "no such file or directory"
