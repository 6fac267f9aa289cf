"""The policy service against the daemons it replaces: pyspamd's greylisting against
postgrey, pyspamd's SPF against python-policyd-spf, on the same recorded request stream.

    python bench/policy_service.py [--rounds 3] [--triplets 1500] [--spf 3000] [--conns 8]

Installs the Debian packages `postgrey`, `postfix-policyd-spf-python` and `socat` when they
are missing. Each server gets its own socket: postgrey --inet with its own --dbdir; the
policyd-spf command behind socat, one process per connection as Postfix's spawn(8) runs it;
pyspamd twice (greylisting only, SPF only), each its own daemon and store. SPF names are
answered by the tests' DNS lab (Knot behind Unbound on 127.0.0.1); policyd-spf's DNS library
is pointed at it from a sitecustomize module, its files left as installed.

A round replays, to each server in turn (the order alternates between rounds):
first sight of new triplets and whitelisted clients and recipients; after the greylisting
delay, the retries of those triplets (accepted with X-Greylist), second retries and new
triplets; and the SPF stream (pass, fail, softfail, neutral, none, permerror, skipped and
whitelisted clients, the null sender, a second recipient of a message). `--conns` clients
on their own connections ask one request after another, as smtpd processes do.

Prints requests/s, p50/p99/max latency and CPU per request of each server's processes
(utime+stime from /proc, exited children included), and checks that every greylisting
decision is the same kind as postgrey's and every SPF answer identical to policyd-spf's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the tests' DNS lab and free-port helpers

from support.network_lab import network_lab  # noqa: E402
from support.ports import free_port, wait_for_port  # noqa: E402
from tables import print_markdown  # noqa: E402

DELAY = 2
PACKAGES = {"postgrey": "/usr/sbin/postgrey", "postfix-policyd-spf-python": "/usr/bin/policyd-spf",
            "socat": "/usr/bin/socat"}
SPF_CONF = """\
debugLevel = 1
TestOnly = 1
HELO_reject = Fail
Mail_From_reject = Fail
PermError_reject = True
TempError_Defer = False
skip_addresses = 127.0.0.0/8,::ffff:127.0.0.0/104,::1
Whitelist = 198.18.0.0/15
Domain_Whitelist = ip6.example.test
"""
WHITELIST_CLIENTS = "# as postgrey ships it, shortened\n.whitelisted-sender.test\n" \
    "/^mx\\d+\\.regex-listed\\.test$/\n172.16.5.0/24\n"
WHITELIST_RECIPIENTS = "postmaster@\nabuse@\n"
# (client address, HELO name, sender): the SPF cases the lab's zones give.
SPF_CASES = [
    ("192.0.2.25", "mx.example.test", "alice@example.test"),  # pass
    ("192.0.2.99", "mail.bad.test", "bob@example.test"),  # fail -> 550 5.7.23
    ("203.0.113.1", "mx.softfail.test", "x@softfail.example.test"),  # pass
    ("203.0.113.2", "mx.softfail.test", "x@softfail.example.test"),  # softfail
    ("192.0.2.7", "mx.neutral.test", "x@neutral.example.test"),  # neutral
    ("203.0.113.20", "mx.include.test", "x@include.example.test"),  # pass (nested include)
    ("192.0.2.7", "mx.nospf.test", "x@nospf.example.test"),  # none
    ("192.0.2.7", "mx.badspf.test", "x@badspf.example.test"),  # permerror -> 550 5.7.24
    ("192.0.2.7", "mx.toomany.test", "x@toomany.example.test"),  # permerror (too many)
    ("2001:db8::25", "mx.ip6.test", "x@ip6.example.test"),  # Domain_Whitelist (IPv6)
    ("192.0.2.25", "mx.example.test", "x@mxonly.example.test"),  # mx mechanism
    ("192.0.2.25", "mx.example.test", ""),  # null sender: HELO only
    ("127.0.0.1", "localhost", "x@example.test"),  # skip_addresses
    ("198.18.3.4", "mx.wl.test", "x@example.test"),  # Whitelist
]


def ensure_packages() -> None:
    missing = [name for name, path in PACKAGES.items() if not Path(path).exists()]
    if missing:
        print(f"installing {' '.join(missing)}", file=sys.stderr)
        subprocess.run(["apt-get", "install", "-y", "-o", "DPkg::Lock::Timeout=900",
                        *missing], check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def request(client: str, helo: str, sender: str, rcpt: str, instance: str,
            client_name: str = "unknown") -> bytes:
    return (f"request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
            f"client_address={client}\nclient_name={client_name}\n"
            f"reverse_client_name={client_name}\nhelo_name={helo}\nsender={sender}\n"
            f"recipient={rcpt}\nrecipient_count=0\nqueue_id=\ninstance={instance}\n"
            f"size=0\netrn_domain=\nstress=\nsasl_method=\nsasl_username=\nsasl_sender=\n"
            f"ccert_subject=\nccert_issuer=\nccert_fingerprint=\nencryption_protocol=\n"
            f"encryption_cipher=\nencryption_keysize=0\n\n").encode()


@dataclass
class Streams:
    first: list[bytes]  # new triplets, whitelisted clients and recipients
    retry: list[bytes]  # after the delay: retries, second retries, new triplets
    spf: list[bytes]


def make_streams(round_no: int, triplets: int, spf: int) -> Streams:
    rng = random.Random(round_no)

    def triplet(i: int) -> tuple[str, str, str]:
        return (f"10.{round_no}.{i % 250}.{1 + i // 250}", f"s{i}.r{round_no}@sender{i % 97}.test",
                f"user{i % 300}@example.net")

    instance = iter(range(10**9))
    first = [request(ip, "mx.sender.test", s, r, f"g{round_no}.{next(instance)}")
             for ip, s, r in map(triplet, range(triplets))]
    listed = []
    for i in range(triplets // 5):
        kind = i % 4
        if kind == 0:
            listed.append(request(f"192.0.2.{i % 200 + 1}", "mx", f"w{i}@a.test",
                                  "x@example.net", f"w{round_no}.{i}",
                                  client_name=f"out{i}.whitelisted-sender.test"))
        elif kind == 1:
            listed.append(request(f"192.0.2.{i % 200 + 1}", "mx", f"w{i}@a.test",
                                  "x@example.net", f"w{round_no}.{i}",
                                  client_name=f"mx{i}.regex-listed.test"))
        elif kind == 2:
            listed.append(request(f"172.16.5.{i % 250 + 1}", "mx", f"w{i}@a.test",
                                  "x@example.net", f"w{round_no}.{i}"))
        else:
            listed.append(request(f"10.200.{round_no}.{i % 250 + 1}", "mx", f"w{i}@a.test",
                                  "postmaster@example.net", f"w{round_no}.{i}"))
    first += listed
    rng.shuffle(first)
    retry = [request(ip, "mx.sender.test", s, r, f"g{round_no}.{next(instance)}")
             for ip, s, r in map(triplet, range(triplets))] * 2
    retry += [request(ip, "mx.sender.test", s, r, f"g{round_no}.{next(instance)}")
              for ip, s, r in map(triplet, range(triplets, triplets + triplets // 2))]
    retry += listed
    rng.shuffle(retry)
    spf_stream = []
    for i in range(spf):
        ip, helo, sender = SPF_CASES[rng.randrange(len(SPF_CASES))]
        spf_stream.append(request(ip, helo, sender, f"user{i % 50}@example.net",
                                  f"spf{round_no}.{i}"))
        if i % 10 == 0:  # a second recipient of the same message
            spf_stream.append(request(ip, helo, sender, "other@example.net",
                                      f"spf{round_no}.{i}"))
    return Streams(first, retry, spf_stream)


async def _client(port: int, items: list[tuple[int, bytes]], answers: dict[int, bytes],
                  latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for index, payload in items:
            start = time.perf_counter()
            writer.write(payload)
            answers[index] = await reader.readuntil(b"\n\n")
            latencies.append(time.perf_counter() - start)
    finally:
        writer.close()


def replay(port: int, stream: list[bytes], conns: int) -> tuple[list[bytes], list[float], float]:
    """(answers in stream order, latencies, wall seconds)."""
    answers: dict[int, bytes] = {}
    latencies: list[float] = []
    # Requests go out in stream order across the connections, each connection one at a time:
    # a triplet's retry and its second retry go to the same connection, in order.
    shares: list[list[tuple[int, bytes]]] = [[] for _ in range(conns)]
    for index, payload in enumerate(stream):
        key = payload.split(b"instance=")[0]
        shares[hash(key) % conns].append((index, payload))

    async def go() -> float:
        start = time.perf_counter()
        await asyncio.gather(*(_client(port, share, answers, latencies) for share in shares))
        return time.perf_counter() - start

    wall = asyncio.run(go())
    return [answers[i] for i in range(len(stream))], latencies, wall


def cpu_seconds(pid: int) -> float:
    """utime+stime of `pid` and its live descendants, plus their reaped children's."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15]) / tick
        todo.extend(int(c) for c in children)
    return total


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]


