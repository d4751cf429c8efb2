"""The supervisor of running processes with real child processes; its
monotonic times are literals passed in."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for

from jobctl import procinfo
from jobctl.executor import Launch, RunningProcess, build_argv, spawn
from jobctl.model import RunStatus, Task, Trigger
from jobctl.supervisor import REAP_EVERY, ActiveRun, Supervisor
from jobctl.timing import parse_schedule

UTC = timezone.utc
STARTED = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)

Start = Callable[..., ActiveRun]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Start]:
    """Spawn `script` under /bin/sh as run `run_id`; kill what is left at teardown."""
    procs: list[RunningProcess] = []

    def _start(run_id: int, script: str, *, deadline: float | None = None,
               **task_fields: Any) -> ActiveRun:
        task = Task(id=f"t{run_id}", name=f"t{run_id}", schedule=parse_schedule("* * * * *"),
                    timezone="UTC", command=script, **task_fields)
        proc = spawn(Launch(argv=build_argv(script, None, "/bin/sh"), env=dict(os.environ),
                            cwd=None, log_path=tmp_path / f"{run_id}.log",
                            max_log_bytes=1 << 20))
        procs.append(proc)
        return ActiveRun(run_id, task, proc, Trigger.SCHEDULE, STARTED, STARTED, deadline)

    yield _start
    for proc in procs:
        proc.signal_group(signal.SIGKILL)
        proc.wait(5)
        proc.close()


def reap_all(sup: Supervisor, count: int) -> list[Any]:
    exits: list[Any] = []
    wait_for(lambda: exits.extend(sup.reap()) or len(exits) >= count, what=f"{count} exits")
    return exits


def ignores_term(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    line = next(x for x in status.splitlines() if x.startswith("SigIgn:"))
    return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))


def test_reap_returns_each_exit_once_with_its_status(start: Start) -> None:
    sup = Supervisor()
    sup.add(start(1, "exit 0"))
    sup.add(start(2, "exit 3"))
    assert sup.runs_task("t1") and not sup.drained()
    exits = sorted(reap_all(sup, 2), key=lambda e: e.run.run_id)
    assert [(e.run.run_id, e.status, e.error, e.code) for e in exits] == [
        (1, RunStatus.SUCCESS, None, 0), (2, RunStatus.FAILED, "exit code 3", 3)]
    assert sup.reap() == [] and sup.active == {} and sup.drained()
    assert not sup.runs_task("t1")


def test_a_run_past_its_timeout_is_stopped_and_ends_timeout(start: Start) -> None:
    sup = Supervisor()
    run = start(1, "sleep 30", deadline=10.0, timeout=10.0)
    sup.add(run)
    assert sup.next_wake(9.95) == pytest.approx(min(0.05, REAP_EVERY))
    sup.enforce_deadlines(grace=5.0, now=9.9)
    assert run.stopper is None and sup.reap() == []
    sup.enforce_deadlines(grace=5.0, now=10.0)
    assert run.stopper is not None and run.stopper.kill_at == 15.0
    [ended] = reap_all(sup, 1)
    assert (ended.status, ended.error, ended.code) == (
        RunStatus.TIMEOUT, "timed out after 10s", -signal.SIGTERM)


def test_a_stopped_group_gets_its_whole_grace_after_the_child_exits(
    start: Start, tmp_path: Path
) -> None:
    pid_file = tmp_path / "gc.pid"
    sup = Supervisor()
    run = start(1, f"(trap '' TERM; exec sleep 30) & echo $! > '{pid_file}'; sleep 30")
    sup.add(run)
    wait_for(lambda: pid_file.exists() and pid_file.read_text().endswith("\n"))
    grandchild = int(pid_file.read_text())
    wait_for(lambda: ignores_term(grandchild))
    assert sup.stop(1, RunStatus.INTERRUPTED, "replaced by run #7", grace=5.0, now=0.0)
    assert not sup.stop(99, RunStatus.INTERRUPTED, "not ours", grace=5.0, now=0.0)
    [ended] = reap_all(sup, 1)
    assert (ended.status, ended.error) == (RunStatus.INTERRUPTED, "replaced by run #7")
    # the run has ended; its group is still owed the SIGKILL
    assert sup.active == {} and not sup.drained()
    assert sup.next_wake(1.0) == 4.0
    sup.enforce_deadlines(grace=5.0, now=4.9)
    assert procinfo.process_start(grandchild) is not None
    sup.enforce_deadlines(grace=5.0, now=5.0)
    wait_for(lambda: procinfo.process_start(grandchild) is None, what="the grandchild killed")
    assert sup.drained() and sup.next_wake(5.0) is None


def test_stop_group_stops_another_process_group(start: Start) -> None:
    sup = Supervisor()
    other = start(1, "trap '' TERM; sleep 30")  # not added: someone else's run
    wait_for(lambda: ignores_term(other.proc.pid))
    sup.stop_group(other.proc.pgid, grace=5.0, now=0.0)
    assert not sup.drained()
    sup.enforce_deadlines(grace=5.0, now=5.0)
    assert other.proc.wait(5) == -signal.SIGKILL
    assert sup.drained()


def test_shutdown_keeps_the_reason_of_runs_already_being_stopped(start: Start) -> None:
    sup = Supervisor()
    sup.add(start(1, "sleep 30"))
    sup.add(start(2, "sleep 30"))
    sup.stop(1, RunStatus.INTERRUPTED, "replaced by run #3", grace=5.0, now=0.0)
    sup.stop_all("runner stopped", grace=5.0, now=1.0)
    exits = sorted(reap_all(sup, 2), key=lambda e: e.run.run_id)
    assert [(e.status, e.error) for e in exits] == [
        (RunStatus.INTERRUPTED, "replaced by run #3"), (RunStatus.INTERRUPTED, "runner stopped")]


def test_a_pipe_held_by_a_background_process_lingers_until_closed(start: Start) -> None:
    sup = Supervisor()
    run = start(1, "echo before; sleep 30 & exit 0")
    sup.add(run)
    [ended] = reap_all(sup, 1)
    assert ended.status is RunStatus.SUCCESS
    assert 1 in sup.pipes() and 1 not in sup.active and sup.child_pids() == set()
    assert sup.pump(1) is True  # still open: the sleep holds it
    assert sup.kill_all("runner stopped") == {}
    assert sup.pipes() == {} and sup.pump(1) is False


def test_kill_all_kills_every_run_and_says_why_each_ended(start: Start) -> None:
    sup = Supervisor()
    first, second = start(1, "sleep 30"), start(2, "trap '' TERM; sleep 30")
    sup.add(first)
    sup.add(second)
    assert sup.child_pids() == {first.proc.pid, second.proc.pid}
    wait_for(lambda: ignores_term(second.proc.pid))
    sup.stop(2, RunStatus.TIMEOUT, "timed out after 1s", grace=5.0, now=0.0)
    assert sup.kill_all("runner stopped") == {1: "runner stopped", 2: "timed out after 1s"}
    assert first.proc.wait(5) == -signal.SIGKILL and second.proc.wait(5) == -signal.SIGKILL
    assert sup.active == {} and sup.next_wake(0.0) is None
