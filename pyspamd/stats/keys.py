"""Key names of the statistics in the storage backend's generic keyed state."""

from __future__ import annotations

from dataclasses import dataclass

SCANNED = "stat:scanned"
ACTION = "stat:action:"  # + action, e.g. "stat:action:no action"
SYMBOL = "stat:symbol:"  # + symbol name: messages it hit
EVENT = "stat:event:"  # + event name: dns_timeouts, worker_restarts, check_timeouts, ...
LEARN = "stat:learn:"  # + "spam:learned", "ham:already learned", ...: learns via the controller
TIME = "stat:time:"  # + index of the scan-time bucket (not cumulative)
TIME_SUM_US = "stat:time_sum_us"
STARTED = "stat:started"  # unix time the daemon's master started
HISTORY = "history"  # a list (Storage.list_push), newest first
GRAPH = "graph:"  # + step name + ":" + zero-padded bucket start + ":" + action

# Upper bounds (seconds) of the scan-time histogram, Prometheus style; one more bucket above.
TIME_BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True, slots=True)
class GraphStep:
    seconds: int
    points: int  # how many buckets the graph shows
    ttl: float  # how long a bucket is kept: a little longer than the graph reaches back


GRAPH_STEPS = {
    "minute": GraphStep(60, 60, 3 * 3600.0),
    "hour": GraphStep(3600, 48, 3 * 86400.0),
    "day": GraphStep(86400, 30, 35 * 86400.0),
}


def graph_key(step: str, start: int, action: str) -> str:
    return f"{GRAPH}{step}:{start:012d}:{action}"