@contextmanager
def started(name: str, argv: list[str], port: int, env: dict[str, str] | None = None,
            log: Path | None = None) -> Iterator[Server]:
    out = log.open("wb") if log else subprocess.DEVNULL
    proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        wait_for_port(port, timeout=60)
        yield Server(name, port, proc)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def pyspamd_config(work: Path, port: int, nameserver: str, greylist: bool, spf: bool) -> Path:
    path = work / f"pyspamd-{port}.toml"
    path.write_text(f"""\
[milter]
listen = ["inet:{free_port()}@127.0.0.1"]
workers = 1
[controller]
enabled = false
[storage]
path = "{work}/pyspamd-{port}.sqlite"
[dns]
enabled = true
nameservers = ["{nameserver}"]
[greylist]
delay = {DELAY}
[policy_service]
listen = ["inet:{port}@127.0.0.1"]
greylist = {str(greylist).lower()}
spf = {str(spf).lower()}
spf_config = "{work}/policyd-spf.conf"
whitelist_clients = ["{work}/whitelist_clients"]
whitelist_recipients = ["{work}/whitelist_recipients"]
[logging]
level = "warning"
target = "{work}/pyspamd-{port}.log"
""")
    return path


def kind(answer: bytes) -> str:
    """The decision of a greylisting answer, whichever daemon wrote it."""
    word = answer.split(b"=", 1)[1].split()[0].upper()
    return word.decode()


