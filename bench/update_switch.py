"""How long does a channel update take to reach the workers, and what does it cost the
scans under way?

    python bench/update_switch.py [--rounds 3] [--workers 2] [--senders 4]

A real nginx serves the channel over HTTPS (a test CA); a daemon scans corpus messages from
`--senders` milter connections the whole time. Each round publishes a new set: the shipped
rules plus generated ones (600 rules and more in all), one marker rule, and a changed
content model (about 2 MB), then runs `pyspamc update` (a process, as cron runs it) and
probes the milter until a message gets the marker's symbol. Prints, per round: the update
command's time (download, signature and hashes, staging, config test, switch, SIGHUP), the
time from its start until workers scan with the new set, and the scans' time before and
during the switch (p50, max), with the count over the scan budget (milter.scan_timeout).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# bench/milter.py would stand in for pymilter's C module `milter`: this folder must not be
# on sys.path (tables.py is loaded by its path below).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]
sys.path.insert(0, str(REPO / "tests"))

import numpy as np  # noqa: E402
from support.https_server import https_server  # noqa: E402
from support.mta import Daemon, MtaSession  # noqa: E402
from support.paths import CORPUS  # noqa: E402

from pyspamd.config_schema import shipped_path  # noqa: E402
from pyspamd.sources import iter_messages  # noqa: E402
from pyspamd.update.bundle import generate_key, make_bundle, private_key  # noqa: E402

_spec = importlib.util.spec_from_file_location("tables", REPO / "bench" / "tables.py")
assert _spec is not None and _spec.loader is not None
tables = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tables)

SCAN_TIMEOUT = 20.0
GENERATED_RULES = 60  # on top of the shipped ones: 600 and more in all


def make_set(top: Path, version: int, marker: str) -> Path:
    src = top / f"set{version}"
    shutil.copytree(shipped_path("rules"), src / "rules")
    lines = [f"body BENCH_GEN_{n} /\\bbenchword{n}x{version}\\b/i\nscore BENCH_GEN_{n} 0.1\n"
             for n in range(GENERATED_RULES)]
    lines.append(f"body {marker} /update-switch-probe-{version}/\nscore {marker} 0.5\n")
    (src / "rules" / "90_bench.rules").write_text("".join(lines))
    (src / "model").mkdir()
    with np.load(shipped_path("models") / "pyspamd-content.npz", allow_pickle=False) as data:
        weights = data["weights"].astype(np.float32)
        bias, meta = data["bias"], str(data["meta"])
    rng = np.random.default_rng(version)
    # A retrained model: its weights move a little and some new features get one (the
    # shipped 1.6 MB file becomes about 2 MB).
    trained = (weights != 0) | (rng.random(weights.shape) < 0.12)
    weights[trained] += rng.normal(0, 1e-3, int(trained.sum())).astype(np.float32)
    with (src / "model" / "pyspamd-content.npz").open("wb") as out:
        np.savez_compressed(out, weights=weights, bias=bias,
                            meta=np.array(meta.replace('"version": "', f'"version": "b{version}-')))
    return src


def rule_count(src: Path) -> int:
    return sum(line.split(None, 1)[0] in ("header", "body", "rawbody", "full", "uri", "mime",
                                          "meta")
               for f in (src / "rules").glob("*.rules")
               for line in f.read_text().splitlines() if line.strip())


class Load:
    """Senders scanning corpus messages over the milter; each scan timed and stamped."""

    def __init__(self, port: int, messages: list[bytes], senders: int) -> None:
        self.port, self.messages = port, messages
        self.stop = threading.Event()
        self.samples: list[tuple[float, float]] = []  # (end time, seconds)
        self.failures: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._send, args=(i,)) for i in range(senders)]

    def _send(self, index: int) -> None:
        n = index
        while not self.stop.is_set():
            try:
                session = MtaSession(self.port)
                try:
                    for _ in range(10):
                        start = time.perf_counter()
                        session.send(self.messages[n % len(self.messages)])
                        end = time.perf_counter()
                        with self.lock:
                            self.samples.append((end, end - start))
                        n += len(self.threads)
                finally:
                    session.close()
            except (OSError, AssertionError) as exc:
                with self.lock:
                    self.failures.append(f"{type(exc).__name__}: {exc}")

    def between(self, start: float, end: float) -> list[float]:
        with self.lock:
            return [took for at, took in self.samples if start <= at <= end]


def probe(port: int, version: int, marker: str, deadline: float) -> float | None:
    raw = (f"From: a@example.org\nTo: b@example.net\nSubject: probe\n"
           f"Message-ID: <probe{version}@example.org>\n\n"
           f"update-switch-probe-{version}\n").encode()
    while time.perf_counter() < deadline:
        session = MtaSession(port)
        try:
            result = session.send(raw)
        finally:
            session.close()
        if marker in result.added.get("X-Spamd-Result", ""):
            return time.perf_counter()
        time.sleep(0.05)
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--senders", type=int, default=4)
    args = parser.parse_args()
    messages = [m.data for d in ("ham", "spam") for m in iter_messages([str(CORPUS / d)])
                if m.data is not None][:300]
    top = Path(tempfile.mkdtemp(prefix="pyspamd-bench-update-"))
    rows = []
    try:
        with https_server() as server:
            key = top / "channel.pem"
            public = generate_key(key)
            (server.root / "ch").mkdir(mode=0o755)
            bundle = server.root / "ch" / "bundle.tar.gz"

            def publish(version: int, marker: str) -> tuple[int, int]:
                src = make_set(top, version, marker)
                make_bundle(src, private_key(str(key)), bundle, version)
                bundle.chmod(0o644)
                model = (src / "model" / "pyspamd-content.npz").stat().st_size
                return rule_count(src), model

            config_text = f"""
