"""A message learned through the controller of a running daemon changes the milter's
verdict within a minute, without waiting for the nightly `pyspamc expire`."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from support.controller_proc import eventually
from support.messages import make_message
from support.mta import MtaSession, free_port, running_daemon, wait_for_port
from support.paths import CORPUS

from pyspamd.classifiers.bayes import Bayes
from pyspamd.classifiers.refit import ModelRefitter
from pyspamd.cli.pyspamc import main as pyspamc_main
from pyspamd.storage.base import HAM, SPAM
from pyspamd.storage.sqlite_store import SqliteStorage
from pyspamd.task import Task


def _bayes_symbol(port: int, raw: bytes) -> str:
    session = MtaSession(port)
    try:
        result = session.send(raw, queue_id="4QLIVE")
    finally:
        session.close()
    found = re.search(r"BAYES_(SPAM|HAM)", result.added.get("X-Spamd-Result", ""))
    return found.group(0) if found else ""


def test_learned_through_the_controller_counts_within_a_minute(tmp_path: Path) -> None:
    hams = sorted((CORPUS / "ham" / "cur").iterdir())
    spams = sorted((CORPUS / "spam" / "cur").iterdir())
    for name, files in (("ham", hams[:30]), ("spam", spams[:30])):
        (tmp_path / name).mkdir()
        for path in files:
            shutil.copy(path, tmp_path / name)
    port = free_port()
    config_text = (f'[storage]\npath = "{tmp_path / "store.sqlite"}"\n[bayes]\nmin_learns = 10\n'
                   f'[greylist]\nenabled = false\n[model]\nenabled = false\n'
                   f'[controller]\nlisten = "127.0.0.1:{port}"\n')
    (tmp_path / "learn.toml").write_text(config_text)
    for command, folder in (("learn_ham", "ham"), ("learn_spam", "spam")):
        assert pyspamc_main(["-c", str(tmp_path / "learn.toml"), command,
                             str(tmp_path / folder)]) == 0
    message = next(path.read_bytes() for path in hams[30:]
                   if b"BAYES" not in path.read_bytes())
    with running_daemon(tmp_path, config_text, workers=2) as daemon:
        wait_for_port(port)
        assert _bayes_symbol(daemon.port, message) == "BAYES_HAM"
        (tmp_path / "one.eml").write_bytes(message)
        assert pyspamc_main(["-h", f"127.0.0.1:{port}", "learn_spam",
                             str(tmp_path / "one.eml")]) == 0
        assert eventually(lambda: all(_bayes_symbol(daemon.port, message) == "BAYES_SPAM"
                                      for _ in range(4)),
                          timeout=60), daemon.log()[-2000:]
        assert "Bayes model fitted again after learning" in daemon.log()


def test_learns_by_others_are_fitted_by_the_periodic_look(tmp_path: Path) -> None:
    """Autolearn in a worker learns into the store without telling the controller: the
    refitter's look sees the totals moved since the fit and fits again."""
    store = SqliteStorage(tmp_path / "store.sqlite")
    bayes = Bayes(store, min_learns=1)
    for n, label in enumerate((SPAM, HAM, SPAM, HAM)):
        bayes.learn(Task(make_message({"Message-ID": f"<m{n}@example.org>"},
                                      f"word{n} {label}\n")), label)
    bayes.fit_model()
    assert not bayes.model_outdated()
    generation = store.model_snapshot(0).generation
    bayes.learn(Task(make_message({"Message-ID": "<late@example.org>"}, "late spam\n")), SPAM)
    assert bayes.model_outdated()
    refitter = ModelRefitter(lambda: bayes, delay=0.0, interval=0.1).start()
    try:
        assert eventually(lambda: not bayes.model_outdated(), timeout=10)
    finally:
        refitter.stop()
    assert store.model_snapshot(0).generation != generation


def test_a_store_not_made_yet_is_no_fault(tmp_path: Path,
                                          caplog: pytest.LogCaptureFixture) -> None:
    """A new install's controller looks before anything is learned: nothing to fit, and
    nothing in the log."""
    import time

    bayes = Bayes(SqliteStorage(tmp_path / "none.sqlite", create=False))
    refitter = ModelRefitter(lambda: bayes, delay=0.0, interval=0.05).start()
    try:
        time.sleep(0.5)
    finally:
        refitter.stop()
    assert not (tmp_path / "none.sqlite").exists()
    assert not [r for r in caplog.records if r.name == "pyspamd.bayes"]
