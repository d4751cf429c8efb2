"""Retries of failed runs, end to end: `jobctl run` and `jobctl run-now` as
real processes on a real SQLite file, with real children failing."""

from __future__ import annotations

import json
import signal
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from conftest import write_config
from jobctl.model import RunStatus, Task
from jobctl.retries import RetryQueue, retried, retry_delay
from jobctl.timing import parse_schedule
from test_runner_e2e import RunnerProcess, jobctl, rows, runners  # noqa: F401 - the fixture

SETTINGS = '[jobctl]\nstate = "state.db"\nkill_grace = "1s"\nshutdown_grace = "5s"\n\n'
# fails until its third attempt; notes each attempt's JOBCTL_ATTEMPT
FLAKY = ('n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; '
         'echo "$JOBCTL_ATTEMPT $JOBCTL_SCHEDULED_FOR" >> attempts; [ $n -ge 3 ]')
RUN_SQL = ("select attempt, status, trigger, scheduled_for, started_at, finished_at, error"
           " from runs where task_id = ? order by id")


def runs(tmp_path: Path, task_id: str) -> list[tuple]:  # type: ignore[type-arg]
    import sqlite3

    conn = sqlite3.connect(tmp_path / "state.db")
    try:
        return conn.execute(RUN_SQL, (task_id,)).fetchall()
    finally:
        conn.close()


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


# -- the policy ----------------------------------------------------------------


def test_delay_doubles_after_each_attempt_up_to_the_cap() -> None:
    task = Task(id="t", name="t", schedule=parse_schedule("@daily"), timezone="UTC",
                command="false", retries=6, retry_delay=10.0, retry_max_delay=60.0)
    assert [retry_delay(task, a) for a in range(1, 7)] == [10, 20, 40, 60, 60, 60]
    assert retried(task, RunStatus.FAILED, 6) and not retried(task, RunStatus.FAILED, 7)
    assert retried(task, RunStatus.TIMEOUT, 1)
    for status in (RunStatus.SUCCESS, RunStatus.INTERRUPTED, RunStatus.SKIPPED):
        assert not retried(task, status, 1)


def test_retry_queue_gives_due_retries_soonest_first() -> None:
    from datetime import timezone

    from jobctl.model import Trigger

    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    queue = RetryQueue()
    queue.push(t0 + timedelta(seconds=5), "b", Trigger.SCHEDULE, t0, 2)
    queue.push(t0 + timedelta(seconds=1), "a", Trigger.SCHEDULE, t0, 3)
    assert queue.time_to_next(t0) == 1.0
    assert queue.pop_due(t0) == []
    assert [r.task_id for r in queue.pop_due(t0 + timedelta(seconds=5))] == ["a", "b"]
    assert len(queue) == 0 and queue.time_to_next(t0) is None


# -- jobctl run ----------------------------------------------------------------


