"""Schedule foot-guns: warnings about valid configs that may not do what they look like.

Pure: `lint(schedule_set, now, locate)` looks only at the resolved tasks, the
instant the year of DST checks counts from, and `locate`, which says on which
line a task's key is written. Each warning is a `Problem` of severity
"warning", placed like a config error (file:line, task, key).

Also here: `explain`, a schedule said in words, and `problem_fields`, a
problem split into the located fields of `validate --json`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

from jobctl import cron
from jobctl.model import (
    AtSchedule,
    Concurrency,
    CronSchedule,
    IntervalSchedule,
    Origin,
    Problem,
    RebootSchedule,
    ScheduleSet,
    Task,
)

Locate = Callable[[Task, str], Origin]
"""Where `key` of a task is written: its line if written, else the task's table."""

_EPOCH = datetime(1970, 1, 1)
_YEAR = 366 * cron.DAY
# the fields whose steps wrap around, with the size of their cycle
_CYCLES = {0: ("minute", 60), 1: ("hour", 24), 2: ("day-of-month", 31), 3: ("month", 12),
           4: ("day-of-week", 7)}
_DAY_NAMES = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")


def source_locator() -> Locate:
    """A `Locate` that reads each task's file (once) to find the key's line."""
    from jobctl.config import KeyLines

    files: dict[Path, KeyLines] = {}

    def locate(task: Task, key: str) -> Origin:
        if task.origin is None:
            return Origin(Path("?"))
        lines = files.get(task.origin.path)
        if lines is None:
            lines = files[task.origin.path] = KeyLines(task.origin.path)
        return lines.origin(task.origin, key)

    return locate


def _table_of(task: Task, index: int) -> str:
    """The task's table as problems name it: `tasks[2] (backup)`, `jobs[0] (nightly)`."""
    if task.owner.startswith("plugin:"):
        return f"jobs[{index}] ({task.id.split(':', 1)[1]})"
    return f"tasks[{index}] ({task.id})"


def lint(schedule_set: ScheduleSet, now: datetime, locate: Locate) -> list[Problem]:
    """Every warning about the set's tasks, in file order.

    DST warnings look at the year (366 days) after `now`.
    """
    found: list[Problem] = []
    counters: dict[str, int] = {}
    for task in schedule_set.tasks:
        # a resolved config (or loaded manifest) has every table valid, so
        # its n-th task is its n-th table
        index = counters.get(task.owner, 0)
        counters[task.owner] = index + 1
        table = _table_of(task, index)
        for key, message in _task_warnings(task, now):
            if key == "timeout":
                # only a `forbid` written out: the default is forbid too, and
                # a warning on every task of every config would be noise
                where = locate(task, "concurrency")
                if task.origin is None or where.line == task.origin.line:
                    continue
            else:
                where = locate(task, key)
            found.append(Problem(where, message, f"{table}.{key}", "warning"))
    return found


def _task_warnings(task: Task, now: datetime) -> Iterator[tuple[str, str]]:
    schedule = task.schedule
    recurring = isinstance(schedule, (CronSchedule, IntervalSchedule))
    if recurring and task.concurrency is Concurrency.FORBID and task.timeout is None:
        yield ("timeout", "concurrency is 'forbid' and there is no timeout: a run "
                          "that hangs blocks this task for good (every later fire is skipped); "
                          "set a timeout, such as timeout = \"1h\"")
    if not isinstance(schedule, CronSchedule):
        return
    parts = schedule.expr.split()
    pattern = cron.compile_expression(schedule.expr)
    for message in _uneven_steps(parts):
        yield ("schedule", message)
    dom_set = not parts[2].startswith("*")
    dow_set = not parts[4].startswith("*")
    if dom_set and dow_set:
        days = _day_list(pattern.dow_mask)
        yield ("schedule", f"both day-of-month '{parts[2].lower()}' and day-of-week "
                           f"'{parts[4].lower()}' are restricted, so, as in cron, it runs on "
                           f"either: day {_list(sorted(_bits(pattern.dom_mask)))} of the month "
                           f"and every {days}, not only when both match")
    elif dom_set and pattern.dow_mask & 0x7F == 0x7F:
        rare = _rare(pattern)
        if rare:
            yield ("schedule", rare)
    if pattern.fixed:
        yield from (("schedule", m) for m in _dst(schedule.expr, pattern, task.timezone, now))


def _bits(mask: int) -> list[int]:
    return [i for i in range(mask.bit_length()) if (mask >> i) & 1]


def _list(values: list[int]) -> str:
    text = [str(v) for v in values]
    return text[0] if len(text) == 1 else f"{', '.join(text[:-1])} and {text[-1]}"


def _day_list(mask: int) -> str:
    names = [_DAY_NAMES[d] for d in _bits(mask & 0x7F)]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _uneven_steps(parts: list[str]) -> Iterator[str]:
    """A `*/N` or `M/N` step whose cycle does not come round evenly."""
    for index, (name, size) in _CYCLES.items():
        for item in parts[index].split(","):
            base, slash, step_text = item.partition("/")
            if not slash or "-" in base:
                continue  # an explicit range ends where the user said
            step = int(step_text)
            _, lo, hi, names = cron.FIELDS[index]
            values = sorted({v % size if index == 4 else v
                             for v in cron.parse_field(item, lo, hi, names)})
            wrap = size - values[-1] + values[0]
            if len(values) < 2 or wrap == step:
                continue
            last, first = _shown(index, values[-1]), _shown(index, values[0])
            unit = {0: "minute", 1: "hour", 2: "day", 3: "month", 4: "day"}[index]
            yield (f"{name} step '{item.lower()}' does not divide {size}: it fires {last} and "
                   f"again {first}, {wrap} {unit}{'s' if wrap != 1 else ''} later, not every "
                   f"{step} {unit}s")


