"""What the state store holds and says, for every backend: records of runs
and of the lease, the outcome of a claim, and the store's errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from jobctl.errors import EXIT_BUSY, JobctlError
from jobctl.model import Concurrency, RunStatus, Trigger

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


@dataclass(frozen=True)
class Owner:
    """A process that owns runs or the lease: enough to tell if it is alive."""

    pid: int
    host: str
    boot_id: str = ""
    start: str | None = None


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

    @property
    def duration_s(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class ClaimRequest:
    """One run to claim (see `SqliteStore.claim`)."""

    task_id: str
    trigger: Trigger
    scheduled_for: datetime | None
    concurrency: Concurrency
    force: bool = False


@dataclass(frozen=True)
class Claim:
    """The outcome of asking to start a run (see `SqliteStore.claim`)."""

    outcome: str
    """'started', 'skipped' (recorded as a skipped run), 'refused' (nothing
    recorded: run-now under forbid), or 'duplicate' (the slot already fired)."""
    run_id: int | None = None
    blocking: tuple[RunRecord, ...] = ()
    """The running runs that caused a skip or refusal, or that were replaced."""
    replaced: tuple[RunRecord, ...] = field(default=())
