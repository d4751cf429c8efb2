"""The runner stepped with a fake clock (`tick(now)`), running real processes
and recording into a real SQLite file."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import FakeClock, write_config
from jobctl.model import RunStatus, Trigger
from jobctl.resolve import resolve
from jobctl.runner import (
    PREPARE_COST_GUESS,
    PREPARE_LEAD,
    PREPARE_LEAD_MAX,
    Event,
    Runner,
)
from jobctl.store import SqliteStore, open_store

UTC = timezone.utc
T0 = datetime(2026, 6, 15, 12, 0, 30, tzinfo=UTC)


class Harness:
    def __init__(self, tmp_path: Path, config: str, now: datetime = T0) -> None:
        self.tmp_path = tmp_path
        self.path = write_config(tmp_path, "[jobctl]\nkill_grace = 1\n" + config)
        self.clock = FakeClock(now)
        self.store: SqliteStore = open_store(tmp_path / "state.db", create=True)  # type: ignore[assignment]
        self.events: list[Event] = []
        self.runner = self.new_runner()

    def new_runner(self) -> Runner:
        schedule_set = resolve(self.path, system_zone="UTC", now=self.clock.now())
        return Runner(schedule_set, self.store, clock=self.clock, report=self.events.append,
                      env=dict(os.environ))

    def at(self, when: datetime) -> None:
        self.clock.set(when)
        self.runner.tick(when)

    def settle(self, until: Callable[[], bool] | None = None, timeout: float = 10.0) -> None:
        """Tick (without moving the fake clock) until no run is active, or `until`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.runner.tick(self.clock.now())
            if (until() if until else not self.runner.active):
                return
            time.sleep(0.01)
        raise AssertionError(f"did not settle; active={list(self.runner.active)} events={self.events}")

    def runs(self, task_id: str | None = None) -> list:  # type: ignore[type-arg]
        return list(reversed(self.store.history(task_id, limit=1000)))

    def kinds(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.kind == kind]


def refuse_finishes(h: Harness, monkeypatch: pytest.MonkeyPatch, times: int) -> list[int]:
    """Make the state file refuse the next `times` run ends (a full disk);
    returns the run ids refused so far."""
    from jobctl.store import StoreError

    real_finish = h.store.finish
    refused: list[int] = []

    def full_disk(*args, **kwargs):  # type: ignore[no-untyped-def]
        if len(refused) < times:
            refused.append(args[0])
            raise StoreError(h.store.path, "database or disk is full")
        return real_finish(*args, **kwargs)

    monkeypatch.setattr(h.store, "finish", full_disk)
    return refused


MINUTELY_TRUE = """
        [[tasks]]
        id = "t"
        schedule = "* * * * *"
        argv = ["true"]
    """


def at_minute(minute: int, second: int = 0) -> datetime:
    return datetime(2026, 6, 15, 12, minute, second, tzinfo=UTC)


def test_cron_task_fires_once_per_slot_and_records_success(tmp_path: Path) -> None:
    h = Harness(tmp_path, """
        [[tasks]]
        id = "every-minute"
        schedule = "* * * * *"
        command = "echo out; echo err >&2"
    """)
    h.runner.start()
    h.at(at_minute(0, 59))
    assert h.runs() == []  # not due yet
    h.at(at_minute(1))
    h.settle()
    (run,) = h.runs()
    assert run.status is RunStatus.SUCCESS and run.trigger is Trigger.SCHEDULE
    assert run.scheduled_for == at_minute(1) and run.exit_code == 0
    assert Path(run.log_path).read_text() == "out\nerr\n"
    # the clock steps back a minute: the 12:01 slot must not fire again
    h.at(at_minute(0, 30))
    h.at(at_minute(1))
    h.settle()
    assert len(h.runs()) == 1
    h.at(at_minute(2))
    h.settle()
    assert [r.scheduled_for for r in h.runs()] == [at_minute(1), at_minute(2)]


def test_restart_after_clock_step_back_does_not_refire_a_slot(tmp_path: Path) -> None:
    config = """
        [[tasks]]
        id = "t"
        schedule = "* * * * *"
        command = "true"
    """
    h = Harness(tmp_path, config)
    h.runner.start()
    h.at(at_minute(1))
    h.settle()
    h.runner.finish()
    h.clock.set(at_minute(0, 40))
    h.runner = h.new_runner()
    h.runner.start()
    h.at(at_minute(1))
    h.settle()
    assert len(h.runs("t")) == 1


