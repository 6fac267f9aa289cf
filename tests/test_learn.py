"""pyspamc learn_spam / learn_ham / unlearn / stat / expire / eval, and their bad input."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from support.messages import make_message
from support.mta import free_port
from support.paths import CORPUS, REPO
from support.redis_server import RedisServer

from pyspamd.classifiers.bayes import TOKENIZER_KEY, Bayes, today
from pyspamd.classifiers.tokenizer import TOKENIZER_VERSION
from pyspamd.cli.learn import Progress, Summary, parse_duration
from pyspamd.cli.pyspamc import main as pyspamc_main
from pyspamd.sources import MessageSource, not_a_message
from pyspamd.storage.base import HAM, SPAM, LearnOutcome
from pyspamd.storage.sqlite_store import SqliteStorage
from pyspamd.task import Task

SPAM_DIR = CORPUS / "spam"
HAM_DIR = CORPUS / "ham"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "pyspamd.toml"
    path.write_text('[storage]\npath = "bayes.sqlite"\n[bayes]\nmin_learns = 50\n')
    return path


def run(config: Path, *args: str) -> int:
    return pyspamc_main(["--config", str(config), *args])


def summary(out: str) -> dict[str, int]:
    line = next(ln for ln in out.splitlines() if ln.startswith(("learned:", "unlearned:")))
    return {k.strip(): int(v) for k, v in (p.split(":") for p in line.split(", "))}


def spam_files(n: int) -> list[Path]:
    return sorted((SPAM_DIR / "cur").iterdir())[:n]


def test_learn_stat_relearn_move_unlearn(config: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert run(config, "learn_spam", str(SPAM_DIR)) == 0
    first = summary(capsys.readouterr().out)
    assert first["learned"] + first["already learned"] == 100 and first["failed"] == 0
    assert run(config, "learn_ham", str(HAM_DIR)) == 0
    capsys.readouterr()
    assert run(config, "stat") == 0
    out = capsys.readouterr().out
    assert f"Statfile: BAYES_SPAM type: sqlite3; learned: {first['learned']}; users: 1" in out
    assert "Statfile: BAYES_HAM type: sqlite3; learned: " in out
    assert "Messages learned: " in out and "Tokens stored: " in out
    model_tokens = int(out.split("logistic model tokens: ")[1].split()[0])
    assert "Model: logistic;" in out and model_tokens > 1000  # fitted by learn_*
    assert f"Backend: sqlite3 {config.parent / 'bayes.sqlite'}; size: " in out
    # the same messages again: counted, not learned twice
    assert run(config, "learn_spam", str(SPAM_DIR)) == 0
    again = summary(capsys.readouterr().out)
    assert again == {"learned": 0, "already learned": 100, "moved": 0, "failed": 0}
    # learned as the other class: moved
    one = str(spam_files(1)[0])
    assert run(config, "learn_ham", one) == 0
    assert summary(capsys.readouterr().out)["moved"] == 1
    assert run(config, "unlearn", one) == 0
    assert summary(capsys.readouterr().out) == {"unlearned": 1, "not learned": 0, "failed": 0}
    assert run(config, "unlearn", one) == 0
    assert summary(capsys.readouterr().out)["not learned"] == 1
    assert run(config, "stat") == 0
    assert (f"Statfile: BAYES_SPAM type: sqlite3; learned: {first['learned'] - 1}; users: 1"
            in capsys.readouterr().out)


def test_maildir_plus_plus_folder_mbox_stdin_and_single_file(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    maildir = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / ".Spam" / sub).mkdir(parents=True)
        (maildir / sub).mkdir(exist_ok=True)
    files = spam_files(6)
    shutil.copy(files[0], maildir / ".Spam" / "cur" / "1:2,S")
    shutil.copy(files[1], maildir / ".Spam" / "new" / "2")
    # tmp/ holds messages still being delivered: never read
    (maildir / ".Spam" / "tmp" / "partial").write_bytes(files[2].read_bytes()[:100])
    shutil.copy(files[3], maildir / "cur" / "inbox-ham")
    assert run(config, "learn_spam", str(maildir / ".Spam")) == 0
    assert summary(capsys.readouterr().out)["learned"] == 2  # cur + new, not tmp, not inbox
    # an mbox of two messages, one body line quoted as ">From "
    body = files[4].read_bytes() + b"\n>From the desk of the CEO\n"
    mbox = tmp_path / "spam.mbox"
    mbox.write_bytes(b"From a@b.example Mon Jan  6 10:00:00 2003\n" + body + b"\n"
                     + b"From c@d.example Mon Jan  6 11:00:00 2003\n" + files[5].read_bytes())
    assert run(config, "learn_spam", str(mbox)) == 0
    assert summary(capsys.readouterr().out)["learned"] == 2
    # the first mbox message, unquoted, is the same message as this file: already learned
    single = tmp_path / "single.eml"
    single.write_bytes(body.replace(b">From the desk", b"From the desk"))
    assert run(config, "learn_spam", str(single)) == 0
    assert summary(capsys.readouterr().out)["already learned"] == 1
    proc = subprocess.run([sys.executable, "-m", "pyspamd.cli.pyspamc", "--config",
                           str(config), "learn_ham", "-"], input=make_message(),
                          capture_output=True, check=False)
    assert proc.returncode == 0
    assert summary(proc.stdout.decode())["learned"] == 1


def test_newer_than_uses_file_mtime(config: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "spam"
    folder.mkdir()
    old = time.time() - 3 * 86400
    for n, path in enumerate(spam_files(5)):
        target = folder / f"m{n}"
        shutil.copy(path, target)
        if n < 3:
            os.utime(target, (old, old))
    assert run(config, "learn_spam", "--newer-than", "1d", str(folder)) == 0
    assert summary(capsys.readouterr().out)["learned"] == 2
    assert parse_duration("12h") == 43200 and parse_duration("2w") == 14 * 86400
    with pytest.raises(SystemExit):
        run(config, "learn_spam", "--newer-than", "yesterday", str(folder))


def test_bad_inputs_are_reported_and_the_run_goes_on(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    shutil.copy(spam_files(1)[0], folder / "a-good.eml")
    (folder / "b-binary.bin").write_bytes(bytes(range(256)) * 40)
    (folder / "c-empty.eml").write_bytes(b"")
    (folder / "d-text.txt").write_bytes(b"just some notes, no headers at all\n")
    # an mbox whose second separator is broken: it stays part of the first message
    (folder / "e-broken.mbox").write_bytes(
        b"From a@b.example Mon Jan  6 10:00:00 2003\nSubject: one\n\nbody one\n\n"
        b"From broken-line-without-date\nSubject: two\n\nbody two\n")
    assert run(config, "learn_spam", str(folder), str(tmp_path / "missing")) == 1
    out = capsys.readouterr().out
    counts = summary(out)
    assert counts["learned"] == 2 and counts["failed"] == 4
    assert f"failed: {folder / 'b-binary.bin'}: binary data, not a mail message" in out
    assert f"failed: {folder / 'c-empty.eml'}: empty file" in out
    assert f"failed: {folder / 'd-text.txt'}: not a mail message" in out
    assert f"failed: {tmp_path / 'missing'}: no such file or directory" in out


def test_unreadable_file() -> None:
    # Root reads any file whatever its mode, so as root the learner runs as "nobody", in a
    # directory of its own that nobody may write (pytest's tmp_path is private to root).
    top = Path(tempfile.mkdtemp(prefix="pyspamd-learn-unreadable-"))
    try:
        top.chmod(0o777)
        config = top / "pyspamd.toml"
        config.write_text('[storage]\npath = "bayes.sqlite"\n')
        config.chmod(0o644)
        folder = top / "spam"
        folder.mkdir()
        folder.chmod(0o755)
        for n, path in enumerate(spam_files(2)):
            shutil.copy(path, folder / f"m{n}")
            (folder / f"m{n}").chmod(0o644)
        (folder / "m1").chmod(0)
        command = [sys.executable, "-m", "pyspamd.cli.pyspamc", "--config", str(config),
                   "learn_spam", str(folder)]
        if os.geteuid() == 0:
            if shutil.which("setpriv") is None:
                pytest.skip("setpriv (util-linux) is needed to drop root for this test")
            command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                       *command]
        proc = subprocess.run(command, capture_output=True, check=False, cwd=top,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
        out = proc.stdout.decode()
        assert proc.returncode == 1, proc.stderr.decode()
        assert summary(out)["learned"] == 1
        assert f"failed: {folder / 'm1'}: Permission denied" in out
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_empty_folder(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert run(config, "learn_ham", str(tmp_path / "empty")) == 0
    assert summary(capsys.readouterr().out) == {
        "learned": 0, "already learned": 0, "moved": 0, "failed": 0}


def test_redis_down_fails_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "pyspamd.toml"
    config.write_text(f'[storage]\nbackend = "redis"\n'
                      f'redis_url = "redis://127.0.0.1:{free_port()}/0"\n')
    assert run(config, "learn_spam", str(SPAM_DIR)) == 1
    err = capsys.readouterr().err
    assert "Redis store" in err and "cannot connect" in err and "nothing was changed" in err
    assert run(config, "stat") == 1


def test_locked_and_corrupt_sqlite(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = config.parent / "bayes.sqlite"
    assert run(config, "learn_spam", str(spam_files(1)[0])) == 0
    capsys.readouterr()
    config.write_text(config.read_text().replace("[storage]\n", "[storage]\nbusy_timeout = 0.3\n"))
    holder = sqlite3.connect(db, isolation_level=None, timeout=0)
    holder.execute("BEGIN EXCLUSIVE")  # another learner is writing
    try:
        assert run(config, "learn_spam", str(spam_files(2)[1])) == 1
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    out, err = capsys.readouterr()
    assert f"SQLite store {db}" in out + err and "locked" in out + err
    db.write_bytes(b"garbage" * 1000)
    for name in ("-wal", "-shm"):
        Path(f"{db}{name}").unlink(missing_ok=True)
    assert run(config, "learn_spam", str(spam_files(1)[0])) == 1
    assert f"SQLite store {db}" in capsys.readouterr().err
    assert run(config, "stat") == 1
    assert "corrupt" in capsys.readouterr().err


def test_not_a_message() -> None:
    assert not_a_message(make_message()) is None
    assert not_a_message(b"From x@y Mon Jan  6 10:00:00 2003\nSubject: a\n\nb\n") is None
    assert not_a_message(b"\x00\x01\x02garbage") is not None
    assert not_a_message(b"   \n") == "empty file"


def test_expire_command(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(config, "learn_spam", str(SPAM_DIR)) == 0
    assert run(config, "learn_ham", str(HAM_DIR)) == 0
    capsys.readouterr()
    assert run(config, "expire") == 0  # everything was learned today: nothing goes
    assert capsys.readouterr().out.startswith("expired: 0 tokens")
    assert run(config, "expire", "--days", "-1") == 0  # "before tomorrow": every rare token
    out = capsys.readouterr().out
    assert int(out.split()[1]) > 1000 and "tokens stored:" in out
    assert int(out.split("model fitted: ")[1].split()[0]) > 1000
    assert " tokens from 100 spam, 100 ham messages; size: " in out


def test_expire_fits_what_autolearn_added(config: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert run(config, "learn_spam", str(SPAM_DIR)) == 0
    store = SqliteStorage(config.parent / "bayes.sqlite")
    novel = np.array([12345], dtype=np.uint64)
    store.learn(b"autolearned-msg!", novel, HAM, today())  # what the daemon's autolearn does
    assert store.token_counts(novel).weights.tolist() == [0.0]  # type: ignore[union-attr]
    assert run(config, "expire") == 0
    assert store.token_counts(novel).weights.tolist()[0] < 0  # type: ignore[union-attr]
    store.close()


def test_a_store_learned_by_another_tokenizer_version_is_reported(
        config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(config, "learn_spam", *map(str, spam_files(5))) == 0
    assert "tokenizer" not in capsys.readouterr().err
    store = SqliteStorage(config.parent / "bayes.sqlite")
    assert store.get(TOKENIZER_KEY) == str(TOKENIZER_VERSION).encode()
    assert run(config, "stat") == 0
    assert "Tokenizer:" not in capsys.readouterr().out
    store.delete(TOKENIZER_KEY)  # as a store learned before versions were recorded
    assert run(config, "learn_ham", str(HAM_DIR)) == 0
    err = capsys.readouterr().err
    assert (f"learned with tokenizer version 1 and this pyspamd tokenizes as version "
            f"{TOKENIZER_VERSION}" in err and "relearn" in err)
    assert run(config, "stat") == 0
    assert (f"Tokenizer: learned with version 1, this pyspamd tokenizes as version "
            f"{TOKENIZER_VERSION}: relearn" in capsys.readouterr().out)
    store.close()


def test_autolearn_marks_a_new_store_with_the_tokenizer_version(tmp_path: Path) -> None:
    store = SqliteStorage(tmp_path / "new.sqlite")
    bayes = Bayes(store)
    message = spam_files(1)[0].read_bytes()
    bayes.learn(Task(message), SPAM)  # the daemon's autolearn path
    assert store.get(TOKENIZER_KEY) == str(TOKENIZER_VERSION).encode()
    assert Bayes(store).tokenizer_warning() is None
    store.close()


def test_max_fit_messages_bounds_the_stored_tokens(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "pyspamd.toml"
    config.write_text('[storage]\npath = "bayes.sqlite"\n[bayes]\nmax_fit_messages = 3\n')
    assert run(config, "learn_spam", str(SPAM_DIR)) == 0
    learned = summary(capsys.readouterr().out)["learned"]
    assert run(config, "learn_ham", str(HAM_DIR)) == 0
    capsys.readouterr()
    assert run(config, "stat") == 0
    out = capsys.readouterr().out
    assert (f"Statfile: BAYES_SPAM type: sqlite3; learned: {learned}; users: 1" in out
            and learned > 3)
    assert ("Model fitted from: 3 spam, 3 ham messages (the newest 3 of each class, "
            "[bayes] max_fit_messages)") in out
    store = sqlite3.connect(tmp_path / "bayes.sqlite")
    assert store.execute("SELECT count(*) FROM bayes_messages").fetchone() == (6,)
    store.close()
    assert run(config, "learn_spam", str(SPAM_DIR)) == 0  # dropped ones are still known
    assert summary(capsys.readouterr().out)["already learned"] == 100


def test_learn_on_redis_backend(redis_proc: RedisServer, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "pyspamd.toml"
    config.write_text(f'[storage]\nbackend = "redis"\nredis_url = "{redis_proc.url}"\n'
                      f'redis_prefix = "learncli"\n')
    assert run(config, "learn_spam", str(SPAM_DIR)) == 0
    learned = summary(capsys.readouterr().out)["learned"]
    assert run(config, "stat") == 0
    assert (f"Statfile: BAYES_SPAM type: redis; learned: {learned}; users: 1"
            in capsys.readouterr().out)


def test_eval_prints_the_measures(capsys: pytest.CaptureFixture[str]) -> None:
    assert pyspamc_main(["eval", "--spam", str(SPAM_DIR), "--ham", str(HAM_DIR),
                         "--split", "0.7", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    for measure in ("accuracy (unsure = wrong)", "spam recall", "ham false positives",
                    "unsure", "1 - ROC AUC", "train / test messages | 140 / 60"):
        assert measure in out
    assert pyspamc_main(["eval", "--spam", str(SPAM_DIR), "--ham", str(HAM_DIR),
                         "--by-date"]) == 0
    assert "by Date header" in capsys.readouterr().out
    assert pyspamc_main(["eval", "--spam", str(SPAM_DIR), "--ham", str(HAM_DIR),
                         "--split", "1.5"]) == 2


def test_progress_bar_on_a_terminal_counts_in_a_log(capsys: pytest.CaptureFixture[str]) -> None:
    order = (LearnOutcome.LEARNED, LearnOutcome.ALREADY, LearnOutcome.MOVED)
    done = Summary()
    sources = [MessageSource(f"f{n}", b"x") for n in range(3)] + [
        MessageSource(f"box:{n}", b"x", part=n) for n in (1, 2, 3)]  # one mbox file
    bar = Progress(tty=True, total=4)
    for _ in bar.track(sources, done, order):
        done.add(LearnOutcome.LEARNED)
    bar.end()
    err = capsys.readouterr().err
    assert "100%" in err and "4/4" in err and "learned: 6, already learned: 0" in err
    done = Summary()
    log = Progress(tty=False, total=4, every=2)
    for _ in log.track(sources, done, order):
        done.add(LearnOutcome.LEARNED)
    log.end()
    lines = capsys.readouterr().err.splitlines()
    assert [ln.split(" (")[0] for ln in lines] == [
        "2 messages, 2/4 files", "4 messages, 4/4 files", "6 messages, 4/4 files"]
    assert "50%" in lines[0] and "messages/s" in lines[0] and " left): learned: 2," in lines[0]
    assert "\r" not in "".join(lines)


def test_a_learn_run_in_a_log_shows_its_progress(config: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Not on a terminal (cron): a line every 500 messages, with the total of files."""
    folder = config.parent / "many"
    folder.mkdir()
    for n, path in enumerate(sorted((SPAM_DIR / "cur").iterdir()) * 6):
        (folder / f"{n:04d}.eml").write_bytes(path.read_bytes())
    assert run(config, "learn_spam", str(folder)) == 0
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("500 messages, 500/600 files (83%, ") and " left): " in lines[0]


def test_folder_named_like_the_other_class_is_refused(config: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    tree = tmp_path / "mail"
    (tree / "spam" / "cur").mkdir(parents=True)
    (tree / "ham").mkdir()
    for n, path in enumerate(sorted((HAM_DIR / "cur").iterdir())[:2]):
        shutil.copy(path, tree / "ham" / f"{n}.eml")
    for path in spam_files(3):
        shutil.copy(path, tree / "spam" / "cur")
    assert run(config, "learn_ham", str(tree)) == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"pyspamc: not learned: {tree / 'spam'} (3 messages) would be learned as "
                   "ham though named like spam; name the folders to learn, or add --force")
    assert not (config.parent / "bayes.sqlite").exists()  # nothing learned, no store made
    assert run(config, "learn_spam", str(tree / "spam")) == 0  # named, not refused
    assert run(config, "learn_spam", str(tree)) == 1
    assert f"{tree / 'ham'} (2 messages) would be learned as spam" in capsys.readouterr().err
    assert run(config, "learn_ham", "--force", str(tree)) == 0
    assert summary(capsys.readouterr().out)["moved"] == 3
