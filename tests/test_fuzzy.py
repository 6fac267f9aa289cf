"""Fuzzy hashes: near-duplicates of a reported message match, other mail of the same sender
or template does not; SQLite, Redis and Redis Cluster; pyspamc fuzzy_add / fuzzy_del."""

from __future__ import annotations

import io
import itertools
import mailbox
import sys
import time
from email.message import EmailMessage
from pathlib import Path

import pytest
from support.paths import REPO
from support.redis_server import RedisServer

from pyspamd.cli.pyspamc import main as pyspamc_main
from pyspamd.config import FuzzyConfig, load_config
from pyspamd.fuzzy.hashing import message_hashes, words
from pyspamd.fuzzy.store import find_matches, fuzzy_add, fuzzy_delete, hashes_of
from pyspamd.scanner import Scanner
from pyspamd.storage.base import Storage
from pyspamd.storage.redis_store import RedisStorage
from pyspamd.task import Task

_prefixes = itertools.count()

# A campaign as users report it: the recipient's name, a tracked link and a reference
# number change from copy to copy; the text around them is the campaign.
CAMPAIGN = """Dear {name},

We are contacting you about the outstanding balance on your account. Our records show
that the payment scheduled for this month was declined by your bank, and your service
will be suspended unless the balance is settled within forty eight hours.

To avoid any interruption please confirm your billing details through our secure
customer portal at {link} and follow the instructions on the screen. The process takes
only a few minutes and your access will be restored immediately after confirmation.

Reference number: {ref}

If you have already settled this balance please ignore this notice. We value your
business and thank you for choosing our services for all these years.

Customer Accounts Department
"""
# The same sender's template (greeting and signature) around a different message.
SAME_TEMPLATE = """Dear {name},

Thank you for attending the quarterly planning meeting on Tuesday. The slides from the
presentation are now available, and the notes from the discussion about the new office
layout will follow once the facilities team has reviewed the floor plans with everyone.

Please send your comments on the draft budget to your manager before the end of next
week, so that the figures can be included in the report to the board of directors.

If you have already settled this balance please ignore this notice. We value your
business and thank you for choosing our services for all these years.

Customer Accounts Department
"""


def message(body: str, subject: str = "Account notice",
            attachment: bytes | None = None, sender: str = "billing@example.com") -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "bob@example.net"
    msg["Subject"] = subject
    msg["Date"] = "Mon, 6 Jan 2003 10:00:00 +0000"
    msg.set_content(body)
    if attachment is not None:
        msg.add_attachment(attachment, maintype="application", subtype="pdf",
                           filename="statement.pdf")
    return msg.as_bytes()


REPORTED = message(CAMPAIGN.format(name="John Smith", link="http://pay.example.com/a?u=7781",
                                   ref="AB-2291-XK"))
VARIANT = message(CAMPAIGN.format(name="Maria Lopez",
                                  link="https://secure-billing.example.net/r/9ZQ1",
                                  ref="QF-8812-ZZ").replace("forty eight", "twenty four"))
TEMPLATE_HAM = message(SAME_TEMPLATE.format(name="John Smith"))
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 40




SETTINGS = FuzzyConfig()


def matches(storage: Storage, raw: bytes) -> list[tuple[int, str, float]]:
    found = find_matches(storage, hashes_of(Task(raw), SETTINGS), SETTINGS.min_similarity)
    return [(m.flag, m.kind, m.similarity) for m in found]


def test_normalising_drops_links_numbers_and_ids() -> None:
    assert words("Visit https://x.example/a?b=1 or www.y.example, ref AB12CD; "
                 "mail joe@z.example — Price $29.95 NOW!") == \
        ["visit", "or", "ref", "mail", "price", "now"]


def test_near_duplicate_matches_and_template_does_not(store: Storage) -> None:
    assert fuzzy_add(store, Task(REPORTED), SETTINGS, 1) == (1, 1)
    ((flag, kind, score),) = matches(store, VARIANT)
    assert (flag, kind) == (1, "txt") and 0.7 <= score < 1.0
    assert matches(store, TEMPLATE_HAM) == []
    assert matches(store, message(CAMPAIGN.format(name="A", link="", ref="")[:150])) == []
    assert store.fuzzy_count() == 1


def test_attachment_exact_hash(store: Storage) -> None:
    fuzzy_add(store, Task(message("Statement attached.", attachment=PDF)), SETTINGS, 1)
    other_text = message(SAME_TEMPLATE.format(name="Zed"), attachment=PDF)
    assert (1, "bin", 1.0) in matches(store, other_text)
    changed = message("Statement attached.", attachment=PDF + b"x")
    assert matches(store, changed) == []


