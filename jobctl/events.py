"""What the runner tells the output layer: `Event`, and the `Reporter` that
takes them (the CLI renders them as text, JSON lines or a live table)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from jobctl.model import RunStatus, Trigger


@dataclass(frozen=True)
class Event:
    """Something the runner did, for the output layer to render."""

    kind: str
    """ready, start, finish, skip, missed, reload, error, interrupted (a dead
    node's run, marked by this one), reconnected (the database is reachable
    again after an outage), stopping, stopped, hook_failed (a hook command,
    webhook delivery or ping that failed; see hooks.py), retry, metrics."""
    at: datetime
    task_id: str | None = None
    run_id: int | None = None
    trigger: Trigger | None = None
    scheduled_for: datetime | None = None
    status: RunStatus | None = None
    exit_code: int | None = None
    duration_s: float | None = None
    message: str = ""
    data: Mapping[str, object] = field(default_factory=dict)


Reporter = Callable[[Event], None]
