"""The nginx setup of docs/controller.md, with a real nginx in front of a running
controller: the page and its API under /pyspamd/, nginx's own Basic auth, a proxied
stranger needing the controller's password (X-Forwarded-For), and the page's POSTs passing
the Origin check."""

from __future__ import annotations

import base64
import contextlib
import http.client
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import nginx
from support.controller_proc import ControllerProc, running_controller
from support.messages import make_message
from support.mta import free_port
from support.ports import outside_address

from pyspamd.controller.auth import make_hash

PASSWORD = "controller password"
BASIC = "Basic " + base64.b64encode(b"admin:proxy password").decode()




@contextlib.contextmanager
def running_nginx(controller_port: int) -> Iterator[int]:
    # nginx's workers run as nobody: not under pytest's 0700 temp root.
    root = Path(tempfile.mkdtemp(prefix="pyspamd-nginx-"))
    root.chmod(0o755)
    port = free_port()
    (root / "htpasswd").write_text("admin:{PLAIN}proxy password\n")
    (root / "htpasswd").chmod(0o644)
    # The location block is the one in docs/controller.md.
    try:
        with nginx.running_nginx(root, f"""
    access_log off;
    server {{
        listen {port};
        location /pyspamd/ {{
            auth_basic "pyspamd";
            auth_basic_user_file {root}/htpasswd;
            proxy_pass http://127.0.0.1:{controller_port}/;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header Host $http_host;
            proxy_set_header Authorization "";
            client_max_body_size 10m;
        }}
    }}
""", port):
            yield port
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[ControllerProc, int]]:
    config = f'enable_password = "{make_hash(PASSWORD)}"\n'
    with running_controller(tmp_path, config) as controller, \
            running_nginx(controller.port) as port:
        yield controller, port


def _get(host: str, port: int, method: str, path: str, headers: dict[str, str],
         body: bytes | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request(method, path, body, headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_behind_nginx(stack: tuple[ControllerProc, int]) -> None:
    _, port = stack
    local = "127.0.0.1"
    assert _get(local, port, "GET", "/pyspamd/", {})[0] == 401  # nginx's own login
    status, page = _get(local, port, "GET", "/pyspamd/", {"Authorization": BASIC})
    assert status == 200 and b'src="static/app.js"' in page  # relative: works under /pyspamd/
    assert _get(local, port, "GET", "/pyspamd/static/app.js", {"Authorization": BASIC})[0] \
        == 200
    # from the host itself, through the proxy: a secure_ip, as without the proxy
    assert _get(local, port, "GET", "/pyspamd/stat", {"Authorization": BASIC})[0] == 200
    outside = outside_address()
    if outside is None:
        pytest.skip("no non-loopback address to play a stranger from")
    stranger = {"Authorization": BASIC}
    status, body = _get(outside, port, "GET", "/pyspamd/stat", stranger)
    assert status == 401 and b"password required" in body  # the proxy's trust is not theirs
    with_password = {**stranger, "Password": PASSWORD}
    assert _get(outside, port, "GET", "/pyspamd/stat", with_password)[0] == 200
    # what the page's fetch() sends for a learn: Origin of the page, through the proxy
    origin = {**with_password, "Origin": f"http://{outside}:{port}"}
    status, body = _get(outside, port, "POST", "/pyspamd/learnspam", origin, make_message())
    assert status == 200 and b'"learned"' in body
    forged = {**with_password, "Origin": "http://evil.example"}
    assert _get(outside, port, "POST", "/pyspamd/learnspam", forged, make_message())[0] == 403
