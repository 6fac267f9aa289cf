"""Fitting the logistic model again soon after messages are learned while the daemon runs.

The workers classify with the model last fitted (they read it again when its generation
changes, classifiers/bayes.py); learning only adds counts and tokens. `pyspamc learn_*`
fits at the end of its run, but a message learned through the controller (the web page,
`pyspamc -h`, rspamc, an IMAPSieve pipe) or by autolearn in a worker would otherwise count
only from the nightly `pyspamc expire`. The controller runs this refitter: a fit a few
seconds after its own learns (learns arriving together share one fit), and a look every
CHECK_INTERVAL for learns made elsewhere.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from pyspamd.classifiers.bayes import Bayes
from pyspamd.faultlog import FaultLog
from pyspamd.storage import StorageMissing

log = logging.getLogger("pyspamd.bayes")
faults = FaultLog(log)

REFIT_DELAY = 2.0  # seconds after a learn: a folder moved by a sieve pipe is one fit
CHECK_INTERVAL = 30.0  # seconds between looks for learns by others (autolearn, other hosts)
MAX_WAIT = 20.0  # seconds a steady stream of learns may put the fit off


class ModelRefitter:
    def __init__(self, bayes: Callable[[], Bayes], delay: float = REFIT_DELAY,
                 interval: float = CHECK_INTERVAL) -> None:
        self._bayes = bayes  # called at each fit: the classifier of the config in force
        self.delay = delay
        self.interval = interval
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> ModelRefitter:
        self._thread = threading.Thread(target=self._run, name="bayes-refit", daemon=True)
        self._thread.start()
        return self

    def learned(self) -> None:
        """A message was learned or unlearned: fit after the delay."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _quiet(self) -> bool:
        """Wait until no learn came for `delay` seconds (a folder learned message by message
        is one fit, not one per message), but no longer than MAX_WAIT; True if stopping."""
        waited_from = time.monotonic()
        while True:
            self._wake.clear()
            if self._stopping.wait(self.delay):
                return True
            if not self._wake.is_set() or time.monotonic() - waited_from >= MAX_WAIT:
                return False

    def _run(self) -> None:
        while not self._stopping.is_set():
            asked = self._wake.wait(self.interval)
            if asked and self._quiet():
                return
            self._wake.clear()  # learns from here on wake the next round
            try:
                bayes = self._bayes()
                if bayes.classifier == "logistic" and (asked or bayes.model_outdated()):
                    started = time.monotonic()
                    tokens = bayes.fit_model()
                    log.info("Bayes model fitted again after learning: %d tokens in %.1f s",
                             tokens, time.monotonic() - started)
            except StorageMissing:
                pass  # nothing learned yet: nothing to fit
            except Exception as exc:  # the store down: the next learn or look tries again
                faults.report("bayes refit", "Bayes model not fitted again", exc)