[update]
dir = "{top / 'updates'}"
ca_file = "{server.ca_file}"
pidfile = "{top / 'pyspamd.pid'}"
[[update.channels]]
name = "bench"
url = "{server.url('ch/bundle.tar.gz')}"
key = "{public}"
"""
            (top / "pyspamd.toml").write_text(config_text)
            publish(1, "BENCH_MARK_1")
            pyspamc = [sys.executable, "-m", "pyspamd.cli.pyspamc", "-c",
                       str(top / "pyspamd.toml"), "update"]
            env = {**os.environ, "PYTHONPATH": str(REPO)}
            first = subprocess.run(pyspamc, capture_output=True, text=True, env=env, check=False)
            if first.returncode != 0:
                print(first.stdout + first.stderr, file=sys.stderr)
                return 1
            daemon = Daemon(top, config_text, workers=args.workers)
            daemon.start()
            try:
                assert daemon.proc is not None
                (top / "pyspamd.pid").write_text(f"{daemon.proc.pid}\n")
                load = Load(daemon.port, messages, args.senders)
                for thread in load.threads:
                    thread.start()
                try:
                    time.sleep(3.0)
                    for round_no in range(args.rounds):
                        version = round_no + 2
                        marker = f"BENCH_MARK_{version}"
                        rules, model_size = publish(version, marker)
                        before_start = time.perf_counter() - 3.0
                        start = time.perf_counter()
                        done = subprocess.run(pyspamc, capture_output=True, text=True, env=env,
                                              check=False)
                        command = time.perf_counter() - start
                        if done.returncode != 0:
                            print(done.stdout + done.stderr, file=sys.stderr)
                            return 1
                        seen = probe(daemon.port, version, marker, start + 60)
                        end = seen if seen is not None else time.perf_counter()
                        time.sleep(0.5)
                        before = load.between(before_start, start)
                        during = load.between(start, end + 0.5)
                        rows.append((
                            str(version), str(rules), f"{model_size / 1e6:.1f} MB",
                            f"{command:.2f} s",
                            f"{end - start:.2f} s" if seen else "not seen in 60 s",
                            f"{statistics.median(before) * 1000:.0f} / "
                            f"{max(before) * 1000:.0f} ms" if before else "-",
                            f"{statistics.median(during) * 1000:.0f} / "
                            f"{max(during) * 1000:.0f} ms ({len(during)})" if during else "-",
                            str(sum(t > SCAN_TIMEOUT for t in during)),
                        ))
                        time.sleep(3.0)
                finally:
                    load.stop.set()
                    for thread in load.threads:
                        thread.join(60)
                failures = load.failures
            finally:
                daemon.stop()
    finally:
        shutil.rmtree(top, ignore_errors=True)
    print(f"update switch: {args.workers} workers, {args.senders} senders, load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    tables.print_markdown(("version", "rules", "model", "pyspamc update", "to new set in workers",
                    "scan p50 / max before", "scan p50 / max during (n)", "over budget"), rows)
    print(f"messages without a verdict: {len(failures)}"
          + (f" (first: {failures[0]})" if failures else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
