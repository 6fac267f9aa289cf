"""Time per hostile input (issue 18's repro files): `pyspamc symbols --json` and the milter.

    python bench/hostile.py [DIR] [--timeout SECONDS] [--generated]

DIR defaults to ../shared/repro. Each *.eml is scanned by a `pyspamc symbols --json`
process (its wall time, start-up included, and the scan time it reports) and sent to a
pyspamd milter daemon with one worker over the milter protocol (time from end of message
to the verdict). Each *.rules file is loaded beside the shipped rules and a message whose
Subject and body are 40 letters "a" is scanned with it; when the rule file is refused at
load, that is reported, and it is measured again with `tflags NAME backtracking` added for
each rule named in the errors. A run over --timeout (default 120 s) is cut and reported as
such. --generated adds the hostile messages tests/messages.py builds that have no file
there (100,000 encoded words in a Subject, 100,000 headers). Run it from a tree to measure
that tree: the daemon and pyspamc come from this REPO.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# bench/milter.py would stand in for pymilter's C module `milter` if bench/ came first.
sys.path[:] = [str(REPO / "tests"),
               *(p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"),
               str(REPO / "bench")]

from support import messages  # noqa: E402
from support.mta import Daemon, MtaSession  # noqa: E402
from tables import print_markdown  # noqa: E402

A40 = ("From: a@example.com\nTo: b@example.net\nSubject: " + "a" * 40
       + "\nMessage-ID: <a40@example.com>\n\n" + "a" * 40 + "\n").encode()
_REFUSED = re.compile(r":\d+: (\w+): RE2 cannot run")


def pyspamc(path: Path, config: Path | None, timeout: float) -> tuple[str, str, str]:
    """(wall seconds, scan seconds, action or what went wrong)."""
    command = [sys.executable, "-m", "pyspamd.cli.pyspamc"]
    command += ["-c", str(config)] if config else []
    command += ["symbols", "--json", str(path)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("PYSPAMD_CONFIG", None)
    started = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              env=env, check=False)
    except subprocess.TimeoutExpired:
        return f">{timeout:.0f}", "-", "no verdict (cut)"
    wall = f"{time.perf_counter() - started:.2f}"
    lines = done.stdout.splitlines()
    if not lines:
        return wall, "-", "refused: " + (done.stderr.strip().splitlines() or ["?"])[-1][:60]
    item = json.loads(lines[0])
    if "error" in item:
        return wall, "-", item["error"][:60]
    action = item["action"] + (" +errors" if item.get("errors") else "")
    return wall, f"{item['scan_time']:.3f}", action


def milter(raw: bytes, config_text: str, timeout: float) -> tuple[str, str]:
    """(seconds from end of message to the verdict, the verdict)."""
    with tempfile.TemporaryDirectory(prefix="pyspamd-hostile-") as workdir:
        daemon = Daemon(Path(workdir), config_text, workers=1)
        daemon.start()
        try:
            session = MtaSession(daemon.port)
            session.sock.settimeout(timeout)
            try:
                session.send_until_eom(raw)
                started = time.perf_counter()
                result = session.send_reply()
                elapsed = f"{time.perf_counter() - started:.2f}"
            except TimeoutError:
                return f">{timeout:.0f}", "no verdict (cut)"
            except OSError as exc:  # libmilter drops a packet over its 64 KiB limit
                return "-", f"connection closed by the milter ({type(exc).__name__})"
            finally:
                session.sock.close()
        finally:
            daemon.stop(timeout=5)
    if result.reply:
        return elapsed, result.reply[:40]
    headers = result.added
    if "X-Pyspamd-Scan" in headers:
        return elapsed, f"accepted unscanned: {headers['X-Pyspamd-Scan']}"
    return elapsed, "accept: " + headers.get("X-Spam-Status", "?")[:30]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", nargs="?", default=str(REPO.parent / "shared" / "repro"))
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--generated", action="store_true",
                        help="also the generated 100k-encoded-word and 100k-header messages")
    args = parser.parse_args()
    os.environ.setdefault("PYSPAMD_DATA_DIR", tempfile.mkdtemp(prefix="pyspamd-bench-"))
    rows: list[list[str]] = []
    shipped = REPO / "rules"
    with tempfile.TemporaryDirectory(prefix="pyspamd-hostile-") as scratch:
        a40 = Path(scratch) / "a40.eml"
        a40.write_bytes(A40)
        # Explicit, or pyspamc would read /etc/pyspamd/pyspamd.toml where one is installed.
        shipped_only = Path(scratch) / "shipped.toml"
        shipped_only.write_text(f'[rules]\ndirs = ["{shipped}"]\n')
        inputs = sorted(Path(args.dir).iterdir())
        if args.generated:
            for name, raw in (("subject_100k_encoded_words.eml", messages.many_encoded_words()),
                              ("headers_100k.eml", messages.many_headers())):
                (Path(scratch) / name).write_bytes(raw)
                inputs.append(Path(scratch) / name)
        for path in inputs:
            if path.suffix == ".eml":
                wall, scan, action = pyspamc(path, shipped_only, args.timeout)
                latency, verdict = milter(path.read_bytes(), "", args.timeout)
                rows.append([path.name, wall, scan, action, latency, verdict])
            elif path.suffix == ".rules":
                rules = Path(scratch) / path.name
                rules.write_text(path.read_text())
                config = Path(scratch) / "pyspamd.toml"
                config.write_text(f'[rules]\ndirs = ["{shipped}", "{rules}"]\n')
                check = subprocess.run(
                    [sys.executable, "-m", "pyspamd.cli.pyspamd", "-c", str(config),
                     "configtest"], capture_output=True, text=True, check=False,
                    env={**os.environ, "PYTHONPATH": str(REPO)})
                refused = _REFUSED.findall(check.stdout) if check.returncode else []
                label = f"{path.name} (body: 40 x a)"
                if refused:
                    rows.append([path.name, "-", "-", f"refused at load: {len(refused)} rules",
                                 "-", "daemon does not start"])
                    rules.write_text(path.read_text() + "".join(
                        f"tflags {name} backtracking\n" for name in refused))
                    label = f"{path.name} + tflags backtracking (body: 40 x a)"
                wall, scan, action = pyspamc(a40, config, args.timeout)
                latency, verdict = milter(
                    A40, f'[rules]\ndirs = ["{shipped}", "{rules}"]\n', args.timeout)
                rows.append([label, wall, scan, action, latency, verdict])
    print_markdown(["input", "pyspamc wall s", "scan s", "action", "milter s", "milter verdict"],
                   rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