def test_priority_orders_starts_at_the_same_instant(tmp_path: Path) -> None:
    h = Harness(tmp_path, """
        [[tasks]]
        id = "late"
        schedule = "* * * * *"
        command = "true"
        priority = 50

        [[tasks]]
        id = "early"
        schedule = "* * * * *"
        command = "true"
        priority = 1

        [[tasks]]
        id = "default"
        schedule = "* * * * *"
        command = "true"
    """)
    h.runner.start()
    h.at(at_minute(1))
    assert [e.task_id for e in h.kinds("start")] == ["early", "late", "default"]
    h.settle()


def test_prepare_lead_grows_with_the_runs_due_at_the_next_instant(tmp_path: Path) -> None:
    """The runner wakes early enough to claim a whole batch before its
    instant: the lead scales with the runs due then and with what claiming
    one run was measured to cost, within bounds."""
    batch = "".join(f'[[tasks]]\nid = "t{i}"\nschedule = "0 13 * * *"\nargv = ["true"]\n\n'
                    for i in range(120))
    h = Harness(tmp_path, batch + '[[tasks]]\nid = "one"\nschedule = "30 12 * * *"\nargv = ["true"]\n')
    h.runner.start()
    assert h.runner.prepare_lead() == pytest.approx(PREPARE_LEAD + PREPARE_COST_GUESS)
    h.at(at_minute(30))
    h.settle()
    assert h.runner.prepare_lead() == pytest.approx(PREPARE_LEAD + 120 * PREPARE_COST_GUESS)
    h.runner.prepare_cost = 0.01
    assert h.runner.prepare_lead() == PREPARE_LEAD_MAX

    # claiming the batch ahead of its instant measures the cost per run
    h.runner.prepare_cost = PREPARE_COST_GUESS
    thirteen = datetime(2026, 6, 15, 13, 0, tzinfo=UTC)
    h.clock.set(thirteen - timedelta(seconds=0.05))
    h.runner.prepare_timed(thirteen)
    assert len(h.runner.prepared) == 120 and not h.kinds("start")[1:]
    assert h.runner.prepare_cost != PREPARE_COST_GUESS and h.runner.prepare_cost >= 10e-6
    assert all(r.status is RunStatus.RUNNING for r in h.runs() if r.task_id != "one")
    h.clock.set(thirteen)
    h.runner.spawn_prepared()
    assert len(h.kinds("start")) == 121
    h.settle()
    assert sum(r.status is RunStatus.SUCCESS for r in h.runs()) == 121


def test_a_stop_during_a_batch_starts_nothing_more(tmp_path: Path) -> None:
    """SIGTERM while a batch is being started: the rest of the batch never
    starts, and its claimed runs are recorded interrupted at finish."""
    h = Harness(tmp_path, "".join(
        f'[[tasks]]\nid = "t{i}"\nschedule = "* * * * *"\nargv = ["true"]\n\n' for i in range(3)))
    h.runner.start()
    asked = []

    def stop_after_first() -> bool:
        asked.append(1)
        return len(asked) > 1

    h.runner.stop_requested = stop_after_first
    h.at(at_minute(1))
    assert len(h.kinds("start")) == 1
    h.runner.request_stop()
    h.settle()
    h.runner.finish()
    runs = {r.task_id: r for r in h.runs()}
    assert runs["t0"].status is RunStatus.SUCCESS
    for task_id in ("t1", "t2"):
        assert runs[task_id].status is RunStatus.INTERRUPTED
        assert runs[task_id].error == "runner stopped before it started"
        assert runs[task_id].pid is None


