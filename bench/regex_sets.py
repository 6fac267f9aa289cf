"""Do the regex rules' RE2 Sets report what each pattern finds on its own?

    python bench/regex_sets.py [DIR ...]

A Set whose DFA outgrows its memory budget reports nothing instead of its matches, so a
set size that is too large would silently drop rule hits. This scans every message
(default: the SpamAssassin corpus beside the repository, else corpus/) with the shipped
rules, once through the Sets as RegexRules does and once pattern by pattern, and prints
per target how many (message, rule) matches the Sets missed or added.
"""

from __future__ import annotations

import sys
from collections import Counter

from scan import default_dirs
from tables import print_measures

from pyspamd.checks.regex_rules import RegexRules, _target_values
from pyspamd.config import load_config
from pyspamd.scanner import Scanner
from pyspamd.sources import iter_messages


def main() -> int:
    dirs = sys.argv[1:] or default_dirs()
    scanner = Scanner.from_config(load_config(None))
    rules = next(c for c in scanner.checks if isinstance(c, RegexRules))
    missed: Counter[str] = Counter()
    added: Counter[str] = Counter()
    messages = 0
    for source in iter_messages(dirs):
        if source.data is None:
            continue
        messages += 1
        task = scanner.task(source.data)
        for group in rules.groups:
            values = _target_values(task, group.key)
            codec = "latin-1" if group.encode_text else "utf-8"
            data = [v if isinstance(v, bytes) else v.encode(codec, "replace") for v in values]
            for matcher, chunk, _ in group.sets:
                found: set[int] = set()
                for value in data:
                    found.update(matcher.Match(value) or ())
                for index, rule in enumerate(chunk):
                    regex = group.regexes[rule.name].re2_regex
                    alone = any(regex.search(v) for v in data)  # type: ignore[attr-defined]
                    name = "/".join(p for p in group.key if p)
                    if alone and index not in found:
                        missed[name] += 1
                    elif index in found and not alone:
                        added[name] += 1
    rows = [("messages", str(messages))]
    for name in sorted(set(missed) | set(added)) or ["(none)"]:
        rows.append((name, f"missed {missed[name]}, added {added[name]}"))
    print_measures(rows)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
