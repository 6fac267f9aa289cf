"""A private nginx serving files over HTTPS on 127.0.0.1, with a certificate made for the
test by its own CA (the client trusts that CA through a file, as [update] ca_file does).
Besides the static files: /error answers 500, /hang/ never answers (proxied to a socket
that accepts and stays silent). Stopped and removed even when tests fail."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import shutil
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from support.nginx import running_nginx
from support.ports import free_port


@dataclass(frozen=True)
class HttpsServer:
    port: int
    root: Path  # the files served at /
    ca_file: Path
    access_log: Path

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def statuses(self, path: str) -> list[int]:
        """The status codes nginx answered for `path`, in order."""
        text = self.access_log.read_text() if self.access_log.exists() else ""
        return [int(line.split()[1]) for line in text.splitlines()
                if line.split()[0] == "/" + path.lstrip("/")]


def _certificates(directory: Path) -> Path:
    """A CA and a leaf certificate for 127.0.0.1 signed by it; returns the CA's file."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pyspamd test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False,
                                       False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    (directory / "server.crt").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (directory / "server.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    ca_file = directory / "ca.crt"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return ca_file


@contextlib.contextmanager
def https_server() -> Iterator[HttpsServer]:
    # nginx's workers run as nobody: not under pytest's 0700 temp root.
    top = Path(tempfile.mkdtemp(prefix="pyspamd-https-"))
    top.chmod(0o755)
    root = top / "www"
    root.mkdir(mode=0o755)
    ca_file = _certificates(top)
    port = free_port()
    silent = socket.socket()  # accepts into its backlog, never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    access_log = top / "access.log"
    try:
        with running_nginx(top, f"""
    log_format paths '$uri $status';
    access_log {access_log} paths;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {top}/server.crt;
        ssl_certificate_key {top}/server.key;
        root {root};
        location = /error {{ return 500; }}
        location /hang/ {{
            proxy_pass http://127.0.0.1:{silent.getsockname()[1]};
            proxy_read_timeout 120s;
        }}
    }}
""", port):
            yield HttpsServer(port, root, ca_file, access_log)
    finally:
        silent.close()
        shutil.rmtree(top, ignore_errors=True)