def test_forbid_records_skip_allow_overlaps_replace_interrupts(tmp_path: Path) -> None:
    h = Harness(tmp_path, """
        [[tasks]]
        id = "forbid"
        schedule = "* * * * *"
        command = "sleep 30"

        [[tasks]]
        id = "allow"
        schedule = "* * * * *"
        command = "sleep 30"
        concurrency = "allow"

        [[tasks]]
        id = "replace"
        schedule = "* * * * *"
        command = "sleep 30"
        concurrency = "replace"
    """)
    h.runner.start()
    h.at(at_minute(1))
    h.at(at_minute(2))
    forbid = h.runs("forbid")
    assert [r.status for r in forbid] == [RunStatus.RUNNING, RunStatus.SKIPPED]
    assert forbid[1].error == f"previous run #{forbid[0].id} still running (concurrency = forbid)"
    assert [r.status for r in h.runs("allow")] == [RunStatus.RUNNING, RunStatus.RUNNING]
    replace = h.runs("replace")
    assert [r.status for r in replace] == [RunStatus.INTERRUPTED, RunStatus.RUNNING]
    assert replace[0].error == f"replaced by run #{replace[1].id} (concurrency = replace)"
    old_pid = replace[0].pid
    h.settle(until=lambda: all(a.task.id != "replace" or a.run_id == replace[1].id
                               for a in h.runner.active.values()))
    with pytest.raises(ProcessLookupError):
        os.kill(old_pid, 0)
    # the replaced run keeps `interrupted`, with how its process really ended
    old = h.store.get_run(replace[0].id)
    assert old is not None and old.status is RunStatus.INTERRUPTED
    assert old.exit_code == -15
    h.runner.request_stop(fast=True)
    h.runner.shutdown_step(h.clock.monotonic())
    h.settle()
    h.runner.finish()
    assert {r.status for r in h.store.history(limit=100)} == {RunStatus.INTERRUPTED, RunStatus.SKIPPED}


