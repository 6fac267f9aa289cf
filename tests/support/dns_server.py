"""A private DNS for the network-check tests, set up as the README tells admins to: a local
recursive resolver (Unbound) that pyspamd asks, and behind it the authoritative servers (one
Knot DNS serving every test zone). Both on 127.0.0.1 and free ports, in their own
directory, stopped afterwards even when tests fail.

Unbound drops every query for `timeout.test` (a "deny" local zone), so names there get no
answer at all, every time (a forward to a dead server would not do: Unbound soon marks it
down and answers SERVFAIL at once), and `servfail.test` to Knot, which does not serve it and
refuses, so Unbound answers SERVFAIL. Every other name outside the test zones is answered
"no such name" by Unbound itself: nothing is ever sent beyond 127.0.0.1.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.query
import dns.rcode

from support.dns_delay import delayed_udp

SOA_TTL = 300  # negative answers are cached this long (the SOA's minimum)


@dataclass(frozen=True)
class DnsServer:
    port: int
    blackhole_port: int  # a UDP port where nothing ever answers
    workdir: Path

    @property
    def nameserver(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def dead_nameserver(self) -> str:
        return f"127.0.0.1:{self.blackhole_port}"


def txt(value: str) -> str:
    """A TXT rdata in zone-file syntax: long values as several <=255-octet strings."""
    chunks = [value[i:i + 250] for i in range(0, len(value), 250)] or [""]
    return "TXT " + " ".join('"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"'
                             for c in chunks)


def _zone_text(zone: str, records: list[str]) -> str:
    """A zone file; zone "" is the root."""
    origin = f"{zone}." if zone else "."
    ns = f"ns.{zone}." if zone else "ns.root-servers.lab."
    head = [f"$ORIGIN {origin}", "$TTL 3600",
            f"@ {SOA_TTL} IN SOA {ns} hostmaster.{origin.lstrip('.')} 1 3600 600 86400 "
            f"{SOA_TTL}", f"@ IN NS {ns}"]
    if zone:
        head.append("ns IN A 127.0.0.1")
    return "\n".join([*head, *records]) + "\n"


def _free_port_both() -> int:
    """A port free for TCP and UDP alike: Knot listens on both."""
    for _ in range(50):
        with socket.socket() as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port for the DNS server")


@contextmanager
def dns_server(zones: dict[str, list[str]], upstream_delay: float = 0.0) -> Iterator[DnsServer]:
    """Serve `zones` (zone name -> zone-file lines after the SOA and NS).

    With `upstream_delay` (seconds; benchmarks), Knot also serves the root zone and Unbound
    reaches it only through a relay that delays every query by that much, the way a
    resolver's cache misses cost an internet round trip; every name then gets a real
    authoritative answer ("no such name" from the root, with its SOA).
    """
    knot_binary = shutil.which("knotd") or "/usr/sbin/knotd"
    unbound_binary = shutil.which("unbound") or "/usr/sbin/unbound"
    for binary, package in ((knot_binary, "knot"), (unbound_binary, "unbound")):
        if not Path(binary).exists():
            raise RuntimeError(f"{binary} is missing: apt-get install {package} "
                               "(.ci/run installs it)")
    blackhole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blackhole.bind(("127.0.0.1", 0))
    with tempfile.TemporaryDirectory(prefix="pyspamd-dns-") as tmp, blackhole:
        work = Path(tmp)
        (work / "zones").mkdir()
        for zone, records in zones.items():
            (work / "zones" / f"{zone}.zone").write_text(_zone_text(zone, records))
        if upstream_delay:
            (work / "zones" / "root.zone").write_text(_zone_text("", []))
        knot_port = _free_port_both()
        dead = blackhole.getsockname()[1]
        (work / "knot.conf").write_text(_knot_conf(work, knot_port, zones, bool(upstream_delay)))
        port = _free_port_both()
        relay = delayed_udp(knot_port, upstream_delay) if upstream_delay else nullcontext(0)
        with relay as relay_port:
            (work / "unbound.conf").write_text(
                _unbound_conf(work, port, knot_port, dead, zones, relay_port))
            yield from _run(work, knot_binary, unbound_binary, port, knot_port, dead, zones)


def _run(work: Path, knot_binary: str, unbound_binary: str, port: int, knot_port: int,
         dead: int, zones: dict[str, list[str]]) -> Iterator[DnsServer]:
    """Start Knot, then Unbound; stop both whatever happens."""
    knot_log, unbound_log = work / "knotd.log", work / "unbound.log"
    with knot_log.open("wb") as out:
        knot = subprocess.Popen([knot_binary, "-c", str(work / "knot.conf")],
                                stdout=out, stderr=subprocess.STDOUT)
    unbound: subprocess.Popen[bytes] | None = None
    try:
        _wait_ready(knot_port, knot, knot_log, next(iter(zones)))
        with unbound_log.open("wb") as out:
            unbound = subprocess.Popen([unbound_binary, "-d", "-c",
                                        str(work / "unbound.conf")],
                                       stdout=out, stderr=subprocess.STDOUT)
        _wait_ready(port, unbound, unbound_log, next(iter(zones)))
        yield DnsServer(port, dead, work)
    finally:
        for proc in (unbound, knot):
            if proc is None:
                continue
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _knot_conf(work: Path, port: int, zones: dict[str, list[str]], root: bool) -> str:
    return "\n".join([
        "server:",
        f"  rundir: {work}",
        f"  listen: 127.0.0.1@{port}",
        "database:",
        f"  storage: {work / 'db'}",
        "log:",
        "  - target: stderr",
        "    any: warning",
        "template:",
        "  - id: default",
        f"    storage: {work / 'zones'}",
        '    file: "%s.zone"',
        "    zonefile-sync: -1",
        "    zonefile-load: whole",
        "    journal-content: none",
        "zone:",
        *(f"  - domain: {zone}" for zone in zones),
        *(["  - domain: .", "    file: root.zone"] if root else []),
    ]) + "\n"


def _unbound_conf(work: Path, port: int, knot_port: int, dead: int,
                  zones: dict[str, list[str]], relay_port: int) -> str:
    if relay_port:  # benchmark: every name from Knot's root zone, through the delay
        return "\n".join([
            "server:", f"  interface: 127.0.0.1@{port}", f"  port: {port}", "  do-ip6: no",
            "  do-not-query-localhost: no", '  username: ""', '  chroot: ""',
            f'  directory: "{work}"', f'  pidfile: "{work / "unbound.pid"}"',
            "  use-syslog: no", "  verbosity: 0", '  module-config: "iterator"',
            "  qname-minimisation: no", '  local-zone: "timeout.test." deny',
            "remote-control:", "  control-enable: no",
            "forward-zone:", '  name: "."', f"  forward-addr: 127.0.0.1@{relay_port}",
        ]) + "\n"
    lines = [
        "server:",
        f"  interface: 127.0.0.1@{port}",
        f"  port: {port}",
        "  do-ip6: no",
        "  do-not-query-localhost: no",  # Knot is on 127.0.0.1
        '  username: ""',
        '  chroot: ""',
        f'  directory: "{work}"',
        f'  pidfile: "{work / "unbound.pid"}"',
        "  use-syslog: no",
        "  verbosity: 0",
        '  module-config: "iterator"',
        "  qname-minimisation: no",
        # No answer at all for these names, every time: the tests' name that times out.
        '  local-zone: "timeout.test." deny',
        # Names outside the test zones: "no such name", from Unbound itself, with an SOA so
        # the answer is cached for its negative TTL as a real one would be.
        '  local-zone: "." static',
        f'  local-data: ". {SOA_TTL} IN SOA ns.lab.test. hostmaster.lab.test. 1 3600 600 '
        f'86400 {SOA_TTL}"',
        *(f'  local-zone: "{zone}." transparent' for zone in
          [*zones, "servfail.test"]),
        "remote-control:",
        "  control-enable: no",
    ]
    for zone in [*zones, "servfail.test"]:
        lines += ["stub-zone:", f'  name: "{zone}"', f"  stub-addr: 127.0.0.1@{knot_port}"]
    # Belt and braces: nothing is ever resolved from the root servers.
    lines += ["forward-zone:", '  name: "."', f"  forward-addr: 127.0.0.1@{dead}"]
    return "\n".join(lines) + "\n"


def _wait_ready(port: int, proc: subprocess.Popen[bytes], log_path: Path, zone: str) -> None:
    deadline = time.monotonic() + 15
    query = dns.message.make_query(f"{zone}.", "SOA")
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}:\n"
                               f"{log_path.read_text()}")
        try:
            response = dns.query.udp(query, "127.0.0.1", port=port, timeout=0.3)
            if response.rcode() == dns.rcode.NOERROR and response.answer:
                return
        except (OSError, dns.exception.Timeout):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{proc.args[0]} did not answer on port {port}:\n"
                       f"{log_path.read_text()}")