def test_runner_retries_a_failing_task_until_it_succeeds(tmp_path: Path, runners: list) -> None:  # type: ignore[type-arg]  # noqa: F811
    write_config(tmp_path, SETTINGS + f"""
[[tasks]]
id = "flaky"
schedule = "@reboot"
command = '{FLAKY}'
retries = 3
retry_delay = 0.2
""")
    r = RunnerProcess(tmp_path)
    runners.append(r)
    finishes = r.wait_event("finish", count=3, task_id="flaky")
    assert [(e["status"], e["attempt"], e["final"]) for e in finishes] == [
        ("failed", 1, False), ("failed", 2, False), ("success", 3, True)]
    retries = r.wait_event("retry", count=2)
    assert [e["message"] for e in retries] == ["attempt 2 of 4 in 0.2s", "attempt 3 of 4 in 0.4s"]
    assert r.stop() == 0
    history = runs(tmp_path, "flaky")
    assert [(a, s, t) for a, s, t, *_ in history] == [
        (1, "failed", "schedule"), (2, "failed", "schedule"), (3, "success", "schedule")]
    # one slot: every attempt keeps it, in history and in the environment
    assert len({row[3] for row in history}) == 1
    slot = at(history[0][3])
    lines = (tmp_path / "attempts").read_text().split()
    assert lines[0::2] == ["1", "2", "3"]
    assert {at(s) for s in lines[1::2]} == {slot}
    # the delays were waited: 0.2s, then doubled to 0.4s, from each attempt's end
    gaps = [(at(b[4]) - at(a[5])).total_seconds() for a, b in zip(history, history[1:])]
    assert gaps[0] >= 0.2 and gaps[1] >= 0.4, gaps
    # history shows the attempt
    out = jobctl("history", "flaky", "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert [row["attempt"] for row in json.loads(out.stdout)] == [3, 2, 1]
    table = jobctl("history", "flaky", cwd=tmp_path)
    assert "TRY" in table.stdout.splitlines()[0]


def test_a_retry_that_would_reach_the_next_fire_is_dropped_and_recorded(
        tmp_path: Path, runners: list) -> None:  # type: ignore[type-arg]  # noqa: F811
    # fires every 2s; its first retry would come 5s after a failure: past the next fire
    write_config(tmp_path, SETTINGS + """
[[tasks]]
id = "fails"
schedule = "every 2s"
argv = ["false"]
retries = 2
retry_delay = "5s"
""")
    r = RunnerProcess(tmp_path)
    runners.append(r)
    [finish] = r.wait_event("finish", task_id="fails")
    assert finish["attempt"] == 1 and finish["final"] is True
    [skip] = r.wait_event("skip", task_id="fails")
    assert skip["attempt"] == 2 and skip["scheduled_for"] == finish["scheduled_for"]
    assert skip["message"].startswith("retry dropped: it would start at ")
    assert "not before the next fire at" in skip["message"]
    assert r.stop() == 0
    assert not [e for e in r.events() if e["event"] == "retry"]
    history = runs(tmp_path, "fails")
    first, dropped = history[0], history[1]
    assert first[:3] == (1, "failed", "schedule")
    assert dropped[:4] == (2, "skipped", "schedule", first[3])
    assert dropped[6].startswith("retry dropped: it would start at ")
    # the next slot fired as usual, as its own attempt 1
    slots = [(a, s) for a, _st, _t, s, *_ in history if a == 1]
    assert len(slots) >= 1 and len({s for _a, s in slots}) == len(slots)


def test_a_failed_start_is_retried_and_a_stop_drops_the_waiting_retry(
        tmp_path: Path, runners: list) -> None:  # type: ignore[type-arg]  # noqa: F811
    write_config(tmp_path, SETTINGS + """
[[tasks]]
id = "missing"
schedule = "@reboot"
argv = ["/nonexistent/program"]
retries = 2
retry_delay = 0.2

[[tasks]]
id = "later"
schedule = "@reboot"
argv = ["false"]
retries = 1
retry_delay = "5m"
""")
    r = RunnerProcess(tmp_path)
    runners.append(r)
    r.wait_event("finish", count=3, task_id="missing")
    r.wait_event("retry", task_id="later")
    assert r.stop() == 0
    assert [(a, s) for a, s, *_ in runs(tmp_path, "missing")] == [
        (1, "failed"), (2, "failed"), (3, "failed")]
    # a pending retry does not outlive the runner: it is recorded dropped
    later = runs(tmp_path, "later")
    assert [(a, s) for a, s, *_ in later] == [(1, "failed"), (2, "skipped")]
    assert later[1][6] == "retry dropped: the runner stopped before attempt 2 was due"
    assert later[1][3] == later[0][3]
    # and the next runner does not run it
    r2 = RunnerProcess(tmp_path)
    runners.append(r2)
    r2.wait_event("finish", task_id="later")
    assert r2.stop() == 0
    assert [(a, s) for a, s, *_ in runs(tmp_path, "later")][:2] == [(1, "failed"), (2, "skipped")]


# -- jobctl run-now ------------------------------------------------------------


def test_run_now_retries_and_exits_with_the_last_attempts_status(tmp_path: Path) -> None:
    write_config(tmp_path, SETTINGS + f"""
[[tasks]]
id = "flaky"
schedule = "@daily"
command = '{FLAKY}'
retries = 3
retry_delay = 0.2
""")
    result = jobctl("run-now", "flaky", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("run #")]
    assert lines[0].startswith("run #1 flaky: failed in ")
    assert lines[0].endswith("; retry in 0.2s (attempt 2 of 4)")
    assert lines[1].endswith("; retry in 0.4s (attempt 3 of 4)")
    assert lines[2].startswith("run #3 flaky: success in ") and "[attempt 3 of 4]" in lines[2]
    history = runs(tmp_path, "flaky")
    assert [(a, s, t, sl) for a, s, t, sl, *_ in history] == [
        (1, "failed", "manual", None), (2, "failed", "manual", None), (3, "success", "manual", None)]
    gaps = [(at(b[4]) - at(a[5])).total_seconds() for a, b in zip(history, history[1:])]
    assert gaps[0] >= 0.2 and gaps[1] >= 0.4, gaps


def test_run_now_no_retry_runs_once_and_a_last_failure_exits_1(tmp_path: Path) -> None:
    write_config(tmp_path, SETTINGS + """
[[tasks]]
id = "fails"
schedule = "@daily"
argv = ["false"]
retries = 1
retry_delay = 0.1
""")
    once = jobctl("run-now", "fails", "--no-retry", cwd=tmp_path)
    assert once.returncode == 1
    assert "retry in" not in once.stderr
    assert [(a, s) for a, s, *_ in runs(tmp_path, "fails")] == [(1, "failed")]
    both = jobctl("run-now", "fails", cwd=tmp_path)
    assert both.returncode == 1, both.stderr
    assert [(a, s) for a, s, *_ in runs(tmp_path, "fails")] == [
        (1, "failed"), (1, "failed"), (2, "failed")]
    assert "[attempt 2 of 2]" in both.stderr


def test_run_now_stopped_while_waiting_for_a_retry_stops_retrying(tmp_path: Path) -> None:
    import subprocess
    import sys

    from conftest import wait_for
    from test_runner_e2e import env

    write_config(tmp_path, SETTINGS + """
[[tasks]]
id = "fails"
schedule = "@daily"
argv = ["false"]
retries = 3
retry_delay = "5m"
""")
    errors = tmp_path / "stderr"
    with errors.open("w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "jobctl", "run-now", "fails"],
                                cwd=tmp_path, env=env(), stdout=subprocess.DEVNULL,
                                stderr=stderr)
    try:
        # waiting for its retry: told on stderr once the first attempt ended
        wait_for(lambda: "retry in" in errors.read_text(), what="the first attempt's end")
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = errors.read_text()
    assert proc.returncode == 130, err
    assert "retry in 300s (attempt 2 of 4)" in err
    assert [(a, s) for a, s, *_ in runs(tmp_path, "fails")] == [(1, "failed")]


# -- config ----------------------------------------------------------------------


@pytest.mark.parametrize(("text", "message"), [
    ('retries = -1', "tasks[0] (t).retries: must be from 0 to 100, got -1"),
    ('retries = "3"', "tasks[0] (t).retries: expected an integer, got a string"),
    ('retry_delay = "20m"', "tasks[0] (t).retry_delay: 20m is longer than retry_max_delay (10m)"),
    ('jitter = "1h"', "tasks[0] (t).jitter: 1h is not shorter than the shortest gap between two "
                      "fires of '*/5 * * * *' (5m)"),
])
def test_bad_retry_and_jitter_keys_are_config_errors(tmp_path: Path, text: str,
                                                     message: str) -> None:
    path = write_config(tmp_path, f"""
[[tasks]]
id = "t"
schedule = "*/5 * * * *"
command = "true"
{text}
""")
    result = jobctl("validate", cwd=tmp_path)
    assert result.returncode == 2
    [line] = [line for line in result.stderr.splitlines() if "tasks[0]" in line]
    assert line.startswith(f"{path}:5: {message}"), line


def test_jobctl_defaults_apply_to_tasks_that_set_none(tmp_path: Path) -> None:
    from jobctl.resolve import resolve

    path = write_config(tmp_path, """
[jobctl]
retries = 2
retry_delay = "30s"
retry_max_delay = "2m"

[[tasks]]
id = "inherits"
schedule = "@daily"
command = "true"

[[tasks]]
id = "own"
schedule = "@daily"
command = "true"
retries = 0
retry_delay = "1s"
""")
    schedule_set = resolve(path, system_zone="UTC", now=datetime(2026, 1, 1).astimezone())
    inherits, own = schedule_set.tasks
    assert (inherits.retries, inherits.retry_delay, inherits.retry_max_delay) == (2, 30.0, 120.0)
    assert (own.retries, own.retry_delay, own.retry_max_delay) == (0, 1.0, 120.0)
