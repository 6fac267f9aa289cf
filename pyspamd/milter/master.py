"""The master process: starts a pool per listener and the controller, restarts them with a
back-off when they die, probes each pool the way the MTA would (health.py) and replaces the
workers of, then restarts, a pool that stopped answering; passes SIGHUP on."""

from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from pyspamd.config import Config
from pyspamd.milter.children import TICK, Backoff, describe_status, exited_children, kill_child
from pyspamd.milter.health import Probe
from pyspamd.milter.instance import EXIT_NO_SOCKET
from pyspamd.milter.pool import REPLACE_SIGNAL, Pool
from pyspamd.policy.remote_maps import poll_forever, remote_maps
from pyspamd.scanner import Scanner, reload_pipeline
from pyspamd.sdnotify import notify, reloading
from pyspamd.services import Services
from pyspamd.stats.keys import STARTED

log = logging.getLogger("pyspamd.master")  # one logger for the daemon's supervision

# Probes failed in a row before the master acts: a pool starved of CPU answers late, one
# that stopped accepting never does.
_HEALTH_FAILURES = 3
# Seconds between probes of a local resolver that did not answer ([dns] enabled = "auto").
DNS_REPROBE = 60.0


@dataclass
class _Health:
    """The master's view of one pool: the probe under way and the failures in a row."""

    next_probe: float
    probe: Probe | None = None
    failures: int = 0
    replaced: bool = False  # its workers were replaced after failures; next step: restart


