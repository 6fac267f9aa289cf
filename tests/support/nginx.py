"""A private nginx for the tests: its own prefix directory (temp files, pid, error log), the
`http` block's content given by the caller, on a port the caller picked; stopped even when
tests fail."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.ports import wait_for_port


@contextlib.contextmanager
def running_nginx(prefix: Path, http_block: str, port: int) -> Iterator[None]:
    """nginx with `http_block` inside http { }; `prefix` must be readable by its workers
    (they run as nobody: not under pytest's 0700 temp root)."""
    if shutil.which("nginx") is None:
        pytest.fail("nginx is not installed: .ci/run installs it (apt-get install nginx)")
    (prefix / "nginx.conf").write_text(f"""
pid {prefix}/nginx.pid;
error_log {prefix}/error.log;
worker_processes 1;
events {{ worker_connections 64; }}
http {{
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
{http_block}
}}
""")
    proc = subprocess.Popen(["nginx", "-p", str(prefix), "-c", str(prefix / "nginx.conf"),
                             "-g", "daemon off;"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc=proc)
        yield
    finally:
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stdout:
            proc.stdout.close()
