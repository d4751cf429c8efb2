"""Pure fire-time arithmetic: parse schedule expressions, compute next fires.

Nothing here reads the clock: every function takes the instant it counts from.
The cron engine is jobctl.cron (cronie's DST rules, exact in every zone);
`next_fire` is the one place that calls it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jobctl import cron
from jobctl.cron import SHORTCUTS
from jobctl.errors import BadExpressionError
from jobctl.model import (
    AtSchedule,
    CronSchedule,
    IntervalSchedule,
    RebootSchedule,
    Schedule,
    Scope,
    Task,
)

UTC = timezone.utc

_DURATION_RE = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_UNIT_SECONDS = (86400, 3600, 60, 1)


# -- durations and intervals -------------------------------------------------


def parse_duration(value: object) -> float:
    """Read `"90s"`, `"5m"`, `"1h30m"`, `"2d"` or a number of seconds.

    Raises ValueError with a plain-words reason.
    """
    if isinstance(value, bool):
        raise ValueError("expected a duration like '90s', '5m', '1h30m' or a number of seconds")
    if isinstance(value, (int, float)):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("a duration must be a finite number of seconds")
        if value <= 0:
            raise ValueError(f"a duration must be positive, got {value}")
        return float(value)
    if not isinstance(value, str):
        raise ValueError("expected a duration like '90s', '5m', '1h30m' or a number of seconds")
    text = value.strip().lower()
    m = _DURATION_RE.fullmatch(text)
    if not text or m is None or not any(m.groups()):
        raise ValueError(
            f"'{value}' is not a duration: use whole amounts of d, h, m, s in that order, "
            "like '90s', '5m', '1h30m', '2d'"
        )
    seconds = sum(int(g) * unit for g, unit in zip(m.groups(), _UNIT_SECONDS) if g)
    if seconds <= 0:
        raise ValueError(f"'{value}' is zero; a duration must be positive")
    return float(seconds)


def format_duration(seconds: float) -> str:
    """The inverse of parse_duration for whole seconds: 5400 -> '1h30m'."""
    if seconds != int(seconds):
        return f"{seconds:g}s"
    rest = int(seconds)
    out = ""
    for unit, size in zip("dhms", _UNIT_SECONDS):
        amount, rest = divmod(rest, size)
        if amount:
            out += f"{amount}{unit}"
    return out or "0s"


# -- cron ---------------------------------------------------------------------


def parse_cron(text: str) -> CronSchedule:
    """Validate a 5-field cron expression or @shortcut and return its schedule.

    Raises BadExpressionError naming the field and the reason.
    """
    expr, pattern = cron.parse_cron_fields(text)
    return CronSchedule(text=text, expr=expr, fixed_time=pattern.fixed)


@lru_cache(maxsize=65536)
def parse_schedule(text: str) -> Schedule:
    """Read a `schedule` value: cron, @shortcut, @reboot or an interval.

    Cached: configs repeat a few expressions across many tasks.
    """
    stripped = text.strip()
    if stripped.lower() == "@reboot":
        return RebootSchedule(text=stripped)
    lowered = stripped.lower()
    interval_text = lowered[len("every"):].strip() if lowered.startswith("every") else None
    if interval_text is not None or (len(stripped.split()) == 1 and not stripped.startswith("@")):
        candidate = interval_text if interval_text is not None else lowered
        try:
            seconds = parse_duration(candidate)
        except ValueError as e:
            if interval_text is not None:
                raise BadExpressionError(text, str(e)) from None
            raise BadExpressionError(
                text,
                "not a cron expression (5 fields), an @shortcut, or an interval like "
                f"'30s', 'every 5m', '1h30m' ({e})",
            ) from None
        return IntervalSchedule(text=stripped, seconds=seconds)
    if lowered.startswith("@") and lowered.lstrip("@ ").startswith("every"):
        # supercronic's and Go cron's `@every 5m`
        unprefixed = stripped.lstrip("@ ")
        try:
            parse_schedule(unprefixed)
        except BadExpressionError:
            pass
        else:
            raise BadExpressionError(
                text, f"unknown shortcut '{stripped}'; an interval is written without '@': "
                      f"did you mean '{unprefixed}'?")
    return parse_cron(stripped)


# -- zones and timestamps ------------------------------------------------------


@lru_cache(maxsize=1024)
def load_zone(name: str) -> ZoneInfo:
    """The IANA zone called `name`; ValueError with a suggestion if unknown."""
    try:
        if not name or name.startswith(("/", ".")) or ".." in name:
            raise ValueError
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        import difflib
        import zoneinfo

        zones = sorted(zoneinfo.available_timezones())
        same = [z for z in zones if z.lower() == name.lower()]  # zone names are case-sensitive
        close = same or difflib.get_close_matches(name, zones, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ValueError(f"unknown time zone '{name}'{hint}") from None


def is_real(wall: datetime) -> bool:
    """False for a wall time that a spring-forward gap skips."""
    return wall.astimezone(UTC).astimezone(wall.tzinfo).replace(tzinfo=None) == wall.replace(tzinfo=None)


def localize(naive: datetime, tz: ZoneInfo) -> datetime:
    """Read a wall-clock time in `tz` as cron does: a time in a fall-back
    repeat is its first occurrence; a time in a spring-forward gap becomes the
    first instant after the gap."""
    wall = naive.replace(tzinfo=tz, fold=0)
    step = timedelta(minutes=1)
    probe = wall.replace(second=0, microsecond=0)
    if is_real(wall):
        return wall
    while not is_real(probe):
        probe = (probe.replace(tzinfo=None) + step).replace(tzinfo=tz, fold=0)
    return probe


def parse_at(value: object, tz: ZoneInfo) -> datetime:
    """Read an `at` value: RFC 3339, or a local ISO timestamp in `tz`."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        raise ValueError(f"'{value}' has no time of day; write e.g. '{value}T09:00:00'")
    elif isinstance(value, str):
        try:
            # RFC 3339 allows a lowercase t and z
            dt = datetime.fromisoformat(value.strip().upper())
        except ValueError:
            raise ValueError(
                f"'{value}' is not a timestamp; use RFC 3339 like '2026-12-24T18:00:00Z' "
                "or a local time like '2026-12-24 18:00'"
            ) from None
    else:
        raise ValueError("expected a timestamp string like '2026-12-24T18:00:00Z'")
    if dt.tzinfo is None:
        try:
            return localize(dt, tz)
        except OverflowError:
            raise ValueError(
                f"'{value}' read in {tz.key} falls outside the years 1 to 9999 UTC that "
                "jobctl can count in; give an offset or a time further from the ends"
            ) from None
    if not isinstance(dt.tzinfo, (timezone, ZoneInfo)):
        # a TOML parser's own fixed-offset class (rtoml): use the stdlib's
        offset = dt.utcoffset()
        assert offset is not None
        dt = dt.replace(tzinfo=timezone(offset))
    return dt