def test_flags_weights_and_delete(store: Storage) -> None:
    task = Task(REPORTED)
    fuzzy_add(store, task, SETTINGS, 2, weight=2.5)
    fuzzy_add(store, task, SETTINGS, 2, weight=1.0)
    (stored,) = store.fuzzy_find([b for h in hashes_of(task, SETTINGS) for b in h.buckets], [])
    assert stored.flag == 2 and stored.weight == pytest.approx(3.5)
    assert [m[0] for m in matches(store, VARIANT)] == [2]
    assert fuzzy_delete(store, Task(VARIANT), SETTINGS, 2) == (1, 0)  # only its own hash
    assert fuzzy_delete(store, task, SETTINGS, 1) == (1, 0)  # not stored with flag 1
    assert fuzzy_delete(store, task, SETTINGS, 2) == (1, 1)
    assert matches(store, VARIANT) == [] and store.fuzzy_count() == 0
    fuzzy_add(store, task, SETTINGS, 1)  # a bucket that kept the old id finds the new hash
    assert [m[0] for m in matches(store, VARIANT)] == [1]


def test_expiry(store: Storage) -> None:
    short = FuzzyConfig(expire_days=0.5 / 86400)  # half a second
    fuzzy_add(store, Task(REPORTED), short, 1)
    assert matches(store, VARIANT)
    time.sleep(0.7)
    assert matches(store, VARIANT) == [] and store.fuzzy_count() == 0
    assert store.fuzzy_expire() == 1
    assert store.fuzzy_expire() == 0


def test_short_text_gets_no_text_hash() -> None:
    assert message_hashes(Task(message("Buy cheap watches now, best prices here.")), 10,
                          4096) == []


def _scanner(tmp_path: Path, extra: str = "") -> Scanner:
    path = tmp_path / "pyspamd.toml"
    path.write_text(f'[rules]\ndirs = ["{REPO / "rules"}"]\n[bayes]\nenabled = false\n'
                    f'[storage]\npath = "{tmp_path / "store.sqlite"}"\n' + extra)
    return Scanner.from_config(load_config(path))


def run(config: Path, *args: str) -> int:
    return pyspamc_main(["--config", str(config), *args])


def test_cli_add_from_mbox_maildir_and_stdin_then_scan_and_delete(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "pyspamd.toml"
    config.write_text(f'[rules]\ndirs = ["{REPO / "rules"}"]\n[bayes]\nenabled = false\n'
                      f'[storage]\npath = "{tmp_path / "store.sqlite"}"\n')
    box = mailbox.mbox(str(tmp_path / "reported.mbox"))
    box.add(REPORTED)
    box.flush()
    maildir = mailbox.Maildir(str(tmp_path / "Maildir"))
    maildir.add(message("Statement attached.", attachment=PDF))
    assert run(config, "fuzzy_add", "-w", "2", str(tmp_path / "reported.mbox"),
               str(tmp_path / "Maildir")) == 0
    assert capsys.readouterr().out.startswith("messages: 2, hashes: 2, new: 2,")
    assert run(config, "stat") == 0
    assert "Fuzzy hashes stored: 2" in capsys.readouterr().out
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(
        message(SAME_TEMPLATE.format(name="X"), subject="other"))))
    assert run(config, "fuzzy_add", "-f", "3", "-") == 0
    capsys.readouterr()

    scanner = _scanner(tmp_path)
    variant = scanner.scan(VARIANT)
    assert variant.symbols["FUZZY_DENIED"].options[0].startswith("txt:0.")
    assert 0.7 * 12 <= variant.symbols["FUZZY_DENIED"].score < 12
    assert "FUZZY_WHITE" in scanner.scan(TEMPLATE_HAM).symbols
    assert "FUZZY_DENIED" not in scanner.scan(TEMPLATE_HAM).symbols

    assert run(config, "fuzzy_del", str(tmp_path / "reported.mbox")) == 0
    assert "deleted: 1" in capsys.readouterr().out
    assert "FUZZY_DENIED" not in _scanner(tmp_path).scan(VARIANT).symbols
    assert run(config, "fuzzy_add", "-f", "9", str(tmp_path / "reported.mbox")) == 1
    assert "flag 9 is not in [fuzzy.flags]" in capsys.readouterr().err


