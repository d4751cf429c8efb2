"""Turning core data into text: times, schedules, tables and JSON objects."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jobctl.model import AtSchedule, IntervalSchedule, RebootSchedule, Task
from jobctl.timing import format_duration


STATUS_STYLE = {
    "running": "cyan",
    "success": "green",
    "failed": "red",
    "timeout": "red",
    "skipped": "yellow",
    "interrupted": "magenta",
}


def console(stderr: bool = False):  # type: ignore[no-untyped-def]
    """A rich console; off a terminal, as wide as the content needs
    (rich would otherwise wrap tables at 80 columns in pipes and files)."""
    import os
    import sys

    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None
    if not stream.isatty():
        width = int(os.environ.get("COLUMNS", "0") or 0) or 1000
    return Console(file=stream, width=width)


def iso(dt: datetime | None) -> str | None:
    """ISO 8601 with offset; microseconds only when there are some."""
    return None if dt is None else dt.isoformat()


def short_iso(dt: datetime) -> str:
    """ISO 8601 to the second, for tables."""
    return dt.replace(microsecond=0).isoformat()


def relative(dt: datetime, now: datetime) -> str:
    """'in 4m 10s', '2h 5m ago', 'now'."""
    seconds = (dt - now).total_seconds()
    future = seconds >= 0
    rest = int(abs(seconds))
    if rest == 0:
        return "now"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        amount, rest = divmod(rest, size)
        if amount:
            parts.append(f"{amount}{unit}")
        if len(parts) == 2:
            break
    text = " ".join(parts)
    return f"in {text}" if future else f"{text} ago"


def schedule_text(task: Task) -> str:
    schedule = task.schedule
    if isinstance(schedule, AtSchedule):
        return f"at {schedule.at.isoformat()}"
    if isinstance(schedule, IntervalSchedule):
        return f"every {format_duration(schedule.seconds)}"
    if isinstance(schedule, RebootSchedule):
        return "@reboot"
    return schedule.text


def schedule_kind(task: Task) -> str:
    schedule = task.schedule
    if isinstance(schedule, AtSchedule):
        return "at"
    if isinstance(schedule, IntervalSchedule):
        return "interval"
    if isinstance(schedule, RebootSchedule):
        return "reboot"
    return "cron"


_ISO_CACHE: dict[int, tuple[datetime, str]] = {}


def _iso_shared(dt: datetime | None) -> str | None:
    # many tasks share one next-fire datetime object: format each once
    if dt is None:
        return None
    hit = _ISO_CACHE.get(id(dt))
    if hit is None or hit[0] is not dt:
        hit = _ISO_CACHE[id(dt)] = (dt, dt.isoformat())
    return hit[1]


def task_summary(task: Task, next_run: datetime | None) -> dict[str, Any]:
    """The object `list --json` prints for one task."""
    return {
        "id": task.id,
        "name": task.name,
        "group": task.group,
        "description": task.description,
        "schedule": schedule_text(task),
        "timezone": task.timezone,
        "enabled": task.enabled,
        "next_run": _iso_shared(next_run),
        "owner": task.owner,
    }


def task_detail(task: Task, next_runs: list[datetime]) -> dict[str, Any]:
    """Every resolved field of a task, as `show --json` prints it."""
    out = task_summary(task, next_runs[0] if next_runs else None)
    out.update(
        {
            "schedule_kind": schedule_kind(task),
            "command": task.command,
            "argv": list(task.argv) if task.argv is not None else None,
            "cwd": task.cwd,
            "env": dict(task.env),
            "timeout": task.timeout,
            "concurrency": task.concurrency.value,
            "catch_up": task.catch_up.value,
            "priority": task.priority,
            "scope": task.scope.value,
            "source": str(task.origin) if task.origin else None,
            "callable": task.callable,
            "payload": dict(task.payload) if task.payload is not None else None,
            "next_runs": [iso(d) for d in next_runs],
        }
    )
    return out
