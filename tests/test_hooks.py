"""Alerts end to end: hook commands, webhooks and health pings, through the
real `jobctl run` and `jobctl run-now`, real processes and a real HTTP server
on 127.0.0.1 (see jobctl/hooks.py)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from conftest import wait_for, write_config

UTC = timezone.utc
SETTINGS = '[jobctl]\nstate = "state.db"\nkill_grace = "1s"\nshutdown_grace = "5s"\n'


# -- a tiny HTTP server on loopback ------------------------------------------------------


class Hit:
    def __init__(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> None:
        self.method, self.path, self.body, self.headers = method, path, body, headers
        self.at = time.monotonic()

    @property
    def route(self) -> str:
        return urlsplit(self.path).path

    @property
    def rid(self) -> str:
        return parse_qs(urlsplit(self.path).query).get("rid", [""])[0]

    def json(self) -> dict[str, object]:
        return json.loads(self.body)  # type: ignore[no-any-return]


class Server:
    """Records every request; answers with `statuses` in turn (then 200), or
    never answers while `hang` is set."""

    def __init__(self, statuses: list[int] | None = None, hang: bool = False) -> None:
        self.hits: list[Hit] = []
        self.statuses = list(statuses or [])
        self.hang = hang
        self.release = threading.Event()
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with outer.lock:
                    outer.hits.append(Hit(self.command, self.path, body, dict(self.headers)))
                    status = outer.statuses.pop(0) if outer.statuses else 200
                if outer.hang:
                    outer.release.wait(60)
                    return
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_GET = do_POST = _handle

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def routes(self) -> list[Hit]:
        with self.lock:
            return list(self.hits)

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    made: list[Server] = []
    yield made
    for s in made:
        s.close()


# -- the runner as a real process ----------------------------------------------------------


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("JOBCTL_")}


class Runner:
    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "runner.out"
        self.out = self.path.open("w+")
        self.proc = subprocess.Popen([sys.executable, "-m", "jobctl", "run", "--log-format", "json"],
                                     cwd=tmp_path, env=env(), stdout=self.out,
                                     stderr=subprocess.STDOUT)
        self.wait_event("ready")

    def events(self, kind: str | None = None) -> list[dict[str, object]]:
        self.out.flush()
        out = [json.loads(line) for line in self.path.read_text().splitlines()
               if line.startswith("{")]
        return [e for e in out if kind is None or e["event"] == kind]

    def wait_event(self, kind: str, count: int = 1, timeout: float = 20.0,
                   **match: object) -> list[dict[str, object]]:
        def found() -> list[dict[str, object]] | None:
            hits = [e for e in self.events(kind) if all(e.get(k) == v for k, v in match.items())]
            if self.proc.poll() is not None and len(hits) < count:
                raise AssertionError(f"runner exited {self.proc.returncode}: "
                                     f"{self.path.read_text()}")
            return hits if len(hits) >= count else None
        return wait_for(found, timeout, f"{count} {kind} events {match}")  # type: ignore[return-value]

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
    conn = sqlite3.connect(tmp_path / "state.db")
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def jobctl(tmp_path: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["jobctl", *args], cwd=tmp_path, env=env(), capture_output=True,
                          text=True, timeout=timeout)


# a task that fails (exit 3, after printing) until the file `ok` exists
FLAKY = 'command = "echo out-$JOBCTL_RUN_ID; test -e ok || exit 3"'


# -- through `jobctl run` ------------------------------------------------------------------


def test_a_failing_task_notifies_once_then_recovers_once(tmp_path: Path, runners: list[Runner],
                                                         servers: list[Server]) -> None:
    server = Server()
    servers.append(server)
    write_config(tmp_path, SETTINGS + f"""
webhook = "{server.url}/hook"