def _shown(index: int, value: int) -> str:
    if index == 0:
        return f"at :{value:02d}"
    if index == 1:
        return f"at {value:02d}:00"
    if index == 2:
        return f"on day {value}"
    if index == 3:
        return f"in {cron.MONTH_NAMES[value - 1]}"
    return f"on {_DAY_NAMES[value % 7]}"


def _rare(pattern: cron.CronPattern) -> str | None:
    """A day of the month that some of its months lack (31, or 29 February)."""
    months = _bits(pattern.month_mask)
    days = _bits(pattern.dom_mask)
    looks = len(months) * len(days)
    # over a 4-year cycle, the matching dates that exist
    per_cycle = 0
    missing: set[int] = set()
    for month in months:
        for day in days:
            if day <= cron.DAYS_IN_MONTH[month - 1] - (1 if month == 2 else 0):
                per_cycle += 4
            elif month == 2 and day == 29:
                per_cycle += 1
            else:
                missing.add(month)
    if per_cycle == 4 * looks:
        return None
    per_year = per_cycle / 4
    count = f"{per_year:g} time{'s' if per_year != 1 else ''} a year"
    if per_year < 1:
        count = f"once every {4 / (per_cycle or 1):g} years"
    never = ", ".join(cron.MONTH_NAMES[m - 1] for m in sorted(missing))
    day_text = _list(days)
    looks_text = ("monthly" if len(months) == 12 and len(days) == 1 else
                  "yearly" if looks == 1 else f"{looks} times a year")
    return (f"day {day_text} of the month does not exist in every month it names: it fires "
            f"{count}, not {looks_text}" + (f" (never in {never})" if never else
                                             " (29 February: leap years only)"))


def _dst(expr: str, pattern: cron.CronPattern, zone_name: str, now: datetime) -> Iterator[str]:
    """The year's DST changes that skip or repeat one of a fixed-time task's times."""
    from jobctl.timing import load_zone

    zone = cron.timeline(load_zone(zone_name))
    start = int((now.astimezone(timezone.utc).replace(tzinfo=None) - _EPOCH).total_seconds())
    for instant, before, after in zone.changes(start, start + _YEAR):
        lo, hi = (instant + before, instant + after) if after > before else \
            (instant + after, instant + before)
        wall = pattern.next_wall(lo, hi)
        if wall is None:
            continue
        time = _clock(wall)
        day = f"{_wall(wall):%Y-%m-%d}"
        if after > before:
            yield (f"on {day} {time} does not exist in {zone_name} (the clocks jump from "
                   f"{_clock(lo)} to {_clock(hi)}): jobctl runs it once at {_clock(hi)}")
        else:
            yield (f"on {day} {time} happens twice in {zone_name} (the clocks go back from "
                   f"{_clock(hi)} to {_clock(lo)}): jobctl runs it once, at the first "
                   f"{time} (UTC{_offset(before)}), not again at UTC{_offset(after)}")


def _wall(seconds: int) -> datetime:
    return _EPOCH + timedelta(seconds=seconds)


def _clock(seconds: int) -> str:
    return f"{_wall(seconds):%H:%M}"


def _offset(seconds: int) -> str:
    sign = "+" if seconds >= 0 else "-"
    hours, rest = divmod(abs(seconds), 3600)
    return f"{sign}{hours:02d}:{rest // 60:02d}"


# -- in words ------------------------------------------------------------------


def explain(task_schedule: object) -> str | None:
    """A schedule in words ("At 02:30, Monday through Friday"); None if the
    describing library cannot say."""
    if isinstance(task_schedule, IntervalSchedule):
        from jobctl.timing import format_duration

        return (f"Every {format_duration(task_schedule.seconds)}, counted from the runner's "
                "start")
    if isinstance(task_schedule, RebootSchedule):
        return "Once each time the runner starts"
    if isinstance(task_schedule, AtSchedule):
        return f"Once, at {task_schedule.at.isoformat()}"
    if not isinstance(task_schedule, CronSchedule):
        return None
    # cron-descriptor: 50 ms to import, so only `show` and `next` load it
    try:
        from cron_descriptor import ExpressionDescriptor, Options  # type: ignore[import-untyped]

        options = Options()
        options.use_24hour_time_format = True
        options.verbose = False
        text: str = ExpressionDescriptor(task_schedule.expr, options).get_description()
    except Exception:  # noqa: BLE001 - words are a nicety; the times are what count
        return None
    return text


# -- located fields ------------------------------------------------------------

_WHERE_RE = re.compile(r"(?P<table>(?:tasks|jobs)\[\d+\])(?: \((?P<id>[^)]*)\))?(?:\.(?P<key>.+))?")


def problem_fields(problem: Problem, plugin: str | None = None) -> dict[str, object]:
    """A problem as `validate --json` shows it: severity, file, line, task, key,
    message. `task` is the task id (a plugin job's `PLUGIN:KEY`, given the
    plugin's id) and `key` the key inside it; a problem outside any named task
    has `task` null and `key` the dotted path from the top of the file
    (`jobctl.shell`, `tasks[2].id`); null where they do not apply."""
    task: str | None = None
    key: str | None = problem.where or None
    m = _WHERE_RE.fullmatch(problem.where)
    if m and m.group("id"):
        task = m.group("id")
        if m.group("table").startswith("jobs") and plugin:
            task = f"{plugin}:{task}"
        key = m.group("key")
    return {"severity": problem.severity, "file": str(problem.origin.path),
            "line": problem.origin.line or None, "task": task, "key": key,
            "message": problem.message}
