"""The admin page in a real headless Chromium (Debian's package) driven by Playwright:
log in, see the counts change after a scan, open a history entry, scan and learn a message
from the page, a wrong password refused. Screenshots go to the test's directory and to
tests/output/ for a person to look at."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright
from support.controller_proc import ControllerProc, running_controller
from support.messages import make_message
from support.paths import CORPUS, REPO

from pyspamd.controller.auth import make_hash

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
OUTPUT = REPO / "tests" / "output"
PASSWORD = "correct horse battery staple"
# Debian's chromium, offline: no first-run, sync, component or background fetches.
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def controller(tmp_path: Path) -> Iterator[ControllerProc]:
    config = f'enable_password = "{make_hash(PASSWORD)}"\nsecure_ip = []\n'
    workdir = tmp_path / "controller"
    workdir.mkdir()
    with running_controller(workdir, config) as c:
        yield c


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Page]:
    if not CHROMIUM.exists():
        pytest.fail("chromium is not installed: .ci/run installs it (apt-get install chromium)")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=str(CHROMIUM), headless=True, args=ARGS,
            viewport={"width": 1366, "height": 860})
        try:
            yield context.new_page()
        finally:
            context.close()


def _shot(page: Page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    OUTPUT.mkdir(exist_ok=True)
    shutil.copy(path, OUTPUT / path.name)
    return path


def test_admin_page(controller: ControllerProc, page: Page, tmp_path: Path) -> None:
    p = page
    errors: list[str] = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    p.on("console", lambda m: errors.append(m.text) if m.type == "error"
         and "401" not in m.text and "403" not in m.text else None)
    p.goto(f"http://127.0.0.1:{controller.port}/")

    # login: a wrong password is refused, the right one opens the dashboard
    expect(p.locator("#login")).to_be_visible()
    p.fill("#login-password", "wrong password")
    p.click("#login-submit")
    expect(p.locator("#login-error")).to_have_text("Wrong password")
    expect(p.locator("#tabs")).to_be_hidden()
    p.fill("#login-password", PASSWORD)
    p.click("#login-submit")
    expect(p.locator("#view-dashboard")).to_be_visible()
    expect(p.locator("#stat-scanned")).to_have_text("0")
    expect(p.locator("#who")).to_have_text("read-write")

    # a scan through the API shows up in the counts (the page refreshes every 5 s)
    for raw in ((CORPUS / "malformed" / "gtube.eml").read_bytes(), make_message(),
                make_message({"Subject": "Quarterly report"})):
        reply = controller.call("POST", "/checkv2", raw,
                                [("Password", PASSWORD), ("IP", "198.51.100.23"),
                                 ("From", "sender@example.org"), ("Rcpt", "bob@example.net"),
                                 ("Queue-Id", "4BROWSER1")])
        assert reply.status == 200
    expect(p.locator("#stat-scanned")).to_have_text("3", timeout=15000)
    expect(p.locator('#action-bars [data-action="reject"]')).to_contain_text("1 ·")
    p.wait_for_timeout(300)  # the chart is drawn
    _shot(p, tmp_path, "controller-dashboard")

    # history: filter, open an entry, see its symbols
    p.click("#tab-history")
    rows = p.locator("#history-table tbody tr")
    expect(rows).to_have_count(3)
    p.fill("#history-filter", "gtube")
    expect(rows).to_have_count(1)
    rows.first.click()
    detail = p.locator("#detail")
    expect(detail).to_be_visible()
    expect(detail).to_contain_text("GTUBE")
    expect(detail).to_contain_text("198.51.100.23")
    expect(detail).to_contain_text("4BROWSER1")
    _shot(p, tmp_path, "controller-history")

    # scan a pasted message and learn it as spam from the page
    p.click("#tab-scan")
    pasted = make_message({"Subject": "Win a prize now", "Message-ID": "<page@example.org>"},
                          body="Click here to claim your prize, limited offer!\n").decode()
    p.fill("#scan-text", pasted)
    p.click("#view-scan summary")  # the envelope fields are folded away
    p.fill("#scan-ip", "203.0.113.9")
    p.click("#scan-submit")
    expect(p.locator("#scan-score")).to_be_visible()
    p.click("#learn-spam")
    expect(p.locator("#learn-result")).to_have_text("Learned as spam: learned")
    p.click("#learn-spam")
    expect(p.locator("#learn-result")).to_have_text(
        "Learned as spam: already learned")
    _shot(p, tmp_path, "controller-scan")
    stat = controller.call("GET", "/stat", headers={"Password": PASSWORD}).json()
    assert stat["bayes"]["learned"]["spam"] == 1

    # symbols and config: listed, secrets hidden
    p.click("#tab-symbols")
    p.fill("#symbols-filter", "GTUBE")
    expect(p.locator("#symbols-table tbody tr").first).to_contain_text("1000.00")
    p.fill("#symbols-filter", "")
    p.check("#symbols-hit")
    expect(p.locator("#symbols-table tbody tr")).not_to_have_count(0)
    _shot(p, tmp_path, "controller-symbols")
    p.click("#tab-config")
    expect(p.locator("#config-text")).to_contain_text('"enable_password": "***"')
    assert "$scrypt$" not in p.locator("#config-text").inner_text()
    _shot(p, tmp_path, "controller-config")
    assert not errors, errors


def test_quarantine_tab(page: Page, tmp_path: Path) -> None:
    """Held messages listed; delete removes one; a release the MTA cannot take (nothing
    listens on release_smtp) says so and keeps the message."""
    from support.ports import free_port

    from pyspamd.quarantine.settings import QuarantineConfig
    from pyspamd.quarantine.store import Held, QuarantineStore

    held_dir = tmp_path / "held"
    config = (f'enable_password = "{make_hash(PASSWORD)}"\nsecure_ip = []\n'
              f'[quarantine]\ndir = "{held_dir}"\nrelease_smtp = "127.0.0.1:{free_port()}"\n'
              "release_timeout = 3.0\n")
    store = QuarantineStore(QuarantineConfig(dir=str(held_dir)))
    for sender, subject in (("eve@example.org", "Invoice"), ("zed@example.org", "Prize")):
        store.put(make_message({"Subject": subject}),
                  Held(sender=sender, rcpts=["bob@example.net"], score=11.5,
                       action="quarantine", reason=f"banned attachment: {subject}.pdf.exe",
                       subject=subject))
    workdir = tmp_path / "controller"
    workdir.mkdir()
    with running_controller(workdir, config) as controller:
        p = page
        p.on("dialog", lambda dialog: dialog.accept())
        p.goto(f"http://127.0.0.1:{controller.port}/#quarantine")
        p.fill("#login-password", PASSWORD)
        p.click("#login-submit")
        rows = p.locator("#quarantine-table tbody tr")
        expect(rows).to_have_count(2)
        expect(rows.first).to_contain_text("banned attachment: Prize.pdf.exe")
        _shot(p, tmp_path, "controller-quarantine")
        rows.filter(has_text="zed@example.org").locator("button.delete").click()
        expect(rows).to_have_count(1)
        rows.first.locator("button.release").click()
        expect(p.locator("#status")).to_contain_text("not released")
        expect(rows).to_have_count(1)
    assert [e.sender for e in store.list()] == ["eve@example.org"]
