"""What the state store holds and says, for every backend: records of runs
and of the lease, the outcome of a claim, and the store's errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from jobctl.errors import EXIT_BUSY, JobctlError
from jobctl.model import Concurrency, RunStatus, Scope, Trigger

UTC = timezone.utc


class StoreError(JobctlError):
    """The state cannot be used (not a jobctl database, unreadable, unreachable).
    `path` is a file, or a database URL shown without its password."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = path
        what = "state" if isinstance(path, str) else "state file"
        super().__init__(f"{what} {path}: {reason}")


class StoreBusyError(StoreError):
    exit_code = EXIT_BUSY

    def __init__(self, path: Path | str) -> None:
        super().__init__(path, "locked by another process for too long; try again")


class LeaseHeldError(JobctlError):
    """Another live runner holds the lease on this state file."""

    exit_code = EXIT_BUSY

    def __init__(self, lease: Lease, path: Path | str) -> None:
        self.lease = lease
        super().__init__(
            f"a runner is already running on {path} (pid {lease.pid} on host {lease.host}, "
            f"since {lease.started_at.isoformat()})"
        )


def to_text(dt: datetime | None) -> str | None:
    """Instants are stored as fixed-width UTC ISO text, so they sort as text."""
    if dt is None:
        return None
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")


def from_text(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


class NodeHeldError(JobctlError):
    """Another live runner holds the lease of this node name on a shared state."""

    exit_code = EXIT_BUSY

    def __init__(self, node: NodeRecord, path: Path | str) -> None:
        self.node = node
        super().__init__(
            f"node '{node.name}' is already running on {path} (pid {node.pid} on host "
            f"{node.host}, since {node.started_at.isoformat()}); give this runner another "
            "name with --node, JOBCTL_NODE or [jobctl] node"
        )


class LeaseLostError(StoreError):
    """This node's lease expired or was taken over: its writes are refused (fencing)."""

    def __init__(self, path: Path | str, node: str) -> None:
        super().__init__(path, f"node '{node}' no longer holds its lease (expired or taken "
                               "over): refused")


@dataclass(frozen=True)
class Owner:
    """A process that owns runs or the lease: enough to tell if it is alive.
    `node` and `epoch` label it (the node name its runs record, the node
    lease it holds on a shared state) and take no part in comparisons."""

    pid: int
    host: str
    boot_id: str = ""
    start: str | None = None
    node: str = field(default="", compare=False)
    epoch: int = field(default=0, compare=False)

    @property
    def node_name(self) -> str:
        """The node its runs record: the node name, else the host name."""
        return self.node or self.host


@dataclass(frozen=True)
class NodeRecord:
    """One node's lease on a shared (PostgreSQL) state. Times are the
    database's clock; `alive` is judged by it too (heartbeat younger than the
    node's lease length, as the node itself set it)."""

    name: str
    host: str
    pid: int
    boot_id: str
    proc_start: str | None
    started_at: datetime
    heartbeat_at: datetime
    expires_at: datetime
    epoch: int
    alive: bool
    db_now: datetime

    @property
    def owner(self) -> Owner:
        return Owner(self.pid, self.host, self.boot_id, self.proc_start, self.name, self.epoch)


@dataclass(frozen=True)
class Lease:
    """The live runner's claim on a state file."""

    pid: int
    host: str
    boot_id: str
    proc_start: str | None
    started_at: datetime
    heartbeat_at: datetime
    anchor: datetime

    @property
    def owner(self) -> Owner:
        return Owner(self.pid, self.host, self.boot_id, self.proc_start)


@dataclass(frozen=True)
class RunRecord:
    """One row of run history."""

    id: int
    task_id: str
    trigger: Trigger
    status: RunStatus
    attempt: int
    scheduled_for: datetime | None
    started_at: datetime
    finished_at: datetime | None
    exit_code: int | None
    error: str | None
    pid: int | None
    proc_start: str | None
    boot_id: str | None
    host: str
    owner: Owner
    log_path: str | None
    node: str = ""
    """The node that ran it (its runner's, or run-now's, node name; the host
    name for runs recorded before nodes had names)."""

    @property
    def duration_s(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class HookFailure:
    """The latest hook, webhook or ping failure of a task (for `jobctl status`)."""

    task_id: str
    run_id: int | None
    at: datetime
    message: str


@dataclass(frozen=True)
class ClaimRequest:
    """One run to claim (see `SqliteStore.claim`)."""

    task_id: str
    trigger: Trigger
    scheduled_for: datetime | None
    concurrency: Concurrency
    force: bool = False
    scope: Scope = Scope.NODE
    """On a shared state: NODE slots are unique per node, CLUSTER slots per
    cluster (and `forbid` looks at runs on every node)."""
    attempt: int = 1
    """1 for a fire, 2, 3, ... for its retries: a scheduled slot fires at
    most once per attempt."""


@dataclass(frozen=True)
class Claim:
    """The outcome of asking to start a run (see `SqliteStore.claim`)."""

    outcome: str
    """'started', 'skipped' (recorded as a skipped run), 'refused' (nothing
    recorded: run-now under forbid), 'duplicate' (the slot already fired), or
    'early' (nothing recorded: on a shared state, the slot is not yet due by
    the database's clock; the caller tries again later)."""
    run_id: int | None = None
    blocking: tuple[RunRecord, ...] = ()
    """The running runs that caused a skip or refusal, or that were replaced."""
    replaced: tuple[RunRecord, ...] = field(default=())


@dataclass(frozen=True)
class EventRecord:
    """One control action of the audit trail: when, who, what, and how it
    ended. `id` is 0 until the store gives it one."""

    at: datetime
    action: str
    """`run-now`, `enable`, `disable`, `init`, `add`, `set`, `remove`, `edit`,
    `import`, `runner.start`, `runner.stop`, `runner.reload`, `jobs.run`,
    `jobs.set_status`."""
    outcome: str
    """`ok`, `failed` or `refused`."""
    uid: int
    user: str
    host: str
    node: str
    task_id: str | None = None
    detail: str = ""
    """What was done or why it did not happen, in words."""
    id: int = 0
