"""The cron engine: parse 5-field expressions, and find the next fire in a zone.

Pure: nothing here reads the clock; every search takes the instant it counts
from. Times are whole seconds on two axes:

* *real* seconds since the Unix epoch (UTC), where fires happen;
* *wall* seconds, `real + UTC offset`, where cron fields are matched.

A zone is a sequence of constant-offset stretches separated by transitions.
Inside a stretch wall and real time move together, so a fire is the first
matching wall minute of the stretch; at a transition the wall clock jumps.
The rules at a jump are cronie's, as the README states them:

* a task whose minute and hour fields are both fixed (no `*`, no `/`) runs
  once per matching wall time: in a repeated (fall-back) stretch only at the
  first occurrence, and a time a spring-forward gap skips runs at the first
  instant after the gap (several such times run once);
* any other task fires at every matching wall minute as it really occurs:
  twice in a repeat, never in a gap.

Transitions are found through the public `zoneinfo` API by probing the offset
every `PROBE` seconds and bisecting each change to the second. That is exact
because no zone in the tz database changes its offset twice within 95 hours
(tests/test_cron.py checks that for every zone), and `PROBE` is 48 hours.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

from jobctl.errors import BadExpressionError, ScheduleSearchError

UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_SECOND = timedelta(seconds=1)
DAY = 86400
PROBE = 2 * DAY
# every parseable expression fires within one 400-year Gregorian cycle
HORIZON = 400 * 366 * DAY
# the range datetime can hold: searches end at its last second; zoneinfo is
# asked about instants a day inside it, where every offset still fits
_MIN_REAL = int((datetime(1, 1, 1, tzinfo=UTC) - _EPOCH).total_seconds())
_MIN_PROBE = int((datetime(1, 1, 2, tzinfo=UTC) - _EPOCH).total_seconds())
_MAX_REAL = int((datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC) - _EPOCH).total_seconds())
_MAX_PROBE = int((datetime(9999, 12, 31, tzinfo=UTC) - _EPOCH).total_seconds())
_MAX_WALL = _MAX_REAL
_MAX_ORDINAL = date(9999, 12, 31).toordinal()
# a bound no correct search comes near (one stretch per transition, at most a
# few per year); past it the search stops with ScheduleSearchError
_MAX_STRETCHES = 8 * 400 + 64

SHORTCUTS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

# -- fields ---------------------------------------------------------------------

FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day-of-month", 1, 31, ()),
    ("month", 1, 12, ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")),
    ("day-of-week", 0, 7, ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")),
)
DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
MONTH_NAMES = ("January", "February", "March", "April", "May", "June", "July",
               "August", "September", "October", "November", "December")


class FieldError(Exception):
    pass


def _field_value(token: str, lo: int, hi: int, names: tuple[str, ...]) -> int:
    upper = token.upper()
    if names and upper in names:
        return names.index(upper) + lo if lo == 1 else names.index(upper)
    if not token.isdigit():
        if upper in ("L", "W", "LW", "?") or upper.endswith("L") or "#" in upper or upper.endswith("W"):
            raise FieldError(f"'{token}' is a Quartz extension that cron does not support")
        if names:
            raise FieldError(
                f"'{token}' is not a number or a name ({', '.join(n.lower() for n in names)})"
            )
        raise FieldError(f"'{token}' is not a number")
    value = int(token)
    if not lo <= value <= hi:
        raise FieldError(f"{value} is out of range {lo}-{hi}")
    return value


def parse_field(text: str, lo: int, hi: int, names: tuple[str, ...]) -> set[int]:
    """The set of values a field's text stands for; FieldError says why not."""
    values: set[int] = set()
    if text == "":
        raise FieldError("is empty")
    for item in text.split(","):
        if item == "":
            raise FieldError(f"'{text}' has an empty list item")
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit():
                raise FieldError(f"step '{step_text}' in '{item}' is not a whole number")
            step = int(step_text)
            if step == 0:
                raise FieldError(f"step 0 in '{item}' never advances")
            if step > hi - lo + 1:
                raise FieldError(f"step {step} in '{item}' is larger than the range {lo}-{hi}")
        if base == "*":
            start, end = lo, hi
        elif "-" in base:
            a, _, b = base.partition("-")
            start = _field_value(a, lo, hi, names)
            end = _field_value(b, lo, hi, names)
            if end < start:
                raise FieldError(f"range '{base}' runs backwards; write it as a list")
        else:
            start = _field_value(base, lo, hi, names)
            # "5/15" means 5-max/15, as in cronsim and most cron dialects
            end = hi if slash else start
        values.update(range(start, end + 1, step))
    return values