[[tasks]]
id = "flaky"
schedule = "every 1s"
{FLAKY}
on_failure = "echo failure $JOBCTL_RUN_ID >> alerts.txt; env > env.txt; cat > stdin.txt"
on_recovery = ["sh", "-c", "echo recovery $JOBCTL_RUN_ID $JOBCTL_EVENT >> alerts.txt"]
on_success = "echo success $JOBCTL_RUN_ID >> successes.txt"
""")
    r = Runner(tmp_path)
    runners.append(r)
    failed = r.wait_event("finish", count=3, status="failed")
    (tmp_path / "ok").touch()
    ok = r.wait_event("finish", count=2, status="success")
    wait_for(lambda: len(lines(tmp_path / "alerts.txt")) >= 2 and len(server.routes()) >= 2,
             20, "the recovery hook and webhook")
    wait_for(lambda: len(lines(tmp_path / "successes.txt")) >= 2, 20, "the success hooks")
    assert r.stop() == 0
    first_fail, first_ok = failed[0]["run_id"], ok[0]["run_id"]
    # once on the first failure (the task's first run), once on the recovery
    assert lines(tmp_path / "alerts.txt") == [f"failure {first_fail}",
                                              f"recovery {first_ok} recovery"]
    assert [line.split()[1] for line in lines(tmp_path / "successes.txt")][:2] == \
        [str(first_ok), str(ok[1]["run_id"])]
    # the hook's environment and stdin
    hook_env = dict(line.split("=", 1) for line in lines(tmp_path / "env.txt") if "=" in line)
    assert hook_env["JOBCTL_TASK_ID"] == "flaky"
    assert hook_env["JOBCTL_RUN_ID"] == str(first_fail)
    assert hook_env["JOBCTL_RUN_STATUS"] == "failed"
    assert hook_env["JOBCTL_EXIT_CODE"] == "3"
    assert hook_env["JOBCTL_EVENT"] == "failure"
    assert hook_env["JOBCTL_SCHEDULED_FOR"] == failed[0]["scheduled_for"]
    started = datetime.fromisoformat(hook_env["JOBCTL_STARTED_AT"])
    finished = datetime.fromisoformat(hook_env["JOBCTL_FINISHED_AT"])
    assert started <= finished
    assert float(hook_env["JOBCTL_DURATION_S"]) == pytest.approx(
        (finished - started).total_seconds(), abs=0.002)
    assert (tmp_path / "stdin.txt").read_text() == f"out-{first_fail}\n"
    # the webhook: the same two events, with every field
    hits = server.routes()
    assert [h.route for h in hits] == ["/hook", "/hook"]
    assert all(h.method == "POST" and h.headers["Content-Type"] == "application/json"
               for h in hits)
    bodies = [h.json() for h in hits]
    assert [(b["event"], b["run_id"]) for b in bodies] == [("failure", first_fail),
                                                            ("recovery", first_ok)]
    fail = bodies[0]
    assert set(fail) >= {"event", "task_id", "run_id", "status", "exit_code", "signal",
                         "scheduled_for", "started_at", "finished_at", "duration_s", "node",
                         "log_tail"}
    assert (fail["task_id"], fail["status"], fail["exit_code"], fail["signal"]) == \
        ("flaky", "failed", 3, None)
    assert fail["scheduled_for"] == failed[0]["scheduled_for"]
    assert fail["log_tail"] == f"out-{first_fail}\n"
    assert fail["node"] and isinstance(fail["duration_s"], float)
    assert bodies[1]["status"] == "success" and bodies[1]["exit_code"] == 0
    # the hook's output follows the run's in the run's log
    log = (tmp_path / "logs" / f"{first_fail}.log").read_text()
    assert log.startswith(f"out-{first_fail}\n") and "[jobctl: on_failure hook" in log
    assert r.events("hook_failed") == []


def test_notify_every_and_pings_in_order(tmp_path: Path, runners: list[Runner],
                                         servers: list[Server]) -> None:
    server = Server()
    servers.append(server)
    write_config(tmp_path, SETTINGS + f"""
notify = "every"
on_failure = "echo $JOBCTL_RUN_ID >> failures.txt"

