"""Pure fire-time arithmetic: parse schedule expressions, compute next fires.

Nothing here reads the clock: every function takes the instant it counts from.
The cron engine is cronsim, which follows cronie's DST rules; `next_fire` is
the one place that calls it, and it guards every answer so that a next fire
is always strictly after the instant it was computed from.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from jobctl.errors import BadExpressionError
from jobctl.model import (
    AtSchedule,
    CronSchedule,
    IntervalSchedule,
    RebootSchedule,
    Schedule,
)

UTC = timezone.utc

SHORTCUTS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

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


# -- cron fields ---------------------------------------------------------------

_FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day-of-month", 1, 31, ()),
    ("month", 1, 12, ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")),
    ("day-of-week", 0, 7, ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")),
)
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_MONTH_NAMES = ("January", "February", "March", "April", "May", "June", "July",
                "August", "September", "October", "November", "December")


class _FieldError(Exception):
    pass


def _field_value(token: str, lo: int, hi: int, names: tuple[str, ...]) -> int:
    upper = token.upper()
    if names and upper in names:
        return names.index(upper) + lo if lo == 1 else names.index(upper)
    if not token.isdigit():
        if upper in ("L", "W", "LW", "?") or upper.endswith("L") or "#" in upper or upper.endswith("W"):
            raise _FieldError(f"'{token}' is a Quartz extension that cron does not support")
        if names:
            raise _FieldError(
                f"'{token}' is not a number or a name ({', '.join(n.lower() for n in names)})"
            )
        raise _FieldError(f"'{token}' is not a number")
    value = int(token)
    if not lo <= value <= hi:
        raise _FieldError(f"{value} is out of range {lo}-{hi}")
    return value


def _parse_field(text: str, lo: int, hi: int, names: tuple[str, ...]) -> set[int]:
    values: set[int] = set()
    if text == "":
        raise _FieldError("is empty")
    for item in text.split(","):
        if item == "":
            raise _FieldError(f"'{text}' has an empty list item")
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit():
                raise _FieldError(f"step '{step_text}' in '{item}' is not a whole number")
            step = int(step_text)
            if step == 0:
                raise _FieldError(f"step 0 in '{item}' never advances")
            if step > hi - lo + 1:
                raise _FieldError(f"step {step} in '{item}' is larger than the range {lo}-{hi}")
        if base == "*":
            start, end = lo, hi
        elif "-" in base:
            a, _, b = base.partition("-")
            start = _field_value(a, lo, hi, names)
            end = _field_value(b, lo, hi, names)
            if end < start:
                raise _FieldError(f"range '{base}' runs backwards; write it as a list")
        else:
            start = _field_value(base, lo, hi, names)
            # "5/15" means 5-max/15, as in cronsim and most cron dialects
            end = hi if slash else start
        values.update(range(start, end + 1, step))
    return values


def parse_cron(text: str) -> CronSchedule:
    """Validate a 5-field cron expression or @shortcut and return its schedule.

    Raises BadExpressionError naming the field and the reason.
    """
    stripped = " ".join(text.split())
    expr = SHORTCUTS.get(stripped.lower(), stripped)
    if stripped.startswith("@") and stripped.lower() not in SHORTCUTS:
        raise BadExpressionError(
            text,
            f"unknown shortcut '{stripped}'; known: {', '.join(SHORTCUTS)}, @reboot",
        )
    parts = expr.split()
    if len(parts) in (6, 7):
        raise BadExpressionError(
            text,
            f"{len(parts)} fields: jobctl reads 5-field cron (minute hour day-of-month month "
            "day-of-week); tools differ on what a seconds or year field means, so for "
            "sub-minute schedules use an interval like '30s' or 'every 15s'",
        )
    if len(parts) != 5:
        raise BadExpressionError(
            text,
            f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(parts)}",
        )
    sets: list[set[int]] = []
    for part, (name, lo, hi, names) in zip(parts, _FIELDS):
        try:
            sets.append(_parse_field(part, lo, hi, names))
        except _FieldError as e:
            raise BadExpressionError(text, f"bad {name} field '{part}': {e}") from None
    dom_text, dow_text = parts[2], parts[4]
    if dow_text.startswith("*") and not dom_text.startswith("*"):
        longest = max(_DAYS_IN_MONTH[m - 1] for m in sets[3])
        if min(sets[2]) > longest:
            months = ", ".join(_MONTH_NAMES[m - 1] for m in sorted(sets[3]))
            raise BadExpressionError(
                text, f"bad day-of-month field '{dom_text}': no day {min(sets[2])} in {months}, so it never fires"
            )
    minute, hour = parts[0], parts[1]
    fixed = not any(c in f for f in (minute, hour) for c in "*/")
    return CronSchedule(text=text, expr=expr.upper(), fixed_time=fixed)


@lru_cache(maxsize=4096)
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
        return localize(dt, tz)
    if not isinstance(dt.tzinfo, (timezone, ZoneInfo)):
        # a TOML parser's own fixed-offset class (rtoml): use the stdlib's
        offset = dt.utcoffset()
        assert offset is not None
        dt = dt.replace(tzinfo=timezone(offset))
    return dt


# -- next fires ---------------------------------------------------------------


@lru_cache(maxsize=4096)
def _compile(expr: str) -> tuple[list[str], list[set[int]], bool]:
    parts = expr.upper().split()
    sets = [_parse_field(part, lo, hi, names) for part, (_n, lo, hi, names) in zip(parts, _FIELDS)]
    # cronie: if either day field starts with '*', both must match (AND)
    day_and = parts[2].startswith("*") or parts[4].startswith("*")
    return parts, sets, day_and


class _GuardedCronSim(CronSim):
    """cronsim, corrected in three places.

    - DST mode by our rule: cronsim treats a job as fixed-time when minute and
      hour do not start with '*'; we also treat a step (`0-59/15`) as a
      wildcard, as our docs say.
    - Field sets from our parser: cronsim reads `0-0/1` as `0/1` (0-59).
    - Wildcard jobs in zones whose DST shift is not a whole hour (Lord Howe,
      30 minutes): cronsim steps whole real hours and jumps straight to the
      target minute, which skips wall-clock times there.
    """

    def __init__(self, expr: str, dt: datetime, fixed_time: bool) -> None:
        # Set the state cronsim's __init__ would (cronsim 2.x), from sets
        # parsed once per expression, instead of re-parsing on every call.
        parts, sets, day_and = _compile(expr)
        self.skip_initial_tick = False
        self.tick_direction = 1
        self.dt = dt.replace(microsecond=0)
        self.parts = ["0", *parts]
        self.day_and = day_and
        self.seconds = {0}
        self.minutes, self.hours, self.days, self.months, self.weekdays = sets  # type: ignore[assignment]
        self.fixup_tz = None
        if fixed_time and self.dt.tzinfo not in (None, UTC):
            # cronie's fixed-time rule: work in naive wall-clock time
            self.fixup_tz = self.dt.tzinfo
            self.dt = self.dt.replace(tzinfo=None)

    def _odd_shift_near(self, back: float, ahead: float) -> bool:
        """True if, in wildcard mode, a DST shift that is not a whole hour
        falls within [dt - back, dt + ahead]: there cronsim's stepping is off."""
        if self.fixup_tz is not None or self.dt.tzinfo in (None, UTC):
            return False
        tz = self.dt.tzinfo
        real = self.dt.astimezone(UTC)
        a = (real - timedelta(seconds=back)).astimezone(tz).utcoffset()
        b = (real + timedelta(seconds=ahead)).astimezone(tz).utcoffset()
        return a is not None and b is not None and (b - a).total_seconds() % 3600 != 0

    def advance_hour(self) -> bool:
        if self.dt.hour in self.hours or not self._odd_shift_near(3600, 26 * 3600):
            return super().advance_hour()
        # step real time from one wall-clock hour boundary to the next
        day = self.dt.date()
        while self.dt.hour not in self.hours and self.dt.date() == day:
            self.tick(seconds=(60 - self.dt.minute) * 60 - self.dt.second)
        return True

    def advance_minute(self) -> bool:
        if self.dt.minute in self.minutes or not self._odd_shift_near(60, 3600):
            return super().advance_minute()
        # walk real minutes: wall minutes repeat or vanish here
        self.dt = self.dt.replace(second=0)
        hour = self.dt.hour
        while self.dt.minute not in self.minutes:
            self.tick(seconds=60)
            if self.dt.minute == 0 or self.dt.hour != hour:
                break
        return True


@lru_cache(maxsize=65536)
def _next_cron(expr: str, fixed_time: bool, tz: ZoneInfo, after_utc: datetime) -> datetime | None:
    start = after_utc.astimezone(tz)
    try:
        it = _GuardedCronSim(expr, start, fixed_time)
        # cronsim may answer at or before `start` (a fixed-time job asked from
        # inside a repeated hour); the first answer after it is the true one.
        # cronsim itself gives up after 50 years (StopIteration)
        while True:
            fire = next(it)
            # compare in UTC: aware datetimes sharing a tzinfo compare by wall
            # time, ignoring fold, so 01:00 EST would not count as after 01:45 EDT
            if fire.astimezone(UTC) > after_utc:
                return fire
    except (StopIteration, CronSimError):
        return None


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
        return _next_cron(schedule.expr, schedule.fixed_time, tz, after.astimezone(UTC))
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
    _parts, sets, _day_and = _compile(schedule.expr)
    minutes, hours = sets[0], sets[1]
    times = sorted(h * 60 + m for h in hours for m in minutes)
    gaps = [b - a for a, b in zip(times, times[1:])]
    gaps.append(times[0] + 1440 - times[-1])  # last fire of a day to the first of the next
    return float(min(gaps) * 60)