def test_learn_spam_also_fuzzy_adds_when_configured(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "pyspamd.toml"
    config.write_text(f'[rules]\ndirs = ["{REPO / "rules"}"]\n'
                      f'[storage]\npath = "{tmp_path / "store.sqlite"}"\n'
                      "[fuzzy]\nlearn_spam = true\n")
    (tmp_path / "reported.eml").write_bytes(REPORTED)
    assert run(config, "learn_spam", str(tmp_path / "reported.eml")) == 0
    capsys.readouterr()
    assert "FUZZY_DENIED" in _scanner(tmp_path).scan(VARIANT).symbols


def test_example_config_documents_fuzzy_and_antivirus() -> None:
    import dataclasses

    from pyspamd.config import AntivirusConfig, Config

    example = REPO / "pyspamd.toml.example"
    loaded, defaults, text = load_config(example), Config(), example.read_text()
    assert loaded.fuzzy == defaults.fuzzy and loaded.antivirus == defaults.antivirus
    for name, options in (("fuzzy", FuzzyConfig), ("antivirus", AntivirusConfig)):
        assert f"\n[{name}]\n" in text
        for f in dataclasses.fields(options):
            if f.name not in ("flags", "families"):  # sub-tables
                assert f"\n{f.name} = " in text, f"{name}.{f.name} missing from the example"
    assert "\n[fuzzy.flags.1]\n" in text and "\n[antivirus.families]\n" in text


@pytest.mark.parametrize(("text", "expected"), [
    ('[fuzzy.flags.one]\nsymbol = "X"\n', "fuzzy.flags.one"),
    ('[fuzzy.flags.4]\nsymbol = "NOT A SYMBOL"\n', "fuzzy.flags.4.symbol"),
    ("[fuzzy]\nmin_similarity = 0.1\n", "fuzzy.min_similarity"),
    ("[fuzzy]\nmin_shingles = 1\n", "fuzzy.min_shingles"),
    ("[fuzzy]\nlearn_spam = true\nlearn_flag = 7\n", "fuzzy.learn_flag"),
])
def test_config_errors(tmp_path: Path, text: str, expected: str) -> None:
    from pyspamd.config import ConfigError

    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert any(expected in line and f"{path}:" in line for line in info.value.errors), \
        info.value.errors


def test_scan_with_a_redis_store_and_an_empty_store_costs_no_hashing(
        tmp_path: Path, redis_proc: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    import pyspamd.checks.fuzzy as fuzzy_check

    prefix = f"fz{next(_prefixes)}"
    path = tmp_path / "redis.toml"
    path.write_text(f'[rules]\ndirs = ["{REPO / "rules"}"]\n[bayes]\nenabled = false\n'
                    f'[storage]\nbackend = "redis"\nredis_url = "{redis_proc.url}"\n'
                    f'redis_prefix = "{prefix}"\n')
    config = load_config(path)
    scanner = Scanner.from_config(config)
    hashed: list[int] = []
    real = fuzzy_check.hashes_of
    monkeypatch.setattr(fuzzy_check, "hashes_of",
                        lambda task, settings: hashed.append(1) or real(task, settings))
    assert "FUZZY_DENIED" not in scanner.scan(VARIANT).symbols
    assert hashed == []  # nothing stored: the check did not hash
    storage = RedisStorage(redis_proc.url, prefix=prefix)
    fuzzy_add(storage, Task(REPORTED), config.fuzzy, 1)
    storage.close()
    check = next(c for c in scanner.checks if c.name == "fuzzy")
    check._idle_until = 0.0  # the minute until it looks again, passed
    assert scanner.scan(VARIANT).symbols["FUZZY_DENIED"].options[0].startswith("txt:0.")
    assert hashed == [1]


def test_hashes_are_the_same_in_every_version() -> None:
    # Stored hashes are compared with new ones: a change to the normalisation, the
    # shingles, the permutations or the bucket keys would silently make every stored hash
    # useless. Change these numbers only with a note that stores must be filled again.
    (fh,) = message_hashes(Task(REPORTED), 10, 4096)
    assert fh.id == 3679259877903827564
    assert fh.buckets[:2] == (8069182347792131422, 4072546248125128481)
    assert fh.signature is not None
    assert fh.signature[:4].tolist() == [17472891, 27869685, 6829604, 7944303]
    (exact,) = message_hashes(Task(message("x", attachment=PDF)), 10, 4096)
    assert exact.kind == "bin" and exact.id == _expected_pdf_id()


def _expected_pdf_id() -> int:
    import xxhash

    value = xxhash.xxh3_64_intdigest(PDF)
    return value - (1 << 64) if value >= 1 << 63 else value