[[tasks]]
id = "flaky"
schedule = "every 1s"
{FLAKY}
ping_url = "{server.url}/ping/abc/"
""")
    r = Runner(tmp_path)
    runners.append(r)
    failed = r.wait_event("finish", count=3, status="failed")
    (tmp_path / "ok").touch()
    ok = r.wait_event("finish", count=1, status="success")
    wait_for(lambda: any(h.route == "/ping/abc" for h in server.routes()), 20, "success ping")
    assert r.stop() == 0
    failed_ids = [row[0] for row in rows(tmp_path, "select id from runs where status = 'failed'")]
    assert len(failed_ids) >= 3
    # every failure, not only the first
    assert sorted(int(x) for x in lines(tmp_path / "failures.txt")) == failed_ids
    by_rid: dict[str, list[Hit]] = {}
    for hit in server.routes():
        by_rid.setdefault(hit.rid, []).append(hit)
    assert all(rid for rid in by_rid)
    sequences = [[h.route for h in hits] for hits in by_rid.values()]
    complete = [s for s in sequences if len(s) == 2]
    # start -> fail per failed run, start -> success for the successful one, one rid each
    assert complete.count(["/ping/abc/start", "/ping/abc/fail"]) >= 3
    assert ["/ping/abc/start", "/ping/abc"] in complete
    assert all(s[0] == "/ping/abc/start" for s in sequences)
    fail_hits = [h for h in server.routes() if h.route.endswith("/fail")]
    assert fail_hits[0].method == "POST" and fail_hits[0].body == f"out-{failed[0]['run_id']}\n".encode()
    success = next(h for h in server.routes() if h.route == "/ping/abc")
    assert success.body == f"out-{ok[0]['run_id']}\n".encode()
    assert r.events("hook_failed") == []


def test_webhook_answered_500_then_200_is_delivered_once_after_a_retry(
        tmp_path: Path, runners: list[Runner], servers: list[Server]) -> None:
    server = Server(statuses=[500])
    servers.append(server)
    write_config(tmp_path, SETTINGS + f"""
[[tasks]]
id = "fails"
schedule = "every 1s"
command = "exit 1"
webhook = "{server.url}/w"
hook_timeout = "20s"
""")
    r = Runner(tmp_path)
    runners.append(r)
    r.wait_event("finish", count=2, status="failed")
    wait_for(lambda: len(server.routes()) >= 2, 20, "the retried delivery")
    r.wait_event("finish", count=3, status="failed")
    assert r.stop() == 0
    hits = server.routes()
    # notify = change: only the first failure; delivered on the second try
    assert len(hits) == 2
    assert hits[0].body == hits[1].body and hits[0].json()["event"] == "failure"
    assert 0.3 < hits[1].at - hits[0].at < 5
    assert r.events("hook_failed") == []
    assert rows(tmp_path, "select count(*) from hook_failures") == [(0,)]


def test_a_server_that_never_answers_is_given_up_and_other_tasks_fire_on_time(
        tmp_path: Path, runners: list[Runner], servers: list[Server]) -> None:
    server = Server(hang=True)
    servers.append(server)
    write_config(tmp_path, SETTINGS + f"""
webhook = "{server.url}/w"
ping_url = "{server.url}/p"
hook_timeout = "2s"

[[tasks]]
id = "fails"
schedule = "every 1s"
command = "exit 1"

[[tasks]]
id = "tick"
schedule = "every 1s"
argv = ["true"]
""")
    r = Runner(tmp_path)
    runners.append(r)
    failed = r.wait_event("finish", count=1, task_id="fails")
    gave_up = r.wait_event("hook_failed", task_id="fails", run_id=failed[0]["run_id"],
                           timeout=20)
    # the ping's and the webhook's failures come about together, in either order
    wait_for(lambda: any("webhook (failure)" in str(e["message"])
                         and "not delivered" in str(e["message"])
                         for e in r.events("hook_failed")), timeout=10,
             what="the webhook's failure")
    ended = datetime.fromisoformat(str(failed[0]["at"]))
    # given up after about hook_timeout, not before, not much later
    assert 1.5 <= (datetime.fromisoformat(str(gave_up[0]["at"])) - ended).total_seconds() < 8
    ticks = r.wait_event("start", count=6, task_id="tick")
    status = jobctl(tmp_path, "status", "--json")
    assert r.stop() == 0
    # the other task kept firing on time, every slot, while deliveries hung
    slots = [datetime.fromisoformat(str(e["scheduled_for"])) for e in ticks]
    assert all(b - a == timedelta(seconds=1) for a, b in zip(slots, slots[1:]))
    for e in ticks:
        late = datetime.fromisoformat(str(e["at"])) - datetime.fromisoformat(str(e["scheduled_for"]))
        assert late.total_seconds() < 0.5, e
    # both tasks' pings hang too (ping_url is everyone's default); each task's latest shows
    shown = {f["task_id"]: f["message"] for f in json.loads(status.stdout)["hook_failures"]}
    assert set(shown) == {"fails", "tick"}
    assert all("not delivered after" in message and "in 2s" in message
               for message in shown.values())


def test_a_hook_that_hangs_is_killed_at_hook_timeout(tmp_path: Path, runners: list[Runner]) -> None:
    write_config(tmp_path, SETTINGS + """