def summarize(name: str, latencies: list[float], wall: float, requests: int,
              cpu: float) -> list[str]:
    latencies = sorted(latencies)
    return [name, f"{requests / wall:,.0f}", f"{statistics.median(latencies) * 1000:.2f}",
            f"{latencies[int(len(latencies) * 0.99)] * 1000:.2f}",
            f"{latencies[-1] * 1000:.1f}", f"{cpu / requests * 1e6:.0f}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--triplets", type=int, default=1500)
    parser.add_argument("--spf", type=int, default=3000)
    parser.add_argument("--conns", type=int, default=8)
    args = parser.parse_args()
    ensure_packages()
    work = Path(tempfile.mkdtemp(prefix="bench-policy-"))
    work.chmod(0o755)
    try:
        return run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args: argparse.Namespace, work: Path) -> int:
    (work / "policyd-spf.conf").write_text(SPF_CONF)
    (work / "whitelist_clients").write_text(WHITELIST_CLIENTS)
    (work / "whitelist_recipients").write_text(WHITELIST_RECIPIENTS)
    dbdir = work / "postgrey-db"
    dbdir.mkdir()
    shutil.chown(dbdir, "postgrey", "postgrey")
    with ExitStack() as stack:
        lab = stack.enter_context(network_lab(work / "lab"))
        dns_port = lab.server.port
        # policyd-spf as installed; only its DNS library is told where the lab is.
        site = work / "site"
        site.mkdir()
        (site / "sitecustomize.py").write_text(
            "import DNS\nDNS.Base.defaults['server'] = ['127.0.0.1']\n"
            f"DNS.Base.defaults['port'] = {dns_port}\n")
        ports = {name: free_port() for name in ("pg", "spf", "pyg", "pys")}
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        servers = {
            "postgrey": stack.enter_context(started("postgrey", [
                "/usr/sbin/postgrey", f"--inet=127.0.0.1:{ports['pg']}", f"--dbdir={dbdir}",
                f"--delay={DELAY}", f"--pidfile={work}/postgrey.pid",
                f"--whitelist-clients={work}/whitelist_clients",
                f"--whitelist-recipients={work}/whitelist_recipients"], ports["pg"],
                log=work / "postgrey.log")),
            "policyd-spf": stack.enter_context(started("policyd-spf", [
                "/usr/bin/socat", f"TCP-LISTEN:{ports['spf']},bind=127.0.0.1,reuseaddr,fork",
                f"EXEC:/usr/bin/policyd-spf {work}/policyd-spf.conf"], ports["spf"],
                env={**os.environ, "PYTHONPATH": str(site)})),
            "pyspamd greylist": stack.enter_context(started("pyspamd greylist", [
                sys.executable, "-m", "pyspamd.cli.pyspamd", "--config",
                str(pyspamd_config(work, ports["pyg"], lab.server.nameserver, True, False))],
                ports["pyg"], env=env)),
            "pyspamd spf": stack.enter_context(started("pyspamd spf", [
                sys.executable, "-m", "pyspamd.cli.pyspamd", "--config",
                str(pyspamd_config(work, ports["pys"], lab.server.nameserver, False, True))],
                ports["pys"], env=env)),
        }
        return bench(args, servers)
    return 1


