#!/usr/bin/env python3
"""Fetch public repositories and turn them into labelled message folders.

Each source in ``SOURCES`` names a public GitHub repository, the commit it was
read at, how its messages are stored and which label they get.  The script
clones each repository (bare, into the cache directory; a clone already there is
reused when it holds the commit) and for every source writes::

    OUT/<source>/<label>/<id>.eml       one raw message per file
    OUT/<source>/split/{train,test}_<label>.txt
    OUT/<source>/MANIFEST.tsv           id, label, year, split, origin

The train/test split is fixed by the message body (see ``split_of``): 20% of
the distinct bodies are held out, and two messages with the same body always
land on the same side.  Held-out files are never used for training or tuning.

Usage::

    python corpus/gather/gather.py OUT --cache DIR [--git-dir OWNER/NAME=GITDIR ...] [SOURCE ...]

``OUT`` is where the folders go (``../corpora`` beside the repository is where the
model's plan and the benches look by default); ``--cache`` keeps the clones between runs;
``--git-dir`` uses a bare git directory you already have for that repository instead.

The corpora stay outside the repository; this script and ``corpus/SOURCES.md``
are what the repository keeps.
"""

from __future__ import annotations

import argparse
import datetime as dt
import email.utils
import hashlib
import re
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

TEST_SHARE = 5  # one body hash in five is held out
SPLIT_SALT = b"pyspamd-corpora-split-v1:"
MAX_BYTES = 1_000_000  # larger messages are skipped: a milter scans the first MB anyway


@dataclass(frozen=True)
class Source:
    name: str
    repo: str
    commit: str
    licence: str
    kind: str  # "files" | "mbox" | "public-inbox" | "enron-preprocessed"
    label: str = ""  # fixed label, or "" when the path decides (enron)
    paths: tuple[str, ...] = ()  # path prefixes (files, enron) or mbox files
    exclude: tuple[str, ...] = ()  # path substrings to leave out
    per_year: int = 0  # public-inbox: cap per year (0 = all)
    notes: str = ""
    years: dict = field(default_factory=dict, compare=False, hash=False)


SOURCES: tuple[Source, ...] = (
    Source(
        name="spam-archive-2023",
        repo="GlitchyZorua/E-mail-SPAM-Archive",
        commit="28f21168b606baa15e9d1f09c6d8973cbd76bb57",
        licence="own licence: 'Permission is hereby granted to use this archive without "
        "restriction' (LICENSE.txt)",
        kind="files",
        label="spam",
        paths=("2023/", "2024/", "2025/"),
        notes="one person's spam folder 2023-2025, raw .eml with some addresses replaced by "
        "[removed]; Oddballs/ (not spam) left out",
    ),
    Source(
        name="nazario-phish",
        repo="shaeferd/Phishing-Detection",
        commit="47ddb8e9ec1bac76b5db25efa1add5b81657149d",
        licence="Jose Nazario's phishing corpus (monkey.org/~jose/phishing), published for "
        "research with attribution; the repository copy states no licence",
        kind="mbox",
        label="phish",
        paths=("phishing0.mbox", "phishing1.mbox", "20051114.mbox"),
        notes="raw mbox files of the 2004-2005 releases (the processed phish/ text is not used)",
    ),
    Source(
        name="nazario-phish-2021",
        repo="ReneMel/KIT-NLP-AIMasters",
        commit="dd9ab4f72a9a0922420b5b8f4428088c13e72655",
        licence="Jose Nazario's phishing corpus (monkey.org/~jose/phishing), published for "
        "research with attribution; the repository copy states no licence",
        kind="mbox",
        label="phish",
        paths=("Datasets/Mbox/data/phishing-2021.mbox",),
        notes="the 2021 mbox; the other years in that repository are over the 4 MiB "
        "snapshot limit and absent",
    ),
    Source(
        name="enron-spam",
        repo="DungQuangUiT/enron_dataset",
        commit="293b93383d232e9a5790b708d3d746ee048ed70d",
        licence="Enron-Spam (Metsis, Androutsopoulos, Paliouras 2006), free for research; "
        "the repository copy states no licence",
        kind="enron-preprocessed",
        paths=("enron1/", "enron2/", "enron3/", "enron4/", "enron5/", "enron6/"),
        exclude=("SA_and_HP",),
        notes="the 'preprocessed' release: Subject line and lower-cased body text only, no "
        "other headers. Spam marked SA_and_HP (from the SpamAssassin corpus, whose test "
        "part is ours) is left out",
    ),
    Source(
        name="linux-mips-list",
        repo="copslock/kenerl_mipsel_loongson",
        commit="1d0fd32437a863629c2af990076ae36090779681",
        licence="public mailing-list archive (linux-mips, public-inbox format); copyright in "
        "the messages stays with their senders",
        kind="public-inbox",
        label="ham",
        per_year=250,
        notes="public-inbox git archive of the linux-mips list 1996-2019 (one message per "
        "commit); up to 250 messages a year",
    ),
    Source(
        name="usrp-users-list",
        repo="linux-mailinglist-archives/usrp-users.lists.ettus.com.0",
        commit="ca763a0eab9f857948f294e78103c609e477dc34",  # the snapshot read 2026-12-03
        licence="public mailing-list archive (usrp-users, public-inbox format); copyright in "
        "the messages stays with their senders",
        kind="public-inbox",
        label="ham",
        per_year=600,
        notes="users' list of a radio hardware vendor 2019-2026; questions, answers, "
        "announcements; up to 600 messages a year",
    ),
)


