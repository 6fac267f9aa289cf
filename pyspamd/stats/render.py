"""Text that pyspamc prints for stat, history and counters, from the controller's JSON, so
the in-process and the over-HTTP runs print the same."""

from __future__ import annotations

import json
import time
from typing import Any


def _pct(n: int, total: int) -> str:
    return f"{100.0 * n / total:.2f}%" if total else "0.00%"


def size_text(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{int(n)} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def stat_lines(stat: dict[str, Any]) -> list[str]:
    """rspamc stat's shape: scans by action first, then the Bayes statfiles."""
    total = stat["scanned"]
    lines = [f"Messages scanned: {total}"]
    for action, n in stat["actions"].items():
        lines.append(f"Messages with action {action}: {n}, {_pct(n, total)}")
    lines.append(f"Messages treated as spam: {stat['spam_count']}, "
                 f"{_pct(stat['spam_count'], total)}")
    lines.append(f"Messages treated as ham: {stat['ham_count']}, "
                 f"{_pct(stat['ham_count'], total)}")
    learns = stat.get("learns") or {}
    parts = []
    for label in ("spam", "ham"):
        outcomes = {k.partition(":")[2]: n for k, n in learns.items()
                    if k.partition(":")[0] == label}
        if outcomes:
            parts.append(f"{label}: " + ", ".join(f"{outcome} {n}" for outcome, n
                                                   in sorted(outcomes.items())))
    if parts:  # pyspamc learn_* and the controller's /learnspam, /learnham
        lines.append("Learn requests: " + "; ".join(parts))
    bayes = stat["bayes"]
    for label, symbol in (("spam", "BAYES_SPAM"), ("ham", "BAYES_HAM")):
        lines.append(f"Statfile: {symbol} type: {bayes['backend']}; learned: "
                     f"{bayes['learned'][label]}; users: 1")
    lines.append(f"Messages learned: {sum(bayes['learned'].values())}")
    lines.append(f"Tokens stored: {bayes['tokens']}")
    lines.append(f"Model: {bayes['classifier']}; logistic model tokens: "
                 f"{bayes['model_tokens']}")
    # The messages whose tokens are stored: what each learn_*/unlearn/expire run fits from.
    fit, cap = bayes["fit_messages"], bayes["max_fit_messages"]
    kept = f"the newest {cap} of each class" if cap else "all learned"
    lines.append(f"Model fitted from: {fit['spam']} spam, {fit['ham']} ham messages "
                 f"({kept}, [bayes] max_fit_messages)")
    lines.append(f"Backend: {bayes['backend']} {bayes['location']}; size: "
                 f"{size_text(bayes['size_bytes'])}")
    if "fuzzy" in stat:  # a controller of an older version does not send it
        lines.append(f"Fuzzy hashes stored: {stat['fuzzy']['hashes']}")
    tokenizer = bayes.get("tokenizer") or {}
    if tokenizer.get("learned") not in (None, tokenizer.get("current")):
        lines.append(f"Tokenizer: learned with version {tokenizer['learned']}, this pyspamd "
                     f"tokenizes as version {tokenizer['current']}: relearn into an empty "
                     "store")
    min_learns = bayes.get("min_learns")
    if min_learns is not None and min(bayes["learned"].values()) < min_learns:
        lines.append(f"Bayes votes after {min_learns} messages of each class "
                     "([bayes] min_learns)")
    return lines


def history_output(entries: list[dict[str, Any]], as_json: bool) -> list[str]:
    """What `pyspamc history [--json]` prints, in-process or from the controller."""
    if as_json:
        return [json.dumps(e, ensure_ascii=False) for e in entries]
    return history_lines(entries)


def counter_output(symbols: list[dict[str, Any]], as_json: bool) -> list[str]:
    """What `pyspamc counters [--json]` prints: the symbols that hit."""
    if as_json:
        return [json.dumps(s) for s in symbols if s["hits"]]
    return counter_lines(symbols)


def history_lines(entries: list[dict[str, Any]]) -> list[str]:
    lines = []
    for e in entries:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e["time"]))
        rcpts = ",".join(e["rcpts"]) + (f" (+{e['rcpt_count'] - len(e['rcpts'])})"
                                         if e["rcpt_count"] > len(e["rcpts"]) else "")
        forced = e.get("forced_by") or []
        symbols = ",".join(f"{name}({score:.2f})" for name, score, _ in e["symbols"]
                           if score != 0 or name in forced)
        lines.append(f"{when} qid: {e['queue_id'] or '-'}, ip: {e['ip'] or '-'}, "
                     f"from: <{e['from']}>, rcpts: {rcpts or '-'}, ({e['action']}): "
                     f"[{e['score']:.2f}/{e['required_score']:.2f}] [{symbols}], "
                     f"time: {e['scan_time'] * 1000:.2f}ms, subject: {e['subject']}")
    return lines


def counter_lines(symbols: list[dict[str, Any]]) -> list[str]:
    """rspamc counters' table, for the symbols that hit, most hits first."""
    rows = sorted((s for s in symbols if s["hits"]), key=lambda s: (-s["hits"], s["name"]))
    width = max([len("Symbol"), *(len(s["name"]) for s in rows)])
    lines = [f"{'Symbol':<{width}} | {'Score':>8} | {'Hits':>8}",
             f"{'-' * width}-+-{'-' * 8}-+-{'-' * 8}"]
    lines += [f"{s['name']:<{width}} | {s['score']:>8.2f} | {s['hits']:>8}" for s in rows]
    return lines


def symbol_rows(defs: dict[str, Any], hits: dict[str, int]) -> list[dict[str, Any]]:
    """Every scored rule and every symbol that hit: the controller's /symbols rows."""
    rows = []
    for name in sorted(set(defs) | set(hits)):
        if name.startswith("__"):
            continue
        d = defs.get(name)
        rows.append({"name": name, "score": d.score if d else 0.0,
                     "description": d.description if d else "",
                     "group": d.group if d else "", "source": d.source if d else "",
                     "hits": hits.get(name, 0)})
    return rows