def bench(args: argparse.Namespace, servers: dict[str, Server]) -> int:
    lat: dict[str, list[float]] = {name: [] for name in servers}
    wall = dict.fromkeys(servers, 0.0)
    count = dict.fromkeys(servers, 0)
    cpu = dict.fromkeys(servers, 0.0)
    grey_mismatch: list[str] = []
    spf_mismatch: list[str] = []
    spf_kinds: dict[str, int] = {}

    def measure(name: str, stream: list[bytes]) -> list[bytes]:
        server = servers[name]
        before = cpu_seconds(server.proc.pid)
        answers, latencies, seconds = replay(server.port, stream, args.conns)
        time.sleep(0.3)  # the per-connection processes behind socat exit and are reaped
        cpu[name] += cpu_seconds(server.proc.pid) - before
        lat[name] += latencies
        wall[name] += seconds
        count[name] += len(stream)
        return answers

    for round_no in range(args.rounds):
        streams = make_streams(round_no + 1, args.triplets, args.spf)
        grey = ["pyspamd greylist", "postgrey"]
        spf = ["pyspamd spf", "policyd-spf"]
        if round_no % 2:
            grey.reverse()
            spf.reverse()
        first = {name: measure(name, streams.first) for name in grey}
        waited = time.monotonic()
        spf_answers = {name: measure(name, streams.spf) for name in spf}
        time.sleep(max(0.0, DELAY + 1.0 - (time.monotonic() - waited)))
        retry = {name: measure(name, streams.retry) for name in grey}
        for stream, answers in ((streams.first, first), (streams.retry, retry)):
            for payload, ours, theirs in zip(stream, answers["pyspamd greylist"],
                                             answers["postgrey"], strict=True):
                if kind(ours) != kind(theirs):
                    grey_mismatch.append(f"{payload.split(b'client_name')[0]!r}: "
                                         f"{ours!r} vs {theirs!r}")
        for payload, ours, theirs in zip(streams.spf, spf_answers["pyspamd spf"],
                                         spf_answers["policyd-spf"], strict=True):
            if ours != theirs:
                spf_mismatch.append(f"{payload.split(b'reverse_client')[0]!r}:\n  pyspamd: "
                                    f"{ours!r}\n  policyd: {theirs!r}")
            label = theirs.split(b"=", 1)[1].split(b":")[0][:40].decode(errors="replace")
            label = label.strip()
            spf_kinds[label] = spf_kinds.get(label, 0) + 1
        print(f"round {round_no + 1}: done", file=sys.stderr)

    header = ["server", "requests/s", "p50 ms", "p99 ms", "max ms", "CPU us/request"]
    print(f"\n{args.rounds} alternating rounds, {args.conns} connections, greylisting delay "
          f"{DELAY} s; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end\n")
    print_markdown(header, [summarize(name, lat[name], wall[name], count[name], cpu[name])
                            for name in servers])
    rps = {name: count[name] / wall[name] for name in servers}
    p99 = {name: sorted(lat[name])[int(len(lat[name]) * 0.99)] for name in servers}
    print(f"\ngreylisting: {rps['pyspamd greylist'] / rps['postgrey']:.2f}x postgrey's "
          f"requests/s, p99 {p99['pyspamd greylist'] * 1000:.2f} vs "
          f"{p99['postgrey'] * 1000:.2f} ms; decisions differing from postgrey's: "
          f"{len(grey_mismatch)} of {count['postgrey']}")
    print(f"SPF: {rps['pyspamd spf'] / rps['policyd-spf']:.2f}x policyd-spf's requests/s; "
          f"answers differing from policyd-spf's: {len(spf_mismatch)} of "
          f"{count['policyd-spf']}")
    print("SPF answers replayed: " + ", ".join(f"{k} {v}" for k, v in sorted(spf_kinds.items())))
    for line in (grey_mismatch + spf_mismatch)[:10]:
        print(line)
    return 0 if not grey_mismatch and not spf_mismatch else 1


if __name__ == "__main__":
    sys.exit(main())
