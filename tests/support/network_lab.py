"""The test world of the network checks: DKIM keys, the zones a Knot server serves for them
(blocklists, SPF, DKIM keys, DMARC policies, names that time out or fail), and configs that
point pyspamd at that server. Nothing here resolves beyond 127.0.0.1."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from pyspamd.auth.dkim_sign import generate_key
from support.dns_server import DnsServer, dns_server, txt

# Client addresses and what the blocklist zones say of them.
UNLISTED_IP = "192.0.2.1"
SBL_IP = "192.0.2.2"
SPAMCOP_IP = "192.0.2.3"
XBL_IP = "192.0.2.4"
PBL_IP = "192.0.2.10"
ALL_ZEN_IP = "192.0.2.50"  # SBL, XBL and PBL at once
OTHER_CODE_IP = "192.0.2.77"  # 127.0.0.8: listed, with a code no symbol names
PUBLIC_RESOLVER_IP = "192.0.2.99"  # 127.255.255.254
OVER_QUOTA_IP = "192.0.2.98"  # 127.255.255.255
RECEIVED_XBL_IP = "198.51.100.7"
SBL_IPV6 = "2001:db8::2"
SPF_IPV6 = "2001:db8::25"  # allowed by ip6.example.test's SPF
MTA_IP = "192.0.2.25"  # allowed by example.test's SPF


@dataclass(frozen=True)
class Lab:
    server: DnsServer
    key_path: Path  # 2048-bit key of sel._domainkey.example.test
    weak_key_path: Path  # 512-bit key of weak._domainkey.example.test
    public_record: str

    def config(self, extra: str = "", nameserver: str = "", budget: float = 3.0,
               timeout: float = 1.0, auth: str = "") -> str:
        """TOML turning the network checks on against the lab's server; `auth` goes into
        [auth], `extra` (other sections) at the end."""
        return (f"[dns]\nenabled = true\nnameservers = [\"{nameserver or self.server.nameserver}\"]"
                f"\ntimeout = {timeout}\nretries = 0\nbudget = {budget}\n"
                f"[auth]\nauthserv_id = \"mx.example.net\"\n{auth}\n"
                f"[bayes]\nenabled = false\n[greylist]\nenabled = false\n{extra}\n")


def _reverse(ip: str) -> str:
    return ".".join(reversed(ip.split(".")))


def _nibbles(ip6: str) -> str:
    import ipaddress

    return ".".join(reversed(ipaddress.ip_address(ip6).exploded.replace(":", "")))


def _weak_key(path: Path) -> str:
    """A 512-bit RSA key (openssl: the cryptography package refuses to make one)."""
    subprocess.run(["openssl", "genrsa", "-out", str(path), "512"], check=True,
                   capture_output=True)
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"


def zones(record: str, weak_record: str) -> dict[str, list[str]]:
    many_lookups = " ".join(f"a:h{i}.example.test" for i in range(11))
    return {
        "zen.spamhaus.org": [
            f"{_reverse(SBL_IP)} IN A 127.0.0.2",
            f"{_reverse(XBL_IP)} IN A 127.0.0.4",
            f"{_reverse(PBL_IP)} IN A 127.0.0.10",
            *(f"{_reverse(ALL_ZEN_IP)} IN A 127.0.0.{c}" for c in (2, 4, 10)),
            f"{_reverse(OTHER_CODE_IP)} IN A 127.0.0.8",
            f"{_reverse(PUBLIC_RESOLVER_IP)} IN A 127.255.255.254",
            f"{_reverse(OVER_QUOTA_IP)} IN A 127.255.255.255",
            f"{_reverse(RECEIVED_XBL_IP)} IN A 127.0.0.4",
            f"{_nibbles(SBL_IPV6)} IN A 127.0.0.2",
        ],
        "bl.spamcop.net": [f"{_reverse(SPAMCOP_IP)} IN A 127.0.0.2"],
        "dbl.spamhaus.org": [
            "spammy-domain.test IN A 127.0.1.2",
            "phish.test IN A 127.0.1.4",
            "refused.test IN A 127.255.255.254",
        ],
        "dom.bl.test": ["bad-helo.test IN A 127.0.0.2", "bad-from.test IN A 127.0.0.2"],
        "example.test": [
            f"@ IN {txt('v=spf1 ip4:192.0.2.25 ip4:198.51.100.0/24 -all')}",
            f"_dmarc IN {txt('v=DMARC1; p=reject; sp=quarantine')}",
            f"sel._domainkey IN {txt(record)}",
            f"weak._domainkey IN {txt(weak_record)}",
            f"broken._domainkey IN {txt('v=DKIM1; k=rsa; p=%%%not-base64%%%')}",
            "@ IN MX 10 mx.example.test.", "mx IN A 192.0.2.25",
            f"softfail IN {txt('v=spf1 ip4:203.0.113.1 ~all')}",
            f"neutral IN {txt('v=spf1 ?all')}",
            f"include IN {txt('v=spf1 include:_a.example.test -all')}",
            f"_a IN {txt('v=spf1 include:_b.example.test -all')}",
            f"_b IN {txt('v=spf1 ip4:203.0.113.0/24 -all')}",
            f"mxonly IN {txt('v=spf1 mx:example.test -all')}",
            f"toomany IN {txt(f'v=spf1 {many_lookups} -all')}",
            *(f"h{i} IN A 198.18.0.{i}" for i in range(11)),
            f"badspf IN {txt('v=spf1 ip4:300.1.1.1 -all')}",
            "nospf IN A 192.0.2.200",
            f"ip6 IN {txt(f'v=spf1 ip6:{SPF_IPV6} -all')}",
            f"junk IN {txt('v=spf1 -all')}",
            '_dmarc.junk IN TXT "v=DMARC1; p=\\255\\000\\001"',
            "nullmx IN MX 0 .",
            f"noaddr IN {txt('v=spf1 -all')}",
        ],
        "quarantine.test": [f"@ IN {txt('v=spf1 -all')}",
                            f"_dmarc IN {txt('v=DMARC1; p=quarantine')}"],
        "none.test": [f"@ IN {txt('v=spf1 -all')}", f"_dmarc IN {txt('v=DMARC1; p=none')}"],
        "nodmarc.test": [f"@ IN {txt('v=spf1 -all')}"],
        "badpolicy.test": [f"@ IN {txt('v=spf1 -all')}",
                           f"_dmarc IN {txt('v=DMARC1; p=bogus')}"],
    }


@contextmanager
def network_lab(workdir: Path, upstream_delay: float = 0.0) -> Iterator[Lab]:
    key_path, record = generate_key("example.test", "sel", workdir)
    weak_path = workdir / "weak.key"
    weak_record = _weak_key(weak_path)
    with dns_server(zones(record, weak_record), upstream_delay) as server:
        yield Lab(server, key_path, weak_path, record)