def git(repo: Path, *args: str) -> bytes:
    return subprocess.run(
        ["git", "--git-dir", str(repo), *args], check=True, capture_output=True
    ).stdout


def split_of(raw: bytes) -> str:
    """'test' for one body in TEST_SHARE, by a salted hash of the normalised body."""
    _, _, body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
    norm = b" ".join(body.lower().split())
    digest = hashlib.sha256(SPLIT_SALT + norm).digest()
    return "test" if int.from_bytes(digest[:4], "big") % TEST_SHARE == 0 else "train"


_DATE_RE = re.compile(rb"^Date:[ \t]*(.*)$", re.MULTILINE | re.IGNORECASE)


def year_of(raw: bytes, fallback: int = 0) -> int:
    head = raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[0]
    m = _DATE_RE.search(head)
    if m:
        try:
            dt = email.utils.parsedate_to_datetime(m.group(1).decode("latin-1").strip())
            if 1990 <= dt.year <= 2030:
                return dt.year
        except (TypeError, ValueError, IndexError):
            pass
    return fallback


def batch_blobs(repo: Path, specs: list[str]) -> Iterator[tuple[str, bytes | None]]:
    """Yield (spec, content) for each ``<rev>:<path>`` via one git cat-file --batch."""
    proc = subprocess.Popen(
        ["git", "--git-dir", str(repo), "cat-file", "--batch"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdin and proc.stdout
    import threading

    def feed() -> None:
        for s in specs:
            proc.stdin.write(s.encode("utf-8", "surrogateescape") + b"\n")
        proc.stdin.close()

    t = threading.Thread(target=feed, daemon=True)
    t.start()
    for s in specs:
        line = proc.stdout.readline()
        if line.endswith(b" missing\n"):
            yield s, None
            continue
        size = int(line.split()[2])
        data = proc.stdout.read(size)
        proc.stdout.read(1)
        yield s, data
    t.join()
    proc.wait()


def iter_files(src: Source, repo: Path, commit: str) -> Iterator[tuple[str, str, bytes]]:
    names = git(repo, "ls-tree", "-r", "-z", "--name-only", commit).split(b"\0")
    paths = [
        n.decode("utf-8", "surrogateescape")
        for n in names
        if n and any(n.decode("utf-8", "surrogateescape").startswith(p) for p in src.paths)
    ]
    paths = [p for p in paths if not any(x in p for x in src.exclude)]
    for spec, data in batch_blobs(repo, [f"{commit}:{p}" for p in sorted(paths)]):
        if data is None:
            continue
        path = spec.split(":", 1)[1]
        if src.kind == "enron-preprocessed":
            label = "spam" if path.endswith(".spam.txt") else "ham"
            data = enron_to_rfc822(data, path)
        else:
            label = src.label
            if data.startswith(b"/bin/"):  # a copy-paste slip in some files of that archive
                data = data[len(b"/bin/") :]
        yield path, label, data


def enron_to_rfc822(data: bytes, path: str) -> bytes:
    """The preprocessed Enron-Spam files are 'Subject: ...' then the body, nothing else.

    Every message, spam and ham alike, gets the same neutral From, To, Date (the day in
    the file name, at noon UTC) and Message-ID: without them, rules for missing headers
    would fire on all of it, which real mail never shows, and the same headers on both
    classes teach a model nothing either way. Only the body and Subject are evidence.
    It also gets the one Received header a receiving MTA adds, dated as the Date: with
    none, the Date check measures the age against now and every message (1999-2005)
    would score DATE_IN_PAST, which mail arriving today does not."""
    data = data.replace(b"\r\n", b"\n")
    first, _, rest = data.partition(b"\n")
    if first.lower().startswith(b"subject:"):
        subject, body = first, rest
    else:
        subject, body = b"Subject:", data
    m = re.search(r"(\d{4})-(\d\d)-(\d\d)", path)
    when = (email.utils.format_datetime(dt.datetime(int(m[1]), int(m[2]), int(m[3]), 12,
                                                    tzinfo=dt.UTC))
            if m else "Thu, 01 Jan 2004 12:00:00 +0000")
    digest = hashlib.sha1(data).hexdigest()[:20]
    head = (f"Received: by mx.enron-spam.invalid; {when}\n"
            f"From: Enron-Spam Sender <sender@enron-spam.invalid>\n"
            f"To: Enron-Spam Recipient <recipient@enron-spam.invalid>\n"
            f"Date: {when}\nMessage-ID: <{digest}@enron-spam.invalid>\n").encode()
    return head + subject + b"\n\n" + body


_MBOX_FROM = re.compile(rb"^From \S+.*\n", re.MULTILINE)


def iter_mbox(src: Source, repo: Path, commit: str) -> Iterator[tuple[str, str, bytes]]:
    for path in src.paths:
        data = git(repo, "cat-file", "blob", f"{commit}:{path}").replace(b"\r\n", b"\n")
        starts = [m.start() for m in _MBOX_FROM.finditer(data)]
        for i, start in enumerate(starts):
            end = starts[i + 1] if i + 1 < len(starts) else len(data)
            msg = data[start:end]
            msg = msg.split(b"\n", 1)[1] if b"\n" in msg else b""
            # mboxo quoting: '>From ' at a line start was a 'From ' line
            msg = re.sub(rb"(?m)^>From ", b"From ", msg)
            if msg.strip():
                yield f"{path}#{i}", src.label, msg


def iter_public_inbox(src: Source, repo: Path, commit: str) -> Iterator[tuple[str, str, bytes]]:
    log = git(repo, "log", "--format=%H %at", commit).decode().split("\n")
    by_year: dict[int, list[str]] = defaultdict(list)
    import datetime as dt

    for line in log:
        if not line:
            continue
        sha, ts = line.split()
        year = dt.datetime.fromtimestamp(int(ts), dt.UTC).year
        by_year[year].append(sha)
    chosen: list[str] = []
    for year in sorted(by_year):
        shas = sorted(by_year[year], key=lambda s: hashlib.sha256(SPLIT_SALT + s.encode()).digest())
        chosen.extend(shas[: src.per_year] if src.per_year else shas)
    for spec, data in batch_blobs(repo, [f"{s}:m" for s in chosen]):
        if data is None:  # a deletion commit
            continue
        yield spec.split(":", 1)[0], src.label, data


READERS = {
    "files": iter_files,
    "enron-preprocessed": iter_files,
    "mbox": iter_mbox,
    "public-inbox": iter_public_inbox,
}


def has_commit(repo: Path, commit: str) -> bool:
    return subprocess.run(
        ["git", "--git-dir", str(repo), "cat-file", "-e", f"{commit}^{{commit}}"],
        capture_output=True,
    ).returncode == 0


def clone(src: Source, cache: Path) -> Path:
    """A bare clone of the source's repository in the cache, holding its commit.

    public-inbox archives need the history (one message per commit), the other kinds
    only the commit's tree, so those are fetched at depth 1."""
    repo = cache / (src.repo.replace("/", "+") + ".git")
    url = f"https://github.com/{src.repo}.git"
    if repo.is_dir() and has_commit(repo, src.commit):
        return repo
    repo.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "--quiet", "--bare", str(repo)], check=True)
    depth = [] if src.kind == "public-inbox" else ["--depth", "1"]
    print(f"{src.name}: fetching {url} @ {src.commit}", file=sys.stderr, flush=True)
    done = subprocess.run(
        ["git", "--git-dir", str(repo), "fetch", "--quiet", *depth, url, src.commit]
    )
    if done.returncode != 0 or not has_commit(repo, src.commit):
        raise SystemExit(f"{src.name}: could not fetch {src.commit} from {url}")
    return repo