[[tasks]]
id = "fails"
schedule = "every 1s"
command = "exit 1"
on_failure = "echo $$ > hook.pid; sleep 600"
hook_timeout = "1s"
""")
    r = Runner(tmp_path)
    runners.append(r)
    failed = r.wait_event("finish", count=1, task_id="fails")
    pid = int(wait_for(lambda: (tmp_path / "hook.pid").exists()
                       and (tmp_path / "hook.pid").read_text().strip(), 10, "the hook's pid"))
    event = r.wait_event("hook_failed", timeout=15)[0]
    assert event["run_id"] == failed[0]["run_id"]
    assert event["message"] == "on_failure hook timed out after 1s and was stopped"
    taken = (datetime.fromisoformat(str(event["at"]))
             - datetime.fromisoformat(str(failed[0]["at"]))).total_seconds()
    assert 0.9 <= taken < 5
    wait_for(lambda: not _alive(pid), 10, "the hook's process to be gone")
    # the runner went on firing meanwhile
    r.wait_event("finish", count=3, task_id="fails")
    assert r.stop() == 0
    assert rows(tmp_path, "select task_id, run_id, message from hook_failures") == [
        ("fails", failed[0]["run_id"], "on_failure hook timed out after 1s and was stopped")]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][:1] != "Z"
    except OSError:
        return False


# -- through `jobctl run-now` -------------------------------------------------------------


def test_run_now_runs_hooks_webhook_and_pings_and_waits_for_them(
        tmp_path: Path, servers: list[Server]) -> None:
    server = Server()
    servers.append(server)
    write_config(tmp_path, SETTINGS + f"""
[[tasks]]
id = "flaky"
schedule = "@daily"
{FLAKY}
on_failure = "sleep 0.5; echo failed $JOBCTL_RUN_ID $JOBCTL_EVENT >> alerts.txt; exit 4"
on_recovery = "echo recovered $JOBCTL_RUN_ID >> alerts.txt"
webhook = "{server.url}/w"
ping_url = "{server.url}/p"
""")
    first = jobctl(tmp_path, "run-now", "flaky")
    assert first.returncode == 1, first.stderr
    # waited for its hook (which sleeps) before exiting; its failure is said
    assert lines(tmp_path / "alerts.txt") == ["failed 1 failure"]
    assert "jobctl: hook_failed: on_failure hook exited 4" in first.stderr
    assert [h.route for h in server.routes() if h.route == "/w"] == ["/w"]
    (tmp_path / "ok").touch()
    second = jobctl(tmp_path, "run-now", "flaky")
    assert second.returncode == 0, second.stderr
    assert lines(tmp_path / "alerts.txt") == ["failed 1 failure", "recovered 2"]
    hits = server.routes()
    webhook = [h.json() for h in hits if h.route == "/w"]
    assert [(w["event"], w["run_id"], w["scheduled_for"]) for w in webhook] == [
        ("failure", 1, None), ("recovery", 2, None)]
    pings = [h for h in hits if h.route.startswith("/p")]
    assert [h.route for h in pings] == ["/p/start", "/p/fail", "/p/start", "/p"]
    assert pings[0].rid == pings[1].rid != pings[2].rid == pings[3].rid
    assert rows(tmp_path, "select task_id, run_id, message from hook_failures") == [
        ("flaky", 1, "on_failure hook exited 4")]
    status = jobctl(tmp_path, "status")
    assert "hook failures" in status.stdout and "on_failure hook exited 4" in status.stdout


def test_bad_alert_keys_are_config_errors_with_their_lines(tmp_path: Path) -> None:
    write_config(tmp_path, """
[jobctl]
notify = "sometimes"
webhook = "ftp://example.com/x"

