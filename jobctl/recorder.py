"""The runner's writes to the state store, and what it reports about them.

The `Runner` decides what fires and when; the `Recorder` commits it: the
claims of a batch of fires (one transaction), the ends of runs (keeping those
the store refused, a full disk or a long lock, to try again, so that no row
stays `running` while the runner lives), retention, and the lease heartbeat
(with, on a shared state, the marking of dead nodes' runs). Each write that
fails is reported as an event, never raised into the loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from jobctl import lifecycle
from jobctl.clock import Clock, OffsetClock
from jobctl.errors import JobctlError
from jobctl.events import Event, Reporter
from jobctl.logship import LogShipper
from jobctl.hooks import Notifier, RunEnd
from jobctl.model import RunStatus, Task, Trigger
from jobctl.store import Claim, ClaimRequest, Owner, Store
from jobctl.supervisor import ActiveRun

RECORD_RETRY = 5.0  # seconds between tries to record run ends the state file refused


@dataclass
class Ended:
    """A run whose process has ended, with how it ended, until recorded."""

    active: ActiveRun
    status: RunStatus
    error: str | None
    code: int | None
    finished: datetime
    final: bool = True
    """No further attempt of its slot follows (set when its end is recorded)."""


# What the runner decides once a run's end is recorded, from the status the
# store holds: whether another attempt of its slot follows (not `final`), and
# what to do after the end is reported (queue the retry, or record it dropped).
EndPlanner = Callable[[ActiveRun, RunStatus, datetime],
                      "tuple[bool, Callable[[], None] | None]"]


Fire = tuple[Task, Trigger, "datetime | None"]


class Recorder:
    """Commits the runner's claims, run ends, retention and heartbeats."""

    def __init__(self, store: Store, *, clock: Clock, report: Reporter, owner: Owner) -> None:
        self.store = store
        self.clock = clock
        self.report = report
        self.owner = owner
        self.history_limit = 0  # runs kept per task (0: all); the runner sets it from its settings
        self.unrecorded: list[Ended] = []  # ends the state file refused; retried
        self.next_retry = 0.0
        self.plan_end: EndPlanner = lambda _run, _status, _at: (True, None)
        # run logs copied into a state that keeps them (PostgreSQL), else None
        self.logs = LogShipper(store, clock=clock, report=report) if store.stores_logs else None
        self.notifier: Notifier | None = None  # hooks, webhook, pings of recorded ends

    # -- claims ----------------------------------------------------------------------

    def claim(self, items: Sequence[Fire], now: datetime, *,
              attempt: int = 1, early: list[Fire] | None = None
              ) -> list[tuple[Task, Trigger, datetime | None, Claim]]:
        """Record a batch of fires (those of one instant) in one transaction;
        return those that may start, with their claims. Skips are reported
        here; a duplicate (another node's claim of a cluster slot) is silent;
        a slot not yet due by the database's clock goes on `early`, for the
        caller to try again; when the store refuses the batch, nothing starts
        and each fire is reported. `attempt` > 1: the fires are retries of
        their slots."""
        if not items:
            return []
        # ends the state file refused earlier go first: a run known to have
        # ended must not make these fires `skipped`
        self.retry_unrecorded()
        requests = [ClaimRequest(t.id, trigger, slot, t.concurrency, scope=t.scope,
                                 attempt=attempt)
                    for t, trigger, slot in items]
        try:
            claims = self.store.claim_many(requests, owner=self.owner, now=now)
        except JobctlError as e:
            for task, _trigger, slot in items:
                self.report(Event("error", now, task_id=task.id, scheduled_for=slot,
                                  message=f"not started: {e}"))
            return []
        out = []
        for (task, trigger, slot), claim in zip(items, claims):
            if claim.outcome == "duplicate":
                continue
            if claim.outcome == "early":
                if early is not None:
                    early.append((task, trigger, slot))
                continue
            if claim.outcome == "skipped":
                blocking = ", ".join(f"#{r.id}" for r in claim.blocking)
                self.report(Event("skip", now, task_id=task.id, run_id=claim.run_id,
                                  trigger=trigger, scheduled_for=slot, status=RunStatus.SKIPPED,
                                  message=f"previous run {blocking} still running",
                                  data={"attempt": attempt}))
                continue
            out.append((task, trigger, slot, claim))
        return out

    # -- ends ------------------------------------------------------------------------

    def finish(self, ended: Ended, *, retry: bool = False, final: bool = True) -> None:
        """Record a run's end and report it (with the status the store holds
        when another writer ended it first, e.g. a node that marked it
        interrupted); keep it for a later try when the store refuses. Once
        recorded, the end goes to the notifier (hooks, webhook, ping);
        `final`: no other attempt of this slot follows (see `Notifier.run_ended`)."""
        active, status, error = ended.active, ended.status, ended.error
        run_id = active.run_id
        try:
            recorded = self.store.finish(run_id, status, ended.finished, exit_code=ended.code,
                                         error=error)
        except JobctlError as e:
            if not self.unrecorded and not retry:
                self.next_retry = self.clock.monotonic() + RECORD_RETRY
            self.unrecorded.append(ended)
            if not retry:
                self.report(Event("error", ended.finished, task_id=active.task.id, run_id=run_id,
                                  message=f"could not record the end of run #{run_id} "
                                          f"(will retry): {e}"))
            return
        if self.logs is not None:
            # after the end is recorded: a failed upload never costs the run's record
            self.logs.final(run_id, self.store.log_dir / f"{run_id}.log", ended.finished)
        if not recorded:
            record = self.store.get_run(run_id)
            if record is not None:
                status, error = record.status, record.error
        # with the status the store holds: a run another writer ended
        # (interrupted) is not retried
        ended.final, then = self.plan_end(active, status, ended.finished)
        self.report(Event("finish", ended.finished, task_id=active.task.id, run_id=run_id,
                          trigger=active.trigger, scheduled_for=active.scheduled_for,
                          status=status, exit_code=ended.code,
                          duration_s=(ended.finished - active.started).total_seconds(),
                          message=error or "",
                          data={"attempt": active.attempt, "final": ended.final}))
        if then is not None:
            then()
        if self.notifier is not None and active.task.alerts is not None:
            # the one place run ends reach the alerts: after they are recorded
            self.notifier.run_ended(RunEnd(active.task, run_id, status, ended.code,
                                           active.scheduled_for, active.started,
                                           ended.finished, active.trigger, active.attempt),
                                    final=ended.final)
        self.prune(active.task.id, self.history_limit)

    def retry_due(self) -> bool:
        """Some ends wait to be recorded and it is time to try again."""
        return bool(self.unrecorded) and self.clock.monotonic() >= self.next_retry

    def retry_unrecorded(self) -> None:
        """Try again to record the ends the state file refused (those it
        refuses again go back on the list)."""
        if self.unrecorded:
            self.next_retry = self.clock.monotonic() + RECORD_RETRY
        pending, self.unrecorded = self.unrecorded, []
        for ended in pending:
            self.finish(ended, retry=True)

    def prune(self, task_id: str, keep: int) -> None:
        """Keep the newest `keep` runs of a task, and delete the logs of the rest."""
        if keep <= 0:
            return
        try:
            for log in self.store.prune(task_id, keep):
                try:
                    Path(log).unlink()
                except OSError:
                    pass
        except JobctlError:
            pass  # retention can wait for the next run

    def interrupt(self, stopped: dict[int, str], now: datetime) -> None:
        """Record runs this runner stopped (or never started) as interrupted,
        with why; raises JobctlError when the store refuses."""
        for run_id, why in stopped.items():
            self.store.mark_interrupted([run_id], now, why)

    # -- the lease -------------------------------------------------------------------

    def heartbeat(self, now: datetime) -> bool:
        """Renew the runner's (or node's) lease; False when it is lost: the
        runner is fenced and must stop. On a shared state, mark the runs of
        nodes whose leases expired interrupted (and stop those on this host).
        A store error is reported and counts as renewed: the lease may still
        hold, and the next beat tells."""
        clustered = self.store.clustered
        try:
            beat = (self.store.node_heartbeat(self.owner) if clustered
                    else self.store.heartbeat(self.owner, now))
            if not beat:
                what = f"node '{self.owner.node_name}' lease" if clustered else "runner lease"
                self.report(Event("error", now, message=f"lost the {what}; stopping"))
                return False
            if clustered:
                if isinstance(self.clock, OffsetClock):
                    # the database's clock decides when a slot is due
                    self.clock.sync(self.store.database_now)
                # a dead node's runs: marked by whichever live node looks first
                for run in self.store.interrupt_dead_nodes():
                    lifecycle.kill_orphan_group(run, state_id=self.store.state_id)
                    self.report(Event("interrupted", now, task_id=run.task_id, run_id=run.id,
                                      message=f"run of node '{run.node}' marked interrupted: "
                                              "its node's lease expired"))
        except JobctlError as e:
            self.report(Event("error", now, message=f"heartbeat: {e}"))
        return True

    def release(self) -> None:
        """End the lease (a clean stop); raises JobctlError when the store refuses."""
        if self.store.clustered:
            self.store.release_node(self.owner)
        else:
            self.store.release_lease(self.owner)
