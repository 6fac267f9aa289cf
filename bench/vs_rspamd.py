"""pyspamd against rspamd, both as milters, in one run with alternating rounds.

    python bench/vs_rspamd.py [--corpus DIR] [--connections 1,8,32] [--pairs 3]
                              [--messages N] [--cpu-competitor] [--workers N]

Starts a private rspamd (Debian's package, installed with apt-get when missing: its own
config dir, ports and a private redis-server for its Bayes and history; the proxy worker in
milter mode scanning by itself, as many proxy workers as pyspamd has workers) and a private
pyspamd (SQLite store, its own port and directory). Both learn split-42's train lists
(pyspamd with `pyspamc learn_spam/learn_ham`, rspamd through its controller with `rspamc`),
then this script plays the MTA against both over the milter protocol with 1, 8 and 32
persistent connections, sending split-42's `throughput_2000.txt` mix, the two daemons in
turns (pyspamd first in even pairs, rspamd first in odd ones). No DNS on either side, no
greylisting. Prints per round throughput, CPU per message of each daemon's whole process tree
(rspamd's Redis charged to rspamd), p50/p99/max latency and peak PSS of the tree
(smaps_rollup), the slowest sessions of each round, and the learning speed.
--cpu-competitor starts one busy process per core before the rounds (both sides meet it).
The corpus is split-42's parent folder (default: ../shared/corpus beside the repository).
Runs as root (rspamd's workers, /proc of other processes).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# As a script this folder would come first on sys.path and bench/milter.py would stand in
# for pymilter's C module `milter`.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]
sys.path.insert(0, str(REPO / "tests"))

from support.mta import Daemon, MtaSession  # noqa: E402
from support.ports import free_port, wait_for_port  # noqa: E402
from support.redis_server import redis_server  # noqa: E402

RSPAMD = "/usr/bin/rspamd"
RSPAMC = "/usr/bin/rspamc"
# Modules that would ask the network (DNS lists, SPF, DKIM, fuzzy storage, ...) or act on
# state we do not compare (greylisting, rate limits, neural nets): off, as pyspamd runs with
# no DNS and no greylisting here.
_RSPAMD_OFF = ("rbl", "surbl", "spf", "dkim", "dmarc", "arc", "fuzzy_check", "asn", "emails",
               "phishing", "neural", "ratelimit", "greylist", "replies", "reputation",
               "url_redirector", "dcc", "whitelist", "mx_check", "dkim_signing", "external_relay",
               "antivirus", "external_services", "clickhouse", "elastic", "metadata_exporter",
               "p0f", "bimi", "spamtrap", "rspamd_update", "maillist", "hfilter")


# --- the corpus -------------------------------------------------------------------------

def read_list(corpus: Path, name: str, limit: int = 0) -> list[tuple[str, bytes]]:
    paths = (corpus / "split-42" / name).read_text().split()
    if limit:
        paths = paths[:limit]
    out = []
    for rel in paths:
        data = (corpus / "spamassassin" / rel).read_bytes()
        if data.startswith(b"From "):  # the mbox separator line is no header
            data = data.split(b"\n", 1)[1]
        out.append((rel, data))
    return out


# --- processes and their cost -----------------------------------------------------------

def _proc_table() -> dict[int, tuple[int, int, int]]:
    """pid -> (ppid, own CPU ticks, reaped children's CPU ticks)."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            fields = Path(f"/proc/{name}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        table[int(name)] = (int(fields[1]), int(fields[11]) + int(fields[12]),
                            int(fields[13]) + int(fields[14]))
    return table


def tree_pids(roots: list[int], table: dict[int, tuple[int, int, int]] | None = None
              ) -> list[int]:
    table = table if table is not None else _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out, stack = [], [r for r in roots if r in table]
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack.extend(children.get(pid, []))
    return out


def tree_cpu(roots: list[int]) -> float:
    """CPU seconds of process trees: every live process, plus what the roots reaped (a
    worker that exited counts through its parent's cutime)."""
    table = _proc_table()
    ticks = 0
    for pid in tree_pids(roots, table):
        ticks += table[pid][1]
        if pid in roots:
            ticks += table[pid][2]
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_pss_mib(roots: list[int]) -> float:
    total = 0
    for pid in tree_pids(roots):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
    return total / 1024


