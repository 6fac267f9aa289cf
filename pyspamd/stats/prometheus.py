"""GET /metrics: the statistics in Prometheus' text exposition format (version 0.0.4)."""

from __future__ import annotations

from typing import Any

from pyspamd.stats.reader import StatsReader

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Events with a metric of their own; any other event shows in pyspamd_events_total.
_NAMED_EVENTS = {
    "dns_queries": "DNS queries sent to the nameservers (cache misses)",
    "dns_cache_hits": "DNS answers served from the workers' caches",
    "dns_timeouts": "DNS queries that timed out",
    "dns_failures": "DNS queries that failed (SERVFAIL, refused, malformed answers)",
    "worker_restarts": "milter workers restarted after they died",
    "check_timeouts": "checks that ran out of the scan budget",
    "check_errors": "checks that failed with an error (the verdict was made without them)",
}


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(float(value)) if isinstance(value, float) else str(value)


class _Text:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]

    def sample(self, name: str, value: float, **labels: str) -> None:
        inner = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
        self.lines.append(f"{name}{{{inner}}} {_number(value)}" if inner
                          else f"{name} {_number(value)}")


def process_metrics() -> str:
    """The standard process_* metrics (CPU seconds, resident and virtual memory, open and
    maximum file descriptors, start time) of this process, by prometheus_client's process
    collector, the same names every Prometheus exporter uses."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.process_collector import ProcessCollector

    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    return generate_latest(registry).decode()


def render(reader: StatsReader, bayes_learned: dict[str, int] | None,
           uptime: float) -> str:
    counters = reader.counters()
    scans: dict[str, Any] = reader.scans(counters)
    out = _Text()
    out.family("pyspamd_scanned_total", "counter", "Messages scanned, by action.")
    for action, n in scans["actions"].items():
        out.sample("pyspamd_scanned_total", n, action=action)
    buckets, total_time = reader.time_histogram(counters)
    out.family("pyspamd_scan_duration_seconds", "histogram", "Time to scan one message.")
    running = 0
    for bound, n in buckets:
        running += n
        out.sample("pyspamd_scan_duration_seconds_bucket", running, le=_number(bound))
    out.sample("pyspamd_scan_duration_seconds_sum", float(total_time))
    out.sample("pyspamd_scan_duration_seconds_count", running)
    if bayes_learned is not None:
        out.family("pyspamd_bayes_learned_messages", "gauge",
                   "Messages the Bayes classifier has learned, by class.")
        for label, n in bayes_learned.items():
            out.sample("pyspamd_bayes_learned_messages", n, **{"class": label})
    out.family("pyspamd_learns_total", "counter",
               "Learn requests (pyspamc learn_* and the controller), by class and outcome.")
    for key, n in sorted(scans["learns"].items()):
        label, _, outcome = key.partition(":")
        out.sample("pyspamd_learns_total", n, **{"class": label, "outcome": outcome})
    events = {k[len("stat:event:"):]: n for k, n in counters.items()
              if k.startswith("stat:event:")}
    for name, help_text in _NAMED_EVENTS.items():
        metric = f"pyspamd_{name}_total"
        out.family(metric, "counter", help_text[0].upper() + help_text[1:] + ".")
        out.sample(metric, events.get(name, 0))
    others = {k: n for k, n in events.items() if k not in _NAMED_EVENTS}
    out.family("pyspamd_events_total", "counter", "Other counted events, by name.")
    for name, n in sorted(others.items()):
        out.sample("pyspamd_events_total", n, event=name)
    out.family("pyspamd_symbol_hits_total", "counter", "Messages each symbol hit.")
    for name, n in sorted(reader.symbol_hits(counters).items()):
        out.sample("pyspamd_symbol_hits_total", n, symbol=name)
    out.family("pyspamd_controller_uptime_seconds", "gauge", "Seconds the controller has run.")
    out.sample("pyspamd_controller_uptime_seconds", round(uptime, 3))
    return "\n".join(out.lines) + "\n"