[[tasks]]
id = "t"
schedule = "@daily"
command = "true"
on_failure = 3
webhook_events = ["failure", "crash"]
hook_timeout = "0s"
ping_url = "not a url"
""")
    result = jobctl(tmp_path, "validate")
    assert result.returncode == 2
    err = result.stderr + result.stdout
    for expected in (
        "jobctl.toml:2: jobctl.notify: unknown value 'sometimes'",
        "jobctl.toml:3: jobctl.webhook: 'ftp://example.com/x' is not an http:// or https:// URL",
        "jobctl.toml:9: tasks[0] (t).on_failure: expected a shell command string or an argv array",
        "jobctl.toml:10: tasks[0] (t).webhook_events: unknown event 'crash'",
        "jobctl.toml:11: tasks[0] (t).hook_timeout:",
        "jobctl.toml:12: tasks[0] (t).ping_url: 'not a url' is not an http:// or https:// URL",
    ):
        assert expected in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "state.db").exists()


def test_previous_run_is_cluster_wide_for_cluster_tasks_on_postgres(tmp_path: Path,
                                                                    pg_url: str) -> None:
    write_config(tmp_path, f"""
[jobctl]
state = "{pg_url}"
on_failure = "echo failure $JOBCTL_TASK_ID $JOBCTL_RUN_ID >> alerts.txt"
on_recovery = "echo recovery $JOBCTL_TASK_ID $JOBCTL_RUN_ID >> alerts.txt"

[[tasks]]
id = "cluster"
schedule = "@daily"
scope = "cluster"
command = "test -e ok"

[[tasks]]
id = "local"
schedule = "@daily"
command = "test -e ok"
""")

    def run_now(task: str, node: str) -> int:
        result = subprocess.run(["jobctl", "run-now", task], cwd=tmp_path,
                                env={**env(), "JOBCTL_NODE": node}, capture_output=True,
                                text=True, timeout=60)
        assert "Traceback" not in result.stderr, result.stderr
        return result.returncode

    assert [run_now(t, n) for t, n in (("cluster", "n1"), ("cluster", "n2"),
                                       ("local", "n1"), ("local", "n2"))] == [1, 1, 1, 1]
    (tmp_path / "ok").touch()
    assert [run_now(t, n) for t, n in (("cluster", "n2"), ("local", "n2"))] == [0, 0]
    assert lines(tmp_path / "alerts.txt") == [
        "failure cluster 1",  # n2's failure follows n1's: the same outage, no second alert
        "failure local 3",
        "failure local 4",  # a node task's previous run is its node's: n2 had none
        "recovery cluster 5",  # n1's failure counts for n2's success
        "recovery local 6",
    ]


def test_a_stopping_runner_waits_for_its_hooks(tmp_path: Path, runners: list[Runner]) -> None:
    write_config(tmp_path, SETTINGS + """
[[tasks]]
id = "fails"
schedule = "every 1s"
command = "exit 1"
on_failure = "echo started > hook.txt; sleep 1; echo done >> hook.txt"
""")
    r = Runner(tmp_path)
    runners.append(r)
    wait_for(lambda: (tmp_path / "hook.txt").exists(), 20, "the hook to start")
    assert r.stop() == 0
    # the hook finished before the runner exited, and nothing was reported failed
    assert lines(tmp_path / "hook.txt") == ["started", "done"]
    assert r.events("hook_failed") == []
    assert r.events()[-1]["event"] == "stopped"


def test_a_hook_outliving_the_shutdown_grace_is_reported_as_stopped_by_the_runner(
        tmp_path: Path, runners: list[Runner]) -> None:
    """Stopped at the runner's shutdown_grace, not at its own hook_timeout:
    the report says so (not "timed out after 30s")."""
    write_config(tmp_path, SETTINGS.replace('"5s"', '"1s"') + """
