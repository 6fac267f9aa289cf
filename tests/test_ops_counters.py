"""What the admin reads: learns done with pyspamc in /metrics and `pyspamc stat`, and 8-bit
headers in the history decoded as UTF-8 first, then in the message's own charset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.paths import CORPUS

from pyspamd.cli.pyspamc import main as pyspamc
from pyspamd.config import Config, StorageConfig
from pyspamd.scanner import Scanner
from pyspamd.stats import prometheus
from pyspamd.stats.reader import StatsReader
from pyspamd.stats.recorder import HISTORY_FIELDS, history_row
from pyspamd.storage import open_storage
from pyspamd.task import Envelope

SPAM = sorted((CORPUS / "spam").rglob("*.eml"))[:6]


def test_pyspamc_learns_count_in_metrics_and_stat(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[storage]\npath = "{tmp_path}/s.sqlite"\n')
    assert pyspamc(["-c", str(config), "learn_spam", *map(str, SPAM)]) == 0
    assert pyspamc(["-c", str(config), "learn_spam", *map(str, SPAM[:2])]) == 0
    capsys.readouterr()
    assert pyspamc(["-c", str(config), "stat"]) == 0
    assert "Learn requests: spam: already learned 2, learned 6" in capsys.readouterr().out
    with open_storage(StorageConfig(path=str(tmp_path / "s.sqlite"))) as storage:
        text = prometheus.render(StatsReader(storage), None, 1.0)
    samples = {(s.labels["class"], s.labels["outcome"]): s.value
               for family in text_string_to_metric_families(text)
               if family.name == "pyspamd_learns" for s in family.samples}
    assert samples == {("spam", "learned"): 6, ("spam", "already learned"): 2}


@pytest.mark.parametrize(("raw", "charset", "expected"), [
    ("Grüße aus Köln".encode(), "iso-8859-1", "Grüße aus Köln"),  # UTF-8 first, whatever
    ("Grüße aus Köln".encode("latin-1"), "iso-8859-1", "Grüße aus Köln"),
    ("Привет, мир".encode("koi8-r"), "koi8-r", "Привет, мир"),  # the message's charset
    ("Příliš žluťoučký".encode("iso-8859-2"), "iso-8859-2", "Příliš žluťoučký"),
    ("café".encode("latin-1"), None, "café"),  # nothing declared: windows-1252
])
def test_8bit_subject_in_the_history(raw: bytes, charset: str | None, expected: str) -> None:
    content_type = (f"Content-Type: text/plain; charset={charset}\n".encode()
                    if charset else b"")
    message = (b"From: a@example.org\nTo: b@example.net\nSubject: " + raw + b"\n"
               + content_type + b"\nhello\n")
    scanner = Scanner.from_config(Config())
    task = scanner.task(message, Envelope())
    result = scanner.scan_task(task)
    row = dict(zip(HISTORY_FIELDS, history_row(result, task.envelope, len(message), 0.0,
                                               "milter", 1), strict=True))
    # As stored (JSON) and read back by the page.
    assert json.loads(json.dumps(row))["subject"] == expected
    assert result.symbols["HEADER_8BIT"].options == ["subject"]