@dataclass
class Master:
    config_path: Path | None
    config: Config
    scanner: Scanner
    pools: dict[int, str] = field(default_factory=dict)  # pid -> listener spec
    backoff: dict[str, Backoff] = field(default_factory=dict)
    started: dict[int, float] = field(default_factory=dict)
    health: dict[str, _Health] = field(default_factory=dict)
    retiring: set[int] = field(default_factory=set)  # children stopped on purpose
    stopping: bool = False
    reload_requested: bool = False
    exit_code: int = 0
    next_dns_probe: float = 0.0
    # Until every listener has answered a probe once: then systemd is told READY=1.
    waiting_ready: dict[str, Probe | None] | None = None

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_reload)
        log.info("pyspamd starting: %s", ", ".join(
            [*self.config.milter.listen, *self.config.policy_service.listen]))
        if self.config.dns.auto_note:
            log.info("%s", self.config.dns.auto_note)
        self.next_dns_probe = time.monotonic() + DNS_REPROBE
        for warning in self.config.warnings:
            log.warning("config: %s", warning)
        _mark_started(self.scanner.services)
        while not self.stopping:
            self._reap()
            if self.stopping:  # a pool could not listen: no respawn
                break
            if self.reload_requested:
                self.reload_requested = False
                self._reload()
            running = set(self.pools.values())
            self._stop_unwanted_controller()
            for spec in self._children_wanted():
                backoff = self.backoff.setdefault(spec, Backoff())
                if spec not in running and time.monotonic() >= backoff.not_before:
                    self._spawn_pool(spec)
            self._check_health()
            self._reprobe_resolver()
            self._check_ready()
            time.sleep(TICK)
        notify("STOPPING=1", "STATUS=finishing the messages in flight")
        for pid in self.pools:
            kill_child(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.config.milter.shutdown_timeout + 15
        while self.pools and time.monotonic() < deadline:
            self._reap()
            time.sleep(0.05)
        for pid in list(self.pools):
            kill_child(pid, signal.SIGKILL)
        log.info("pyspamd stopped")
        return self.exit_code

    def _check_ready(self) -> None:
        """READY=1 once each listener answers the way the MTA will ask (an OPTNEG)."""
        if self.waiting_ready is None:  # no probe connections when nobody is told
            self.waiting_ready = {spec: None for spec in self.config.milter.listen
                                  if os.environ.get("NOTIFY_SOCKET")}
        if not self.waiting_ready:
            return
        for spec, probe in list(self.waiting_ready.items()):
            if probe is None:
                probe = self.waiting_ready[spec] = Probe(spec, 5.0)
            outcome = probe.step()
            if outcome == "":
                del self.waiting_ready[spec]
            elif outcome is not None:
                self.waiting_ready[spec] = None  # not listening yet: ask again
        if not self.waiting_ready:
            notify("READY=1", f"STATUS=serving {', '.join(self.config.milter.listen)}")

    def _on_stop(self, signum: int, frame: object) -> None:
        self.stopping = True

    def _on_reload(self, signum: int, frame: object) -> None:
        self.reload_requested = True

    def _children_wanted(self) -> list[str]:
        """The listeners' pools, and the controller (a child of its own, so scanning
        workers never wait on it; restarted with the same back-off)."""
        wanted = list(self.config.milter.listen)
        if self.config.controller.enabled:
            wanted.append(CONTROLLER)
        if remote_maps(self.config):
            wanted.append(MAP_POLLER)
        if self.config.policy_service.listen:
            wanted.append(POLICY)
        return wanted

    def _stop_unwanted_controller(self) -> None:
        """The controller, map poller or policy service a reload turned off."""
        wanted = self._children_wanted()
        for pid, spec in self.pools.items():
            if spec in (CONTROLLER, MAP_POLLER, POLICY) and spec not in wanted:
                self._retire(pid)

    def _retire(self, pid: int) -> None:
        """Stop a child on purpose: no back-off, no "died" line when it exits."""
        if pid not in self.retiring:
            self.retiring.add(pid)
            kill_child(pid, signal.SIGTERM)

    def _spawn_pool(self, spec: str) -> None:
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                if spec == CONTROLLER:
                    code = _controller_main(self.config_path, self.config, self.scanner)
                elif spec == MAP_POLLER:
                    code = poll_forever(self.config_path, self.config)
                elif spec == POLICY:
                    code = _policy_main(self.config_path, self.config)
                else:
                    Pool(spec, self.config_path, self.config, self.scanner).run()
            except Exception:
                log.exception("%s failed", spec if spec in (CONTROLLER, POLICY)
                              else f"pool for {spec}")
                code = 1
            logging.shutdown()
            os._exit(code)
        self.pools[pid] = spec
        self.started[pid] = time.monotonic()
        old = self.health.get(spec)
        if old is not None and old.probe is not None:
            old.probe.sock.close()  # a probe of the pool that died
        self.health[spec] = _Health(time.monotonic() + self._health_timing(spec)[0])

    def _check_health(self) -> None:
        """Probe each pool now and then; a pool that fails _HEALTH_FAILURES times in a row
        gets new workers, and one that fails as often again after that is killed and
        started again."""
        now = time.monotonic()
        for pid, spec in list(self.pools.items()):
            health = self.health.get(spec)
            if spec in (CONTROLLER, MAP_POLLER) or health is None:
                continue
            interval, timeout = self._health_timing(spec)
            if interval <= 0:
                continue
            if health.probe is None:
                if now >= health.next_probe:
                    health.probe = _probe(spec, self.config, timeout)
                continue
            outcome = health.probe.step()
            if outcome is None:
                continue
            health.probe = None
            health.next_probe = now + interval
            if not outcome:
                health.failures, health.replaced = 0, False
                continue
            health.failures += 1
            log.warning("health check of %s failed (%d in a row): %s", spec, health.failures,
                        outcome)
            if health.failures < _HEALTH_FAILURES:
                continue
            health.failures = 0
            if not health.replaced:
                log.error("pool for %s stopped answering; replacing its workers", spec)
                health.replaced = True
                kill_child(pid, REPLACE_SIGNAL)
            else:
                log.error("pool for %s still not answering; killing it to start it again",
                          spec)
                kill_child(pid, signal.SIGKILL)  # its workers die with it (PR_SET_PDEATHSIG)

    def _health_timing(self, spec: str) -> tuple[float, float]:
        """(interval, timeout) of a child's probes; interval 0: no probes."""
        if spec == POLICY:
            p = self.config.policy_service
            # A reload that emptied listen: the service is being stopped, nothing to probe.
            return (p.health_check_interval if p.listen else 0.0), p.health_check_timeout
        m = self.config.milter
        return m.health_check_interval, m.health_check_timeout

    def _reap(self) -> None:
        for pid, status in exited_children():
            spec = self.pools.pop(pid, None)
            if pid in self.retiring:
                self.retiring.discard(pid)
                self.started.pop(pid, None)
                continue
            if spec is None or self.stopping:
                continue
            if os.WIFEXITED(status) and os.WEXITSTATUS(status) == EXIT_NO_SOCKET:
                self.stopping, self.exit_code = True, 1  # the pool said why
                continue
            backoff = self.backoff.setdefault(spec, Backoff())
            backoff.crashed(time.monotonic() - self.started.pop(pid, time.monotonic()))
            log.error("pool for %s died (%s); restarting in %.1fs", spec,
                      describe_status(status), backoff.delay)

    def _reload(self) -> None:
        reloading()
        reloaded = reload_pipeline(self.config_path, log)  # the children load their own
        if reloaded is None:
            notify("READY=1", "STATUS=reload refused (see the log); the old config runs")
            return
        if reloaded[0].dns.auto_note != self.config.dns.auto_note:
            log.info("%s", reloaded[0].dns.auto_note or "network checks: as configured")
        old_listen = self.config.policy_service.listen
        self.config = reloaded[0]
        self.next_dns_probe = time.monotonic() + DNS_REPROBE
        for warning in self.config.warnings:
            log.warning("config: %s", warning)
        for pid, spec in self.pools.items():
            if spec == POLICY and self.config.policy_service.listen != old_listen:
                self._retire(pid)  # started again on its new sockets by the loop
            else:
                kill_child(pid, signal.SIGHUP)
        notify("READY=1", f"STATUS=serving {', '.join(self.config.milter.listen)}")

    def _reprobe_resolver(self) -> None:
        """The local resolver "auto" found silent: once it answers, a reload (the pools'
        too) turns the network checks on."""
        host_port = self.config.dns.unanswered
        if not host_port or time.monotonic() < self.next_dns_probe:
            return
        from pyspamd.dns.probe import probe

        self.next_dns_probe = time.monotonic() + DNS_REPROBE
        host, _, port = host_port.rpartition(":")
        if probe(host, int(port)) is None:
            log.info("the resolver %s answers now: reloading to turn the network checks on",
                     host_port)
            self.reload_requested = True  # _reload passes it on to the children


CONTROLLER = "controller"  # the controller's entry among the master's children
MAP_POLLER = "map poller"  # the process that polls https:// maps (policy/remote_maps.py)
POLICY = "policy-service"  # the Postfix policy service's entry (it has its own sockets)


def _probe(spec: str, config: Config, timeout: float) -> Probe:
    if spec == POLICY:
        from pyspamd.policy_service.health import PolicyProbe

        return PolicyProbe(config.policy_service.listen[0], timeout)
    return Probe(spec, timeout)


def _policy_main(config_path: Path | None, config: Config) -> int:
    from pyspamd.policy_service.server import policy_main  # asyncio only in this process

    return policy_main(config_path, config)


def _controller_main(config_path: Path | None, config: Config, scanner: Scanner) -> int:
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    from pyspamd.controller.server import run_controller  # aiohttp only in this process

    return run_controller(config_path, config, scanner)


def _mark_started(services: Services) -> None:
    """The daemon's start time, for the controller's uptime. The master writes nothing
    else, so it lets its handle go: its children open their own."""
    try:
        services.storage().set(STARTED, str(int(time.time())).encode())
    except Exception as exc:
        log.warning("start time not recorded: %s", exc)
    finally:
        services.close()