class PeakPss:
    """Samples the PSS of process trees every 0.2 s while a round runs."""

    def __init__(self, roots: list[int]) -> None:
        self.roots = roots
        self.peak = tree_pss_mib(roots)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, tree_pss_mib(self.roots))

    def __enter__(self) -> PeakPss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, tree_pss_mib(self.roots))


# --- the two daemons ----------------------------------------------------------------------

@dataclass
class Side:
    name: str
    port: int
    roots: list[int]
    learn_rate: dict[str, float] = field(default_factory=dict)
    peak_pss: float = 0.0


def ensure_rspamd() -> None:
    if Path(RSPAMD).exists() and Path(RSPAMC).exists():
        return
    print("rspamd is missing: installing Debian's package", flush=True)
    subprocess.run(["apt-get", "install", "-y", "-o", "DPkg::Lock::Timeout=900", "rspamd"],
                   check=True, stdout=subprocess.DEVNULL, env={**os.environ,
                   "DEBIAN_FRONTEND": "noninteractive"})
    # The package starts the system's rspamd where an init system runs: ours is private.
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(["service", "rspamd", "stop"], capture_output=True, timeout=60)


@contextlib.contextmanager
def nxdomain_server() -> Iterator[int]:
    """A resolver on loopback that answers every query NXDOMAIN at once: what rspamd still
    asks (it has no switch for DNS as a whole) costs its CPU, never a timeout."""
    import dns.exception
    import dns.message
    import dns.rcode

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.5)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                wire, peer = sock.recvfrom(4096)
                answer = dns.message.make_response(dns.message.from_wire(wire))
                answer.set_rcode(dns.rcode.NXDOMAIN)
                sock.sendto(answer.to_wire(), peer)
            except (OSError, dns.exception.DNSException):  # timeouts included
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(sock.getsockname()[1])
    finally:
        stop.set()
        thread.join()
        sock.close()


@contextlib.contextmanager
def running_rspamd(workers: int, redis_port: int, dns_port: int
                   ) -> Iterator[tuple[subprocess.Popen[bytes], int, int, Path]]:
    tmp = Path(tempfile.mkdtemp(prefix="vs-rspamd-"))
    local = tmp / "local.d"
    local.mkdir()
    for sub in ("db", "run", "log"):
        (tmp / sub).mkdir()
    milter_port, normal_port, controller_port = free_port(), free_port(), free_port()
    redis = f'servers = "127.0.0.1:{redis_port}";\n'
    files = {
        "redis.conf": redis,
        "classifier-bayes.conf": redis + "autolearn = false;\n",
        "history_redis.conf": redis,
        "worker-proxy.inc": (f'bind_socket = "127.0.0.1:{milter_port}";\nmilter = yes;\n'
                             f'count = {workers};\ntimeout = 120s;\n'
                             'upstream "local" {\n  default = yes;\n  self_scan = yes;\n}\n'),
        "worker-normal.inc": f'bind_socket = "127.0.0.1:{normal_port}";\ncount = 1;\n',
        "worker-controller.inc": (f'bind_socket = "127.0.0.1:{controller_port}";\n'
                                  'secure_ip = "127.0.0.1";\n'),
        "logging.inc": 'level = "notice";\n',
        "options.inc": f'dns {{\n  nameserver = ["127.0.0.1:{dns_port}"];\n}}\n',
    }
    for module in _RSPAMD_OFF:
        files[f"{module}.conf"] = "enabled = false;\n"
    for name, text in files.items():
        (local / name).write_text(text)
    variables = {"LOCAL_CONFDIR": tmp, "DBDIR": tmp / "db", "RUNDIR": tmp / "run",
                 "LOGDIR": tmp / "log"}
    command = [RSPAMD, "-f", "-u", "root", "-g", "root", "-i", "-c", "/etc/rspamd/rspamd.conf"]
    for key, value in variables.items():
        command += ["--var", f"{key}={value}"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        wait_for_port(milter_port, timeout=120, proc=proc)
        wait_for_port(controller_port, timeout=60, proc=proc)
        yield proc, milter_port, controller_port, tmp / "db"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


def wait_hyperscan(db: Path, timeout: float = 300) -> None:
    """rspamd compiles its regexes for Hyperscan in a helper after start and runs slower
    until the workers load them: wait until the helper's databases stop changing."""
    deadline = time.monotonic() + timeout
    seen, stable_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        count = len(list(db.glob("*.hs")))
        if count != seen:
            seen, stable_since = count, time.monotonic()
        elif count and time.monotonic() - stable_since > 5:
            return
        time.sleep(1)
    print(f"note: rspamd's Hyperscan databases in {db} still changing after {timeout:.0f} s",
          flush=True)


def learn_pyspamd(config: Path, corpus: Path, side: Side) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for kind in ("spam", "ham"):
        paths = [str(corpus / "spamassassin" / rel)
                 for rel in (corpus / "split-42" / f"train_{kind}.txt").read_text().split()]
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pyspamd.cli.pyspamc", "--config", str(config),
                        f"learn_{kind}", *paths], check=True, env=env,
                       stdout=subprocess.DEVNULL)
        side.learn_rate[kind] = len(paths) / (time.perf_counter() - start)


