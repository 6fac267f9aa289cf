"""The controller's API against a running `pyspamd controller` process: the same verdicts
as pyspamc in-process, statistics and history, graph, symbols, metrics, and pyspamc -h."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.controller_proc import ControllerProc, eventually, running_controller
from support.messages import make_message
from support.paths import CORPUS

from pyspamd.cli.pyspamc import main as pyspamc_main

GTUBE = CORPUS / "malformed" / "gtube.eml"
MAP_CONFIG = """
[[maps]]
name = "blocked_senders"
type = "address"
values = ["spammer@example.com", "@bad.example"]
symbol = "BLOCKED_SENDER"
score = 3.0
[[settings]]
name = "abuse-desk"
rcpt = ["abuse@example.net"]
actions = { reject = false }
"""
ENVELOPE = {"IP": "203.0.113.5", "From": "sender@example.org", "Helo": "mx.example.org",
            "Hostname": "mx.example.org", "Queue-Id": "4ABCDEF"}


@pytest.fixture(scope="module")
def controller(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControllerProc]:
    with running_controller(tmp_path_factory.mktemp("controller"), MAP_CONFIG) as c:
        yield c


def _scan(controller: ControllerProc, raw: bytes, rcpts: tuple[str, ...] = ("a@example.net",),
          extra: dict[str, str] | None = None) -> dict:
    headers = [*{**ENVELOPE, **(extra or {})}.items(), *(("Rcpt", r) for r in rcpts)]
    reply = controller.call("POST", "/checkv2", raw, headers)
    assert reply.status == 200, reply.body
    return reply.json()


def _without_time(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if k not in ("scan_time", "file")}


def test_checkv2_gives_the_cli_verdict(controller: ControllerProc,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    for path in (GTUBE, *sorted((CORPUS / "spam" / "cur").iterdir())[:3]):
        over_http = _scan(controller, path.read_bytes(), ("a@example.net", "b@example.net"))
        assert pyspamc_main(["--config", str(controller.config_path), "symbols", "--json",
                             "--ip", ENVELOPE["IP"], "--from", ENVELOPE["From"],
                             "--helo", ENVELOPE["Helo"], "--hostname", ENVELOPE["Hostname"],
                             "--queue-id", ENVELOPE["Queue-Id"], "--rcpt", "a@example.net",
                             "--rcpt", "b@example.net", str(path)]) == 0
        in_process = json.loads(capsys.readouterr().out)
        assert _without_time(over_http) == _without_time(in_process), path


def test_scans_reach_stat_history_graph_and_symbols(controller: ControllerProc) -> None:
    before = controller.call("GET", "/stat").json()
    _scan(controller, GTUBE.read_bytes(), tuple(f"r{i}@example.net" for i in range(25)))
    _scan(controller, make_message(), extra={"From": "spammer@example.com",
                                             "Queue-Id": "4MAPHIT"})
    stat = eventually(lambda: (s := controller.call("GET", "/stat").json())["scanned"]
                      >= before["scanned"] + 2 and s)
    assert stat["actions"]["reject"] == before["actions"]["reject"] + 1
    assert stat["spam_count"] + stat["ham_count"] == stat["scanned"]
    rows = controller.call("GET", "/history?limit=2").json()["rows"]
    assert [r["queue_id"] for r in rows] == ["4MAPHIT", "4ABCDEF"]
    gtube = rows[1]
    assert gtube["action"] == "reject" and gtube["ip"] == "203.0.113.5"
    assert gtube["rcpt_count"] == 25 and len(gtube["rcpts"]) == 20
    assert gtube["symbols"][0][0] == "GTUBE" and gtube["subject"] == "Test spam mail (GTUBE)"
    assert gtube["source"] == "controller"
    assert any(name == "BLOCKED_SENDER" for name, _, _ in rows[0]["symbols"])
    assert controller.call("GET", "/history?limit=abc").status == 400
    assert len(controller.call("GET", "/history?limit=1").json()["rows"]) == 1
    graph = controller.call("GET", "/graph?type=minute").json()
    assert len(graph["starts"]) == 60 and graph["step"] == 60
    assert sum(graph["actions"]["reject"]) >= 1
    assert controller.call("GET", "/graph?type=year").status == 400
    symbols = {s["name"]: s for s in controller.call("GET", "/symbols").json()["symbols"]}
    assert symbols["GTUBE"]["score"] == 1000.0 and symbols["GTUBE"]["hits"] >= 1
    assert symbols["BLOCKED_SENDER"]["hits"] >= 1
    assert symbols["BAYES_SPAM"]["hits"] == 0  # every rule is listed, hit or not
    actions = controller.call("GET", "/actions").json()["actions"]
    assert {"action": "reject", "threshold": 15.0} in actions
    (blocked,) = controller.call("GET", "/maps").json()["maps"]
    assert blocked["name"] == "blocked_senders" and blocked["entries"] == 2


def test_metrics_is_valid_prometheus_text(controller: ControllerProc) -> None:
    _scan(controller, GTUBE.read_bytes())
    eventually(lambda: controller.call("GET", "/stat").json()["scanned"] >= 1)

    # /metrics and /stat are two requests: a scan recorded between them (this module's
    # earlier scans are flushed in batches) would make them disagree, so read until they agree.
    views: list[tuple] = []

    def both_views() -> bool:
        reply = controller.call("GET", "/metrics")
        families = {f.name: f for f in text_string_to_metric_families(reply.body.decode())}
        stat = controller.call("GET", "/stat").json()
        scanned = {s.labels["action"]: s.value for s in families["pyspamd_scanned"].samples}
        views[:] = [(reply, families, stat, scanned)]
        return scanned.get("reject") == stat["actions"]["reject"]

    eventually(both_views)
    ((reply, families, stat, scanned),) = views
    assert reply.status == 200 and reply.headers["content-type"].startswith("text/plain")
    assert scanned["reject"] == stat["actions"]["reject"] >= 1
    histogram = families["pyspamd_scan_duration_seconds"]
    assert histogram.type == "histogram"
    counts = {s.name: s.value for s in histogram.samples if not s.name.endswith("_bucket")}
    assert counts["pyspamd_scan_duration_seconds_count"] == stat["scanned"]
    buckets = [s.value for s in histogram.samples if s.name.endswith("_bucket")]
    assert buckets == sorted(buckets) and buckets[-1] == stat["scanned"]
    for name in ("pyspamd_dns_timeouts", "pyspamd_worker_restarts", "pyspamd_learns",
                 "pyspamd_symbol_hits", "pyspamd_bayes_learned_messages"):
        assert name in families, name
    assert families["pyspamd_dns_timeouts"].samples[0].value == 0
    # the controller process's own, by prometheus_client's process collector
    assert families["process_resident_memory_bytes"].samples[0].value > 10 << 20
    assert families["process_cpu_seconds"].samples[0].value > 0
    assert families["process_open_fds"].samples[0].value >= 3


def test_learn_moves_and_counts(controller: ControllerProc) -> None:
    raw = make_message({"Subject": "A message to learn", "Message-ID": "<learn-1@example.org>"},
                       body="Cheap watches and more cheap watches for everyone\n")
    answers = [controller.call("POST", path, raw).json()["outcome"]
               for path in ("/learnspam", "/learnspam", "/learnham")]
    assert answers == ["learned", "already learned", "moved"]
    stat = controller.call("GET", "/stat").json()
    assert stat["bayes"]["learned"]["ham"] >= 1
    assert stat["learns"]["spam:learned"] >= 1 and stat["learns"]["ham:moved"] >= 1


def test_health_and_page(controller: ControllerProc) -> None:
    assert controller.call("GET", "/healthy").json() == {"success": True}
    assert controller.call("GET", "/ready").json() == {"ready": True}
    page = controller.call("GET", "/")
    assert page.status == 200 and b"<title>pyspamd</title>" in page.body
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    script = controller.call("GET", "/static/app.js")
    assert script.status == 200 and script.headers["content-type"].startswith(
        "application/javascript")
    assert b"https://" not in page.body + script.body  # nothing from a CDN
    for path in ("/static/..%2F..%2Fconfig.py", "/static/index.html.bak", "/static/%2Fetc%2Fpasswd",
                 "/../pyproject.toml"):
        reply = controller.call("GET", path)
        assert reply.status == 404, path
        assert b"[project]" not in reply.body and b"root:" not in reply.body


def _strip_times(text: str) -> str:
    return re.sub(r"\(\d+\.\d+ seconds\)", "(T)", text)


def test_pyspamc_over_http_prints_what_in_process_prints(
        controller: ControllerProc, capsys: pytest.CaptureFixture[str]) -> None:
    remote = ["-h", f"127.0.0.1:{controller.port}"]
    local = ["--config", str(controller.config_path)]
    spam_dir = str(CORPUS / "spam")
    assert pyspamc_main([*local, "symbols", spam_dir, str(GTUBE)]) == 0
    in_process = capsys.readouterr().out
    assert pyspamc_main([*remote, "-n", "4", "symbols", spam_dir, str(GTUBE)]) == 0
    over_http = capsys.readouterr().out
    assert _strip_times(over_http) == _strip_times(in_process)
    assert over_http.count("Results for file:") == 101
    eventually(lambda: controller.call("GET", "/stat").json()["scanned"] >= 101)
    for command in (["stat"], ["history", "--limit", "5"], ["counters"],
                    ["history", "--json", "--limit", "3"]):
        assert pyspamc_main([*local, *command]) == 0
        expected = capsys.readouterr().out
        assert pyspamc_main([*remote, *command]) == 0
        assert capsys.readouterr().out == expected, command
    assert pyspamc_main([*remote, "stat"]) == 0
    stat_text = capsys.readouterr().out
    assert stat_text.startswith("Messages scanned: ")
    assert "Messages with action reject: " in stat_text and "Statfile: BAYES_SPAM" in stat_text


def test_pyspamc_learn_over_http(controller: ControllerProc, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "spam"
    folder.mkdir()
    words = ("amber", "basalt", "cobalt", "dune", "ember", "fjord", "granite", "harbor",
             "indigo", "juniper", "kelp", "lagoon")
    for n, word in enumerate(words):  # distinct words: numbers alone make no new tokens
        (folder / f"{n}.eml").write_bytes(make_message(
            {"Message-ID": f"<http-learn-{n}@example.org>"}, body=f"cheap {word} offer\n"))
    (folder / "junk.bin").write_bytes(b"\x00\x01\x02" * 50)
    remote = ["-h", f"127.0.0.1:{controller.port}", "-n", "3"]
    assert pyspamc_main([*remote, "learn_spam", str(folder)]) == 1  # the junk file failed
    out = capsys.readouterr().out
    assert out.startswith("learned: 12, already learned: 0, moved: 0, failed: 1")
    assert "junk.bin: binary data, not a mail message" in out
    assert pyspamc_main([*remote, "learn_spam", str(folder / "0.eml")]) == 0
    assert capsys.readouterr().out.startswith("learned: 0, already learned: 1")
    (folder / "Ham").mkdir()  # a folder named like the other class: nothing is sent
    (folder / "Ham" / "h.eml").write_bytes(make_message(body="a kept letter\n"))
    assert pyspamc_main([*remote, "learn_spam", str(folder)]) == 1
    assert f"{folder / 'Ham'} (1 message) would be learned as spam" in capsys.readouterr().err


def test_pyspamc_without_a_controller(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from support.mta import free_port

    assert pyspamc_main(["-h", f"127.0.0.1:{free_port()}", "stat"]) == 1
    assert "cannot reach the controller" in capsys.readouterr().err
    assert pyspamc_main(["-h", "127.0.0.1:1", "expire"]) == 2
    assert "works in-process only" in capsys.readouterr().err


def test_explain_over_http_is_the_in_process_explanation(
        controller: ControllerProc, capsys: pytest.CaptureFixture[str]) -> None:
    path = sorted((CORPUS / "spam" / "cur").iterdir())[1]
    reply = controller.call("POST", "/explain", path.read_bytes())
    assert reply.status == 200, reply.body
    over_http = reply.json()
    assert pyspamc_main(["--config", str(controller.config_path), "explain", "--json",
                         str(path)]) == 0
    in_process = json.loads(capsys.readouterr().out)
    assert _without_time(over_http) == _without_time(in_process)
    assert any(s["rule"] for s in over_http["symbols"])
    assert pyspamc_main(["--config", str(controller.config_path), "-h",
                         f"127.0.0.1:{controller.port}", "explain", str(path)]) == 0
    assert "  rule:    " in capsys.readouterr().out
    assert controller.call("POST", "/explain", b"  ").status == 400


def test_recipient_settings_over_http(controller: ControllerProc,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    over_http = _scan(controller, GTUBE.read_bytes(), ("abuse@example.net",))
    assert over_http["settings"] == "abuse-desk" and over_http["action"] == "add header"
    assert "settings" not in _scan(controller, GTUBE.read_bytes(), ("ceo@example.net",))
    remote = ["-h", f"127.0.0.1:{controller.port}", "--rcpt", "abuse@example.net", "symbols"]
    assert pyspamc_main([*remote, "--json", str(GTUBE)]) == 0
    assert json.loads(capsys.readouterr().out)["settings"] == "abuse-desk"
    assert pyspamc_main([*remote, str(GTUBE)]) == 0
    assert "\nSettings: abuse-desk\n" in capsys.readouterr().out


def test_rspamc_stat_counters_and_ping(controller: ControllerProc) -> None:
    """rspamd's own client reads the controller: Statfile lines, the symbols cache table."""
    import subprocess

    _scan(controller, GTUBE.read_bytes())
    eventually(lambda: controller.call("GET", "/stat").json()["scanned"] >= 1)
    controller.call("POST", "/learnspam", make_message(body="rspamc stat learned line\n"))
    ping = controller.call("GET", "/ping")
    assert ping.status == 200 and ping.body == b"pong\r\n"

    def rspamc(command: str) -> str:
        out = subprocess.run(["rspamc", "-h", f"127.0.0.1:{controller.port}", command],
                             capture_output=True, text=True, timeout=30, check=False)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    stat = controller.call("GET", "/stat").json()
    spam = stat["bayes"]["learned"]["spam"]
    text = rspamc("stat")
    assert re.search(r"^Messages scanned: [1-9]", text, re.MULTILINE)
    assert re.search(rf"Statfile: BAYES_SPAM type: sqlite3; .*learned: {spam}; users: 1", text)
    assert "Statfile: BAYES_HAM type: sqlite3; " in text
    assert f"Total learns: {spam + stat['bayes']['learned']['ham']}" in text
    counters = rspamc("counters")
    row = next(line for line in counters.splitlines() if " GTUBE " in line)
    assert row.split("|")[3].strip() == "1000.0" and int(row.split("|")[5]) >= 1
