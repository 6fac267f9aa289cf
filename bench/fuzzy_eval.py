"""Fuzzy hashes on the SpamAssassin corpus, seed-42 split: what a store fed with reported
spam catches, what it wrongly hits, and whether variants of a reported message still match.

    python bench/fuzzy_eval.py [--corpus DIR] [--edited 100]

1. fuzzy_add of every spam in split-42/train_spam.txt (flag 1) into a fresh SQLite store;
2. test spam and test ham (split-42/test_*.txt): the share with FUZZY_DENIED at the
   configured min_similarity and at other thresholds, and the verdict (action) of a full
   scan with and without the fuzzy check, so the gain shows with its ham cost;
3. variants: reported (train) spam, each with one word (throughout the message) and one
   link changed in the raw message, as the next copy of a campaign differs; how many still
   match the store, and how many match their own original's hash.

The corpus has about 200 bodies twice (README of the corpus): test spam that matches is in
part such a copy, which is the case fuzzy hashes exist for.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import tempfile
from pathlib import Path

from tables import print_markdown, print_measures

from pyspamd.actions import SPAM_ACTIONS
from pyspamd.config import FuzzyConfig, load_config
from pyspamd.fuzzy.hashing import EXACT, TEXT, similarity, words
from pyspamd.fuzzy.store import find_matches, fuzzy_add, hashes_of
from pyspamd.scanner import Scanner
from pyspamd.storage import open_storage
from pyspamd.storage.base import Storage
from pyspamd.task import Task

REPO = Path(__file__).resolve().parent.parent
THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)
_URL = re.compile(rb"https?://[^\s\"'<>]+", re.IGNORECASE)
# Words put in for the edited word: ordinary words a spammer's template could swap in.
SWAP_WORDS = ("garden", "yellow", "window", "market", "silver", "planet", "coffee", "ticket")


def read_list(corpus: Path, name: str) -> list[tuple[str, bytes]]:
    lines = (corpus / "split-42" / name).read_text().split()
    return [(line, (corpus / "spamassassin" / line).read_bytes()) for line in lines]


def best_similarity(storage: Storage, task: Task, settings: FuzzyConfig) -> float:
    """The best match with flag 1 (FUZZY_DENIED), 0.0 for none; 1.0 for an exact hash."""
    matches = find_matches(storage, hashes_of(task, settings), 0.0)
    return max((m.similarity for m in matches if m.flag == 1), default=0.0)


def edit(raw: bytes, rng: random.Random) -> bytes | None:
    """One word (every occurrence, whole word) and one link (every occurrence) changed in
    the raw message; None when the message has no link, or no hashed word spelt the same in
    the raw text (base64 bodies)."""
    head, sep, body = raw.partition(b"\n\n")
    links = _URL.findall(body)
    if not sep or not links:
        return None
    text = " ".join(p.text for p in Task(raw).text_parts)
    candidates = sorted({w for w in words(text) if len(w) >= 4})
    rng.shuffle(candidates)
    for word in candidates:
        pattern = re.compile(rb"(?<![A-Za-z])" + re.escape(word.encode()) + rb"(?![A-Za-z])")
        if pattern.search(body):
            swap = rng.choice([w for w in SWAP_WORDS if w != word]).encode()
            body = pattern.sub(swap, body)
            break
    else:
        return None
    new_link = f"http://offer{rng.randrange(10**6)}.example.net/r?id={rng.randrange(10**9)}"
    body = body.replace(links[0], new_link.encode())
    return head + sep + body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default=str(REPO.parent / "shared" / "corpus"),
                        help="folder with spamassassin/ and split-42/")
    parser.add_argument("--edited", type=int, default=100, help="variants to make")
    parser.add_argument("--no-verdict", action="store_true",
                        help="skip the full scans with and without the fuzzy check")
    args = parser.parse_args()
    corpus = Path(args.corpus)
    if not (corpus / "split-42").is_dir():
        print(f"no split-42/ under {args.corpus}", file=sys.stderr)
        return 1
    train_spam = read_list(corpus, "train_spam.txt")
    test = {"spam": read_list(corpus, "test_spam.txt"), "ham": read_list(corpus, "test_ham.txt")}

    with tempfile.TemporaryDirectory(prefix="pyspamd-fuzzy-eval-") as tmp:
        configs = {}
        for name, enabled in (("without", "false"), ("with", "true")):
            path = Path(tmp) / f"{name}.toml"
            path.write_text(f'[storage]\npath = "{Path(tmp) / "store.sqlite"}"\n'
                            f"[fuzzy]\nenabled = {enabled}\n[greylist]\nenabled = false\n")
            configs[name] = load_config(path)
        settings = configs["with"].fuzzy
        storage = open_storage(configs["with"].storage)
        hashed = 0
        reported: list[tuple[str, bytes]] = []
        for label, raw in train_spam:
            found, _ = fuzzy_add(storage, Task(raw), settings, 1)
            if found:
                hashed += 1
                reported.append((label, raw))
        stored = storage.fuzzy_count()

        best = {cls: [best_similarity(storage, Task(raw), settings) for _, raw in items]
                for cls, items in test.items()}
        kinds = {cls: sum(1 for _, raw in items
                          for m in find_matches(storage, hashes_of(Task(raw), settings),
                                                settings.min_similarity)
                          if m.flag == 1 and m.kind == EXACT)
                 for cls, items in test.items()}

        rng = random.Random(42)
        pool = list(reported)
        rng.shuffle(pool)
        variants = own = matched = skipped = 0
        for _, raw in pool:
            if variants >= args.edited:
                break
            edited = edit(raw, rng)
            if edited is None:
                skipped += 1
                continue
            variants += 1
            ours = [h for h in hashes_of(Task(raw), settings) if h.kind == TEXT]
            theirs = [h for h in hashes_of(Task(edited), settings) if h.kind == TEXT]
            if any(similarity(a.signature, b.signature) >= settings.min_similarity
                   for a in ours for b in theirs if a.signature is not None
                   and b.signature is not None):
                own += 1
            if best_similarity(storage, Task(edited), settings) >= settings.min_similarity:
                matched += 1

        verdicts: dict[str, dict[str, int]] = {}
        if not args.no_verdict:
            scanners = {name: Scanner.from_config(c) for name, c in configs.items()}
            for name, scanner in scanners.items():
                for cls, items in test.items():
                    verdicts[f"{cls} {name}"] = {"spam action": sum(
                        1 for _, raw in items if scanner.scan(raw).action in SPAM_ACTIONS)}
        storage.close()

    n_spam, n_ham = len(test["spam"]), len(test["ham"])
    threshold = settings.min_similarity

    def share(cls: str, at: float) -> str:
        hits = sum(1 for s in best[cls] if s >= at)
        total = len(best[cls])
        return f"{hits}/{total} ({100 * hits / total:.1f}%)"

    print_measures([
        ("corpus", f"{corpus} (seed 42)"),
        ("reported (train) spam", f"{len(train_spam)}, of which {hashed} hashable; "
                                  f"{stored} hashes stored"),
        (f"test spam FUZZY_DENIED (>= {threshold})", share("spam", threshold)),
        (f"test ham FUZZY_DENIED (>= {threshold})", share("ham", threshold)),
        ("of those, by an attachment's exact hash", f"spam {kinds['spam']}, ham {kinds['ham']}"),
        ("edited variants (1 word + 1 link)",
         f"{variants} made ({skipped} reported spam skipped: no link, or base64 body)"),
        ("variants matching the store", f"{matched}/{variants}"),
        ("variants matching their own original", f"{own}/{variants}"),
    ])
    print()
    print_markdown(["min_similarity", "test spam with FUZZY_DENIED", "test ham with FUZZY_DENIED"],
                   [[f"{t:.1f}", share("spam", t), share("ham", t)] for t in THRESHOLDS])
    if verdicts:
        print()
        rows = []
        for name in ("without", "with"):
            spam_hits = verdicts[f"spam {name}"]["spam action"]
            ham_hits = verdicts[f"ham {name}"]["spam action"]
            rows.append([f"{name} fuzzy",
                         f"{spam_hits}/{n_spam} ({100 * spam_hits / n_spam:.1f}%)",
                         f"{ham_hits}/{n_ham} ({100 * ham_hits / n_ham:.2f}%)"])
        print_markdown(["scan (defaults, Bayes untrained)", "test spam with a spam action",
                        "test ham with a spam action (FP)"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