# -- next fires ---------------------------------------------------------------


@lru_cache(maxsize=65536)
def _next_cron(expr: str, tz: ZoneInfo, after_utc: datetime) -> datetime | None:
    return cron.next_fire(expr, tz, after_utc)


def next_fire(
    schedule: Schedule,
    tz: ZoneInfo,
    after: datetime,
    anchor: datetime | None = None,
) -> datetime | None:
    """The first fire strictly after `after` (aware), in `tz`; None if none.

    `anchor` is the start instant interval schedules count from (the runner's
    start); without one they count from `after`. `@reboot` has no fire time.
    """
    if after.tzinfo is None:
        raise ValueError("next_fire needs an aware datetime")
    try:
        return _next_fire(schedule, tz, after.astimezone(UTC), anchor)
    except OverflowError:
        return None  # past year 9999, where datetime ends: no more fires


def _next_fire(schedule: Schedule, tz: ZoneInfo, after: datetime,
               anchor: datetime | None) -> datetime | None:
    if isinstance(schedule, CronSchedule):
        return _next_cron(schedule.expr, tz, after.astimezone(UTC))
    if isinstance(schedule, IntervalSchedule):
        # without a runner's start, count from the whole second of `after`
        base = after.replace(microsecond=0) if anchor is None else anchor.astimezone(UTC)
        step = timedelta(seconds=schedule.seconds)
        if base > after:
            return (base + step).astimezone(tz)
        # smallest k >= 1 with base + k*step > after
        k = max(1, int((after - base) / step) + 1)
        fire = base + k * step
        while fire <= after:
            fire += step
        return fire.astimezone(tz)
    if isinstance(schedule, AtSchedule):
        at = schedule.at.astimezone(UTC)
        return at.astimezone(tz) if at > after else None
    return None


def fire_times(
    schedule: Schedule,
    tz: ZoneInfo,
    after: datetime,
    count: int,
    anchor: datetime | None = None,
) -> list[datetime]:
    """The next `count` fires after `after` (fewer if the schedule ends)."""
    out: list[datetime] = []
    if count <= 0:
        return out
    for fire in iter_fires(schedule, tz, after, anchor):
        out.append(fire)
        if len(out) >= count:
            break
    return out


def iter_fires(
    schedule: Schedule, tz: ZoneInfo, after: datetime, anchor: datetime | None = None
) -> Iterator[datetime]:
    """Successive fires strictly after `after`; ends when the schedule does."""
    if isinstance(schedule, IntervalSchedule) and anchor is None:
        anchor = after.replace(microsecond=0)
    current = after
    while True:
        fire = next_fire(schedule, tz, current, anchor)
        if fire is None:
            return
        yield fire
        current = fire


def missed_fires(
    schedule: Schedule, tz: ZoneInfo, since: datetime, until: datetime, limit: int
) -> list[datetime]:
    """The latest `limit` fires in (since, until], oldest first.

    Looks back from `until` in growing windows, so a long downtime of a
    frequent task costs about `limit` fire computations, not one per fire.
    """
    since_utc, until_utc = since.astimezone(UTC), until.astimezone(UTC)
    if until_utc <= since_utc or isinstance(schedule, (IntervalSchedule, RebootSchedule)):
        return []
    window = timedelta(hours=1)
    while True:
        start = max(since_utc, until_utc - window)
        fires: list[datetime] = []
        for fire in iter_fires(schedule, tz, start):
            if fire.astimezone(UTC) > until_utc:
                break
            fires.append(fire)
            if len(fires) > 4 * limit + 64:
                fires = fires[-limit:]
        if len(fires) >= limit or start == since_utc:
            return fires[-limit:]
        window *= 4


