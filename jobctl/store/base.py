"""The state store's contract: what the runner, `run-now` and the commands may
ask of any backend, and what each answer guarantees.

The invariants that keep runs exact are facts of the database, not
conventions of the runner: a scheduled slot fires at most once (a unique
index on task and slot), the lease is a compare-and-swap, and a run's end is
a conditional update of a row still `running`. Two backends: SQLite
(`jobctl.store.sqlite`, the default) and PostgreSQL (`jobctl.store.postgres`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol

from jobctl.model import Concurrency, RunStatus, Scope, Trigger
from jobctl.store.records import (
    Claim,
    ClaimRequest,
    EventRecord,
    HookFailure,
    Lease,
    NodeRecord,
    Owner,
    RunRecord,
)


class ControlListener(Protocol):
    """A wake-up for a runner when the control state (enable/disable) may
    have changed on a shared state: readable when a change was announced.
    Only a hint: the control version read from the store stays the truth."""

    def fileno(self) -> int | None:
        """The descriptor to watch for readability; None while disconnected."""

    def drain(self) -> bool:
        """Take what arrived; True if a change was announced (or the
        connection dropped: the caller polls then, to miss nothing)."""

    def connect(self) -> None:
        """(Re)connect and listen; StoreError when the database refuses."""

    def close(self) -> None:
        """Disconnect for good."""


class Store(Protocol):
    """jobctl's state: runs, per-task state, enable/disable overrides, the
    runner's lease. Every method is one transaction: a write either happens
    whole or not at all (StoreError, StoreBusyError), and what a read returns
    is one consistent snapshot."""

    @property
    def path(self) -> Path | str:
        """Where the state is, as messages name it: a SQLite file, or a
        database URL without its password (also what child processes are
        given to reopen it)."""

    @property
    def log_dir(self) -> Path:
        """Where run logs live (created by the caller when it writes one)."""

    @property
    def state_id(self) -> str:
        """This state's random id (16 hex digits), fixed when it was created:
        runs carry it as JOBCTL_STATE_ID so a dead runner's processes are
        found for this state only; "" for a state too old to have one."""

    def close(self) -> None:
        """Release the connection; the store is not used after."""

    # -- node leases (a shared state: PostgreSQL) ---------------------------------

    @property
    def clustered(self) -> bool:
        """True if several runners (nodes) may share this state, each holding
        its own node lease (`take_node`); False for one runner per state,
        holding the single lease (`take_lease`)."""

    def nodes(self) -> list[NodeRecord]:
        """Every node that has held a lease, by name, with `alive` judged by
        the database's clock; [] on a state without node leases."""

    def take_node(self, owner: Owner, lease_s: float, *, replacing: int | None = None) -> NodeRecord:
        """Make `owner` the holder of node `owner.node`'s lease for `lease_s`
        seconds of the database's clock: a compare-and-swap in one statement.

        Taken only if no one holds it, its lease has expired, it is already
        `owner`'s, or its epoch is `replacing` (a holder the caller found
        dead). The epoch grows with each take. Otherwise NodeHeldError naming
        the holder, and nothing is written: of any number of runners starting
        at once with one name, exactly one gets it."""

    def node_heartbeat(self, owner: Owner) -> bool:
        """Renew the node lease `owner` holds (node and epoch); False, with
        nothing written, if it expired or was taken over: the node is fenced
        and must stop."""

    def release_node(self, owner: Owner) -> None:
        """Give up the node lease if `owner` (node and epoch) still holds it."""

    def database_now(self) -> datetime | None:
        """The database's clock now, which decides on a shared state when a
        slot is due; None on a single-runner state (its runner's clock does)."""

    def cluster_anchor(self, create: bool = True) -> datetime | None:
        """The instant interval schedules of cluster tasks count from, the
        same for every node: fixed once, by the first node to ask, at the
        whole second of the database's clock, and kept when the whole
        cluster restarts (so slots stay on one grid); None on a state with
        one runner (its own start is the anchor)."""

    def interrupt_dead_nodes(self) -> list[RunRecord]:
        """Mark `interrupted` the running runs of every node whose lease has
        expired (by the database's clock), or whose run belongs to an older
        epoch of its node, with a reason naming the node, in one conditional
        update; returns those runs (as they were, still `running`)."""

    # -- the lease -----------------------------------------------------------

    def lease(self) -> Lease | None:
        """The current runner's lease, live or not; None if none was taken.
        On a clustered state: the longest-running live node's, for commands
        that show one runner."""

    def take_lease(self, owner: Owner, now: datetime, *, replacing: Lease | None = None) -> Lease:
        """Make `owner` the runner: a compare-and-swap.

        The lease is written only if it is still what the caller judged free:
        none, already `owner`'s, or exactly `replacing` (a holder the caller
        found dead, unchanged since). Otherwise LeaseHeldError naming the
        holder, and nothing is written: of any number of runners starting at
        once, exactly one gets the lease."""

    def heartbeat(self, owner: Owner, now: datetime) -> bool:
        """Refresh the lease; False (nothing written) if it is no longer ours."""

    def release_lease(self, owner: Owner) -> None:
        """Give the lease up if `owner` holds it; otherwise do nothing."""

    # -- control -------------------------------------------------------------

    def control_version(self) -> int:
        """A counter that grows with each enable/disable: a runner polls it."""

    def overrides(self) -> dict[str, bool]:
        """Task id -> enabled, as set by `set_enabled`."""

    def set_enabled(self, task_ids: Iterable[str], enabled: bool,
                    now: datetime | None = None) -> None:
        """Override the config's `enabled` for these tasks, and bump the
        control version. With `now`, also note when a disabled span starts
        or ends (see `paused_spans`)."""

    def paused_spans(self, task_id: str) -> list[tuple[datetime, datetime | None]]:
        """When the task was disabled: (since, until), until None while it still is."""

    def last_scheduled(self, node: str = "") -> dict[str, datetime]:
        """Task id -> the latest slot the runner handled (fired, skipped or
        passed over), from which catch-up counts. On a clustered state a
        cluster task has one such watermark for the cluster (`node` ""), and
        a node task one per node (`node` its name); a claim of a scheduled
        slot moves the one its scope names. A single-runner state has one per
        task and ignores `node`."""

    def set_last_scheduled(self, items: Iterable[tuple[str, datetime]], *,
                           node: str = "") -> None:
        """Set tasks' last handled slots (the cluster's, or `node`'s own as
        for `last_scheduled`)."""

    # -- runs ----------------------------------------------------------------

    def claim(self, *, task_id: str, trigger: Trigger, scheduled_for: datetime | None,
              concurrency: Concurrency, force: bool, owner: Owner, now: datetime,
              scope: Scope = Scope.NODE) -> Claim:
        """Apply the concurrency policy and record the run, atomically.

        Outcome 'started': the run is committed `running` before its process
        exists, and the caller starts it. 'duplicate': this scheduled slot
        already has a run (a slot fires at most once, whatever the clock
        does): nothing recorded. On a clustered state a slot is one per node
        (`owner.node_name`) for a NODE task and one in the cluster for a
        CLUSTER task, whose `forbid`/`replace` also look at every node's
        runs; a claim under a node lease that expired or was taken over
        raises LeaseLostError (fencing), and a scheduled slot later than the
        database's clock plus a small tolerance is 'early' (nothing
        recorded): a node whose clock is ahead never fires before the slot.
        Elsewhere scope changes nothing. 'skipped' (forbid, recorded as a skipped
        run) or 'refused' (run-now under forbid, nothing recorded): `blocking`
        names the running runs. Under replace, `replaced` are the runs now
        marked interrupted, whose processes the caller stops."""

    def claim_many(self, requests: Sequence[ClaimRequest], *, owner: Owner,
                   now: datetime) -> list[Claim]:
        """`claim` for the fires of one instant, in one transaction, in order.
        A request's `attempt` (a retry of its slot) is recorded with the run,
        and a slot is unique per attempt: a retry's claim is 'duplicate' if
        that attempt of the slot already has a run (cluster-wide for a
        CLUSTER task)."""

    def record_skipped(self, request: ClaimRequest, *, owner: Owner, now: datetime,
                       reason: str) -> int | None:
        """Record a fire (or a retry, `request.attempt`) that will not run as
        a `skipped` run with `reason`, ended at `now`; returns its id, or None
        when that attempt of the slot already has a run (nothing written)."""

    def set_processes(self, items: Sequence[tuple[int, int, str | None, str, datetime]]) -> set[int]:
        """Record started processes, (run_id, pid, proc_start, boot_id,
        started_at) each; returns the run ids recorded. A run ended meanwhile
        (replaced) is not: the caller stops its process."""

    def set_process(self, run_id: int, pid: int, proc_start: str | None, boot_id: str) -> bool:
        """Record one started run's process; False if the run was ended meanwhile."""

    def finish(self, run_id: int, status: RunStatus, now: datetime, *,
               exit_code: int | None = None, error: str | None = None) -> bool:
        """Record a run's end, only if it is still `running`; False if it was
        already final. A run marked interrupted when it was replaced keeps
        that status but gets its real end (when, and the exit code)."""

    def mark_interrupted(self, run_ids: Iterable[int], now: datetime, reason: str) -> list[int]:
        """End these runs as interrupted with `reason`, those still running;
        returns the ids that were."""

    def running(self, task_id: str | None = None) -> list[RunRecord]:
        """Runs still `running` (of one task, or all)."""

    def ended(self, run_ids: Sequence[int]) -> list[RunRecord]:
        """Of these runs, those no longer `running`: a runner asks about its
        own, which another node may have ended (replaced them)."""

    def get_run(self, run_id: int) -> RunRecord | None:
        """One run, or None."""

    def history(self, task_id: str | None = None, *, limit: int = 20,
                status: RunStatus | None = None) -> list[RunRecord]:
        """Runs, newest first."""

    def last_runs(self) -> dict[str, RunRecord]:
        """Each task's most recent run."""

    def latest_runs(self, task_ids: Sequence[str], *, ended: bool = False) -> dict[str, RunRecord]:
        """The most recent run of each of `task_ids` that has one; with
        `ended`, the most recent that is no longer running."""

    def known_task_ids(self, prefix: str) -> list[str]:
        """Ids starting with `prefix` that the store has seen, sorted."""

    def prune(self, task_id: str, keep: int) -> list[str]:
        """Delete all but the newest `keep` runs of a task (skipped fires
        counted apart); return the deleted runs' log paths. Running runs stay."""

    # -- the audit trail -------------------------------------------------------------

    def record_event(self, event: EventRecord, keep: int) -> int:
        """Append one control action to the audit trail and return its id; in
        the same transaction, delete all but the newest `keep` events of its
        task (events naming no task are counted apart, as one group)."""

    def events(self, *, task_id: str | None = None, since: datetime | None = None,
               limit: int = 50) -> list[EventRecord]:
        """Audit events, newest first: of one task, at or after `since`, at
        most `limit`."""

    # -- wake-ups and logs on a shared state ------------------------------------

    def control_listener(self) -> ControlListener | None:
        """A listener told of each committed `set_enabled` (on PostgreSQL a
        LISTEN on a connection of its own; `set_enabled` notifies in its
        transaction), connected; None on a state with one runner (SQLite),
        which polls `control_version` alone."""

    @property
    def stores_logs(self) -> bool:
        """True if run logs are kept in the state too (PostgreSQL: readable
        from every node), besides the running node's file."""

    def append_logs(self, chunks: Sequence[tuple[int, int, bytes]]) -> None:
        """Add (run_id, offset, bytes) pieces of running runs' logs, in one
        transaction; a piece already there (same run and offset) is kept, so
        a retry after a failure that may have committed is harmless."""

    def put_log(self, run_id: int, data: bytes) -> None:
        """Replace a run's stored log with its final (bounded) content, in
        one transaction. Deleted with the run (see `prune`)."""

    def read_log(self, run_id: int, offset: int = 0) -> tuple[bytes, bool] | None:
        """The stored log of a run from byte `offset`, and whether it is the
        final one (`put_log`) rather than pieces of a running run's; None
        if none is stored."""
    # -- alerts (hooks.py) -----------------------------------------------------

    def ended_before(self, task_id: str, run_id: int, *, node: str | None = None,
                     limit: int = 20) -> list[RunRecord]:
        """The task's runs older than `run_id` that ended (success, failed,
        timeout, interrupted: not skipped, not running), newest first, at
        most `limit`; with `node`, only those that node ran. On a shared
        state these are every node's: what decides a recovery there."""

    def record_hook_failure(self, failure: HookFailure) -> None:
        """Keep `failure` as its task's latest hook failure (replacing the previous)."""

    def hook_failures(self) -> dict[str, HookFailure]:
        """Each task's latest hook failure, by task id."""
