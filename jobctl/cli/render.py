"""Turning core data into text: times, schedules, tables and JSON objects."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jobctl.model import Alerts, AtSchedule, HookCommand, IntervalSchedule, RebootSchedule, Task
from jobctl.timing import format_duration


STATUS_STYLE = {
    "running": "cyan",
    "success": "green",
    "failed": "red",
    "timeout": "red",
    "skipped": "yellow",
    "interrupted": "magenta",
}


_FORCED_TTY: bool | None = None


def force_terminal(value: bool | None) -> None:
    """Make every stream count as a terminal (True) or not (False), or ask
    the stream again (None). Set from `Services.tty` at each command."""
    global _FORCED_TTY
    _FORCED_TTY = value


def is_terminal(stream: Any) -> bool:
    """Whether text written to `stream` reaches a terminal: the one place the
    CLI decides it (tests force it through `Services(tty=...)`)."""
    if _FORCED_TTY is not None:
        return _FORCED_TTY
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


_CONTROL: Any = None


def escape_control(text: str) -> str:
    """Control characters other than newline and tab as escapes (ESC as
    `\\x1b`), so that text from a config, a plugin or a job's output cannot
    drive the terminal (set its title, clear it, move the cursor)."""
    global _CONTROL
    if _CONTROL is None:
        import re

        _CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
    escaped: str = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    return escaped


def shown(text: str, stream: Any) -> str:
    """`text` as it may be written to `stream`: escaped on a terminal, as it
    is elsewhere (a pipe or a file gets the bytes it was given)."""
    return escape_control(text) if is_terminal(stream) else text


def console(stderr: bool = False):  # type: ignore[no-untyped-def]
    """A rich console; off a terminal, as wide as the content needs
    (rich would otherwise wrap tables at 80 columns in pipes and files)."""
    import os
    import sys

    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None
    terminal = is_terminal(stream)
    if not terminal:
        width = int(os.environ.get("COLUMNS", "0") or 0) or 1000
    return Console(file=stream, width=width, force_terminal=terminal)


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


def jitter_note(task: Task, start: datetime, slot: datetime) -> str:
    """' (jitter +2m13s)' for a jittered task's start; '' otherwise."""
    if not task.jitter:
        return ""
    from jobctl.timing import format_duration

    offset = (start - slot).total_seconds()
    return f" (jitter +{format_duration(offset) if offset else '0s'})"


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
            # the file's path, not its values: an env file holds secrets
            "env_file": task.env_file,
            "user": task.user.name if task.user is not None else None,
            "timeout": task.timeout,
            "concurrency": task.concurrency.value,
            "catch_up": task.catch_up.value,
            "priority": task.priority,
            "scope": task.scope.value,
            "retries": task.retries,
            "retry_delay": task.retry_delay,
            "retry_max_delay": task.retry_max_delay,
            "jitter": task.jitter or None,
            **_alerts_detail(task),
            "source": str(task.origin) if task.origin else None,
            "callable": task.callable,
            "payload": dict(task.payload) if task.payload is not None else None,
            "next_runs": [iso(d) for d in next_runs],
        }
    )
    return out


def _alerts_detail(task: Task) -> dict[str, Any]:
    alerts = task.alerts or Alerts()

    def hook(command: HookCommand | None) -> str | list[str] | None:
        return list(command) if isinstance(command, tuple) else command

    return {
        "on_failure": hook(alerts.on_failure),
        "on_success": hook(alerts.on_success),
        "on_recovery": hook(alerts.on_recovery),
        "notify": alerts.notify.value,
        "webhook": alerts.webhook,
        "webhook_events": sorted(alerts.webhook_events),
        "hook_timeout": alerts.hook_timeout,
        "ping_url": alerts.ping_url,
    }


def compact_time(dt: datetime, now: datetime) -> str:
    """A short absolute time in dt's own zone: '14:05' today, 'Jun 17 14:05'
    this year, '2027-01-01 00:00' otherwise (seconds only when not :00)."""
    clock = dt.strftime("%H:%M" if dt.second == 0 else "%H:%M:%S")
    local_now = now.astimezone(dt.tzinfo) if dt.tzinfo is not None else now
    if dt.date() == local_now.date():
        return clock
    if dt.year == local_now.year:
        return f"{dt:%b} {dt.day:2d} {clock}".replace("  ", " ")
    return f"{dt:%Y-%m-%d} {clock}"


def when(dt: datetime, now: datetime) -> str:
    """'in 4m 10s (14:05)': relative, then compact absolute."""
    return f"{relative(dt, now)} ({compact_time(dt, now)})"


def signal_name(code: int | None) -> str | None:
    """The signal that ended a process, from its exit code (-15: SIGTERM)."""
    if code is None or code >= 0:
        return None
    import signal

    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def exit_fields(code: int | None) -> dict[str, Any]:
    """`exit_code` and `signal` for JSON: a run ended by a signal has a null
    exit code and the signal's name."""
    name = signal_name(code)
    return {"exit_code": None if name else code, "signal": name}


def exit_text(code: int | None) -> str:
    """How a process ended, in words: 'exit code 3', 'killed by SIGTERM'."""
    if code is None:
        return "-"
    name = signal_name(code)
    return f"killed by {name}" if name else f"exit code {code}"


