"""The foreground runner: fires the schedule set on time, one process per run.

`Runner.tick(now)` does one step (reap, time out, fire what is due);
`loop.run_forever(runner)` drives it, sleeping until the earliest of the next
fire, a run's deadline, or the next control poll. Due fires wait in a
`FireQueue` (firequeue.py) ordered by (instant, priority, file order); all
fires due at one instant are claimed and spawned as a batch before their next
fires are computed, and tasks with the same expression share one next-fire
computation (timing's cache). The processes of running runs are held by a
`Supervisor` (supervisor.py); what the runner decides is written to the
state store by its `Recorder` (recorder.py: claims, run ends and their
retries, retention, the lease heartbeat).
"""

from __future__ import annotations

import gc
import os
import signal
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from jobctl import lifecycle, liveness, procinfo
from jobctl.clock import Clock, OffsetClock
from jobctl.errors import EXIT_BUSY, JobctlError, ScheduleSearchError
from jobctl.executor import Launch, RunningProcess, SpawnError, spawn
from jobctl.events import Event as Event  # re-exported: the CLI and tests name it here
from jobctl.events import Reporter
from jobctl.firequeue import FireQueue
from jobctl.hooks import Notifier, RunEnd
from jobctl.model import (
    CatchUp,
    IntervalSchedule,
    RebootSchedule,
    RunStatus,
    ScheduleSet,
    Scope,
    Task,
    Trigger,
)
from jobctl.recorder import RECORD_RETRY as RECORD_RETRY  # re-exported for tests
from jobctl.recorder import Ended, Recorder
from jobctl.retries import PendingRetry, RetryQueue, retried, retry_delay
from jobctl.store import Claim, ClaimRequest, LeaseHeldError, Owner, RunRecord, Store
from jobctl.store.base import ControlListener
from jobctl.supervisor import ActiveRun, Supervisor
from jobctl.timing import load_zone, missed_fires, next_fire, stable_hash

UTC = timezone.utc
CONTROL_POLL = 0.5  # seconds between looks at enable/disable and the config file
HEARTBEAT_EVERY = 5.0
LISTEN_RETRY = 2.0  # seconds between tries to reconnect the control listener
MISSED_AFTER = 60.0
# How long before a fire instant the runner wakes to claim its runs (commit
# them to the state file, build their launches), so that at the instant only
# the spawns remain: at least PREPARE_LEAD, plus the learned cost of claiming
# one run for each run due then (a thousand take tens of milliseconds), at
# most PREPARE_LEAD_MAX.
PREPARE_LEAD = 0.010
PREPARE_LEAD_MAX = 0.4
PREPARE_COST_GUESS = 100e-6  # seconds per claimed run, until measured
PREPARE_LEARN_FROM = 50  # runs in a batch before its cost per run is trusted
CATCH_UP_LIMIT = 100
EARLY_RETRY = 0.1  # seconds before claiming again a slot the database found early
# Cluster slots are spread over the live nodes: each slot has one preferred
# node (a hash of task and slot over the sorted live names), which claims it
# at once; the others claim it SPREAD_GRACE seconds later, a no-op (a
# duplicate) unless the preferred node was too slow, stopped or dead.
SPREAD_GRACE = 0.5
PEERS_EVERY = 2.0  # seconds between looks at which nodes are alive


ConfigLoader = Callable[[], ScheduleSet]


@dataclass
class _Start:
    """A claimed run, ready to spawn: its launch is built when it is claimed,
    so that at the instant only the process starts remain."""

    task: Task
    trigger: Trigger
    slot: datetime | None
    claim: Claim
    launch: Launch
    attempt: int = 1