def next_fires(
    items: Iterable[tuple[Schedule, str]], after: datetime, anchor: datetime | None = None
) -> list[datetime | None]:
    """`next_fire` for many (schedule, zone name) pairs at one instant.

    Pairs that repeat (many tasks, few expressions) are computed once; the
    same datetime object is returned for each repeat.
    """
    seen: dict[tuple[int, str], datetime | None] = {}
    out: list[datetime | None] = []
    for schedule, zone_name in items:
        key = (id(schedule), zone_name)
        if key not in seen:
            seen[key] = next_fire(schedule, load_zone(zone_name), after, anchor)
        out.append(seen[key])
    return out


def min_gap_seconds(schedule: Schedule) -> float | None:
    """The shortest gap between two consecutive fires, or None for schedules
    that fire once (`at`, `@reboot`). For cron, from the minute and hour
    fields: the closest two times of day, counting across midnight."""
    if isinstance(schedule, IntervalSchedule):
        return schedule.seconds
    if not isinstance(schedule, CronSchedule):
        return None
    pattern = cron.compile_expression(schedule.expr)
    minutes, hours = pattern.minutes, pattern.hours
    times = sorted(h * 60 + m for h in hours for m in minutes)
    gaps = [b - a for a, b in zip(times, times[1:])]
    overnight = times[0] + 1440 - times[-1]  # last fire of a day to the first of the next
    every_day = (pattern.day_and and pattern.month_mask == _ALL_MONTHS
                 and pattern.dom_mask == _ALL_DOMS and pattern.dow_mask == _ALL_DOWS)
    if every_day or gaps and min(gaps) <= overnight:
        # fewer matching days would only lengthen the overnight gap
        return float(min([*gaps, overnight]) * 60)
    # the closest two matching days (`0 3 * * 0` fires weekly, `0 0 1 1 *`
    # yearly): scanned over 28 years, a whole cycle of weekdays and leap years
    days = _matching_days(pattern, date(2001, 1, 1).toordinal(), date(2029, 1, 1).toordinal())
    day_gap = min((b - a for a, b in zip(days, days[1:])), default=1)
    return float(min([*gaps, (day_gap - 1) * 1440 + overnight]) * 60)


_ALL_MONTHS = sum(1 << m for m in range(1, 13))
_ALL_DOMS = sum(1 << d for d in range(1, 32))
_ALL_DOWS = 0b1111111


def _matching_days(pattern: cron.CronPattern, first: int, end: int) -> list[int]:
    """The ordinals in [first, end) whose date the pattern's day fields match."""
    out = []
    for ordinal in range(first, end):
        day = date.fromordinal(ordinal)
        if not (pattern.month_mask >> day.month) & 1:
            continue
        dom = (pattern.dom_mask >> day.day) & 1
        dow = (pattern.dow_mask >> (ordinal % 7)) & 1  # ordinal 7 is a Sunday
        if (dom and dow) if pattern.day_and else (dom or dow):
            out.append(ordinal)
    return out


def stable_hash(text: str) -> int:
    """A 64-bit hash of `text`, the same in every process and on every
    machine (unlike Python's salted `hash()`): blake2b."""
    import hashlib

    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def jitter_offset(task_id: str, jitter: float, node: str | None = None) -> timedelta:
    """A task's fixed delay after each of its slots, in [0, jitter): from a
    stable hash (not Python's per-process `hash()`) of the task id, and of
    `node` for a task each node runs, so it is the same after every restart
    and on every machine, and tasks sharing a schedule spread out."""
    if jitter <= 0:
        return timedelta(0)
    key = task_id if node is None else f"{task_id}@{node}"
    # 53 bits: exactly representable, so the fraction stays below 1
    fraction = (stable_hash(key) >> 11) / 2.0 ** 53
    if jitter >= 1:
        # whole seconds: a cron slot plus its offset reads "03:02:13"
        return timedelta(seconds=int(fraction * jitter))
    return timedelta(milliseconds=int(fraction * jitter * 1000))


def task_jitter(task: Task, node: str | None) -> timedelta:
    """`jitter_offset` of a task on node `node` (used only for scope = "node")."""
    if not task.jitter:
        return timedelta(0)
    return jitter_offset(task.id, task.jitter, node if task.scope is Scope.NODE else None)


def next_starts(task: Task, after: datetime, count: int, anchor: datetime | None = None,
                node: str | None = None) -> list[tuple[datetime, datetime]]:
    """The task's next `count` (slot, start) pairs whose start, the slot plus
    its jitter offset, is after `after`."""
    offset = task_jitter(task, node)
    zone = load_zone(task.timezone)
    return [(slot, slot + offset)
            for slot in fire_times(task.schedule, zone, after - offset, count, anchor)]