class Column:
    """A column of a table that fits the terminal. `flex` columns (free text)
    are cut with an ellipsis; the others (ids, statuses, times) are never cut
    or wrapped. Columns with a `drop` rank go first, highest first, when even
    that does not fit."""

    __slots__ = ("header", "flex", "drop", "right", "keep_end", "squeeze")

    def __init__(self, header: str, *, flex: bool = False, drop: int = 0,
                 right: bool = False, keep_end: bool = False, squeeze: bool = False) -> None:
        self.header = header
        self.flex = flex
        # cut with an ellipsis, as a last resort, when nothing else is left to
        # give (a task id in history, where the run id is the key)
        self.squeeze = squeeze
        self.drop = drop
        self.right = right
        self.keep_end = keep_end  # a path: cut its start, keep the file name


FLEX_MIN = 16
GAP = 2


def cell(value: object, style: str = "", *, terminal: bool) -> Any:
    """A one-line table cell holding `value` literally (no rich markup; on a
    terminal, control characters escaped)."""
    from rich.text import Text

    text = "" if value is None else str(value)
    text = text.replace("\r\n", "\\n").replace("\n", "\\n").replace("\t", " ")
    return Text(escape_control(text) if terminal else text, style=style)


def time_cell(dt: datetime, now: datetime, *, terminal: bool) -> tuple[Any, Any]:
    """A time for a table: 'in 4m 10s (14:05)', or 'in 4m 10s' where that does not fit."""
    return cell(when(dt, now), terminal=terminal), cell(relative(dt, now), terminal=terminal)


def fit_table(columns: list[Column], rows: list[list[Any]], width: int,
              header: bool = True) -> list[Any]:
    """The lines (rich Text) of a table at most `width` cells wide when it can
    be, without trailing spaces. A cell may be a pair (full, short): the short
    forms (a time without its absolute part) are used when, with every
    droppable column gone, the full ones still do not fit."""
    from rich.text import Text

    n = len(columns)

    def as_text(c: Any) -> Any:
        return c if isinstance(c, Text) else Text(str(c))

    full = [[as_text(c[0] if isinstance(c, tuple) else c) for c in row] for row in rows]
    short = [[as_text(c[1] if isinstance(c, tuple) else c) for c in row] for row in rows]
    keep = list(range(n))

    flex = [c.flex for c in columns]

    def sizes(cells: list[list[Any]]) -> tuple[list[int], list[int]]:
        natural = [max([len(columns[i].header) if header else 0] + [r[i].cell_len for r in cells])
                   for i in range(n)]
        least = [min(natural[i], max(len(columns[i].header), FLEX_MIN)) if flex[i]
                 else natural[i] for i in range(n)]
        return natural, least

    cells = full
    natural, least = sizes(cells)

    def need() -> int:
        return sum(least[i] for i in keep) + GAP * (len(keep) - 1)

    for i in sorted((i for i in range(n) if columns[i].drop), key=lambda i: -columns[i].drop):
        if need() <= width:
            break
        keep.remove(i)
    if need() > width:
        cells = short
        natural, least = sizes(cells)
    if need() > width:
        flex = [c.flex or c.squeeze for c in columns]
        natural, least = sizes(cells)
    widths = {i: least[i] for i in keep}
    spare = width - need()
    growing = [i for i in keep if flex[i] and widths[i] < natural[i]]
    while spare > 0 and growing:
        share = max(1, spare // len(growing))
        for i in list(growing):
            grow = min(share, natural[i] - widths[i], spare)
            widths[i] += grow
            spare -= grow
            if widths[i] >= natural[i]:
                growing.remove(i)
            if spare <= 0:
                break
    lines = []
    head = [Text(c.header, style="bold") for c in columns]
    for row in ([head] if header else []) + cells:
        line = Text()
        for k, i in enumerate(keep):
            text = row[i].copy()
            if text.cell_len > widths[i]:
                if columns[i].keep_end and len(text) == text.cell_len:
                    text = Text("…") + text[len(text) - widths[i] + 1:]
                else:
                    text.truncate(widths[i], overflow="ellipsis")
            pad = widths[i] - text.cell_len
            if columns[i].right:
                line.append(" " * pad)
                line.append_text(text)
            else:
                line.append_text(text)
                line.append(" " * pad)
            if k < len(keep) - 1:
                line.append(" " * GAP)
        line.rstrip()
        lines.append(line)
    return lines


def print_table(columns: list[Column], rows: list[list[Any]], header: bool = True,
                indent: int = 0) -> None:
    """Print a table fitted to stdout's width (a pipe: $COLUMNS, else no limit)."""
    out = console()
    for line in fit_table(columns, rows, out.width - indent, header):
        if indent:
            line.pad_left(indent)
        out.print(line, soft_wrap=True)


def print_rich(renderable: Any) -> None:
    """Print a rich renderable; in a pipe, without the spaces rich pads lines with."""
    import sys

    out = console()
    if is_terminal(sys.stdout):
        out.print(renderable)
        return
    with out.capture() as captured:
        out.print(renderable)
    sys.stdout.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))
    sys.stdout.flush()