class Runner:
    """Owns the lease on a state file and runs its schedule set."""

    def __init__(
        self,
        schedule_set: ScheduleSet,
        store: Store,
        *,
        clock: Clock,
        report: Reporter,
        env: Mapping[str, str] | None = None,
        spawner: Callable[[Launch], RunningProcess] = spawn,
        reload_config: ConfigLoader | None = None,
        owner: Owner | None = None,
        control_poll: float = CONTROL_POLL,
    ) -> None:
        self.set = schedule_set
        self.store = store
        self.clock = clock
        self.report = report
        self.env = dict(os.environ if env is None else env)
        self.spawner = spawner
        self.reload_config = reload_config
        self.recorder = Recorder(store, clock=clock, report=report,
                                 owner=owner or liveness.self_owner())
        # next_fire as this module holds it (a test stands in a stuck search)
        self.queue = FireQueue(on_error=self._search_error, find_next=next_fire,
                               node=self.owner.node_name)
        self.supervisor = Supervisor()
        self.retries = RetryQueue()  # failed runs' next attempts, waiting for their instant
        self.recorder.plan_end = self._plan_end
        # hooks, webhooks and pings: spawned or sent in the background, reaped by tick
        self.notifier = Notifier(store, report=report, settings=schedule_set.settings,
                                 now=clock.now, monotonic=clock.monotonic, env=self.env,
                                 node=self.recorder.owner.node_name)
        self.recorder.notifier = self.notifier
        self.catch_up_queue: dict[str, deque[datetime]] = {}
        self.overrides: dict[str, bool] = {}
        self.control_version = -1
        self.next_control = 0.0
        self.next_heartbeat = 0.0
        self.prepared: list[_Start] = []
        # slots the database refused as not yet due (this node's clock is
        # ahead of its): (when to try again, monotonic; task; slot)
        self.early: list[tuple[float, Task, datetime]] = []
        # cluster slots another node is preferred for: (when to claim them
        # anyway, monotonic; task; slot), and the live nodes' names
        self.deferred: list[tuple[float, Task, datetime]] = []
        self.peers: tuple[str, ...] = ()
        self.next_peers = 0.0
        self.early_reported = False
        self.retrying_early = False
        # set by the loop: True once SIGTERM/SIGINT came, even mid-batch
        self.stop_requested: Callable[[], bool] = lambda: False
        self.state_gone = False  # the state file was deleted under us (reported once)
        self.prepare_cost = PREPARE_COST_GUESS
        self._lead: tuple[tuple[datetime, int, float], float] | None = None
        self.stopping = False
        self.stop_deadline: float | None = None
        self.lost_lease = False
        self.heartbeat_every = HEARTBEAT_EVERY
        # seconds between reads of the control version; on a shared state a
        # LISTEN connection wakes the runner sooner (see control_fd)
        self.control_poll = control_poll
        self.listener: ControlListener | None = None
        self.listening = False  # a listener is wanted (a shared state)
        self.next_listen = 0.0
        self.listen_generation = 0
        self.outage_since: float | None = None  # monotonic; the state unreachable since then
        self.listen_down: str | None = None  # why the listener is down (reported once)

    @property
    def owner(self) -> Owner:
        """Who this runner is in the state (the node's epoch once it holds its lease)."""
        return self.recorder.owner

    @owner.setter
    def owner(self, owner: Owner) -> None:
        self.recorder.owner = owner

    @property
    def unrecorded(self) -> list[Ended]:
        """Run ends the state store refused, waiting for another try."""
        return self.recorder.unrecorded

    # -- set-up ------------------------------------------------------------------

    def start(self) -> None:
        """Take the lease, recover a dead runner's runs, schedule every task,
        and run catch-ups and @reboot tasks."""
        # Scheduling 100,000 tasks allocates as many long-lived objects; the
        # cyclic collector would rescan them over and over, so it waits.
        collecting = gc.isenabled()
        gc.disable()
        try:
            self._start()
        finally:
            # what exists now lives as long as the runner: keep the collector off it
            gc.freeze()
            if collecting:
                gc.enable()

    def _start(self) -> None:
        now = self.clock.now()
        if self.store.clustered:
            started, anchor = self._take_node()
            now = self.clock.now()  # (on the database's clock from here on)
        else:
            lease = self.store.lease()
            if lease is not None and lease.owner != self.owner and liveness.lease_alive(lease, now):
                raise LeaseHeldError(lease, self.store.path)
            # the compare-and-swap decides between runners that start at once:
            # a loser raises LeaseHeldError here, before it has done anything
            lease = self.store.take_lease(self.owner, now, replacing=lease)
            started, anchor = lease.started_at, lease.anchor
        lifecycle.recover_orphans(self.store, now)
        self.queue.anchor = anchor
        if self.store.clustered:
            # cluster tasks' intervals: one grid for every node
            self.queue.cluster_anchor = self.store.cluster_anchor()
        self._poll_control(force=True)
        self._listen(now)
        reboots = self._install(self.set, now, startup=True)
        self.next_heartbeat = self.clock.monotonic() + self.heartbeat_every
        self.report(Event("ready", now, message=f"{len(self.tasks)} task{'' if len(self.tasks) == 1 else 's'}",
                          data={"tasks": len(self.tasks), "state": str(self.store.path),
                                "upcoming": self.upcoming(10), "anchor": self.anchor,
                                "node": self.owner.node_name}))
        # @reboot's slot is the exact start (the anchor is cut to the whole
        # second): two starts within one second are two reboots
        self._launch_batch([(task, Trigger.SCHEDULE, started) for task in reboots], now)

    def _take_node(self) -> tuple[datetime, datetime]:
        """Take this node's lease on a shared state (NodeHeldError if a live
        runner holds the name); return (started, interval anchor)."""
        import dataclasses

        lease_s = self.set.settings.node_lease
        held = {n.name: n for n in self.store.nodes()}.get(self.owner.node_name)
        # a holder on this host that is provably gone (SIGKILL) need not
        # wait for its lease to expire
        replacing = None
        if held is not None and held.alive and held.host == self.owner.host \
                and not liveness.owner_alive(held.owner):
            replacing = held.epoch
        node = self.store.take_node(self.owner, lease_s, replacing=replacing)
        self.owner = dataclasses.replace(self.owner, epoch=node.epoch)
        if isinstance(self.clock, OffsetClock):
            # when a slot is due is the database's time (renewed at each heartbeat)
            self.clock.sync(self.store.database_now)
        # beat often enough that a short lease never lapses between two beats
        self.heartbeat_every = min(HEARTBEAT_EVERY, lease_s / 3)
        self._refresh_peers(self.clock.monotonic())
        return node.started_at, node.started_at.replace(microsecond=0)

    def exit_status(self) -> int:
        """What a stopped runner exits with: 0, or 75 (EXIT_BUSY) if it
        stopped because it lost its lease (another runner may hold it now)."""
        return EXIT_BUSY if self.lost_lease else 0

    @property
    def anchor(self) -> datetime | None:
        """The instant interval schedules count from (set by `start`)."""
        return self.queue.anchor

    @property
    def tasks(self) -> dict[str, Task]:
        return self.queue.tasks

    @property
    def active(self) -> dict[int, ActiveRun]:
        """The runs going now, by run id (read only: the supervisor's)."""
        return self.supervisor.active

    def upcoming(self, count: int) -> list[tuple[datetime, str]]:
        """The next `count` scheduled fires of enabled tasks, soonest first."""
        return self.queue.upcoming(count, self.enabled)

    def enabled(self, task: Task) -> bool:
        return self.overrides.get(task.id, task.enabled)

    def _zone(self, task: Task):  # type: ignore[no-untyped-def]
        return load_zone(task.timezone)

    def _search_error(self, task: Task, error: ScheduleSearchError) -> None:
        self.report(Event("error", self.clock.now(), task_id=task.id,
                          message=str(error.for_task(task.id))))

    def _install(self, schedule_set: ScheduleSet, now: datetime, *, startup: bool) -> list[Task]:
        """Schedule a (new) set; return the @reboot tasks to start."""
        old = self.queue.tasks
        self.set = schedule_set
        self.recorder.history_limit = schedule_set.settings.history_limit
        self.notifier.settings = schedule_set.settings
        last = self._last_scheduled(schedule_set)
        first_seen: list[tuple[str, datetime]] = []
        skipped: list[tuple[str, datetime]] = []  # missed while down, catch_up = skip
        reboots: list[Task] = []
        # new and changed tasks get their next fires; unchanged ones keep theirs
        changed = self.queue.load(schedule_set.tasks, now, startup=startup)
        for task in changed:
            seen = last.get(task.id) if last else None
            if isinstance(task.schedule, RebootSchedule):
                if startup:
                    reboots.append(task)
                continue
            catches_up = task.catch_up is not CatchUp.SKIP
            if seen is None:
                # only catch-up tasks need to know since when they were watched
                if catches_up:
                    first_seen.append((task.id, now))
            elif startup and not isinstance(task.schedule, IntervalSchedule):
                if not catches_up or not self.enabled(task):
                    # cheap check, shared by tasks with the same expression
                    first = self.queue.next_fire(task, seen)
                    if first is not None and self.queue.fire_instant(task, first) <= now:
                        skipped.append((task.id, now))
                else:
                    self._catch_up(task, seen, now)
        for removed in set(old) - set(self.queue.tasks):
            self.catch_up_queue.pop(removed, None)
        if first_seen:
            self._set_last_scheduled(first_seen)
        if skipped:
            names = ", ".join(t for t, _ in skipped[:5]) + (", ..." if len(skipped) > 5 else "")
            self.report(Event("missed", now, message=(
                f"{len(skipped)} task(s) missed fires while no runner was up, not run "
                f"(catch_up = skip or disabled): {names}")))
            # record them as considered, so the next start does not report them again
            self._set_last_scheduled(skipped)
        reboots.sort(key=lambda t: (t.priority, self.queue.order[t.id]))
        return [t for t in reboots if self.enabled(t)]

    def _last_scheduled(self, schedule_set: ScheduleSet) -> dict[str, datetime]:
        """Each task's catch-up watermark: on a shared state, the cluster's
        for a cluster task and this node's own for a node task."""
        last = self.store.last_scheduled()
        if self.store.clustered:
            own = self.store.last_scheduled(node=self.owner.node_name)
            for task in schedule_set.tasks:
                if task.scope is Scope.NODE:
                    if task.id in own:
                        last[task.id] = own[task.id]
                    else:
                        last.pop(task.id, None)  # never watched by this node
        return last

    def _set_last_scheduled(self, items: list[tuple[str, datetime]]) -> None:
        """Set watermarks, each where `_last_scheduled` reads it."""
        if not self.store.clustered:
            self.store.set_last_scheduled(items)
            return
        node = [(t, at) for t, at in items
                if (task := self.tasks.get(t)) is None or task.scope is Scope.NODE]
        self.store.set_last_scheduled([i for i in items if i not in node])
        self.store.set_last_scheduled(node, node=self.owner.node_name)

    def _catch_up(self, task: Task, since: datetime, now: datetime) -> None:
        limit = {CatchUp.SKIP: 1, CatchUp.ONCE: 1, CatchUp.ALL: CATCH_UP_LIMIT}[task.catch_up]
        # a jittered slot whose instant is still to come is not missed
        missed = missed_fires(task.schedule, self._zone(task), since,
                              now - self.queue.offset(task), limit)
        if missed and task.catch_up is not CatchUp.SKIP:
            # fires that came while the task was disabled are not caught up
            try:
                spans = self.store.paused_spans(task.id)
            except JobctlError:
                spans = []
            missed = [f for f in missed
                      if not any(a <= f and (b is None or f < b) for a, b in spans)]
        if not missed:
            return
        if task.catch_up is CatchUp.SKIP or not self.enabled(task):
            self._set_last_scheduled([(task.id, missed[-1])])
            self.report(Event("missed", now, task_id=task.id, scheduled_for=missed[-1],
                              message=f"missed fires up to {missed[-1].isoformat()} "
                                      f"(catch_up = {task.catch_up.value}"
                                      f"{'' if self.enabled(task) else ', disabled'})"))
            return
        self.catch_up_queue.setdefault(task.id, deque()).extend(missed)

    # -- one step ------------------------------------------------------------------

    def tick(self, now: datetime | None = None) -> None:
        """Reap finished runs, enforce timeouts, and fire what is due at `now`."""
        now = self.clock.now() if now is None else now
        mono = self.clock.monotonic()
        if mono >= self.next_control:
            self._poll_control()
            self.next_control = mono + self.control_poll
            if self.store.clustered and self.active:
                self._stop_ended_elsewhere(now, mono)
        if self.listening and self.listener is None and mono >= self.next_listen:
            self._listen(now)
        if not self.stopping:
            # what is due goes first; housekeeping can wait a millisecond
            self._fire_due(now)
        self._reap(now)
        self.notifier.tick()
        self._enforce_deadlines(mono)
        if not self.stopping:
            self._start_retries(now)
            self._start_catch_ups(now)
            if self.early:
                self._retry_early(now, mono)
            if self.deferred:
                self._claim_deferred(now, mono)
            if self.store.clustered and mono >= self.next_peers:
                self._refresh_peers(mono)
        logs = self.recorder.logs
        if logs is not None and logs.due():
            logs.ship([(run_id, self.store.log_dir / f"{run_id}.log") for run_id in self.active],
                      self.set.settings.max_log_bytes // 2, now)
        if mono >= self.next_heartbeat and not self.lost_lease:
            self.next_heartbeat = mono + self.heartbeat_every
            self._heartbeat(now)

    def _heartbeat(self, now: datetime) -> None:
        if not self.recorder.heartbeat(now):
            # fenced: another runner may hold our name (or our runs) now
            self.lost_lease = True
            self.request_stop(fast=self.store.clustered)

    def _poll_control(self, force: bool = False) -> None:
        if not self.state_gone and isinstance(self.store.path, Path) \
                and not self.store.path.exists():
            self.state_gone = True
            self.report(Event("error", self.clock.now(), message=(
                f"the state file {self.store.path} was removed: runs are recorded in the "
                "deleted file until the runner restarts")))
        try:
            version = self.store.control_version()
            if force or version != self.control_version:
                self.control_version = version
                before, self.overrides = self.overrides, self.store.overrides()
                if not force:
                    self._report_control(before)
        except JobctlError as e:
            # the control read doubles as the outage probe: one event when
            # the state becomes unreachable, one when it is back
            if self.outage_since is None:
                self.outage_since = self.clock.monotonic()
                self.report(Event("error", self.clock.now(),
                                  message=f"reading control state: {e}"))
            return
        if self.outage_since is not None:
            down = self.clock.monotonic() - self.outage_since
            self.outage_since = None
            self.report(Event("reconnected", self.clock.now(), message=(
                f"the state {self.store.path} is reachable again (unreachable for about "
                f"{down:.0f}s)"), data={"down_s": round(down, 1)}))

    def _report_control(self, before: dict[str, bool]) -> None:
        """One event per task whose enable/disable override changed."""
        now = self.clock.now()
        for task_id, enabled in sorted(self.overrides.items()):
            if before.get(task_id) != enabled and task_id in self.tasks:
                self.report(Event("control", now, task_id=task_id,
                                  message="enabled" if enabled else "disabled"))

    def prepare(self, instant: datetime) -> None:
        """Claim (commit) the fires due at `instant` a moment before it, so
        that at the instant only the processes remain to be started; see
        `spawn_prepared`."""
        self._fire_due(self.clock.now(), until=instant)

    def spawn_prepared(self) -> None:
        prepared, self.prepared = self.prepared, []
        self._spawn_claimed(prepared, self.clock.now())

    def _fire_due(self, now: datetime, until: datetime | None = None) -> None:
        if self.prepared:
            self.spawn_prepared()
        now_utc = now.astimezone(UTC)
        horizon = now_utc if until is None else max(now_utc, until.astimezone(UTC))
        passed: list[tuple[str, datetime]] = []
        follow: list[tuple[Task, datetime]] = []
        batch: list[tuple[Task, Trigger, datetime | None]] = []
        for instant, task in self.queue.pop_due(horizon):
            task_id = task.id
            late = (now_utc - instant).total_seconds()
            # what is recorded and counted from is the slot, not its jittered instant
            fire = self.queue.slot_of(task, instant)
            interval = isinstance(task.schedule, IntervalSchedule)
            if late > MISSED_AFTER:
                # the clock jumped or the machine slept: everything from this
                # slot to now was missed, and catch_up decides what runs
                if not interval:
                    self._catch_up(task, fire - timedelta(microseconds=1), now)
                follow.append((task, now))
                continue
            if not self.enabled(task):
                passed.append((task_id, fire))
            elif self.peers and task.scope is Scope.CLUSTER and not self._preferred(task, fire):
                # another node's to claim first: claimed here too a moment later
                wait = max(0.0, (instant - now_utc).total_seconds()) + SPREAD_GRACE
                self.deferred.append((self.clock.monotonic() + wait, task, fire))
            else:
                batch.append((task, Trigger.SCHEDULE, fire))
            # A slot a little late (the runner was stalled: a lock, SIGSTOP,
            # a busy machine) fires once, and the next fire counts from now
            # (see claimed_at below), as cron and supercronic do: slots that
            # passed meanwhile are not replayed back to back.
            follow.append((task, fire))
        claimed = self._claim_batch(batch, now)
        # the claim may have waited on a locked state file: count late slots'
        # next fires from after it, so they are not replayed either
        claimed_at = self.clock.now().astimezone(UTC)
        held = [(task.id, self.catch_up_queue[task.id][0] - timedelta(microseconds=1))
                for task, _trigger, _slot in batch if self.catch_up_queue.get(task.id)]
        if until is None:
            self._spawn_claimed(claimed, now)
        else:
            self.prepared.extend(claimed)
        # next fires only after the whole batch has started (or been claimed)
        for task, after in follow:
            # in slots: a jittered task's next slot counts from its slot's
            # share of claimed_at
            since = claimed_at - self.queue.offset(task) if task.jitter else claimed_at
            self.queue.push(task, self.queue.next_fire(task, max(after, since)))
        if held:
            # a regular fire moved last_scheduled past catch-ups still queued:
            # move it back, so a restart computes them again
            try:
                self._set_last_scheduled(held)
            except JobctlError as e:
                self.report(Event("error", now, message=str(e)))
        if passed:
            try:
                self._set_last_scheduled(passed)
            except JobctlError as e:
                self.report(Event("error", now, message=str(e)))

    def _preferred(self, task: Task, slot: datetime) -> bool:
        """Whether this node is the one to claim the cluster slot first: the
        same answer on every node that sees the same live nodes."""
        me = self.owner.node_name
        if len(self.peers) < 2 or me not in self.peers:
            return True
        index = stable_hash(f"{task.id}\0{round(slot.timestamp() * 1000)}")
        return self.peers[index % len(self.peers)] == me

    def _refresh_peers(self, mono: float) -> None:
        """The names of the live nodes of the cluster (this one included)."""
        self.next_peers = mono + PEERS_EVERY
        try:
            self.peers = tuple(sorted(n.name for n in self.store.nodes() if n.alive))
        except JobctlError:
            self.peers = ()  # unknown: claim every slot at once, as without spreading

    def _claim_deferred(self, now: datetime, mono: float) -> None:
        """Claim the cluster slots other nodes were preferred for, once their
        grace has passed: a duplicate (no row, no event) if one of them did."""
        due = [(task, slot) for at, task, slot in self.deferred if at <= mono]
        if not due:
            return
        self.deferred = [d for d in self.deferred if d[0] > mono]
        self._launch_batch([(self.tasks[t.id], Trigger.SCHEDULE, slot) for t, slot in due
                            if t.id in self.tasks and self.enabled(self.tasks[t.id])], now)

    def _retry_early(self, now: datetime, mono: float) -> None:
        """Claim again the slots the database found not yet due, once their
        retry time came (each is claimed, or found a duplicate, or early again)."""
        due = [(task, slot) for at, task, slot in self.early if at <= mono]
        if not due:
            return
        self.early = [e for e in self.early if e[0] > mono]
        self.retrying_early = True
        try:
            self._launch_batch([(self.tasks[t.id], Trigger.SCHEDULE, slot) for t, slot in due
                                if t.id in self.tasks and self.enabled(self.tasks[t.id])], now)
        finally:
            self.retrying_early = False

    def _start_catch_ups(self, now: datetime) -> None:
        for task_id in list(self.catch_up_queue):
            queue = self.catch_up_queue[task_id]
            task = self.tasks.get(task_id)
            if task is None or not queue:
                del self.catch_up_queue[task_id]
                continue
            if self.supervisor.runs_task(task_id):
                continue  # catch-ups of one task run one after another
            self._launch(task, Trigger.CATCH_UP, queue.popleft(), now)

    def _launch(self, task: Task, trigger: Trigger, slot: datetime | None, now: datetime) -> None:
        self._launch_batch([(task, trigger, slot)], now)

    def _launch_batch(self, items: list[tuple[Task, Trigger, datetime | None]],
                      now: datetime, *, attempt: int = 1) -> None:
        self._spawn_claimed(self._claim_batch(items, now, attempt=attempt), now)

    def _claim_batch(self, items: list[tuple[Task, Trigger, datetime | None]],
                     now: datetime, *, attempt: int = 1) -> list[_Start]:
        """Record a batch of fires (those of one instant) in one transaction;
        return those that may start. Skips are recorded and reported here.
        `attempt` > 1: retries of their slots."""
        if not items:
            return []
        out = []
        early: list[tuple[Task, Trigger, datetime | None]] = []
        claimed = self.recorder.claim(items, now, attempt=attempt, early=early)
        if early:
            if not self.early_reported:
                self.early_reported = True
                self.report(Event("error", now, task_id=early[0][0].id,
                                  scheduled_for=early[0][2], message=(
                                      f"{len(early)} slot(s) not yet due by the database's clock "
                                      "(this node's clock is ahead of it): trying again")))
            retry = self.clock.monotonic() + EARLY_RETRY
            self.early += [(retry, task, slot) for task, _tr, slot in early
                           if slot is not None]
        elif claimed and not self.early and not self.retrying_early:
            # a fresh batch, due by the database's clock: said again if it happens again
            self.early_reported = False
        for task, trigger, slot, claim in claimed:
            assert claim.run_id is not None
            launch = lifecycle.launch_for(
                task, self.set.settings, run_id=claim.run_id,
                log_path=self.store.log_dir / f"{claim.run_id}.log", scheduled_for=slot,
                trigger=trigger, base_env=self.env, started=now, lazy_log=True,
                state_path=self.store.path, config_path=self.set.path,
                state_id=self.store.state_id, attempt=attempt)
            out.append(_Start(task, trigger, slot, claim, launch, attempt))
        return out

    def _spawn_claimed(self, claimed: list[_Start], now: datetime) -> None:
        """Start the processes of claimed runs back to back, then record their
        pids (and real start instants) in one transaction. Webhook and ping
        deliveries wait meanwhile: the spawns have the interpreter."""
        if len(claimed) < 2:
            self._spawn_and_record(claimed, now)
            return
        self.notifier.hold()
        try:
            self._spawn_and_record(claimed, now)
        finally:
            self.notifier.release()

    def _spawn_and_record(self, claimed: list[_Start], now: datetime) -> None:
        started: list[tuple[Task, Trigger, datetime | None, int, RunningProcess, datetime]] = []
        attempts: dict[int, int] = {}
        for index, start in enumerate(claimed):
            if self.stop_requested():
                # stopping: the rest never start; finish() records them
                self.prepared.extend(claimed[index:])
                break
            task, trigger, slot, claim, launch = (start.task, start.trigger, start.slot,
                                                  start.claim, start.launch)
            assert claim.run_id is not None
            for old in claim.replaced:
                self._stop_replaced(old, claim.run_id)
            try:
                proc = self.spawner(launch)
            except SpawnError as e:
                ended_at = self.clock.now()
                lifecycle.record_spawn_failure(self.store, launch, claim.run_id, e, ended_at)
                # a failed start is retried like a failed run
                final, then = self._plan(task, trigger, slot, start.attempt, RunStatus.FAILED,
                                         ended_at)
                self.report(Event("finish", now, task_id=task.id, run_id=claim.run_id,
                                  trigger=trigger, scheduled_for=slot, status=RunStatus.FAILED,
                                  duration_s=0.0, message=str(e),
                                  data={"attempt": start.attempt, "final": final}))
                if then is not None:
                    then()
                if task.alerts is not None:
                    # a run that could not start is a failure too (recorded above)
                    self.notifier.run_ended(RunEnd(task, claim.run_id, RunStatus.FAILED, None,
                                                   slot, now, self.clock.now(), trigger,
                                                   start.attempt),
                                            final=final)
                continue
            # `at` of the start event: when the process exists
            started.append((task, trigger, slot, claim.run_id, proc, self.clock.now()))
            attempts[claim.run_id] = start.attempt
        if not started:
            return
        try:
            recorded = self.store.set_processes(
                [(run_id, proc.pid, proc.identify(), proc.boot, at)
                 for _t, _tr, _s, run_id, proc, at in started])
        except JobctlError as e:
            self.report(Event("error", now, message=f"could not record pids: {e}"))
            recorded = {run_id for _t, _tr, _s, run_id, _p, _at in started}
        mono = self.clock.monotonic()
        for task, trigger, slot, run_id, proc, spawned_at in started:
            if run_id not in recorded:
                # replaced between the claim and the spawn: it must not run on
                proc.signal_group(signal.SIGKILL)
                proc.wait(5)
                proc.close()
                record = self.store.get_run(run_id)
                self.report(Event("finish", now, task_id=task.id, run_id=run_id, trigger=trigger,
                                  scheduled_for=slot,
                                  status=record.status if record else RunStatus.INTERRUPTED,
                                  duration_s=0.0, message=(record.error or "") if record else ""))
                continue
            deadline = mono + task.timeout if task.timeout else None
            attempt = attempts[run_id]
            self.supervisor.add(ActiveRun(run_id, task, proc, trigger, slot, spawned_at, deadline,
                                          attempt=attempt))
            self.report(Event("start", spawned_at, task_id=task.id, run_id=run_id,
                              trigger=trigger, scheduled_for=slot,
                              data={"pid": proc.pid, "attempt": attempt}))
            if task.alerts is not None:
                self.notifier.run_started(task, run_id)

    # -- retries -------------------------------------------------------------------

    def _plan_end(self, run: ActiveRun, status: RunStatus,
                  at: datetime) -> tuple[bool, Callable[[], None] | None]:
        return self._plan(run.task, run.trigger, run.scheduled_for, run.attempt, status, at)

    def _plan(self, task: Task, trigger: Trigger, slot: datetime | None, attempt: int,
              status: RunStatus, at: datetime) -> tuple[bool, Callable[[], None] | None]:
        """Whether a run that ended `status` at `at` gets another attempt
        (not final), and what to do once its end is reported: queue the
        retry, or record it dropped when it would start at or after the
        task's next fire (or the runner is stopping)."""
        task = self.tasks.get(task.id, task)  # as the config says now (a reload)
        if trigger is Trigger.MANUAL or not retried(task, status, attempt):
            return True, None
        delay = retry_delay(task, attempt)
        due = at + timedelta(seconds=delay)
        nxt = attempt + 1
        if self.stopping:
            return True, lambda: self._drop_retry(task, trigger, slot, nxt, at,
                                                  "the runner is stopping")
        if slot is not None:
            following = self.queue.next_fire(task, slot)
            if following is not None:
                limit = self.queue.fire_instant(task, following)
                if due >= limit:
                    why = (f"it would start at {due.astimezone().isoformat(timespec='seconds')}, "
                           f"{delay:g}s after attempt {attempt} ended, not before the next "
                           f"fire at {limit.astimezone().isoformat(timespec='seconds')}")
                    return True, lambda: self._drop_retry(task, trigger, slot, nxt, at, why)

        def queue() -> None:
            self.retries.push(due, task.id, trigger, slot, nxt)
            self.report(Event("retry", at, task_id=task.id, trigger=trigger, scheduled_for=slot,
                              message=f"attempt {nxt} of {task.retries + 1} in {delay:g}s",
                              data={"attempt": nxt, "due": due}))

        return False, queue

    def _drop_retry(self, task: Task, trigger: Trigger, slot: datetime | None, attempt: int,
                    now: datetime, why: str) -> None:
        """Record a retry that will not run as a `skipped` run of its slot."""
        reason = f"retry dropped: {why}"
        try:
            run_id = self.store.record_skipped(
                ClaimRequest(task.id, trigger, slot, task.concurrency, scope=task.scope,
                             attempt=attempt),
                owner=self.owner, now=now, reason=reason)
        except JobctlError as e:
            self.report(Event("error", now, task_id=task.id, scheduled_for=slot,
                              message=f"{reason}; not recorded: {e}"))
            return
        if run_id is not None:
            self.report(Event("skip", now, task_id=task.id, run_id=run_id, trigger=trigger,
                              scheduled_for=slot, status=RunStatus.SKIPPED, message=reason,
                              data={"attempt": attempt}))

    def _start_retries(self, now: datetime) -> None:
        for retry in self.retries.pop_due(now.astimezone(UTC)):
            task = self.tasks.get(retry.task_id)
            if task is None:
                continue  # removed from the config meanwhile: nothing to run
            if not self.enabled(task):
                self._drop_retry(task, retry.trigger, retry.slot, retry.attempt, now,
                                 "the task was disabled")
                self.notifier.retry_dropped(task.id, retry.slot)
                continue
            self._launch_batch([(task, retry.trigger, retry.slot)], now, attempt=retry.attempt)

    def _drop_pending_retries(self, now: datetime) -> None:
        for retry in self.retries.drain():
            task = self.tasks.get(retry.task_id)
            if task is not None:
                self._drop_retry(task, retry.trigger, retry.slot, retry.attempt, now,
                                 f"the runner stopped before attempt {retry.attempt} was due")
                self.notifier.retry_dropped(task.id, retry.slot)

    def pending_retries(self) -> list[PendingRetry]:
        """The retries waiting for their instant, soonest first (read only)."""
        return self.retries.pending()

    def _stop_replaced(self, record: RunRecord, new_run: int) -> None:
        grace, mono = self.set.settings.kill_grace, self.clock.monotonic()
        if self.supervisor.stop(record.id, RunStatus.INTERRUPTED, f"replaced by run #{new_run}",
                                grace, mono):
            return
        if self.store.clustered and record.node != self.owner.node_name \
                and record.trigger is not Trigger.MANUAL:
            # another node's run: that node stops it (`_stop_ended_elsewhere`),
            # wherever it is; a pid is only meaningful on its own host
            return
        if record.pid and procinfo.is_same_process(record.pid, record.proc_start,
                                                   record.boot_id or None):
            self.supervisor.stop_group(record.pid, grace, mono)

    def _stop_ended_elsewhere(self, now: datetime, mono: float) -> None:
        """Stop the processes of our runs that another node ended (a cluster
        task's `replace` claimed on another node marks them interrupted)."""
        mine = [r.run_id for r in self.active.values() if r.end_reason is None]
        try:
            ended = self.store.ended(mine)
        except JobctlError as e:
            self.report(Event("error", now, message=f"reading runs' status: {e}"))
            return
        for record in ended:
            why = record.error or f"ended {record.status.value} by another node"
            if self.supervisor.stop(record.id, record.status, why,
                                    self.set.settings.kill_grace, mono):
                self.report(Event("interrupted", now, task_id=record.task_id, run_id=record.id,
                                  message=f"run #{record.id} was ended elsewhere ({why});"
                                          " stopping its process"))

    def _reap(self, now: datetime) -> None:
        for ended in self.supervisor.reap():
            self.recorder.finish(Ended(ended.run, ended.status, ended.error, ended.code,
                                       self.clock.now()))
        if self.recorder.retry_due():
            # the state file could not take them (a full disk, a long lock):
            # try again, so no row stays `running` while this runner lives
            self._retry_unrecorded()

    def _retry_unrecorded(self) -> None:
        self.recorder.retry_unrecorded()

    def child_pids(self) -> set[int]:
        """The pids of this runner's own run processes that it has not
        reaped yet (their exit statuses are the runs' outcomes)."""
        return self.supervisor.child_pids() | self.notifier.child_pids()

    def pipes(self) -> dict[int, RunningProcess]:
        """The output pipes to watch, by run id (see `Supervisor.pipes`)."""
        return self.supervisor.pipes()

    def pump(self, run_id: int) -> bool:
        """Log what a run's pipe holds now; False once it is at EOF or gone
        (stop watching it)."""
        return self.supervisor.pump(run_id)

    def _enforce_deadlines(self, mono: float) -> None:
        self.supervisor.enforce_deadlines(self.set.settings.kill_grace, mono)

    # -- wake-ups for enable/disable ----------------------------------------------------

    def _listen(self, now: datetime) -> None:
        """(Re)connect the control listener of a shared state; a failure is
        reported once and retried every LISTEN_RETRY s (polling goes on)."""
        self.next_listen = self.clock.monotonic() + LISTEN_RETRY
        try:
            self.listener = self.store.control_listener()
        except JobctlError as e:
            self.listening = True
            if self.listen_down is None:
                self.listen_down = str(e)
                self.report(Event("error", now, message=(
                    f"enable/disable wake-ups off, polling every {self.control_poll:g}s: {e}")))
            return
        self.listening = self.listener is not None
        self.listen_generation += 1
        if self.listen_down is not None:
            self.listen_down = None
            self.report(Event("reconnected", now, message="enable/disable wake-ups on again"))
            self.next_control = 0.0  # a notice may have come while it was down

    def control_fd(self) -> tuple[int, int] | None:
        """(descriptor, identity) for the loop's selector: readable when the
        control state may have changed; None when there is none (SQLite) or
        it is disconnected. The identity changes with each connection."""
        if self.listener is None:
            return None
        fd = self.listener.fileno()
        if fd is None:
            return None
        return fd, self.listen_generation

    def control_woken(self) -> None:
        """The control descriptor was readable: read the control version at
        the next step (a dropped connection is reconnected later)."""
        if self.listener is None:
            return
        if self.listener.drain():
            self.next_control = 0.0
        if self.listener.fileno() is None:
            self.listener.close()
            self.listener = None
            self.next_listen = self.clock.monotonic() + LISTEN_RETRY
            if self.listen_down is None:
                self.listen_down = "connection lost"
                self.report(Event("error", self.clock.now(), message=(
                    "enable/disable wake-ups lost their database connection; "
                    f"polling every {self.control_poll:g}s until it is back")))

    # -- reload and stop -------------------------------------------------------------

    def reload(self, schedule_set: ScheduleSet, now: datetime | None = None) -> None:
        """Take a new, valid schedule set: removed tasks stop being scheduled,
        running ones finish."""
        now = self.clock.now() if now is None else now
        before = set(self.tasks)
        changed = sum(1 for t in schedule_set.tasks if t.id in self.tasks and self.tasks[t.id] != t)
        self._install(schedule_set, now, startup=False)
        after = set(self.tasks)
        self.report(Event("reload", now, message=(
            f"{len(after)} task{'' if len(after) == 1 else 's'} ({len(after - before)} added, {len(before - after)} removed, "
            f"{changed} changed)")))

    def request_stop(self, fast: bool = False) -> None:
        """Start nothing new; give running tasks shutdown_grace (none if fast)."""
        mono = self.clock.monotonic()
        if not self.stopping:
            self.stopping = True
            self.stop_deadline = mono + self.set.settings.shutdown_grace
            self.report(Event("stopping", self.clock.now(), message=(
                f"waiting up to {self.set.settings.shutdown_grace:g}s for "
                f"{len(self.active)} running task(s)" if self.active and not fast else "")))
            # dropped now, not as the runner exits: the attempt each follows is
            # then its slot's last, and its alerts get the shutdown_grace too
            self._drop_pending_retries(self.clock.now())
        if fast:
            self.stop_deadline = mono

    def watch_stop(self, requested: Callable[[], bool]) -> None:
        """`requested()` turns true once a stop was asked for (SIGTERM,
        SIGINT): a batch being spawned then stops between two spawns."""
        self.stop_requested = requested

    def drained(self) -> bool:
        """No run is left, nor a process group still owed its SIGKILL (a
        background process that ignored SIGTERM), nor a hook or delivery
        going (until the shutdown deadline): a stopping runner is done."""
        return self.supervisor.drained() and self.notifier.idle()

    def shutdown_step(self, mono: float) -> None:
        if self.stop_deadline is None or mono < self.stop_deadline:
            return
        self.supervisor.stop_all("runner stopped", self.set.settings.kill_grace, mono)
        if self.supervisor.drained():
            # the runs are done: hooks and deliveries had their time too
            self.notifier.stop_all()
            if not self.notifier.hooks:
                self.notifier.kill_all()

    def finish(self) -> None:
        """Record what is still running as interrupted and release the lease."""
        now = self.clock.now()
        self._retry_unrecorded()
        # the state file may still refuse writes: what is left stays `running`
        # under this (soon dead) runner, and the next jobctl command marks it
        # interrupted
        stopped = self.supervisor.kill_all("runner stopped")
        self.notifier.kill_all()
        for start in self.prepared:
            if start.claim.run_id is not None:
                stopped[start.claim.run_id] = "runner stopped before it started"
        self.prepared = []
        # pending retries do not outlive the runner: each is recorded dropped
        self._drop_pending_retries(now)
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        try:
            self.recorder.interrupt(stopped, now)
            if not self.lost_lease:
                self.recorder.release()
        except JobctlError as e:
            self.report(Event("error", now, message=f"recording the stop: {e}"))
        logs = self.recorder.logs
        if logs is not None:
            # the runs it stopped, and ends whose logs still wait: their final logs
            for run_id in [*stopped, *logs.finals]:
                logs.final(run_id, self.store.log_dir / f"{run_id}.log", now)
        from jobctl.plugins import cleanup_plugins

        # entry-point plugins loaded in this process get their cleanup() call
        for error in cleanup_plugins():
            self.report(Event("error", now, message=error))
        self.report(Event("stopped", now))

    # -- the loop ------------------------------------------------------------------

    def sleep_for(self, now: datetime) -> float:
        """Seconds until the runner next has something to do."""
        wait = CONTROL_POLL
        fire_in = self.time_to_next_fire(now)
        if fire_in is not None:
            wait = min(wait, fire_in)
        mono = self.clock.monotonic()
        wake = self.supervisor.next_wake(mono)
        if wake is not None:
            wait = min(wait, wake)
        retry_in = None if self.stopping else self.retries.time_to_next(now.astimezone(UTC))
        if retry_in is not None:
            wait = min(wait, retry_in)

        if self.early:
            wait = min(wait, min(at for at, _t, _s in self.early) - mono)
        if self.deferred and not self.stopping:
            wait = min(wait, min(at for at, _t, _s in self.deferred) - mono)
        wake = self.notifier.next_wake(mono)
        if wake is not None:
            wait = min(wait, wake)
        if self.stopping and self.stop_deadline is not None:
            wait = min(wait, self.stop_deadline - mono)
        return max(wait, 0.0)

    def prepare_lead(self) -> float:
        """Seconds before the next fire instant to wake and claim its runs."""
        first = self.queue.next_instant()
        if first is None:
            return PREPARE_LEAD
        key = (first, len(self.queue), self.prepare_cost)
        if self._lead is not None and self._lead[0] == key:
            return self._lead[1]
        # the fires due then, up to as many as the longest lead allows
        limit = int((PREPARE_LEAD_MAX - PREPARE_LEAD) / self.prepare_cost) + 1
        count = self.queue.first_batch_size(limit)
        lead = min(PREPARE_LEAD_MAX, PREPARE_LEAD + count * self.prepare_cost)
        self._lead = (key, lead)
        return lead

    def prepare_timed(self, instant: datetime) -> None:
        """prepare(), learning from a big batch what claiming one run costs."""
        began = time.monotonic()
        self.prepare(instant)
        if len(self.prepared) >= PREPARE_LEARN_FROM:
            self.prepare_cost = max(10e-6, (time.monotonic() - began) / len(self.prepared))

    def time_to_next_fire(self, now: datetime) -> float | None:
        """Seconds until the next scheduled fire; None when none is queued or
        the runner is stopping."""
        return None if self.stopping else self.queue.time_to_next_fire(now)

    def next_instant(self) -> datetime | None:
        """The next scheduled fire instant (UTC); None as for `time_to_next_fire`."""
        return None if self.stopping else self.queue.next_instant()

    def report_reload_error(self, error: JobctlError, now: datetime) -> None:
        self.report(reload_error_event(error, now))


def reload_error_event(error: JobctlError, now: datetime) -> Event:
    """The event for a config that could not be reloaded, with its problems."""
    from jobctl.errors import ConfigError

    lines = [str(p) for p in error.problems] if isinstance(error, ConfigError) else []
    return Event("error", now, message=f"config not reloaded, old schedule kept: {error}",
                 data={"problems": lines})
