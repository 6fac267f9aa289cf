"""What [[settings]] cost per message: the lookup alone, and whole scans A/B.

    python bench/settings_lookup.py [--list FILE] [--entries N] [--rounds N] [DIR ...]

Messages: the paths in --list (one a line, as the corpus's split-42/*.txt: relative to the
corpus folder or its spamassassin/), else DIR..., else the SpamAssassin corpus beside the
checkout. Each gets the envelope a milter would have seen: client address of the first
Received hop, Return-Path sender, To/Cc addresses as recipients (at most 5).

B's config has N [[settings]] entries (default 20) of every selector kind (rcpt lists,
rcpt_domain, from, ip, user), none of which select the corpus's recipients, so every
message pays for trying them all (the worst case: the first match ends the search); one
entry selects the corpus's most frequent recipient domain. A is the same config without
them. Printed: the lookup's CPU per message over all messages, then rounds of whole scans
(each message scanned by A and by B one after the other, who goes first alternating by
round; process CPU per message) and B - A.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from email.utils import getaddresses
from pathlib import Path

from tables import print_markdown, print_measures

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from support.paths import corpus_dirs  # noqa: E402

from pyspamd.config import load_config  # noqa: E402
from pyspamd.scanner import Scanner  # noqa: E402
from pyspamd.sources import iter_messages  # noqa: E402
from pyspamd.task import Envelope  # noqa: E402

_IP = re.compile(rb"\[(\d{1,3}(?:\.\d{1,3}){3})\]")
_HEADER = re.compile(rb"^(to|cc|return-path):[ \t]*(.*(?:\n[ \t].*)*)", re.I | re.M)


def envelope(raw: bytes) -> Envelope:
    head = raw.split(b"\n\n", 1)[0]
    received = re.search(rb"^Received:.*(?:\n[ \t].*)*", head, re.M)
    found = _IP.search(received.group(0)) if received else None
    fields: dict[str, list[str]] = {}
    for name, value in _HEADER.findall(head):
        fields.setdefault(name.lower().decode(), []).append(value.decode("latin-1"))
    rcpts = [a for _, a in getaddresses(fields.get("to", []) + fields.get("cc", [])) if "@" in a]
    sender = getaddresses(fields.get("return-path", []))
    return Envelope(client_ip=found.group(1).decode() if found else None,
                    mail_from=sender[0][1] if sender else None, rcpts=tuple(rcpts[:5]))


def settings_entries(count: int, top_domain: str) -> str:
    out = []
    for i in range(count - 1):
        kind = i % 5
        selector = [
            "rcpt = [" + ", ".join(f'"user{i}-{j}@example{i}.test"' for j in range(20)) + "]",
            f'rcpt_domain = ["dept{i}.example.test", "example{i}.invalid"]',
            f'from = ["@sender{i}.test", "boss{i}@example.test"]\nip = ["198.51.{i}.0/24"]',
            f'ip = ["203.0.113.{i}", "2001:db8:{i}::/48"]',
            f'user = ["login{i}"]',
        ][kind]
        out.append(f'[[settings]]\nname = "entry{i}"\n{selector}\n'
                   f'actions = {{ reject = {20 + i}.0 }}\n')
    out.append(f'[[settings]]\nname = "top-domain"\nrcpt_domain = ["{top_domain}"]\n'
               'actions = { reject = false }\n')
    return "\n".join(out)


def load(args: argparse.Namespace) -> list[tuple[bytes, Envelope]]:
    if args.list:
        listing = Path(args.list)
        lines = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
        corpus = listing.parent.parent
        base = next((b for b in (corpus, corpus / "spamassassin") if (b / lines[0]).exists()),
                    corpus)
        paths = [str(base / line) for line in lines]
    else:
        paths = corpus_dirs(args.dirs)
    messages = [(m.data, envelope(m.data)) for m in iter_messages(paths)
                if m.data is not None]
    return messages[: args.limit] if args.limit else messages


def scan_round(first: Scanner, second: Scanner, messages: list[tuple[bytes, Envelope]]
               ) -> tuple[float, float]:
    """CPU ms per message of each scanner, the two scanning each message one after the
    other, so that the machine's load drifts alike for both."""
    spent = [0.0, 0.0]
    for raw, env in messages:
        for index, scanner in enumerate((first, second)):
            start = time.process_time()
            scanner.scan_task(scanner.task(raw, env), after_scan=False)
            spent[index] += time.process_time() - start
    return spent[0] * 1000 / len(messages), spent[1] * 1000 / len(messages)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="*")
    parser.add_argument("--list", help="a file of message paths (corpus split-42/*.txt)")
    parser.add_argument("--entries", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--limit", type=int, default=0)
    args = parser.parse_args()
    messages = load(args)
    domains = Counter(r.rpartition("@")[2].lower() for _, e in messages for r in e.rcpts)
    top = domains.most_common(1)[0][0] if domains else "example.test"
    base = (f'[rules]\ndirs = ["{REPO / "rules"}"]\n[bayes]\nenabled = false\n'
            '[fuzzy]\nenabled = false\n[greylist]\nenabled = false\n[dns]\nenabled = false\n')
    with tempfile.TemporaryDirectory() as tmp:
        a_path, b_path = Path(tmp, "a.toml"), Path(tmp, "b.toml")
        a_path.write_text(base)
        b_path.write_text(base + settings_entries(args.entries, top))
        a, b = Scanner.from_config(load_config(a_path)), Scanner.from_config(load_config(b_path))
    table = b.settings
    chosen: Counter[str] = Counter()
    start = time.process_time()
    for _, env in messages:
        chosen[table.for_message(env.client_ip, env.mail_from, env.user, env.rcpts).name] += 1
    lookup_ms = (time.process_time() - start) * 1000 / len(messages)
    with_rcpts = sum(1 for _, e in messages if e.rcpts)
    print_measures([
        ("messages", f"{len(messages)} ({with_rcpts} with recipients, "
                     f"{sum(len(e.rcpts) for _, e in messages) / len(messages):.2f} a message)"),
        ("settings entries", str(args.entries)),
        ("selected", ", ".join(f"{n or '(defaults)'}: {c}" for n, c in chosen.most_common())),
        ("lookup CPU per message", f"{lookup_ms * 1000:.1f} µs"),
    ])
    print()
    scan_round(a, b, messages[:50])  # warm the caches both will use
    rows, diffs = [], []
    for number in range(1, args.rounds + 1):
        if number % 2:  # who goes first alternates too
            a_ms, b_ms = scan_round(a, b, messages)
        else:
            b_ms, a_ms = scan_round(b, a, messages)
        diffs.append(b_ms - a_ms)
        rows.append([str(number), f"{a_ms:.3f}", f"{b_ms:.3f}", f"{b_ms - a_ms:+.3f}"])
    rows.append(["median", "", "", f"{statistics.median(diffs):+.3f}"])
    print_markdown(["round", "A no settings ms/msg", f"B {args.entries} entries ms/msg",
                    "B - A ms"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
