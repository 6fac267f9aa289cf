#!/usr/bin/env python3
"""Rebuild the small sample in ``corpus/ham/cur`` and ``corpus/spam/cur``.

The sample is drawn from the full SpamAssassin corpus (see ``README.md`` next to
this script).  The choice is deterministic: every candidate gets a rank from a
SHA-256 of a fixed salt plus its file name, and per group we first take the
best-ranked messages that show each wanted feature (multipart, HTML only,
8-bit / not valid UTF-8, base64 parts) until a minimum is met, then fill the
group's quota in rank order.  Messages over 60 KB and bodies already taken are
skipped.

Usage::

    python corpus/select_sample.py [--source DIR] [--dry-run]

``DIR`` is the folder that holds ``MANIFEST.tsv`` and ``ham/`` + ``spam/``
(default: ``../shared/corpus/spamassassin`` beside the repository).  Only ``*.eml`` files inside
``corpus/{ham,spam}/cur`` are replaced; nothing else is touched.  The tests do
not run this script; they only read the files it wrote.
"""

from __future__ import annotations

import argparse
import csv
import email
import email.policy
import hashlib
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_SOURCE = HERE.parent.parent / "shared" / "corpus" / "spamassassin"
SALT = b"pyspamd-corpus-sample-v1:"
MAX_BYTES = 60 * 1024
MAX_TOTAL = 2_500_000

# group -> (how many to take, minimum count per feature)
QUOTAS: dict[str, tuple[int, dict[str, int]]] = {
    "easy-ham-1": (40, {"multipart": 6, "nonutf8": 6, "base64": 2}),
    "easy-ham-2": (30, {"multipart": 5, "nonutf8": 5, "base64": 2, "html_only": 1}),
    "hard-ham-1": (30, {"html_only": 10, "multipart": 6, "nonutf8": 4, "base64": 2}),
    "spam-1": (40, {"html_only": 12, "multipart": 8, "nonutf8": 6, "base64": 6}),
    "spam-2": (60, {"html_only": 18, "multipart": 12, "nonutf8": 8, "base64": 8}),
}
FEATURES = ("html_only", "multipart", "nonutf8", "base64")


@dataclass(frozen=True)
class Candidate:
    rel_path: str  # e.g. "ham/cur/easy-ham-1.00001.<md5>.eml"
    label: str
    group: str
    size: int
    rank: str
    body_digest: str
    features: frozenset[str]


def message_features(raw: bytes) -> frozenset[str]:
    """Return the names of the FEATURES that the raw message shows."""
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    parts = list(msg.walk())
    types = {p.get_content_type() for p in parts}
    found: set[str] = set()
    if msg.is_multipart():
        found.add("multipart")
    if "text/html" in types and "text/plain" not in types:
        found.add("html_only")
    if any(str(p.get("Content-Transfer-Encoding", "")).strip().lower() == "base64" for p in parts):
        found.add("base64")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        found.add("nonutf8")
    return frozenset(found)


def body_digest(raw: bytes) -> str:
    """Digest of the body with whitespace squeezed, to skip duplicate bodies."""
    norm = raw.replace(b"\r\n", b"\n")
    _, sep, body = norm.partition(b"\n\n")
    body = b" ".join(body.split()) if sep else b""
    return hashlib.sha256(body).hexdigest()


def load_candidates(source: Path) -> list[Candidate]:
    out: list[Candidate] = []
    with (source / "MANIFEST.tsv").open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            if row["group"] not in QUOTAS or int(row["bytes"]) > MAX_BYTES:
                continue
            raw = (source / row["path"]).read_bytes()
            name = Path(row["path"]).name
            out.append(
                Candidate(
                    rel_path=row["path"],
                    label=row["label"],
                    group=row["group"],
                    size=len(raw),
                    rank=hashlib.sha256(SALT + name.encode()).hexdigest(),
                    body_digest=body_digest(raw),
                    features=message_features(raw),
                )
            )
    out.sort(key=lambda c: c.rank)
    return out


def choose(candidates: list[Candidate]) -> list[Candidate]:
    chosen: list[Candidate] = []
    seen_bodies: set[str] = set()
    for group, (quota, minimums) in QUOTAS.items():
        pool = [c for c in candidates if c.group == group]
        picked: list[Candidate] = []

        def take(c: Candidate, picked: list[Candidate], quota: int) -> None:
            if len(picked) < quota and c not in picked and c.body_digest not in seen_bodies:
                picked.append(c)
                seen_bodies.add(c.body_digest)

        for feature in FEATURES:
            need = minimums.get(feature, 0)
            for c in pool:
                if sum(feature in p.features for p in picked) >= need:
                    break
                if feature in c.features:
                    take(c, picked, quota)
        for c in pool:
            if len(picked) >= quota:
                break
            take(c, picked, quota)
        if len(picked) < quota:
            raise SystemExit(f"{group}: only {len(picked)} of {quota} messages found")
        chosen.extend(sorted(picked, key=lambda c: c.rel_path))
    return chosen


def write_sample(chosen: list[Candidate], source: Path, dest: Path) -> None:
    for label in ("ham", "spam"):
        cur = dest / label / "cur"
        cur.mkdir(parents=True, exist_ok=True)
        keep = {Path(c.rel_path).name for c in chosen if c.label == label}
        for old in cur.glob("*.eml"):
            if old.name not in keep:
                old.unlink()
        for sub in ("new", "tmp"):
            (dest / label / sub).mkdir(parents=True, exist_ok=True)
            (dest / label / sub / ".gitkeep").touch()
    for c in chosen:
        shutil.copyfile(source / c.rel_path, dest / c.label / "cur" / Path(c.rel_path).name)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    ap.add_argument("--dest", type=Path, default=HERE, help="corpus folder to write into")
    ap.add_argument("--dry-run", action="store_true", help="print the choice, copy nothing")
    args = ap.parse_args(argv)

    chosen = choose(load_candidates(args.source))
    total = sum(c.size for c in chosen)
    if total > MAX_TOTAL:
        raise SystemExit(f"sample is {total} bytes, over the {MAX_TOTAL} byte budget")

    for group in QUOTAS:
        members = [c for c in chosen if c.group == group]
        counts = ", ".join(f"{f} {sum(f in c.features for c in members)}" for f in FEATURES)
        print(f"{group:11} {len(members):3} msgs, {sum(c.size for c in members):8} bytes; {counts}")
    print(f"total       {len(chosen):3} msgs, {total:8} bytes")

    if not args.dry_run:
        write_sample(chosen, args.source, args.dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