def gather(src: Source, repo: Path, out: Path) -> dict[tuple[str, int, str], int]:
    if not has_commit(repo, src.commit):
        raise SystemExit(f"{src.name}: {repo} does not hold commit {src.commit}")
    commit = src.commit
    dest = out / src.name
    if dest.exists():
        shutil.rmtree(dest)
    seen: set[bytes] = set()
    counts: Counter[tuple[str, int, str]] = Counter()
    lists: dict[str, list[str]] = defaultdict(list)
    manifest = ["id\tlabel\tyear\tsplit\torigin"]
    for origin, label, raw in READERS[src.kind](src, repo, commit):
        if not raw.strip() or len(raw) > MAX_BYTES:
            continue
        digest = hashlib.sha256(raw).digest()
        if digest in seen:  # byte-identical copies count once
            continue
        seen.add(digest)
        year = year_of(raw, fallback=_year_from_name(origin))
        part = split_of(raw)
        mid = hashlib.sha1(raw).hexdigest()[:16]
        rel = f"{label}/{mid}.eml"
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(raw)
        lists[f"{part}_{label}"].append(rel)
        counts[(label, year, part)] += 1
        manifest.append(f"{mid}\t{label}\t{year}\t{part}\t{origin}")
    (dest / "split").mkdir(parents=True, exist_ok=True)
    for key, rels in lists.items():
        (dest / "split" / f"{key}.txt").write_text("\n".join(sorted(rels)) + "\n")
    (dest / "MANIFEST.tsv").write_text("\n".join(manifest) + "\n")
    (dest / "SOURCE").write_text(
        f"repo\thttps://github.com/{src.repo}\ncommit\t{commit}\nlicence\t{src.licence}\n"
    )
    return counts