def split_expression(text: str) -> list[str]:
    """The five fields of a cron expression or @shortcut, validated for shape.

    Raises BadExpressionError for an unknown shortcut or a wrong field count.
    """
    stripped = " ".join(text.split())
    if stripped.startswith("@") and stripped.lower() not in SHORTCUTS:
        raise BadExpressionError(
            text,
            f"unknown shortcut '{stripped}'; known: {', '.join(SHORTCUTS)}, @reboot",
        )
    parts = SHORTCUTS.get(stripped.lower(), stripped).split()
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
    return parts


class CronPattern:
    """A parsed expression: the field values plus what a search needs.

    `fixed` is the DST mode: minute and hour hold neither `*` nor `/`.
    Day fields are bit masks (bit n set: value n matches), kept small because
    a runner holds one pattern per distinct expression.
    """

    __slots__ = ("minutes", "hours", "dom_mask", "month_mask", "dow_mask", "day_and", "fixed",
                 "times")

    def __init__(self, sets: list[set[int]], day_and: bool, fixed: bool) -> None:
        minutes, hours, doms, months, dows = sets
        self.minutes = tuple(sorted(minutes))
        self.hours = tuple(sorted(hours))
        self.dom_mask = _mask(doms)
        self.month_mask = _mask(months)
        self.dow_mask = _mask(d % 7 for d in dows)  # 7 is Sunday too
        # cronie: if either day field starts with '*', both must match (AND)
        self.day_and = day_and
        self.fixed = fixed
        # matching minutes of the day, ascending
        self.times = tuple(h * 60 + m for h in self.hours for m in self.minutes)

    @classmethod
    def parse(cls, parts: list[str]) -> CronPattern:
        """The pattern of five valid fields (FieldError if one is not)."""
        sets = [parse_field(part, lo, hi, names) for part, (_n, lo, hi, names) in zip(parts, FIELDS)]
        return cls(sets, *_modes(parts))

    def next_wall(self, wall: int, limit: int) -> int | None:
        """The first matching wall minute at or after `wall`, before `limit`."""
        wall = -(-max(wall, _MIN_REAL) // 60) * 60  # no wall time before year 1
        if wall >= limit or wall > _MAX_WALL:
            return None
        days, second = divmod(wall, DAY)
        minute = second // 60
        times = self.times
        last_time = times[-1]
        month_mask, dom_mask, dow_mask, day_and = self.month_mask, self.dom_mask, self.dow_mask, self.day_and
        ordinal = days + _EPOCH_ORDINAL
        last = min((limit - 1) // DAY + _EPOCH_ORDINAL, _MAX_ORDINAL)
        while ordinal <= last:
            if minute <= last_time:
                current = date.fromordinal(ordinal)
                month = current.month
                if not (month_mask >> month) & 1:
                    # the first day of the next month that matches
                    year = current.year
                    while True:
                        month += 1
                        if month == 13:
                            month, year = 1, year + 1
                            if year > 9999:
                                return None
                        if (month_mask >> month) & 1:
                            break
                    ordinal, minute = date(year, month, 1).toordinal(), 0
                    continue
                dom = (dom_mask >> current.day) & 1
                dow = (dow_mask >> (ordinal % 7)) & 1  # ordinal 7 is a Sunday
                if (dom and dow) if day_and else (dom or dow):
                    found = (ordinal - _EPOCH_ORDINAL) * DAY + times[bisect_left(times, minute)] * 60
                    return found if found < limit else None
            ordinal += 1
            minute = 0
        return None


def _mask(values: object) -> int:
    mask = 0
    for v in values:  # type: ignore[attr-defined]
        mask |= 1 << v
    return mask


def _modes(parts: list[str]) -> tuple[bool, bool]:
    """(day_and, fixed) of five fields."""
    return (parts[2].startswith("*") or parts[4].startswith("*"),
            not any(c in f for f in parts[:2] for c in "*/"))


_PATTERNS: dict[str, CronPattern] = {}
_PATTERNS_MAX = 1 << 17


def compile_expression(expr: str) -> CronPattern:
    """The pattern of a validated 5-field expression (cached: parsed once,
    when it is validated)."""
    pattern = _PATTERNS.get(expr)
    if pattern is None:
        pattern = _remember(expr, CronPattern.parse(expr.upper().split()))
    return pattern


def _remember(expr: str, pattern: CronPattern) -> CronPattern:
    if len(_PATTERNS) >= _PATTERNS_MAX:
        _PATTERNS.clear()
    _PATTERNS[expr] = pattern
    return pattern


compile_expression.cache_clear = _PATTERNS.clear  # type: ignore[attr-defined]


def parse_cron_fields(text: str) -> tuple[str, CronPattern]:
    """Validate an expression; return its 5-field form and its pattern.

    Raises BadExpressionError naming the field and the reason.
    """
    parts = split_expression(text)
    sets: list[set[int]] = []
    for part, (name, lo, hi, names) in zip(parts, FIELDS):
        try:
            sets.append(parse_field(part, lo, hi, names))
        except FieldError as e:
            raise BadExpressionError(text, f"bad {name} field '{part}': {e}") from None
    dom_text, dow_text = parts[2], parts[4]
    if dow_text.startswith("*") and not dom_text.startswith("*"):
        longest = max(DAYS_IN_MONTH[m - 1] for m in sets[3])
        if min(sets[2]) > longest:
            months = ", ".join(MONTH_NAMES[m - 1] for m in sorted(sets[3]))
            raise BadExpressionError(
                text, f"bad day-of-month field '{dom_text}': no day {min(sets[2])} in {months}, so it never fires"
            )
    expr = " ".join(parts).upper()
    pattern = _PATTERNS.get(expr)
    if pattern is None:
        pattern = _remember(expr, CronPattern(sets, *_modes(parts)))
    return expr, pattern


# -- zones --------------------------------------------------------------------


class ZoneTimeline:
    """A zone's UTC offsets over time, learned lazily a UTC year at a time.

    The timeline covers real instants [lo, hi): it knows the offset at `lo`
    and every change at an instant in (lo, hi]; an instant is the first real
    second the new offset applies to. `around(real, limit)` extends the cover
    as far as the question needs.
    """

    __slots__ = ("tz", "_lo", "_hi", "_lo_offset", "_instants", "_changes")

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self._lo = self._hi = self._lo_offset = 0
        self._instants: list[int] = []
        self._changes: list[tuple[int, int, int]] = []

    def probe(self, real: int) -> int:
        """The UTC offset, in seconds, that zoneinfo gives at a real instant
        (clamped to the instants datetime can show in every zone)."""
        real = min(max(real, _MIN_PROBE), _MAX_PROBE)
        off = (_EPOCH + timedelta(seconds=real)).astimezone(self.tz).utcoffset()
        assert off is not None
        return off.days * DAY + off.seconds

    def _scan(self, start: int, end: int) -> list[tuple[int, int, int]]:
        """(instant, offset before, offset after) of each change in (start, end]."""
        changes: list[tuple[int, int, int]] = []
        probe, before = start, self.probe(start)
        while probe < end:
            nxt = min(probe + PROBE, end)
            after = self.probe(nxt)
            if after != before:
                lo, hi = probe, nxt  # probe(lo) == before != probe(hi)
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    if self.probe(mid) == before:
                        lo = mid
                    else:
                        hi = mid
                changes.append((hi, before, after))
            probe, before = nxt, after
        return changes

    def _cover(self, real: int, upto: int) -> None:
        """Extend the cover, in whole UTC years, to include [real, upto]."""
        if not self._changes and self._lo == self._hi:
            lo = _year_start(_year_of(real))
            self._lo = self._hi = lo
            self._lo_offset = self.probe(lo)
        if real < self._lo:
            lo = _year_start(_year_of(real))
            earlier = self._scan(lo, self._lo)
            self._changes[:0] = earlier
            self._instants[:0] = [c[0] for c in earlier]
            self._lo, self._lo_offset = lo, self.probe(lo)
        while self._hi <= upto and self._hi < _MAX_REAL:
            year = _year_of(self._hi)
            hi = _year_start(year + 1) if year < 9999 else _MAX_REAL
            later = self._scan(self._hi, hi)
            self._changes.extend(later)
            self._instants.extend(c[0] for c in later)
            self._hi = hi

    def offset(self, real: int) -> int:
        """The UTC offset, in seconds, at a real instant."""
        self._cover(real, real)
        i = bisect_right(self._instants, real)
        return self._changes[i - 1][2] if i else self._lo_offset

    def around(self, real: int, limit: int) -> tuple[int, tuple[int, int, int] | None, tuple[int, int, int] | None]:
        """(offset at `real`, the last change at or before it, the first
        change after it and at or before `limit`)."""
        self._cover(real, real)
        instants = self._instants
        i = bisect_right(instants, real)
        while i == len(instants) and self._hi <= limit and self._hi < _MAX_REAL:
            self._cover(real, self._hi)  # one more year
        changes = self._changes
        last = changes[i - 1] if i else None
        nxt = changes[i] if i < len(changes) and changes[i][0] <= limit else None
        return (last[2] if last is not None else self._lo_offset), last, nxt

    def changes(self, start: int, end: int) -> list[tuple[int, int, int]]:
        """The changes at instants in (start, end]."""
        self._cover(start, end)
        return self._changes[bisect_right(self._instants, start):bisect_right(self._instants, end)]


_YEAR_STARTS: dict[int, int] = {}


def _year_start(year: int) -> int:
    found = _YEAR_STARTS.get(year)
    if found is None:
        found = _YEAR_STARTS[year] = (date(year, 1, 1).toordinal() - _EPOCH_ORDINAL) * DAY
    return found


def _year_of(real: int) -> int:
    return date.fromordinal(min(max(real // DAY + _EPOCH_ORDINAL, 1), 3652059)).year


@lru_cache(maxsize=2048)
def timeline(tz: ZoneInfo) -> ZoneTimeline:
    """The shared timeline of a zone."""
    return ZoneTimeline(tz)


# -- the search ---------------------------------------------------------------


def next_fire_real(pattern: CronPattern, zone: ZoneTimeline, after: int, *,
                   expr: str = "") -> int | None:
    """The first fire at a real second > `after` (whole seconds), or None if
    there is none before datetime's end of range.

    Raises ScheduleSearchError if the search stops advancing, which would be
    a bug (in this module or the zone data), never a spin.
    """
    start = max(after + 1, _MIN_REAL)
    end = min(start + HORIZON, _MAX_REAL)
    fixed = pattern.fixed
    stretch = start
    # for a fixed-time task: wall times below this one already ran (a repeat)
    seen_until: int | None = None
    for _ in range(_MAX_STRETCHES):
        if stretch >= end:
            return None
        off, last, _ = zone.around(stretch, stretch)
        if fixed and stretch == start and last is not None:
            instant, before, after_off = last
            if before > after_off:
                seen_until = instant + before
            elif instant == start and pattern.next_wall(instant + before, instant + after_off) is not None:
                return start  # a time in the gap that ends exactly at `start`
        wall = stretch + off
        if seen_until is not None and wall < seen_until:
            wall = seen_until  # the first occurrence already ran these
        # the first match were the offset to stay; valid if no change comes first
        found = pattern.next_wall(wall, end + off)
        _, _, change = zone.around(stretch, end if found is None else found - off)
        if change is None:
            return None if found is None else found - off
        instant, before, after_off = change
        if after_off > before:
            # a spring-forward gap skips wall times [instant+before, instant+after_off)
            if fixed and pattern.next_wall(instant + before, instant + after_off) is not None:
                return instant
            seen_until = None
        else:
            seen_until = instant + before if fixed else None
        if instant <= stretch:
            break
        stretch = instant
    raise ScheduleSearchError(expr, zone.tz.key, _EPOCH + timedelta(seconds=after))


def next_fire(expr: str, tz: ZoneInfo, after: datetime) -> datetime | None:
    """The first fire strictly after aware `after`, in `tz`; None if none
    before the end of datetime's range."""
    seconds = (after - _EPOCH) // _SECOND  # floor, also before 1970
    real = next_fire_real(compile_expression(expr), timeline(tz), seconds, expr=expr)
    if real is None:
        return None
    return (_EPOCH + timedelta(seconds=real)).astimezone(tz)
