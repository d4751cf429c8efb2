"""Prometheus metrics and a health check for `jobctl run --metrics`.

Everything here is driven from the edge of the runner: `RunnerMetrics`
observes the runner's events (it wraps the reporter), `Health` learns of each
loop step (the loop's `on_step`) and of each state write (a `WatchedStore`
around the store), and a daemon thread serves `/metrics` and `/healthz` on
one port. prometheus_client is imported only here, and this module only by
`jobctl run` with metrics on: other commands never load it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from jobctl.errors import JobctlError
from jobctl.model import RunStatus, Trigger
from jobctl.events import Event, Reporter
from jobctl.runner import Runner
from jobctl.store import Store

HEALTH_STALL = 10.0
"""Seconds without a loop step after which /healthz says the loop is stuck
(the loop steps at least every half second)."""
SNAPSHOT_EVERY = 1.0
RENDER_SLACK = 0.05
"""The loop renders /metrics only when its next fire (less the time it
claims ahead) is further away than the last rendering took plus this many
seconds (or once it has waited SNAPSHOT_EVERY * 5 for such a moment)."""
"""Seconds between refreshes of the next-fire snapshot."""
DURATION_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 10800, 43200, 86400)
LATENESS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class MetricsBindError(JobctlError):
    """The metrics port cannot be listened on."""

    def __init__(self, host: str, port: int, reason: str) -> None:
        self.host, self.port, self.reason = host, port, reason
        super().__init__(f"cannot serve metrics on {host}:{port}: {reason} "
                         "(--metrics / [jobctl] metrics)")


class Health:
    """Whether the runner is alive, for /healthz.

    Healthy while the loop has stepped within `stall` seconds and the last
    write to the state store succeeded. Times are monotonic seconds from
    `monotonic`; the loop and the store wrapper report, the server thread
    asks (plain attribute writes and reads: no lock needed).
    """

    def __init__(self, monotonic: Callable[[], float], stall: float = HEALTH_STALL) -> None:
        self.monotonic = monotonic
        self.stall = stall
        self.last_step: float | None = None
        self.write_error: str | None = None

    def stepped(self) -> None:
        self.last_step = self.monotonic()

    def wrote(self, error: str | None) -> None:
        self.write_error = error

    def check(self) -> tuple[bool, str]:
        """(healthy, why) at this moment."""
        if self.last_step is None:
            return False, "starting: the runner's loop has not run yet"
        idle = self.monotonic() - self.last_step
        if idle > self.stall:
            return False, f"the runner's loop has not run for {idle:.1f}s"
        if self.write_error is not None:
            return False, f"the last write to the state store failed: {self.write_error}"
        return True, "ok"


class WatchedStore:
    """A `Store` that tells `Health` whether each runner write (heartbeat,
    claim, process start, finish) succeeded. Everything else passes through."""

    def __init__(self, store: Store, health: Health) -> None:
        self._store = store
        self._health = health

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def _watch(self, name: str, *args: Any, **kwargs: Any) -> Any:
        try:
            result = getattr(self._store, name)(*args, **kwargs)
        except JobctlError as e:
            self._health.wrote(str(e))
            raise
        self._health.wrote(None)
        return result

    def heartbeat(self, *args: Any, **kwargs: Any) -> Any:
        beat = self._watch("heartbeat", *args, **kwargs)
        if not beat:
            self._health.wrote("the runner lease is no longer ours")
        return beat

    def node_heartbeat(self, *args: Any, **kwargs: Any) -> Any:
        beat = self._watch("node_heartbeat", *args, **kwargs)
        if not beat:
            self._health.wrote("this node's lease is no longer ours")
        return beat

    def claim_many(self, *args: Any, **kwargs: Any) -> Any:
        return self._watch("claim_many", *args, **kwargs)

    def set_processes(self, *args: Any, **kwargs: Any) -> Any:
        return self._watch("set_processes", *args, **kwargs)

    def finish(self, *args: Any, **kwargs: Any) -> Any:
        return self._watch("finish", *args, **kwargs)


class _NextFires(Collector):
    def __init__(self) -> None:
        self.fires: dict[str, float] = {}  # replaced whole by the loop's thread

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("jobctl_next_fire_timestamp_seconds",
                                   "When each enabled task fires next (Unix time).", labels=["task"])
        for task_id, at in sorted(self.fires.items()):
            family.add_metric([task_id], at)
        yield family


class RunnerMetrics:
    """The runner's Prometheus metrics, kept from its events.

    `jobctl_runs_total{task,status}` counts finished runs (and `skipped`
    fires) as history records them; `jobctl_running{task}` follows start and
    finish; `jobctl_hook_failures_total{task}` counts events of kind
    `hook_failed`. `step(runner)` is called by the loop after each step: it
    marks the loop alive and, at most once a second, refreshes the snapshot
    behind `jobctl_next_fire_timestamp_seconds`.
    """

    def __init__(self, health: Health) -> None:
        self.health = health
        self.registry = CollectorRegistry()
        r = self.registry
        self.runs = Counter("jobctl_runs", "Runs ended (and fires skipped), by task and status.",
                            ["task", "status"], registry=r)
        self.duration = Histogram("jobctl_run_duration_seconds", "How long runs took, by task.",
                                  ["task"], buckets=DURATION_BUCKETS, registry=r)
        self.running = Gauge("jobctl_running", "Runs going now, by task.", ["task"], registry=r)
        self.last_success = Gauge("jobctl_last_success_timestamp_seconds",
                                  "When each task's last successful run ended (Unix time).",
                                  ["task"], registry=r)
        self.lateness = Histogram("jobctl_fire_lateness_seconds",
                                  "Process start minus scheduled instant, for scheduled fires.",
                                  buckets=LATENESS_BUCKETS, registry=r)
        self.hook_failures = Counter("jobctl_hook_failures", "Hooks (and webhooks, pings) that failed.",
                                     ["task"], registry=r)
        self.next_fires = _NextFires()
        r.register(self.next_fires)
        self.started: set[int] = set()
        self.next_snapshot = 0.0
        self.rendered: bytes | None = None  # /metrics as the loop last rendered it
        self.render_cost = 0.0  # seconds the last rendering took

    def observe(self, event: Event) -> None:
        kind, task = event.kind, event.task_id or ""
        if kind == "start":
            if event.run_id is not None:
                self.started.add(event.run_id)
            self.running.labels(task).inc()
            if event.trigger is Trigger.SCHEDULE and event.scheduled_for is not None:
                self.lateness.observe(max(0.0, (event.at - event.scheduled_for).total_seconds()))
        elif kind == "finish" and event.status is not None:
            if event.run_id in self.started:
                self.started.discard(event.run_id)
                self.running.labels(task).dec()
            self.runs.labels(task, event.status.value).inc()
            if event.duration_s is not None:
                self.duration.labels(task).observe(event.duration_s)
            if event.status is RunStatus.SUCCESS:
                self.last_success.labels(task).set(event.at.timestamp())
        elif kind == "skip":
            self.runs.labels(task, RunStatus.SKIPPED.value).inc()
        elif kind == "hook_failed":
            self.hook_failures.labels(task).inc()

    def reporter(self, report: Reporter) -> Reporter:
        """`report`, with every event observed first."""

        def observed(event: Event) -> None:
            try:
                self.observe(event)
            finally:
                report(event)

        return observed

    def step(self, runner: Runner) -> None:
        """After each loop step: mark the loop alive, and at most once a
        second, when no fire is near, render /metrics (in this thread, so a
        scrape never takes the interpreter from a batch being spawned: with
        a thousand tasks a rendering costs tens of milliseconds)."""
        self.health.stepped()
        mono = self.health.monotonic()
        if mono < self.next_snapshot:
            return
        fire_in = runner.time_to_next_fire(runner.clock.now())
        if fire_in is not None \
                and fire_in - runner.prepare_lead() < self.render_cost * 1.5 + RENDER_SLACK \
                and mono < self.next_snapshot + SNAPSHOT_EVERY * 5:
            return  # a fire is near: after it
        self.next_snapshot = mono + SNAPSHOT_EVERY
        fires: dict[str, float] = {}
        for fire, task_id in runner.upcoming(len(runner.tasks)):
            fires.setdefault(task_id, fire.timestamp())
        self.next_fires.fires = fires
        self.rendered = generate_latest(self.registry)
        self.render_cost = self.health.monotonic() - mono

    def render(self) -> bytes:
        """What a scrape gets: the loop's last rendering (at most about a
        second old), or a fresh one before the loop made any."""
        rendered = self.rendered
        return rendered if rendered is not None else generate_latest(self.registry)


class MetricsServer:
    """`/metrics` and `/healthz` on one port, served by a daemon thread.
    The port is bound in the constructor (MetricsBindError if it cannot
    be), so a runner fails before it takes its lease."""

    def __init__(self, host: str, port: int, metrics: RunnerMetrics) -> None:
        handler = _handler(metrics)
        try:
            self.server = ThreadingHTTPServer((host, port), handler)
        except OSError as e:
            raise MetricsBindError(host, port, (e.strerror or str(e)).lower()) from None
        self.server.daemon_threads = True
        address: Any = self.server.server_address
        self.host, self.port = str(address[0]), int(address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, name="jobctl-metrics",
                                       daemon=True)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        if self.thread.is_alive():
            self.server.shutdown()
        self.server.server_close()


def _handler(metrics: RunnerMetrics) -> type[BaseHTTPRequestHandler]:
    from prometheus_client.exposition import CONTENT_TYPE_LATEST

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, metrics.render(), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                healthy, why = metrics.health.check()
                self._send(200 if healthy else 503, f"{why}\n".encode(), "text/plain; charset=utf-8")
            else:
                self._send(404, b"not found: try /metrics or /healthz\n", "text/plain; charset=utf-8")

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # a scrape every few seconds is not news

    return Handler