[[tasks]]
id = "fails"
schedule = "every 1s"
command = "exit 1"
on_failure = "echo started > hook.txt; exec sleep 60"
""")
    r = Runner(tmp_path)
    runners.append(r)
    wait_for(lambda: (tmp_path / "hook.txt").exists(), 20, "the hook to start")
    assert r.stop() == 0
    failed = r.events("hook_failed")
    assert [e["message"] for e in failed] == [
        "on_failure hook stopped: the runner stopped (shutdown_grace) before it ended"], failed
    assert rows(tmp_path, "select message from hook_failures") == [(failed[0]["message"],)]


def test_a_retry_dropped_because_the_runner_stops_makes_the_attempt_before_it_alert(
        tmp_path: Path, runners: list[Runner], servers: list[Server]) -> None:
    """The failed attempt was not the slot's last when it ended (a retry was
    queued); the stop drops that retry, so it is the last after all and must
    alert, or a task that keeps failing from then on is never reported."""
    server = Server()
    servers.append(server)
    write_config(tmp_path, SETTINGS + f"""
[[tasks]]
id = "boot"
schedule = "@reboot"
command = "exit 3"
retries = 1
retry_delay = "1m"
on_failure = "echo failure $JOBCTL_RUN_ID >> alerts.txt"
ping_url = "{server.url}/p"
""")
    r = Runner(tmp_path)
    runners.append(r)
    r.wait_event("retry")
    assert r.stop() == 0
    assert lines(tmp_path / "alerts.txt") == ["failure 1"]
    assert rows(tmp_path, "select id, status, attempt, error from runs order by id") == [
        (1, "failed", 1, "exit code 3"),
        (2, "skipped", 2, "retry dropped: the runner stopped before attempt 2 was due")]
    assert [h.route for h in server.routes()] == ["/p/start", "/p/fail"]


def test_an_attempt_that_another_follows_alerts_nobody(tmp_path: Path) -> None:
    """`final=False` (a retry comes next): no hook, no webhook, no ping."""
    from jobctl.clock import SystemClock
    from jobctl.hooks import Notifier, RunEnd
    from jobctl.model import (Alerts, IntervalSchedule, Notify, RunStatus, Settings, Task,
                              Trigger)
    from jobctl.store import open_store

    store = open_store(tmp_path / "state.db", create=True)
    assert store is not None
    clock = SystemClock()
    events: list[object] = []
    notifier = Notifier(store, report=events.append, settings=Settings(timezone="UTC"),
                        now=clock.now, monotonic=clock.monotonic, env=env(), node="n")
    marker = tmp_path / "hook.txt"
    task = Task(id="t", name="t", schedule=IntervalSchedule("every 1s", 1.0), timezone="UTC",
                command="true", alerts=Alerts(on_failure=f"echo $JOBCTL_RUN_ID >> {marker}",
                                              notify=Notify.EVERY))
    now = clock.now()
    for run_id, final in ((1, False), (2, True)):
        notifier.run_ended(RunEnd(task, run_id, RunStatus.FAILED, 1, None, now, now,
                                  Trigger.MANUAL), final=final)
    notifier.wait(10)
    store.close()
    assert lines(marker) == ["2"]
    assert events == []


def test_run_now_with_retries_alerts_on_its_last_attempt_against_the_run_before(
        tmp_path: Path) -> None:
    """A `run-now` has no slot, so its earlier attempts must still not count as
    "the previous run": all attempts failing after nothing alerts once; an
    attempt 2 that succeeds after an earlier success is no recovery."""
    write_config(tmp_path, SETTINGS + """
