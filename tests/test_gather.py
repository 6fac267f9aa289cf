"""corpus/gather/gather.py reads a repository at its commit into labelled folders and a
split; here on a small bare repository made for the test, through --git-dir."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

from support.paths import REPO

SPEC = importlib.util.spec_from_file_location("gather", REPO / "corpus" / "gather" / "gather.py")
assert SPEC and SPEC.loader
gather = importlib.util.module_from_spec(SPEC)
sys.modules["gather"] = gather  # its dataclasses look their module up while being made
SPEC.loader.exec_module(gather)

MBOX = (b"From a@example.org Mon Jan  1 00:00:00 2007\nFrom: a@example.org\n"
        b"Date: Mon, 1 Jan 2007 10:00:00 +0000\nSubject: one\n\nfirst body\n>From here\n"
        b"From b@example.org Mon Jan  1 00:00:00 2008\nFrom: b@example.org\n"
        b"Date: Tue, 1 Jan 2008 10:00:00 +0000\nSubject: two\n\nsecond body\n")


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


def test_gather_reads_the_named_commit(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    git("init", "-q", cwd=work)
    (work / "spam.mbox").write_bytes(MBOX)
    git("add", "spam.mbox", cwd=work)
    git("-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "x", cwd=work)
    commit = git("rev-parse", "HEAD", cwd=work)
    src = gather.Source(name="test-mbox", repo="example/test", commit=commit, licence="test",
                        kind="mbox", label="spam", paths=("spam.mbox",))
    gather.SOURCES = (src,)
    out = tmp_path / "out"
    assert gather.main([str(out), "--cache", str(tmp_path / "cache"),
                        "--git-dir", f"example/test={work / '.git'}"]) == 0
    files = sorted((out / "test-mbox" / "spam").glob("*.eml"))
    assert len(files) == 2
    texts = sorted(f.read_bytes() for f in files)
    assert texts[0].startswith(b"From: a@example.org") and b"\nFrom here\n" in texts[0]
    manifest = (out / "test-mbox" / "MANIFEST.tsv").read_text().splitlines()
    assert manifest[0] == "id\tlabel\tyear\tsplit\torigin"
    assert sorted(line.split("\t")[2] for line in manifest[1:]) == ["2007", "2008"]
    listed = [line for part in ("train", "test")
              for lst in (out / "test-mbox" / "split").glob(f"{part}_spam.txt")
              for line in lst.read_text().split()]
    assert sorted(listed) == sorted(f"spam/{f.name}" for f in files)
    assert commit in (out / "test-mbox" / "SOURCE").read_text()
