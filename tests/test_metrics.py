"""`jobctl run --metrics`: /metrics scraped and parsed with prometheus_client's
parser while a real runner runs real tasks; /healthz; a port in use."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import FakeClock, wait_for, write_config

SETTINGS = '[jobctl]\nstate = "state.db"\nkill_grace = "1s"\nshutdown_grace = "1s"\n{extra}\n'


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("JOBCTL_")}


class Runner:
    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.path = tmp_path / "runner.out"
        self.out = self.path.open("w")
        self.proc = subprocess.Popen([sys.executable, "-m", "jobctl", "run", "--log-format", "json",
                                      "--no-echo", *args], cwd=tmp_path, env=env(), stdout=self.out,
                                     stderr=subprocess.STDOUT)
        [serving] = wait_for(lambda: self._kind("metrics"), what="the metrics event")  # type: ignore[misc]
        # "serving http://127.0.0.1:PORT/metrics and ..."
        self.base = str(serving["message"]).split()[1].removesuffix("/metrics")
        wait_for(lambda: self._kind("ready"), what="ready")

    def events(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.startswith("{")]

    def _kind(self, kind: str) -> list[dict[str, object]]:
        if self.proc.poll() is not None:
            raise AssertionError(f"runner exited {self.proc.returncode}: {self.path.read_text()}")
        return [e for e in self.events() if e["event"] == kind]

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.base + path, timeout=10) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        status, text = self.get("/metrics")
        assert status == 200
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


@pytest.fixture
def runners() -> Iterator[list[Runner]]:
    started: list[Runner] = []
    yield started
    for r in started:
        if r.proc.poll() is None:
            r.proc.kill()
            r.proc.wait()


def rows(tmp_path: Path, sql: str) -> list[tuple]:  # type: ignore[type-arg]
    db = sqlite3.connect(f"file:{tmp_path / 'state.db'}?mode=ro", uri=True)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


TASKS = """
[[tasks]]
id = "ok"
schedule = "every 1s"
argv = ["true"]

[[tasks]]
id = "bad"
schedule = "every 1s"
argv = ["false"]

[[tasks]]
id = "busy"
schedule = "every 1s"
command = "sleep 2.5"
concurrency = "forbid"

[[tasks]]
id = "sleeper"
schedule = "@reboot"
command = "sleep 60"