[[tasks]]
id = "flaky"
schedule = "@daily"
command = "test -e ok || test -e attempt$JOBCTL_ATTEMPT || exit 3"
retries = 2
retry_delay = 0.1
on_failure = "echo failure $JOBCTL_RUN_ID >> alerts.txt"
on_recovery = "echo recovery $JOBCTL_RUN_ID >> alerts.txt"
""")
    first = jobctl(tmp_path, "run-now", "flaky")
    assert first.returncode == 1, first.stderr
    assert lines(tmp_path / "alerts.txt") == ["failure 3"]
    (tmp_path / "ok").touch()
    assert jobctl(tmp_path, "run-now", "flaky").returncode == 0
    (tmp_path / "ok").unlink()
    (tmp_path / "attempt2").touch()
    third = jobctl(tmp_path, "run-now", "flaky")
    assert third.returncode == 0, third.stderr
    assert rows(tmp_path, "select id, status, attempt from runs order by id") == [
        (1, "failed", 1), (2, "failed", 2), (3, "failed", 3), (4, "success", 1),
        (5, "failed", 1), (6, "success", 2)]
    assert lines(tmp_path / "alerts.txt") == ["failure 3", "recovery 4"]


def test_a_hook_gets_the_variables_the_config_gives_its_task(tmp_path: Path) -> None:
    """`[jobctl] env`/`env_file` and the task's `env_file` reach its hooks as
    they reach the task (a hook's token usually lives in an env file), with
    the same precedence."""
    (tmp_path / "all.env").write_text("A=all-file\nB=all-file\nC=all-file\nD=all-file\n")
    (tmp_path / "task.env").write_text("export A=task-file\nB='task-file'\n")
    for name in ("all.env", "task.env"):
        (tmp_path / name).chmod(0o600)
    write_config(tmp_path, SETTINGS + """env_file = "all.env"
env = { A = "all-env", B = "all-env", C = "all-env" }

[[tasks]]
id = "t"
schedule = "@daily"
env_file = "task.env"
env = { A = "own" }
command = "echo task $A $B $C $D; exit 1"
on_failure = "echo hook $A $B $C $D > hook.txt"
""")
    result = jobctl(tmp_path, "run-now", "t")
    assert result.returncode == 1, result.stderr
    assert "task own task-file all-env all-file" in result.stdout
    assert lines(tmp_path / "hook.txt") == ["hook own task-file all-env all-file"]


def test_a_signal_to_run_now_while_it_waits_for_a_hook_stops_the_hook(tmp_path: Path) -> None:
    """Ctrl-C (SIGTERM here) after the run ended must not wait out the hook's
    timeout: the hook's group is stopped at once and the report says why."""
    write_config(tmp_path, SETTINGS + """
[[tasks]]
id = "t"
schedule = "@daily"
command = "exit 1"
hook_timeout = "2m"
on_failure = "echo $$ > hook.txt; exec sleep 120"
""")
    proc = subprocess.Popen(["jobctl", "run-now", "t"], cwd=tmp_path, env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: (tmp_path / "hook.txt").read_text().strip()
                 if (tmp_path / "hook.txt").exists() else None, 20, "the hook to start")
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=30)
        took = time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert took < 15, took  # kill_grace is 1s; the hook's own timeout is 2m
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert ("jobctl: hook_failed: on_failure hook stopped: jobctl run-now was stopped by a "
            "signal before it ended") in err, err
    assert rows(tmp_path, "select status from runs") == [("failed",)]
    hook_pid = int((tmp_path / "hook.txt").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(hook_pid, 0)


def test_ctrl_c_while_run_now_waits_for_a_retry_alerts_on_the_attempt_that_ran(
        tmp_path: Path) -> None:
    """The retries stop there, so the attempt that ran is the last: its
    failure is told (it was held back as "another attempt follows")."""
    write_config(tmp_path, SETTINGS + """
[[tasks]]
id = "t"
schedule = "@daily"
command = "exit 1"
retries = 3
retry_delay = "5m"
on_failure = "echo failure $JOBCTL_RUN_ID > alerts.txt"
""")
    errors = tmp_path / "stderr"
    with errors.open("w") as stderr:
        proc = subprocess.Popen(["jobctl", "run-now", "t"], cwd=tmp_path, env=env(),
                                stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        # waiting for its retry: told on stderr once the first attempt ended
        wait_for(lambda: "retry in" in errors.read_text(), 20, "the first attempt's end")
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = errors.read_text()
    assert proc.returncode == 130, err
    assert "retry in 300s (attempt 2 of 4)" in err
    assert lines(tmp_path / "alerts.txt") == ["failure 1"]


def test_deliveries_wait_while_the_runner_spawns_a_batch() -> None:
    from jobctl.hooks import _Deliveries

    deliveries = _Deliveries(threads=1)
    sent: list[float] = []
    deliveries.go.clear()  # Notifier.hold(): a batch is being spawned
    held = time.monotonic()
    deliveries.submit(lambda: sent.append(time.monotonic()) or None, "t", 1, "ping", "t ping")
    time.sleep(0.3)
    assert sent == []  # not sent during the spawns
    deliveries.go.set()  # Notifier.release()
    wait_for(lambda: sent, what="the delivery after the batch")
    assert sent[0] - held >= 0.3