_NAME_YEAR = re.compile(r"(?<!\d)(19[89]\d|20[0-3]\d)-[01]\d-[0-3]\d")


def _year_from_name(origin: str) -> int:
    m = _NAME_YEAR.search(origin)
    return int(m.group(1)) if m else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="where the labelled folders are written")
    ap.add_argument("--cache", type=Path, required=True,
                    help="where the repositories are cloned (kept between runs)")
    ap.add_argument("--git-dir", action="append", default=[], metavar="OWNER/NAME=GITDIR",
                    help="use this existing bare git directory for that repository")
    ap.add_argument("sources", nargs="*", help="source names (default: all)")
    args = ap.parse_args(argv)
    wanted = set(args.sources)
    unknown = wanted - {s.name for s in SOURCES}
    if unknown:
        ap.error(f"unknown source(s): {', '.join(sorted(unknown))}")
    given: dict[str, Path] = {}
    for item in args.git_dir:
        name, sep, path = item.partition("=")
        if not sep or not path:
            ap.error(f"--git-dir {item!r}: expected OWNER/NAME=GITDIR")
        given[name] = Path(path)
    for src in SOURCES:
        if wanted and src.name not in wanted:
            continue
        repo = given.get(src.repo) or clone(src, args.cache)
        counts = gather(src, repo, args.out)
        total: Counter[tuple[str, str]] = Counter()
        years: dict[str, Counter[int]] = defaultdict(Counter)
        for (label, year, part), n in counts.items():
            total[(label, part)] += n
            years[label][year] += n
        for label in sorted(years):
            span = sorted(y for y in years[label] if y)
            print(
                f"{src.name}\t{label}\ttrain {total[(label, 'train')]}\t"
                f"test {total[(label, 'test')]}\tyears {span[0] if span else '?'}-"
                f"{span[-1] if span else '?'}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
