"""The supervisor of running processes, the runner's and `run-now`'s: it
holds the processes of the runs it started, reaps them, enforces their
timeouts, stops them (for a replace or a shutdown), and keeps reading the
pipes that background processes hold open after a run ended. It never
touches the state store: its user records what `reap` returns.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from datetime import datetime

from jobctl.executor import GroupStopper, RunningProcess
from jobctl.model import RunStatus, Task, Trigger

# Pipes of ended runs still held open by their background processes, kept
# read (and logged) until EOF; past this many, the oldest is closed.
LINGER_MAX = 256
# While runs are going, the loop wakes at least this often to reap them, even
# if a child keeps its pipe open (no EOF tells of its exit).
REAP_EVERY = 0.1


@dataclass
class ActiveRun:
    """A started run whose process has not been reaped yet."""

    run_id: int
    task: Task
    proc: RunningProcess
    trigger: Trigger
    scheduled_for: datetime | None
    started: datetime
    deadline: float | None  # monotonic; when the timeout expires
    stopper: GroupStopper | None = None  # once we stop it (SIGTERM sent)
    end_reason: RunStatus | None = None  # TIMEOUT / INTERRUPTED once we stop it
    end_error: str | None = None
    attempt: int = 1  # 2, 3, ... for retries of its slot


@dataclass(frozen=True)
class RunExit:
    """A run whose process has ended, and how the run ended."""

    run: ActiveRun
    status: RunStatus
    error: str | None
    code: int


class Supervisor:
    """The processes of one runner's runs.

    Invariants: a run is in `active` from `add` until the one `reap` that
    returns its exit. A run that was stopped (timeout, replace, shutdown) ends
    with the status and reason it was stopped for, whatever its exit code. A
    stopped group gets its whole grace even after its main process exits,
    then SIGKILL (see `GroupStopper`); `drained()` stays false until every
    such group is empty or killed. Times are monotonic seconds, passed in.
    """

    def __init__(self) -> None:
        self.active: dict[int, ActiveRun] = {}
        self.lingering: dict[int, RunningProcess] = {}  # run id -> pipe of an ended run
        # groups still owed a SIGKILL after their grace: of runs that ended
        # after SIGTERM (a background process may ignore it), and of other
        # processes' runs that were replaced
        self.group_stops: list[GroupStopper] = []

    def add(self, run: ActiveRun) -> None:
        self.active[run.run_id] = run

    def runs_task(self, task_id: str) -> bool:
        """True while a run of `task_id` is going here."""
        return any(run.task.id == task_id for run in self.active.values())

    def stop(self, run_id: int, status: RunStatus, error: str, grace: float, now: float) -> bool:
        """Stop one of our runs, which then ends `status` with `error`;
        False if it is not ours (or already reaped)."""
        run = self.active.get(run_id)
        if run is None:
            return False
        run.end_reason, run.end_error = status, error
        run.stopper = GroupStopper(run.proc.pgid, grace, now, proc=run.proc)
        return True

    def stop_group(self, pgid: int, grace: float, now: float) -> None:
        """Stop another process's run group (the caller has checked that it
        is that run's process, not a recycled pid)."""
        stopper = GroupStopper(pgid, grace, now)
        if not stopper.done:
            self.group_stops.append(stopper)

    def stop_all(self, error: str, grace: float, now: float) -> None:
        """Stop every run not already being stopped (a shutdown): each ends
        `interrupted` with `error`."""
        for run in self.active.values():
            if run.end_reason is None:
                self.stop(run.run_id, RunStatus.INTERRUPTED, error, grace, now)

    def reap(self) -> list[RunExit]:
        """Take the runs whose processes have exited, with how each ended."""
        exits = []
        for run_id in list(self.active):
            run = self.active[run_id]
            run.proc.pump()
            code = run.proc.poll()
            if code is None:
                continue
            if run.proc.pump():
                # a background process still holds the pipe: keep reading it
                # (as cron does), so its output is logged and its writes do
                # not die of SIGPIPE; the run itself has ended
                self._linger(run_id, run.proc)
            else:
                run.proc.close()
            del self.active[run_id]
            error: str | None
            if run.end_reason is not None:
                status, error = run.end_reason, run.end_error
                # the main process is gone; its group gets the rest of the grace
                if run.stopper is not None and not run.stopper.done:
                    self.group_stops.append(run.stopper)
            else:
                status, error = describe_exit(code)
            exits.append(RunExit(run, status, with_log_error(error, run.proc), code))
        return exits

    def enforce_deadlines(self, grace: float, now: float) -> None:
        """Stop the runs past their timeout; SIGKILL the groups past their grace."""
        for run in self.active.values():
            if run.deadline is not None and run.end_reason is None and now >= run.deadline:
                self.stop(run.run_id, RunStatus.TIMEOUT,
                          f"timed out after {run.task.timeout:g}s", grace, now)
            if run.stopper is not None:
                run.stopper.step(now)
        self.group_stops = [stopper for stopper in self.group_stops if not stopper.step(now)]

    def next_wake(self, now: float) -> float | None:
        """Seconds until a timeout or a SIGKILL is due, or the next reap
        while runs are going; None when nothing is."""
        wakes = []
        for run in self.active.values():
            if run.deadline is not None and run.end_reason is None:
                wakes.append(run.deadline - now)
            if run.stopper is not None and run.stopper.kill_at is not None:
                wakes.append(run.stopper.kill_at - now)
        wakes += [s.kill_at - now for s in self.group_stops if s.kill_at is not None]
        if self.active:
            wakes.append(REAP_EVERY)
        return min(wakes) if wakes else None

    def kill_all(self, error: str) -> dict[int, str]:
        """SIGKILL every run's group, and every group still owed its SIGKILL,
        and close every pipe (the runner is ending); returns the runs
        killed, each with why it ended (`error` unless it was being stopped
        for a reason of its own)."""
        killed: dict[int, str] = {}
        for run_id, run in list(self.active.items()):
            run.proc.signal_group(signal.SIGKILL)
            run.proc.close()
            killed[run_id] = run.end_error or error
        self.active.clear()
        for stopper in self.group_stops:
            stopper.kill()
        self.group_stops.clear()
        for proc in self.lingering.values():
            proc.close()
        self.lingering.clear()
        return killed

    def drained(self) -> bool:
        """No run is left, nor a process group still owed its SIGKILL."""
        return not self.active and not self.group_stops

    def child_pids(self) -> set[int]:
        """The pids of our run processes not reaped yet (their exit statuses
        are the runs' outcomes)."""
        # a lingering pipe's process is reaped already: its pid may be anyone's now
        return {run.proc.pid for run in self.active.values()}

    def pipes(self) -> dict[int, RunningProcess]:
        """The output pipes to watch, by run id: those of running runs, and
        those of ended runs that a background process still holds open."""
        out = {run_id: run.proc for run_id, run in self.active.items()}
        out.update(self.lingering)
        return out

    def pump(self, run_id: int) -> bool:
        """Log what a run's pipe holds now; False once it is at EOF or gone
        (stop watching it). A lingering pipe is closed at EOF."""
        proc = self.lingering.get(run_id)
        if proc is not None:
            if proc.pump():
                return True
            self.lingering.pop(run_id).close()
            return False
        run = self.active.get(run_id)
        return run is not None and run.proc.pump()

    def _linger(self, run_id: int, proc: RunningProcess) -> None:
        self.lingering[run_id] = proc
        while len(self.lingering) > LINGER_MAX:
            oldest = next(iter(self.lingering))
            self.lingering.pop(oldest).close()


def with_log_error(error: str | None, proc: RunningProcess) -> str | None:
    """A run's error with, after it, why its log is incomplete (a full
    disk, say), if it is: the status stays what the process earned, but the
    record says the log is missing output."""
    if proc.log_error:
        return f"{error}; {proc.log_error}" if error else proc.log_error
    return error


def describe_exit(code: int) -> tuple[RunStatus, str | None]:
    if code == 0:
        return RunStatus.SUCCESS, None
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return RunStatus.FAILED, f"killed by {name}"
    return RunStatus.FAILED, f"exit code {code}"
