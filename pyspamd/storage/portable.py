"""The portable Bayes backup: gzip-compressed JSON lines, the same from SQLite and Redis, so
a backup restores into either backend (the way from one to the other).

Line 1 says what the file is; then one object per record; the last line counts them, so a
truncated file is refused instead of restored in part (docs/debian.md shows a whole file):

    {"format": "pyspamd-bayes-backup", "version": 1, "tokenizer": 2, ...}
    {"totals": "spam", "value": 1883}       also ham, model (model size), model_gen
    {"token": "8f3a...", "spam": 3, "ham": 0, "day": 20422}   16 hex digits; days since 1970
    {"learned": "0c1d...", "class": "spam", "day": 20422}     every message ever learned
    {"message": "0c1d...", "class": "spam", "seq": 17, "tokens": "BASE64"}
                                            a message the model is fitted from: its tokens
                                            as big-endian u64s, its learn order (seq)
    {"model": "8f3a...", "weight": 0.4127}
    {"end": {"totals": 4, "token": 130342, "learned": 6024, "message": 6024, "model": 130342}}
"""

from __future__ import annotations

import base64
import gzip
import json
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from pyspamd.classifiers.bayes import TOKENIZER_KEY
from pyspamd.storage.base import CLASSES, BayesStore

FORMAT = "pyspamd-bayes-backup"
VERSION = 1
KINDS = ("totals", "token", "learned", "message", "model")


class BackupError(Exception):
    """The file is not a complete pyspamd backup; the message says what is wrong."""


def _line(record: tuple) -> dict:
    kind = record[0]
    if kind == "totals":
        return {"totals": record[1], "value": record[2]}
    if kind == "token":
        return {"token": f"{record[1]:016x}", "spam": record[2], "ham": record[3],
                "day": record[4]}
    if kind == "learned":
        return {"learned": record[1].hex(), "class": record[2], "day": record[3]}
    if kind == "message":
        return {"message": record[1].hex(), "class": record[2], "seq": record[3],
                "tokens": base64.b64encode(record[4]).decode("ascii")}
    return {"model": f"{record[1]:016x}", "weight": record[2]}


def write_backup(storage: BayesStore, path: Path) -> Counter[str]:
    """Write the store's Bayes state to `path` (a temporary file renamed at the end, so a
    failed backup never leaves a half file under the name). Returns records per kind."""
    counts: Counter[str] = Counter()
    tokenizer = storage.bayes_marker(TOKENIZER_KEY)
    header = {"format": FORMAT, "version": VERSION,
              "tokenizer": int(tokenizer) if tokenizer else None,
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "from": storage.backend}
    partial = path.with_name(path.name + ".part")
    try:
        with gzip.open(partial, "wt", encoding="utf-8", compresslevel=6) as out:
            out.write(json.dumps(header) + "\n")
            for record in storage.bayes_records():
                counts[record[0]] += 1
                out.write(json.dumps(_line(record), separators=(",", ":")) + "\n")
            out.write(json.dumps({"end": dict(counts)}) + "\n")
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return counts


def _record(obj: dict, where: str) -> tuple:
    try:
        if "token" in obj:
            return ("token", int(obj["token"], 16), int(obj["spam"]), int(obj["ham"]),
                    int(obj["day"]))
        if "model" in obj:
            return ("model", int(obj["model"], 16), float(obj["weight"]))
        if "learned" in obj:
            return ("learned", bytes.fromhex(obj["learned"]), _label(obj), int(obj["day"]))
        if "message" in obj:
            return ("message", bytes.fromhex(obj["message"]), _label(obj), int(obj["seq"]),
                    base64.b64decode(obj["tokens"], validate=True))
        if "totals" in obj:
            return ("totals", str(obj["totals"]), int(obj["value"]))
    except (KeyError, ValueError, TypeError) as exc:
        raise BackupError(f"{where}: bad record: {exc}") from exc
    raise BackupError(f"{where}: unknown record {sorted(obj)}")


def _label(obj: dict) -> str:
    if obj["class"] not in CLASSES:
        raise ValueError(f"class must be spam or ham, not {obj['class']!r}")
    return str(obj["class"])


def read_backup(path: Path) -> tuple[dict, list[tuple]]:
    """The header and every record of a backup, checked to the end line before anything is
    written (a store is never left half restored from a bad file)."""
    records: list[tuple] = []
    counts: Counter[str] = Counter()
    try:
        with gzip.open(path, "rt", encoding="utf-8") as src:
            lines: Iterator[str] = iter(src)
            try:
                header = json.loads(next(lines))
            except StopIteration:
                raise BackupError(f"{path}: empty file") from None
            except (json.JSONDecodeError, UnicodeDecodeError):
                header = None
            if not isinstance(header, dict) or header.get("format") != FORMAT:
                raise BackupError(f"{path}: not a pyspamd Bayes backup (no {FORMAT} header)")
            if header.get("version") != VERSION:
                raise BackupError(f"{path}: backup format version {header.get('version')}; "
                                  f"this pyspamd reads version {VERSION}")
            end = None
            for number, text in enumerate(lines, 2):
                try:
                    obj = json.loads(text)
                except json.JSONDecodeError:
                    raise BackupError(f"{path}:{number}: damaged record (not JSON); nothing "
                                      "restored") from None
                if "end" in obj:
                    end = obj["end"]
                    break
                record = _record(obj, f"{path}:{number}")
                counts[record[0]] += 1
                records.append(record)
    except gzip.BadGzipFile:
        raise BackupError(f"{path}: not a pyspamd Bayes backup (not gzip-compressed); "
                          "nothing restored") from None
    except (EOFError, zlib.error, UnicodeDecodeError):
        raise BackupError(f"{path}: damaged or cut short (its compressed data ends early or "
                          "is not text); nothing restored") from None
    except OSError as exc:
        raise BackupError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if end is None:
        raise BackupError(f"{path}: truncated (no end line); nothing restored")
    if {k: int(v) for k, v in end.items() if v} != {k: v for k, v in counts.items() if v}:
        raise BackupError(f"{path}: the end line counts {end}, the file holds {dict(counts)}")
    # Records go to the backend grouped by kind, as they were written.
    records.sort(key=lambda r: KINDS.index(r[0]))
    return header, records


def restore_backup(storage: BayesStore, path: Path) -> tuple[dict, Counter[str]]:
    header, records = read_backup(path)
    storage.bayes_replace(records)
    if header.get("tokenizer"):
        storage.set_bayes_marker(TOKENIZER_KEY, str(header["tokenizer"]).encode())
    return header, Counter(r[0] for r in records)