def test_timeout_kills_the_whole_group_including_grandchildren(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    h = Harness(tmp_path, f"""
        [[tasks]]
        id = "hang"
        schedule = "* * * * *"
        command = "sleep 60 & echo $! > {pidfile}; wait"
        timeout = "5s"
    """)
    h.runner.start()
    h.at(at_minute(1))
    h.settle(until=lambda: pidfile.exists() and pidfile.read_text().strip() != "")
    grandchild = int(pidfile.read_text())
    h.clock.advance(6)  # past the timeout on the injected monotonic clock
    h.settle()
    (run,) = h.runs()
    assert run.status is RunStatus.TIMEOUT and run.error == "timed out after 5s"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        time.sleep(0.02)
    else:
        raise AssertionError("grandchild survived the timeout")


def test_timeout_escalates_to_sigkill_after_kill_grace(tmp_path: Path) -> None:
    h = Harness(tmp_path, """
        [[tasks]]
        id = "stubborn"
        schedule = "* * * * *"
        command = "trap '' TERM; echo ready; sleep 60 & wait; sleep 60"
        timeout = 2
    """)
    h.runner.start()
    h.at(at_minute(1))
    (start,) = h.kinds("start")
    log = tmp_path / "logs" / f"{start.run_id}.log"
    h.settle(until=lambda: log.exists() and "ready" in log.read_text())
    h.clock.advance(2.5)
    h.runner.tick(h.clock.now())  # SIGTERM, ignored
    time.sleep(0.2)
    h.runner.tick(h.clock.now())
    assert h.runner.active, "a TERM-ignoring task should survive until kill_grace"
    h.clock.advance(1.5)  # past kill_grace (1s)
    h.settle()
    (run,) = h.runs()
    assert run.status is RunStatus.TIMEOUT


def test_failed_exit_and_unstartable_program(tmp_path: Path) -> None:
    h = Harness(tmp_path, """
        [[tasks]]
        id = "fails"
        schedule = "* * * * *"
        command = "exit 3"

        [[tasks]]
        id = "missing"
        schedule = "* * * * *"
        argv = ["/no/such/program"]
    """)
    h.runner.start()
    h.at(at_minute(1))
    h.settle()
    (fails,) = h.runs("fails")
    assert fails.status is RunStatus.FAILED and fails.exit_code == 3 and fails.error == "exit code 3"
    (missing,) = h.runs("missing")
    assert missing.status is RunStatus.FAILED
    assert "cannot start '/no/such/program'" in (missing.error or "")


def test_environment_cwd_and_stdin(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    h = Harness(tmp_path, """
        [[tasks]]
        id = "envy"
        schedule = "* * * * *"
        command = "echo $GREETING $JOBCTL_TASK_ID $JOBCTL_RUN_ID $JOBCTL_SCHEDULED_FOR $JOBCTL_TRIGGER; pwd; cat"
        cwd = "work"
        env = { GREETING = "hi" }
    """)
    h.runner.start()
    h.at(at_minute(1))
    h.settle()
    (run,) = h.runs()
    assert Path(run.log_path).read_text() == (
        f"hi envy {run.id} 2026-06-15T12:01:00+00:00 schedule\n{work}\n"
    )


def test_disable_is_picked_up_and_skipped_slots_are_not_caught_up(tmp_path: Path) -> None:
    h = Harness(tmp_path, """
        [[tasks]]
        id = "t"
        schedule = "* * * * *"
        command = "true"
        catch_up = "all"
    """)
    h.runner.start()
    h.store.set_enabled(["t"], False)
    h.clock.advance(1)  # past the control poll
    h.at(at_minute(1))
    h.at(at_minute(2))
    assert h.runs() == []
    h.store.set_enabled(["t"], True)
    h.clock.advance(1)
    h.at(at_minute(3))
    h.settle()
    assert [r.scheduled_for for r in h.runs()] == [at_minute(3)]
    assert h.store.last_scheduled()["t"] == at_minute(3)


@pytest.mark.parametrize(("policy", "expected"), [
    ("skip", []),
    ("once", [datetime(2026, 6, 15, 12, 0, tzinfo=UTC)]),
    ("all", [datetime(2026, 6, 15, h, 0, tzinfo=UTC) for h in (10, 11, 12)]),
])
def test_catch_up_after_downtime(tmp_path: Path, policy: str, expected: list[datetime]) -> None:
    h = Harness(tmp_path, f"""
        [[tasks]]
        id = "hourly"
        schedule = "@hourly"
        command = "true"
        catch_up = "{policy}"
    """)
    # last time a runner looked was 09:30; it is now 12:00:30
    h.store.set_last_scheduled([("hourly", datetime(2026, 6, 15, 9, 30, tzinfo=UTC))])
    h.runner.start()
    h.settle(until=lambda: not h.runner.active and not h.runner.catch_up_queue)
    runs = h.runs("hourly")
    assert [r.scheduled_for for r in runs] == expected
    assert all(r.trigger is Trigger.CATCH_UP and r.status is RunStatus.SUCCESS for r in runs)
    if policy == "skip":
        assert h.kinds("missed")


def test_catch_up_leaves_out_fires_from_while_the_task_was_disabled(tmp_path: Path) -> None:
    """Down from 09:30; `jobctl disable` at 10:30, `enable` at 11:30, runner
    back at 12:00:30: under catch_up = all, 10:00 and 12:00 run, 11:00 (when
    it was disabled) does not."""
    h = Harness(tmp_path, """
        [[tasks]]
        id = "hourly"
        schedule = "@hourly"
        argv = ["true"]
        catch_up = "all"
    """)
    h.store.set_last_scheduled([("hourly", datetime(2026, 6, 15, 9, 30, tzinfo=UTC))])
    h.store.set_enabled(["hourly"], False, now=datetime(2026, 6, 15, 10, 30, tzinfo=UTC))
    h.store.set_enabled(["hourly"], False, now=datetime(2026, 6, 15, 10, 45, tzinfo=UTC))
    h.store.set_enabled(["hourly"], True, now=datetime(2026, 6, 15, 11, 30, tzinfo=UTC))
    assert h.store.paused_spans("hourly") == [(datetime(2026, 6, 15, 10, 30, tzinfo=UTC),
                                               datetime(2026, 6, 15, 11, 30, tzinfo=UTC))]
    h.runner.start()
    h.settle(until=lambda: not h.runner.active and not h.runner.catch_up_queue)
    assert [r.scheduled_for.hour for r in h.runs("hourly")] == [10, 12]


def test_an_end_the_state_file_refuses_is_retried_not_lost(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk or a long lock when a run ends: the runner reports it,
    keeps running, and records the end once the state file takes it."""
    from jobctl.runner import RECORD_RETRY

    h = Harness(tmp_path, MINUTELY_TRUE)
    refusals = refuse_finishes(h, monkeypatch, 2)
    h.runner.start()
    h.at(at_minute(1))
    h.settle()
    (error,) = h.kinds("error")
    assert "could not record the end of run #1 (will retry): " in error.message
    assert [r.status for r in h.runs()] == [RunStatus.RUNNING]
    h.clock.advance(RECORD_RETRY)
    h.runner.tick(h.clock.now())  # refused again: no second report
    assert len(h.kinds("error")) == 1 and len(refusals) == 2
    h.clock.advance(RECORD_RETRY)
    h.runner.tick(h.clock.now())
    assert [r.status for r in h.runs()] == [RunStatus.SUCCESS]
    assert [e.run_id for e in h.kinds("finish")] == [1]


def test_queued_catch_ups_survive_a_restart(tmp_path: Path) -> None:
    """catch_up = all runs missed fires one after another; a regular fire
    meanwhile must not move last_scheduled past the ones still queued, or a
    restart would silently drop them."""
    h = Harness(tmp_path, """
        [[tasks]]
        id = "hourly"
        schedule = "@hourly"
        argv = ["sleep", "0.3"]
        catch_up = "all"
    """)
    h.store.set_last_scheduled([("hourly", datetime(2026, 6, 15, 9, 30, tzinfo=UTC))])
    h.runner.start()  # 12:00:30: 10:00, 11:00, 12:00 missed; 10:00 starts first
    h.runner.tick(h.clock.now())
    assert [r.scheduled_for.hour for r in h.runs()] == [10]
    h.at(datetime(2026, 6, 15, 13, 0, tzinfo=UTC))  # regular fire while 10:00 runs: skipped
    assert [(r.scheduled_for.hour, r.status) for r in h.runs()] == [
        (10, RunStatus.RUNNING), (13, RunStatus.SKIPPED)]
    assert h.store.last_scheduled()["hourly"] == datetime(2026, 6, 15, 11, 0, tzinfo=UTC) \
        - timedelta(microseconds=1)
    h.settle()
    h.runner.finish()  # stopped with 11:00 and 12:00 still queued
    h.runner = h.new_runner()
    h.runner.start()
    h.settle(until=lambda: not h.runner.active and not h.runner.catch_up_queue)
    assert sorted(r.scheduled_for.hour for r in h.runs()) == [10, 11, 12, 13]


def test_finish_gives_up_on_ends_the_state_file_still_refuses(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopping while the disk is still full: one last try, then the run is
    left `running` for the next command to mark interrupted (no endless retry)."""
    h = Harness(tmp_path, MINUTELY_TRUE)
    refuse_finishes(h, monkeypatch, 1000)
    h.runner.start()
    h.at(at_minute(1))
    h.settle()
    h.runner.finish()
    assert len(h.runner.unrecorded) == 1
    assert [r.status for r in h.runs()] == [RunStatus.RUNNING]


def test_ends_refused_earlier_are_recorded_before_new_fires_are_claimed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run ended while the state file refused writes; the next fire (under
    forbid) must not be recorded `skipped` behind a run known to be over."""
    h = Harness(tmp_path, MINUTELY_TRUE)
    refuse_finishes(h, monkeypatch, 1)
    h.runner.start()
    h.at(at_minute(1))
    h.settle()
    assert [r.status for r in h.runs()] == [RunStatus.RUNNING]  # not recorded yet
    h.at(at_minute(2))  # before the 5 s retry
    h.settle()
    assert [r.status for r in h.runs()] == [RunStatus.SUCCESS, RunStatus.SUCCESS]


def test_a_claim_that_waited_on_a_lock_does_not_replay_slots(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    h = Harness(tmp_path, """
        [[tasks]]
        id = "tick"
        schedule = "every 1s"
        argv = ["true"]
        concurrency = "allow"
    """)
    real_claim = h.store.claim_many

    def slow_claim(*args, **kwargs):  # type: ignore[no-untyped-def]
        result = real_claim(*args, **kwargs)
        h.clock.advance(5)  # the state file was locked for 5 s
        return result

    h.runner.start()
    monkeypatch.setattr(h.store, "claim_many", slow_claim)
    h.at(T0 + timedelta(seconds=1))  # claimed at +1 s, done at +6 s
    monkeypatch.setattr(h.store, "claim_many", real_claim)
    h.runner.tick(h.clock.now())
    h.at(T0 + timedelta(seconds=7))
    h.settle()
    assert [int((r.scheduled_for - T0).total_seconds()) for r in h.runs()] == [1, 7]


def test_forward_clock_jump_follows_catch_up(tmp_path: Path) -> None:
    h = Harness(tmp_path, """
        [[tasks]]
        id = "once"
        schedule = "*/10 * * * *"
        command = "true"
        catch_up = "once"

        [[tasks]]
        id = "skip"
        schedule = "*/10 * * * *"
        command = "true"

        [[tasks]]
        id = "interval"
        schedule = "every 5m"
        command = "true"
    """)
    h.runner.start()
    # the machine sleeps from 12:00:30 to 12:47:10
    h.at(datetime(2026, 6, 15, 12, 47, 10, tzinfo=UTC))
    h.settle(until=lambda: not h.runner.active and not h.runner.catch_up_queue)
    (caught,) = h.runs("once")
    assert caught.trigger is Trigger.CATCH_UP
    assert caught.scheduled_for == datetime(2026, 6, 15, 12, 40, tzinfo=UTC)
    assert h.runs("skip") == [] and h.runs("interval") == []
    h.at(datetime(2026, 6, 15, 12, 50, tzinfo=UTC))
    h.settle()
    assert [r.trigger for r in h.runs("skip")] == [Trigger.SCHEDULE]
    # intervals keep their anchor: 12:00:30 + 10 * 5m = 12:50:30
    h.at(datetime(2026, 6, 15, 12, 50, 30, tzinfo=UTC))
    h.settle()
    assert [r.scheduled_for for r in h.runs("interval")] == [datetime(2026, 6, 15, 12, 50, 30, tzinfo=UTC)]


def test_intervals_share_the_start_anchor_and_reboot_fires_at_start(tmp_path: Path) -> None:
    h = Harness(tmp_path, """
        [[tasks]]
        id = "a"
        schedule = "every 20s"
        command = "true"

        [[tasks]]
        id = "b"
        schedule = "30s"
        command = "true"

        [[tasks]]
        id = "boot"
        schedule = "@reboot"
        command = "true"
    """)
    h.runner.start()
    assert [(r.task_id, r.scheduled_for) for r in h.runs()] == [("boot", T0)]
    for s in (20, 30, 40, 60):
        h.at(T0 + timedelta(seconds=s))
    h.settle()
    fires = {(r.task_id, int((r.scheduled_for - T0).total_seconds())) for r in h.runs()}
    assert fires == {("boot", 0), ("a", 20), ("a", 40), ("a", 60), ("b", 30), ("b", 60)}


def test_a_stalled_runner_fires_a_late_slot_once_not_every_missed_one(tmp_path: Path) -> None:
    """Stalled for 14 s (a locked state file, SIGSTOP, a busy machine): the
    late slot fires once and the next fire counts from now, as under cron and
    supercronic; the slots that passed are not replayed back to back."""
    h = Harness(tmp_path, """
        [[tasks]]
        id = "tick"
        schedule = "every 1s"
        argv = ["true"]

        [[tasks]]
        id = "minutely"
        schedule = "* * * * *"
        argv = ["true"]
    """)
    h.runner.start()
    h.at(T0 + timedelta(seconds=1))
    h.settle()
    h.at(T0 + timedelta(seconds=15))  # stalled from +1s to +15s
    h.settle()
    h.at(T0 + timedelta(seconds=16))
    h.settle()
    ticks = [int((r.scheduled_for - T0).total_seconds()) for r in h.runs("tick")]
    assert ticks == [1, 2, 16]
    # a cron slot 50 s late (within MISSED_AFTER) fires once, then on time
    h.at(datetime(2026, 6, 15, 12, 1, 50, tzinfo=UTC))
    h.settle()
    h.at(datetime(2026, 6, 15, 12, 2, tzinfo=UTC))
    h.settle()
    assert [r.scheduled_for.minute for r in h.runs("minutely")] == [1, 2]
    assert all(r.status is RunStatus.SUCCESS for r in h.runs())


def test_two_starts_within_one_second_are_two_reboots(tmp_path: Path) -> None:
    """Intervals count from the whole second of the start, but @reboot's slot
    is the exact start: a runner restarted within the same second runs its
    @reboot tasks again."""
    h = Harness(tmp_path, """
        [[tasks]]
        id = "boot"
        schedule = "@reboot"
        argv = ["true"]
    """, now=T0 + timedelta(microseconds=200_000))
    h.runner.start()
    h.settle()
    h.runner.finish()
    h.clock.advance(0.5)
    h.runner = h.new_runner()
    h.runner.start()
    h.settle()
    runs = h.runs("boot")
    assert [r.scheduled_for for r in runs] == [T0 + timedelta(microseconds=200_000),
                                               T0 + timedelta(microseconds=700_000)]
    assert all(r.status is RunStatus.SUCCESS for r in runs)
    assert h.store.lease().anchor == T0  # type: ignore[union-attr]


def test_reload_adds_and_removes_tasks_and_running_ones_finish(tmp_path: Path) -> None:
    h = Harness(tmp_path, """
        [[tasks]]
        id = "keep"
        schedule = "* * * * *"
        command = "true"

        [[tasks]]
        id = "gone"
        schedule = "* * * * *"
        command = "sleep 0.3"
    """)
    h.runner.start()
    h.at(at_minute(1))
    h.path.write_text("""
[[tasks]]
id = "keep"
schedule = "* * * * *"
command = "true"

[[tasks]]
id = "new"
schedule = "* * * * *"
command = "true"
""")
    h.runner.reload(resolve(h.path, system_zone="UTC", now=h.clock.now()))
    h.settle()
    h.at(at_minute(2))
    h.settle()
    by_task = {}
    for r in h.runs():
        by_task.setdefault(r.task_id, []).append(r.status)
    assert by_task == {"keep": [RunStatus.SUCCESS] * 2, "gone": [RunStatus.SUCCESS],
                       "new": [RunStatus.SUCCESS]}
    assert "1 added, 1 removed" in h.kinds("reload")[0].message


def test_history_limit_prunes_runs_and_logs(tmp_path: Path) -> None:
    h = Harness(tmp_path, """
        [[tasks]]
        id = "t"
        schedule = "every 1s"
        command = "echo x"
    """.replace("[[tasks]]", "history_limit = 3\n\n[[tasks]]", 0))
    h.path.write_text("[jobctl]\nhistory_limit = 3\n\n[[tasks]]\nid = \"t\"\nschedule = \"every 1s\"\ncommand = \"echo x\"\n")
    h.runner = h.new_runner()
    h.runner.start()
    for s in range(1, 7):
        h.at(T0 + timedelta(seconds=s))
        h.settle()
    runs = h.runs("t")
    assert len(runs) == 3
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == sorted(f"{r.id}.log" for r in runs)


def test_second_runner_is_refused_while_first_holds_the_lease(tmp_path: Path) -> None:
    from jobctl.store import LeaseHeldError, Owner

    h = Harness(tmp_path, '[[tasks]]\nid = "t"\nschedule = "@daily"\ncommand = "true"\n')
    h.runner.start()
    other = Runner(h.runner.set, h.store, clock=h.clock, report=h.events.append,
                   owner=Owner(os.getppid(), h.runner.owner.host, h.runner.owner.boot_id, None))
    with pytest.raises(LeaseHeldError) as info:
        other.start()
    assert f"pid {os.getpid()}" in str(info.value) and info.value.exit_code == 75


@pytest.mark.parametrize(("start", "end"), [
    # fall back: 01:00-02:00 EDT happens twice on 2026-11-01
    (datetime(2026, 11, 1, 4, 50, tzinfo=UTC), datetime(2026, 11, 1, 7, 10, tzinfo=UTC)),
    # spring forward: 02:00-03:00 EST never happens on 2026-03-08
    (datetime(2026, 3, 8, 6, 50, tzinfo=UTC), datetime(2026, 3, 8, 8, 10, tzinfo=UTC)),
])
def test_runner_through_dst_transitions(tmp_path: Path, start: datetime, end: datetime) -> None:
    h = Harness(tmp_path, """
        [[tasks]]
        id = "quarter"
        schedule = "*/15 * * * *"
        timezone = "America/New_York"
        argv = ["true"]

        [[tasks]]
        id = "fixed"
        schedule = "30 1,2 * * *"
        timezone = "America/New_York"
        argv = ["true"]
    """, now=start)
    h.runner.start()
    t = start
    while t <= end:
        h.at(t)
        t += timedelta(minutes=1)
    h.settle()
    quarter = [r.scheduled_for for r in h.runs("quarter")]
    # every 15 real minutes, none twice
    assert all((b - a) == timedelta(minutes=15) for a, b in zip(quarter, quarter[1:])), quarter
    assert len(quarter) == len(set(quarter)) >= 5
    fixed = [r.scheduled_for.astimezone(UTC) for r in h.runs("fixed")]
    if start.month == 11:
        # 01:30 EDT once (not again at 01:30 EST), then 02:30 EST
        assert fixed == [datetime(2026, 11, 1, 5, 30, tzinfo=UTC)]
    else:
        # 02:30 does not exist that day: it runs at 03:00 EDT, the first instant after the gap
        assert fixed == [datetime(2026, 3, 8, 7, 0, tzinfo=UTC)]