def learn_rspamd(controller_port: int, corpus: Path, side: Side) -> None:
    for kind in ("spam", "ham"):
        paths = [str(corpus / "spamassassin" / rel)
                 for rel in (corpus / "split-42" / f"train_{kind}.txt").read_text().split()]
        start = time.perf_counter()
        subprocess.run([RSPAMC, "-h", f"127.0.0.1:{controller_port}", "-t", "60",
                        f"learn_{kind}", *paths], check=True, stdout=subprocess.DEVNULL)
        side.learn_rate[kind] = len(paths) / (time.perf_counter() - start)


# --- the MTA ------------------------------------------------------------------------------

@dataclass
class Round:
    side: str
    connections: int
    rate: float
    cpu_ms: float
    latencies: list[tuple[float, float, int, str]]  # (seconds, start offset, conn, message)
    peak_pss: float
    errors: int

    def ms(self, q: float) -> float:
        ordered = sorted(lat for lat, _, _, _ in self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000

    @property
    def max_ms(self) -> float:
        return max(lat for lat, _, _, _ in self.latencies) * 1000


def play(port: int, messages: list[tuple[str, bytes]], connections: int
         ) -> tuple[float, list[tuple[float, float, int, str]], int]:
    """Send the mix over `connections` persistent milter connections; each connection sends
    every connections-th message, one after the other, as an MTA's smtpd does."""
    latencies: list[tuple[float, float, int, str]] = []
    errors = [0]
    lock = threading.Lock()
    origin = time.perf_counter()

    def run(index: int) -> None:
        session = MtaSession(port)
        try:
            for label, raw in messages[index::connections]:
                start = time.perf_counter()
                try:
                    session.send(raw)
                except (OSError, AssertionError):
                    with lock:
                        errors[0] += 1
                    session.close()
                    session = MtaSession(port)
                    continue
                took = time.perf_counter() - start
                with lock:
                    latencies.append((took, start - origin, index, label))
        finally:
            session.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(messages) / (time.perf_counter() - origin), latencies, errors[0]


def measure(side: Side, messages: list[tuple[str, bytes]], connections: int) -> Round:
    cpu_before = tree_cpu(side.roots)
    with PeakPss(side.roots) as pss:
        rate, latencies, errors = play(side.port, messages, connections)
    cpu_ms = (tree_cpu(side.roots) - cpu_before) * 1000 / len(messages)
    side.peak_pss = max(side.peak_pss, pss.peak)
    return Round(side.name, connections, rate, cpu_ms, latencies, pss.peak, errors)


@contextlib.contextmanager
def cpu_competitor(enabled: bool) -> Iterator[None]:
    procs = []
    if enabled:
        for _ in range(os.cpu_count() or 1):
            procs.append(subprocess.Popen([sys.executable, "-c", "while True: pass"]))
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# --- the report ---------------------------------------------------------------------------

def print_report(rounds: list[Round], sides: list[Side], pairs: int, slowest: int) -> None:
    print("\n| conns | pair | side | msgs/s | CPU ms/msg | p50 ms | p99 ms | max ms | "
          "peak PSS MiB | errors |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for number, r in enumerate(rounds):
        pair = number // 2 % pairs + 1
        print(f"| {r.connections} | {pair} | {r.side} | {r.rate:.0f} | {r.cpu_ms:.2f} | "
              f"{r.ms(0.5):.1f} | {r.ms(0.99):.1f} | {r.max_ms:.0f} | {r.peak_pss:.0f} | "
              f"{r.errors} |")
    print("\n| conns | throughput ratio pyspamd / rspamd, each pair | median | "
          "p99 ms median, pyspamd / rspamd | max ms, worst round, pyspamd / rspamd |")
    print("|---:|---|---:|---|---|")
    for conns in sorted({r.connections for r in rounds}):
        py = [r for r in rounds if r.connections == conns and r.side == "pyspamd"]
        rs = [r for r in rounds if r.connections == conns and r.side == "rspamd"]
        ratios = [p.rate / q.rate for p, q in zip(py, rs, strict=True)]
        print(f"| {conns} | {', '.join(f'{x:.2f}' for x in ratios)} | "
              f"{statistics.median(ratios):.2f} | "
              f"{statistics.median(p.ms(0.99) for p in py):.1f} / "
              f"{statistics.median(q.ms(0.99) for q in rs):.1f} | "
              f"{max(p.max_ms for p in py):.0f} / {max(q.max_ms for q in rs):.0f} |")
    print("\n| side | learn spam msgs/s | learn ham msgs/s | peak PSS MiB, all rounds |")
    print("|---|---:|---:|---:|")
    for s in sides:
        print(f"| {s.name} | {s.learn_rate.get('spam', 0):.0f} | "
              f"{s.learn_rate.get('ham', 0):.0f} | {s.peak_pss:.0f} |")
    print(f"\nslowest {slowest} sessions of each round (ms, seconds into the round, "
          "connection, message):")
    for r in rounds:
        worst = sorted(r.latencies, reverse=True)[:slowest]
        print(f"  {r.side} {r.connections} conn: " + "; ".join(
            f"{lat * 1000:.0f} @{at:.1f}s c{conn} {Path(label).name[:24]}"
            for lat, at, conn, label in worst))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=REPO.parent / "shared" / "corpus",
                        help="folder holding spamassassin/ and split-42/")
    parser.add_argument("--connections", default="1,8,32")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--messages", type=int, default=0, help="first N of the mix (0: all)")
    parser.add_argument("--workers", type=int, default=0,
                        help="pyspamd workers and rspamd proxy workers (0: one per CPU)")
    parser.add_argument("--cpu-competitor", action="store_true",
                        help="one busy process per core during the rounds")
    parser.add_argument("--slowest", type=int, default=5)
    args = parser.parse_args()
    corpus = args.corpus.resolve()
    if not (corpus / "split-42" / "throughput_2000.txt").exists():
        parser.error(f"{corpus}: no split-42/throughput_2000.txt there (give --corpus)")
    ensure_rspamd()
    workers = args.workers or os.cpu_count() or 1
    messages = read_list(corpus, "throughput_2000.txt", args.messages)
    workdir = Path(tempfile.mkdtemp(prefix="vs-rspamd-pyspamd-"))
    config_text = (f'[storage]\nbackend = "sqlite"\npath = "{workdir / "store.sqlite"}"\n'
                   '[dns]\nenabled = false\n[actions]\ngreylist = false\n')
    daemon = Daemon(workdir, config_text, workers=workers)
    print(f"{len(messages)} messages; {workers} workers each; {os.cpu_count()} CPUs; "
          f"load average at start {load_average()}", flush=True)
    try:
        with redis_server() as redis, nxdomain_server() as dns_port, running_rspamd(
                workers, redis.port, dns_port) as (
                rspamd, rspamd_port, controller_port, rspamd_db):
            daemon.start()
            assert daemon.proc is not None
            py = Side("pyspamd", daemon.port, [daemon.proc.pid])
            rs = Side("rspamd", rspamd_port, [rspamd.pid, redis.pid])
            learn_pyspamd(workdir / "pyspamd.toml", corpus, py)
            learn_rspamd(controller_port, corpus, rs)
            wait_hyperscan(rspamd_db)
            for side in (py, rs):
                play(side.port, messages[:200], 4)  # warm up: caches, lazily built parts
            rounds: list[Round] = []
            with cpu_competitor(args.cpu_competitor):
                for conns in (int(c) for c in args.connections.split(",")):
                    for pair in range(args.pairs):
                        order = (py, rs) if pair % 2 == 0 else (rs, py)
                        got = {s.name: measure(s, messages, conns) for s in order}
                        rounds += [got["pyspamd"], got["rspamd"]]
                        print(f"{conns} conn, pair {pair + 1}: " + ", ".join(
                            f"{r.side} {r.rate:.0f} msgs/s max {r.max_ms:.0f} ms"
                            for r in got.values()) + f"; load {load_average()}", flush=True)
            print_report(rounds, [py, rs], args.pairs, args.slowest)
            print(f"\nload average at the end {load_average()}"
                  f"{'; with one busy process per core' if args.cpu_competitor else ''}")
    finally:
        daemon.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