[[tasks]]
id = "hourly"
schedule = "every 1h"
argv = ["true"]
"""


def test_metrics_match_history_while_tasks_run(tmp_path: Path, runners: list[Runner]) -> None:
    write_config(tmp_path, SETTINGS.format(extra="") + TASKS)
    r = Runner(tmp_path, "--metrics", "127.0.0.1:0")
    runners.append(r)
    ready_at = datetime.fromisoformat(str(r._kind("ready")[0]["at"])).timestamp()

    def counts() -> dict[tuple[str, str], int]:
        return {(t, s): n for t, s, n in rows(tmp_path, "select task_id, status, count(*) from runs "
                                                        "group by 1, 2")}

    wait_for(lambda: counts().get(("ok", "success"), 0) >= 2 and counts().get(("bad", "failed"), 0) >= 2
             and counts().get(("busy", "skipped"), 0) >= 1, timeout=30, what="runs of every kind")
    # the sleep task is running: its gauge is 1 while it runs
    samples = r.samples()
    assert samples[("jobctl_running", (("task", "sleeper"),))] == 1.0
    # stop the firing (a real `jobctl disable`), let the last run end, then compare
    done = subprocess.run([sys.executable, "-m", "jobctl", "disable", "ok", "bad", "busy"], cwd=tmp_path,
                          env=env(), capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    wait_for(lambda: len(r._kind("control")) == 3, what="the disables applied")
    wait_for(lambda: rows(tmp_path, "select count(*) from runs where status = 'running'") == [(1,)],
             what="only the sleeper running")
    wait_for(lambda: r.samples()[("jobctl_running", (("task", "busy"),))] == 0.0, what="busy's gauge at 0")
    samples = r.samples()
    history = {k: n for k, n in counts().items() if k[1] != "running"}
    scraped = {(dict(labels)["task"], dict(labels)["status"]): int(v)
               for (name, labels), v in samples.items() if name == "jobctl_runs_total"}
    assert scraped == history
    assert samples[("jobctl_running", (("task", "sleeper"),))] == 1.0
    assert samples[("jobctl_running", (("task", "ok"),))] == 0.0
    assert samples[("jobctl_run_duration_seconds_count", (("task", "ok"),))] == history[("ok", "success")]
    [(last_ok,)] = rows(tmp_path, "select max(finished_at) from runs where task_id = 'ok' and status = 'success'")
    assert abs(samples[("jobctl_last_success_timestamp_seconds", (("task", "ok"),))]
               - datetime.fromisoformat(last_ok).timestamp()) < 0.05
    assert ("jobctl_last_success_timestamp_seconds", (("task", "bad"),)) not in samples
    [(started,)] = rows(tmp_path, "select count(*) from runs where trigger = 'schedule' and status != 'skipped'")
    assert samples[("jobctl_fire_lateness_seconds_count", ())] == started
    assert samples[("jobctl_fire_lateness_seconds_sum", ())] < started * 0.5
    # next fires: the hourly task about an hour after the start; disabled tasks none
    hourly = samples[("jobctl_next_fire_timestamp_seconds", (("task", "hourly"),))]
    assert 3590 < hourly - ready_at < 3610
    # a disabled task has no next fire (the snapshot is refreshed every second)
    wait_for(lambda: ("jobctl_next_fire_timestamp_seconds", (("task", "ok"),)) not in r.samples(),
             what="ok's next fire gone")
    assert not [k for k in samples if k[0] == "jobctl_hook_failures_total"]
    status, body = r.get("/nothing")
    assert status == 404
    assert r.stop() == 0


def test_healthz_is_200_then_503_while_the_state_is_locked_then_200_again(
        tmp_path: Path, runners: list[Runner]) -> None:
    write_config(tmp_path, SETTINGS.format(extra="") + '[[tasks]]\nid = "tick"\nschedule = "every 1s"\n'
                                                       'argv = ["true"]\n')
    r = Runner(tmp_path, "--metrics", ":0")
    runners.append(r)
    assert r.base.startswith("http://127.0.0.1:")  # a bare :PORT binds loopback
    assert wait_for(lambda: r.get("/healthz") == (200, "ok\n"), what="healthy")
    # another process holds the state file's write lock: the runner's writes
    # wait out the busy timeout (10 s), then fail
    lock = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    try:
        lock.execute("begin exclusive")
        status, body = wait_for(lambda: (lambda got: got if got[0] == 503 else None)(r.get("/healthz")),
                                timeout=40, what="503")  # type: ignore[misc]
        assert "the last write to the state store failed" in body or "loop has not run" in body, body
    finally:
        lock.execute("rollback")
        lock.close()
    wait_for(lambda: r.get("/healthz") == (200, "ok\n"), timeout=30, what="healthy again")
    assert r.stop() == 0


def test_a_port_in_use_exits_2_before_anything_is_written(tmp_path: Path) -> None:
    write_config(tmp_path, SETTINGS.format(extra="") + TASKS)
    taken = socket.socket()
    try:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "jobctl", "run", "--metrics", f"127.0.0.1:{port}"],
                                cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=30)
    finally:
        taken.close()
    assert result.returncode == 2
    assert result.stderr.strip() == (f"error: cannot serve metrics on 127.0.0.1:{port}: address already "
                                     "in use (--metrics / [jobctl] metrics)")
    assert not (tmp_path / "state.db").exists()


@pytest.mark.parametrize(("value", "message"), [
    ('"9100"', "'9100' is not HOST:PORT"),
    ('":99999"', "the port must be a number from 0 to 65535"),
    ("9100", "expected a string"),
])
def test_a_bad_metrics_setting_is_a_config_error(tmp_path: Path, value: str, message: str) -> None:
    write_config(tmp_path, SETTINGS.format(extra=f"metrics = {value}") + TASKS)
    result = subprocess.run([sys.executable, "-m", "jobctl", "validate"], cwd=tmp_path, env=env(),
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "jobctl.toml:5" in result.stderr and "metrics" in result.stderr and message in result.stderr
    assert "Traceback" not in result.stderr


def test_other_commands_never_import_prometheus_client(tmp_path: Path) -> None:
    write_config(tmp_path, SETTINGS.format(extra='metrics = ":9100"') + TASKS)
    for args in (["list"], ["status"], ["validate"]):
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "jobctl", *args], cwd=tmp_path,
                              env=env(), capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines()}
        assert not {m for m in imported if m.startswith(("prometheus_client", "jobctl.metrics"))}, args


def test_health_turns_on_a_stalled_loop_or_a_failed_write() -> None:
    from jobctl.metrics import HEALTH_STALL, Health

    clock = FakeClock()
    health = Health(clock.monotonic)
    assert health.check() == (False, "starting: the runner's loop has not run yet")
    health.stepped()
    assert health.check() == (True, "ok")
    clock.advance(HEALTH_STALL + 1)
    assert health.check() == (False, f"the runner's loop has not run for {HEALTH_STALL + 1:.1f}s")
    health.stepped()
    health.wrote("database is locked")
    assert health.check() == (False, "the last write to the state store failed: database is locked")
    health.wrote(None)
    assert health.check() == (True, "ok")


def test_events_drive_the_counters_including_hook_failures() -> None:
    from jobctl.metrics import Health, RunnerMetrics
    from jobctl.model import RunStatus, Trigger
    from jobctl.runner import Event

    clock = FakeClock()
    metrics = RunnerMetrics(Health(clock.monotonic))
    now = clock.now()
    metrics.observe(Event("start", now, task_id="t", run_id=1, trigger=Trigger.SCHEDULE, scheduled_for=now))
    metrics.observe(Event("finish", now, task_id="t", run_id=1, status=RunStatus.TIMEOUT, duration_s=3.0))
    # a run that never started (its program is missing) ends failed, running stays 0
    metrics.observe(Event("finish", now, task_id="t", run_id=2, status=RunStatus.FAILED, duration_s=0.0))
    metrics.observe(Event("hook_failed", now, task_id="t", message="on_failure exited 1"))
    metrics.observe(Event("hook_failed", now, task_id="t", message="webhook: 500"))
    text = metrics.render().decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("jobctl_hook_failures_total", (("task", "t"),))] == 2
    assert samples[("jobctl_runs_total", (("status", "timeout"), ("task", "t")))] == 1
    assert samples[("jobctl_runs_total", (("status", "failed"), ("task", "t")))] == 1
    assert samples[("jobctl_running", (("task", "t"),))] == 0


class _Quiet:
    """What RunnerMetrics.step reads of a runner: its next fire and tasks."""

    def __init__(self, clock: FakeClock, fire_in: float | None) -> None:
        self.clock, self.fire_in, self.tasks = clock, fire_in, {}

    def time_to_next_fire(self, now: object) -> float | None:
        return self.fire_in

    def prepare_lead(self) -> float:
        return 0.01

    def upcoming(self, count: int) -> list[object]:
        return []


def test_metrics_are_rendered_by_the_loop_away_from_fires_and_served_as_rendered() -> None:
    from jobctl.events import Event
    from jobctl.metrics import SNAPSHOT_EVERY, Health, RunnerMetrics
    from jobctl.model import RunStatus

    clock = FakeClock()
    metrics = RunnerMetrics(Health(clock.monotonic))

    def runs_total(text: bytes) -> float:
        return sum(s.value for f in text_string_to_metric_families(text.decode())
                   for s in f.samples if s.name == "jobctl_runs_total")

    metrics.step(_Quiet(clock, None))  # type: ignore[arg-type]
    metrics.observe(Event("finish", clock.now(), task_id="t", run_id=1, status=RunStatus.SUCCESS,
                          duration_s=1.0))
    # a scrape is served what the loop rendered, not rendered in the server's thread
    assert runs_total(metrics.render()) == 0
    clock.advance(SNAPSHOT_EVERY)
    metrics.step(_Quiet(clock, 0.02))  # type: ignore[arg-type]  # a fire is near: not now
    assert runs_total(metrics.render()) == 0
    metrics.step(_Quiet(clock, 3.0))  # type: ignore[arg-type]
    assert runs_total(metrics.render()) == 1
    # a loop that is never idle still renders, a few seconds late
    metrics.observe(Event("finish", clock.now(), task_id="t", run_id=2, status=RunStatus.SUCCESS,
                          duration_s=1.0))
    clock.advance(SNAPSHOT_EVERY * 6)
    metrics.step(_Quiet(clock, 0.0))  # type: ignore[arg-type]
    assert runs_total(metrics.render()) == 2
