"""Property tests: the cron engine in jobctl.timing against a brute-force reference.

The reference below is written from the spec alone (it does not use cronsim or
jobctl's own field parser):

* fields are parsed to sets of integers here; `*`, values, names, ranges,
  lists, `*/n`, `a-b/n` and `a/n` (= a-max/n); day-of-week 7 is Sunday;
* when day-of-month and day-of-week are both restricted a day matches if
  either does; a field starting with `*` counts as unrestricted (then AND);
* a task whose minute and hour fields contain neither `*` nor `/` is
  fixed-time: each matching wall-clock time fires once, at its first
  occurrence (fold=0), or, if a spring-forward gap skips it, at the first
  instant after the gap;
* any other task scans real UTC minutes, converts each to local wall time and
  fires when the wall time matches.

The reference scans minute by minute (skipping ahead, never past a possible
fire, through hours and days that cannot match) for up to HORIZON_DAYS.

Zones: every zone of `zoneinfo.available_timezones()` whose UTC offset
changes in 1973-2036 (about 400), plus UTC. Hypothesis draws the zone, and
start instants near one of its changes; a deterministic sweep also visits
every zone, at each distinct kind of change it has (the shift, and the wall
time it happens at: :00, :01, :30, :45, midnight...). Stepped ranges with a
single value (`a-a/n`) get their own test rather than appearing in the
general expressions, so that a failure there does not hide the others.
"""

from __future__ import annotations

import bisect
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo
from zoneinfo import _zoneinfo as _pure_zoneinfo  # the pure-Python implementation

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from jobctl.errors import BadExpressionError
from jobctl.model import CronSchedule
from jobctl.timing import next_fire, parse_schedule

MINUTE = timedelta(minutes=1)
HORIZON_DAYS = 400
# the TZif files list every transition explicitly up to 2037; the pure-Python
# zoneinfo's tables (the reference's source of transitions) stop there
FIRST_YEAR, LAST_YEAR = 1973, 2036
_START = datetime(FIRST_YEAR, 1, 1, tzinfo=UTC)
_END = datetime(LAST_YEAR + 1, 1, 1, tzinfo=UTC)

MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]


# -- the reference -------------------------------------------------------------


def _ref_value(token: str, names: list[str], lo: int) -> int:
    upper = token.upper()
    if upper in names:
        return names.index(upper) + lo
    return int(token)


def _ref_field(text: str, lo: int, hi: int, names: list[str] = []) -> frozenset[int]:  # noqa: B006
    out: set[int] = set()
    for item in text.split(","):
        base, slash, step_text = item.partition("/")
        step = int(step_text) if slash else 1
        if base == "*":
            first, last = lo, hi
        elif "-" in base:
            a, b = base.split("-")
            first, last = _ref_value(a, names, lo), _ref_value(b, names, lo)
        else:
            first = _ref_value(base, names, lo)
            last = hi if slash else first
        out.update(range(first, last + 1, step))
    return frozenset(out)


@dataclass(frozen=True)
class RefCron:
    minutes: frozenset[int]
    hours: frozenset[int]
    doms: frozenset[int]
    months: frozenset[int]
    dows: frozenset[int]  # 0 = Sunday; 7 folded into 0
    day_or: bool
    fixed: bool

    @classmethod
    def parse(cls, expr: str) -> RefCron:
        m, h, dom, mon, dow = expr.split()
        dows = _ref_field(dow, 0, 7, DAYS)
        return cls(
            minutes=_ref_field(m, 0, 59),
            hours=_ref_field(h, 0, 23),
            doms=_ref_field(dom, 1, 31),
            months=_ref_field(mon, 1, 12, MONTHS),
            dows=frozenset(d % 7 for d in dows),
            day_or=not dom.startswith("*") and not dow.startswith("*"),
            fixed=not any(c in f for f in (m, h) for c in "*/"),
        )

    def day_ok(self, d: date) -> bool:
        if d.month not in self.months:
            return False
        dom_ok = d.day in self.doms
        dow_ok = (d.weekday() + 1) % 7 in self.dows
        return (dom_ok or dow_ok) if self.day_or else (dom_ok and dow_ok)

    def matches(self, wall: datetime) -> bool:
        return wall.minute in self.minutes and wall.hour in self.hours and self.day_ok(wall.date())


def reference_next(expr: str, tz: ZoneInfo, after: datetime, horizon_days: int = HORIZON_DAYS) -> datetime | None:
    """First fire strictly after `after` (as a UTC instant), or None within the horizon.

    Walks real UTC minutes. It skips ahead through wall hours and days that
    cannot match, but never past the zone's next offset change (taken from
    `transitions`, read by the pure-Python zoneinfo: an implementation apart
    from the C one jobctl uses), so every skipped minute has the same offset.
    """
    ref = RefCron.parse(expr)
    changes = transitions(tz.key)
    after = after.astimezone(UTC)
    t = after.replace(second=0, microsecond=0) + MINUTE
    end = after + timedelta(days=horizon_days)
    while t <= end:
        wall = t.astimezone(tz)
        naive = wall.replace(tzinfo=None)
        if ref.fixed:
            # wall times that "happen" at t: its own, unless it is a repeat
            # (fold=1), plus any the clock skipped since the previous minute
            candidates = [] if wall.fold else [naive]
            prev = (t - MINUTE).astimezone(tz).replace(tzinfo=None)
            skipped = prev + MINUTE
            while skipped < naive:
                candidates.append(skipped)
                skipped += MINUTE
            if any(ref.matches(c) for c in candidates):
                return t
        elif ref.matches(naive):
            return t
        # skip ahead without passing a possible fire: to minute 59 of this
        # wall hour, or for a day that cannot match to its 23:59, but never
        # past the next offset change
        to_hour_end = 59 - naive.minute
        if not ref.day_ok(naive.date()):
            step = max(1, (23 - naive.hour) * 60 + to_hour_end)
        elif naive.hour not in ref.hours:
            step = max(1, to_hour_end)
        else:
            step = 1
        nxt = t + MINUTE * step
        i = bisect.bisect_right(changes, t)
        if i < len(changes) and changes[i] < nxt:
            nxt = max(t + MINUTE, changes[i])
        t = nxt
    return None


@cache
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@cache
def transitions(name: str) -> tuple[datetime, ...]:
    """UTC instants in [FIRST_YEAR, LAST_YEAR] at which `name` changes its UTC
    offset, from the pure-Python zoneinfo's own reading of the TZif file.
    Only zones whose offsets there are whole minutes (all since 1973)."""
    pure = _pure_zoneinfo.ZoneInfo.no_cache(name)
    found = []
    offsets = [pure._tti_before.utcoff] + [tti.utcoff for tti in pure._ttinfos]
    for i, stamp in enumerate(pure._trans_utc):
        instant = datetime.fromtimestamp(stamp, UTC)
        if offsets[i + 1] != offsets[i] and _START <= instant < _END:
            assert stamp % 60 == 0 and offsets[i + 1].total_seconds() % 60 == 0, (name, instant)
            found.append(instant)
    return tuple(found)


# -- sanity checks of the reference itself --------------------------------------


ZONES = ["UTC"] + [z for z in sorted(zoneinfo.available_timezones()) if z != "UTC" and transitions(z)]
DST_ZONES = ZONES[1:]
# the hand-picked four of earlier versions, kept as fixed parameters
CLASSIC_ZONES = ["UTC", "America/New_York", "Europe/Berlin", "Australia/Lord_Howe"]


def test_reference_knows_the_transitions() -> None:
    ny = transitions("America/New_York")
    assert datetime(2026, 3, 8, 7, 0, tzinfo=UTC) in ny
    assert datetime(2026, 11, 1, 6, 0, tzinfo=UTC) in ny
    berlin = transitions("Europe/Berlin")
    assert datetime(2026, 3, 29, 1, 0, tzinfo=UTC) in berlin
    assert datetime(2026, 10, 25, 1, 0, tzinfo=UTC) in berlin
    lord_howe = transitions("Australia/Lord_Howe")
    assert datetime(2026, 4, 4, 15, 0, tzinfo=UTC) in lord_howe  # 02:00 +11 -> 01:30 +10:30
    assert datetime(2026, 10, 3, 15, 30, tzinfo=UTC) in lord_howe  # 02:00 +10:30 -> 02:30 +11
    chatham = transitions("Pacific/Chatham")
    assert datetime(2026, 4, 4, 14, 0, tzinfo=UTC) in chatham  # 03:45 +13:45 -> 02:45 +12:45
    assert len(DST_ZONES) > 300
    for zone in ("America/St_Johns", "America/Santiago", "Asia/Tehran", "America/Havana",
                 "Atlantic/Azores", "America/Asuncion", "Asia/Beirut", "Asia/Gaza",
                 "America/Goose_Bay", "America/Moncton", "Pacific/Chatham"):
        assert zone in DST_ZONES


@pytest.mark.parametrize(
    ("expr", "zone", "after", "expected"),
    [
        # fixed time in the gap: first instant after it
        ("30 2 * * *", "America/New_York", datetime(2026, 3, 8, 5, 0, tzinfo=UTC), datetime(2026, 3, 8, 7, 0, tzinfo=UTC)),
        # fixed time in the repeat: first occurrence only
        ("30 1 * * *", "America/New_York", datetime(2026, 11, 1, 5, 30, tzinfo=UTC), datetime(2026, 11, 2, 6, 30, tzinfo=UTC)),
        # wildcard in the repeat: both occurrences
        ("30 1-2/1 * * *", "America/New_York", datetime(2026, 11, 1, 5, 30, tzinfo=UTC), datetime(2026, 11, 1, 6, 30, tzinfo=UTC)),
        # wildcard hour in the gap: skipped
        ("*/30 2 * * *", "America/New_York", datetime(2026, 3, 8, 5, 0, tzinfo=UTC), datetime(2026, 3, 9, 6, 0, tzinfo=UTC)),
        # OR rule, and AND when a field starts with '*'
        ("0 0 13 * FRI", "UTC", datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 6, 5, tzinfo=UTC)),
        ("0 0 13 * */5", "UTC", datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 9, 13, tzinfo=UTC)),
        ("0 0 * * 7", "UTC", datetime(2026, 6, 15, tzinfo=UTC), datetime(2026, 6, 21, tzinfo=UTC)),
        ("5/20 * * * *", "UTC", datetime(2026, 6, 15, 0, 45, tzinfo=UTC), datetime(2026, 6, 15, 1, 5, tzinfo=UTC)),
        # Lord Howe: 30-minute changes
        ("30 * * * *", "Australia/Lord_Howe", datetime(2026, 4, 4, 14, 59, tzinfo=UTC), datetime(2026, 4, 4, 15, 0, tzinfo=UTC)),
        ("15 2 * * *", "Australia/Lord_Howe", datetime(2026, 10, 3, 15, 0, tzinfo=UTC), datetime(2026, 10, 3, 15, 30, tzinfo=UTC)),
        ("*/15 2 * * *", "Australia/Lord_Howe", datetime(2026, 10, 3, 15, 0, tzinfo=UTC), datetime(2026, 10, 3, 15, 30, tzinfo=UTC)),
        ("45 1 * * *", "Australia/Lord_Howe", datetime(2026, 4, 4, 14, 45, tzinfo=UTC), datetime(2026, 4, 5, 15, 15, tzinfo=UTC)),
        ("45 1-2/1 * * *", "Australia/Lord_Howe", datetime(2026, 4, 4, 14, 45, tzinfo=UTC), datetime(2026, 4, 4, 15, 15, tzinfo=UTC)),
        # Chatham falls back at 03:45 +13:45 to 02:45 +12:45: 03:00-03:44 again
        ("*/15 3 * * *", "Pacific/Chatham", datetime(2026, 4, 4, 14, 0, tzinfo=UTC), datetime(2026, 4, 4, 14, 15, tzinfo=UTC)),
        # Santiago springs forward at midnight: 00:00-00:59 on 2026-09-06 never happens
        ("*/15 1 * * 0", "America/Santiago", datetime(2026, 9, 4, 16, 0, tzinfo=UTC), datetime(2026, 9, 6, 4, 0, tzinfo=UTC)),
        ("*/30 0 * * 0", "America/Santiago", datetime(2026, 9, 4, 16, 0, tzinfo=UTC), datetime(2026, 9, 13, 3, 0, tzinfo=UTC)),
        ("30 0 * * 0", "America/Santiago", datetime(2026, 9, 4, 16, 0, tzinfo=UTC), datetime(2026, 9, 6, 4, 0, tzinfo=UTC)),
    ],
)
def test_reference_examples(expr: str, zone: str, after: datetime, expected: datetime) -> None:
    assert reference_next(expr, _zone(zone), after) == expected


# -- strategies ------------------------------------------------------------------


def _value(lo: int, hi: int, names: list[str] | None, name_lo: int) -> st.SearchStrategy[str]:
    numbers = st.integers(lo, hi).map(str)
    if not names:
        return numbers
    named = st.sampled_from(names).flatmap(
        lambda n: st.sampled_from([n, n.lower(), n.capitalize()])
    )
    return st.one_of(numbers, named)


def _name_to_int(token: str, names: list[str] | None, name_lo: int) -> int:
    if names and token.upper() in names:
        return names.index(token.upper()) + name_lo
    return int(token)


@st.composite
def _range(draw: st.DrawFn, lo: int, hi: int, names: list[str] | None, name_lo: int, proper: bool = False) -> str:
    """`a-b` with a <= b (a < b if `proper`; `a-a/n` has its own test below)."""
    a = draw(_value(lo, hi, names, name_lo))
    b = draw(_value(lo, hi, names, name_lo))
    ia, ib = _name_to_int(a, names, name_lo), _name_to_int(b, names, name_lo)
    if ia > ib:
        a, b, ia, ib = b, a, ib, ia
    if proper and ia == ib:
        if ib < hi:
            b = str(ib + 1)
        else:
            a = str(ia - 1)
    return f"{a}-{b}"


def _item(lo: int, hi: int, names: list[str] | None = None, name_lo: int = 0, near: tuple[int, ...] = ()) -> st.SearchStrategy[str]:
    single = _value(lo, hi, names, name_lo)
    if near:
        single = st.one_of(single, st.sampled_from(near).map(str))
    step = st.integers(1, max(2, (hi - lo + 1) // 2))
    return st.one_of(
        single,
        _range(lo, hi, names, name_lo),
        step.map(lambda n: f"*/{n}"),
        st.tuples(_range(lo, hi, names, name_lo, proper=True), step).map(lambda p: f"{p[0]}/{p[1]}"),
        st.tuples(single, step).map(lambda p: f"{p[0]}/{p[1]}"),
    )


def _field(lo: int, hi: int, names: list[str] | None = None, name_lo: int = 0, near: tuple[int, ...] = ()) -> st.SearchStrategy[str]:
    item = _item(lo, hi, names, name_lo, near)
    return st.one_of(
        st.just("*"),
        item,
        st.lists(item, min_size=2, max_size=3).map(",".join),
    )


# hours near the DST changes of New York (01-03 local), Berlin (02-03) and Lord Howe (01-02)
MINUTE_FIELD = _field(0, 59, near=(0, 15, 30, 45, 59))
HOUR_FIELD = _field(0, 23, near=(0, 1, 2, 3))
DOM_FIELD = st.one_of(st.just("*"), _field(1, 31))
MONTH_FIELD = st.one_of(st.just("*"), _field(1, 12, MONTHS, 1, near=(3, 10, 11)))
DOW_FIELD = st.one_of(st.just("*"), _field(0, 7, DAYS, 0, near=(0, 7)))

CRON = st.tuples(MINUTE_FIELD, HOUR_FIELD, DOM_FIELD, MONTH_FIELD, DOW_FIELD).map(" ".join)

# fixed-time expressions (no '*' or '/' in minute and hour), to weight the DST rules
_FIXED_ITEM_MIN = st.one_of(st.integers(0, 59).map(str), st.sampled_from(["0", "30", "59", "0-59", "10-20"]))
_FIXED_ITEM_HOUR = st.one_of(st.integers(0, 23).map(str), st.sampled_from(["1", "2", "3", "1-3", "0-23"]))
FIXED_CRON = st.tuples(
    st.lists(_FIXED_ITEM_MIN, min_size=1, max_size=3).map(",".join),
    st.lists(_FIXED_ITEM_HOUR, min_size=1, max_size=3).map(",".join),
    DOM_FIELD,
    MONTH_FIELD,
    DOW_FIELD,
).map(" ".join)

# every day: so that a start near a DST change meets fires on the day of the change
DAILY_CRON = st.tuples(MINUTE_FIELD, HOUR_FIELD).map(lambda mh: " ".join(mh) + " * * *")
DAILY_FIXED_CRON = st.tuples(
    st.lists(_FIXED_ITEM_MIN, min_size=1, max_size=3).map(",".join),
    st.lists(_FIXED_ITEM_HOUR, min_size=1, max_size=3).map(",".join),
).map(lambda mh: " ".join(mh) + " * * *")

# minutes and hours at which zones change (:00, :01, :30, :45, midnight, 23:59)
NEAR_CRON = st.tuples(
    st.sampled_from(["*/15", "0,30", "1", "0", "30", "45", "59", "*/5", "*", "0-1", "44-46", "29-31/2"]),
    st.sampled_from(["0", "23", "0-1", "1-3", "2", "3", "*", "*/2", "0,12", "4", "22-23"]),
    st.sampled_from(["*", "*", "*", "1-7", "SUN", "SAT,SUN", "FRI"]),
).map(lambda p: f"{p[0]} {p[1]} * * {p[2]}")

_FIELD_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))


@st.composite
def stepped_single_value_ranges(draw: st.DrawFn) -> str:
    """A cron expression with one field holding `v-v/n` (which means just v)."""
    parts = draw(CRON).split()
    index = draw(st.integers(0, 4))
    lo, hi = _FIELD_BOUNDS[index]
    v = draw(st.integers(lo, hi))
    n = draw(st.integers(1, max(2, (hi - lo + 1) // 2)))
    parts[index] = f"{v}-{v}/{n}"
    return " ".join(parts)


def _near_zones(zone: str) -> list[str]:
    return [zone] if zone in DST_ZONES else ["America/New_York", "Europe/Berlin"]


@st.composite
def instants(draw: st.DrawFn, zone: str) -> datetime:
    """Aware UTC instants in 1973-2036 (2020-2030 for the searches that may
    run far), often a little before, inside or after one of `zone`'s
    changes (for UTC: New York's and Berlin's)."""
    kind = draw(st.sampled_from(["any", "near", "near", "near"]))
    if kind == "any":
        seconds = draw(st.integers(0, int((_END - _START).total_seconds()) - HORIZON_DAYS * 86400))
        base = _START + timedelta(seconds=seconds)
    else:
        near = draw(st.sampled_from(_near_zones(zone)))
        base = draw(st.sampled_from([t for t in transitions(near) if t.year < LAST_YEAR]))
        base += timedelta(minutes=draw(st.integers(-180, 180)))
        base += timedelta(seconds=draw(st.sampled_from([0, 0, 0, 1, 30, 59])))
    micro = draw(st.sampled_from([0, 0, 0, 1, 500_000, 999_999]))
    return base + timedelta(microseconds=micro)


def _fall_backs(zone: str) -> list[tuple[datetime, timedelta]]:
    """(instant, length of the repeat) for each fall-back change of `zone`."""
    tz = _zone(zone)
    out = []
    for t in transitions(zone):
        shift = (t - MINUTE).astimezone(tz).utcoffset() - t.astimezone(tz).utcoffset()  # type: ignore[operator]
        if shift > timedelta(0) and t.year < LAST_YEAR:
            out.append((t, shift))
    return out


def _parse_or_skip(expr: str) -> CronSchedule:
    try:
        schedule = parse_schedule(expr)
    except BadExpressionError:
        assume(False)
        raise  # pragma: no cover
    assert isinstance(schedule, CronSchedule)
    return schedule


def _check(expr: str, zone: str, after: datetime, horizon_days: int = HORIZON_DAYS) -> datetime | None:
    schedule = _parse_or_skip(expr)
    tz = _zone(zone)
    expected = reference_next(expr, tz, after, horizon_days)
    got = next_fire(schedule, tz, after)
    where = f"{expr!r} in {zone} after {after.astimezone(tz)} (fold={after.astimezone(tz).fold}, {after.astimezone(UTC)})"
    if expected is None:
        # nothing within the horizon: the engine must agree
        limit = after.astimezone(UTC) + timedelta(days=horizon_days)
        assert got is None or got.astimezone(UTC) > limit, f"{where}: expected nothing for {horizon_days} days, got {got}"
        return None
    assert got is not None, f"{where}: expected {expected.astimezone(tz)} ({expected}), got None"
    assert got.astimezone(UTC) == expected, (
        f"{where}: expected {expected.astimezone(tz)} ({expected}), got {got} ({got.astimezone(UTC)})"
    )
    # the answer is given in the task's zone
    assert got.tzinfo is not None and got.utcoffset() == got.astimezone(tz).utcoffset()
    return got


_SUPPRESS = [HealthCheck.filter_too_much, HealthCheck.too_slow]
ANY_ZONE = st.sampled_from(ZONES)
ANY_DST_ZONE = st.sampled_from(DST_ZONES)


@settings(max_examples=400, deadline=None, suppress_health_check=_SUPPRESS)
@given(zone=ANY_ZONE, expr=CRON, data=st.data())
def test_next_fire_matches_reference(zone: str, expr: str, data: st.DataObject) -> None:
    _check(expr, zone, data.draw(instants(zone), label="after"))


@settings(max_examples=300, deadline=None, suppress_health_check=_SUPPRESS)
@given(zone=ANY_ZONE, expr=FIXED_CRON, data=st.data())
def test_fixed_time_next_fire_matches_reference(zone: str, expr: str, data: st.DataObject) -> None:
    _check(expr, zone, data.draw(instants(zone), label="after"))


@settings(max_examples=300, deadline=None, suppress_health_check=_SUPPRESS)
@given(zone=ANY_DST_ZONE, expr=st.one_of(DAILY_CRON, DAILY_FIXED_CRON, NEAR_CRON), data=st.data())
def test_daily_near_changes_matches_reference(zone: str, expr: str, data: st.DataObject) -> None:
    """Every-day expressions, so that a start near a change meets fires on its day."""
    _check(expr, zone, data.draw(instants(zone), label="after"), horizon_days=3)


@settings(max_examples=200, deadline=None, suppress_health_check=_SUPPRESS)
@given(
    zone=st.sampled_from([z for z in DST_ZONES if _fall_backs(z)]),
    expr=st.one_of(CRON, FIXED_CRON, DAILY_CRON, DAILY_FIXED_CRON, NEAR_CRON),
    data=st.data(),
    second_occurrence=st.booleans(),
    into=st.floats(0, 1, exclude_max=True),
    micro=st.sampled_from([0, 1, 999_999]),
)
def test_from_inside_the_repeated_hour(
    zone: str, expr: str, data: st.DataObject, second_occurrence: bool, into: float, micro: int
) -> None:
    """Start instants inside a fall-back repeat, on either occurrence (fold=0 and fold=1)."""
    change, length = data.draw(st.sampled_from(_fall_backs(zone)), label="fall-back")
    offset = timedelta(seconds=int(into * length.total_seconds()), microseconds=micro)
    after = change + offset if second_occurrence else change - length + offset
    tz = _zone(zone)
    assert after.astimezone(tz).fold == int(second_occurrence)
    _check(expr, zone, after)


@settings(max_examples=150, deadline=None, suppress_health_check=_SUPPRESS)
@given(zone=ANY_ZONE, expr=st.one_of(CRON, NEAR_CRON), data=st.data())
def test_successive_fires_match_reference(zone: str, expr: str, data: st.DataObject) -> None:
    """Chaining next_fire from its own answers visits the reference's fires, each once."""
    current = data.draw(instants(zone), label="after")
    for _ in range(4):
        got = _check(expr, zone, current, horizon_days=40)
        if got is None:
            return
        current = got


@pytest.mark.parametrize("zone", ["UTC", "America/New_York"])
@settings(max_examples=40, deadline=None, suppress_health_check=_SUPPRESS)
@given(expr=stepped_single_value_ranges(), data=st.data())
def test_stepped_single_value_range_matches_reference(zone: str, expr: str, data: st.DataObject) -> None:
    """`a-a/n` is the one value a (cronie, and jobctl's own parser, agree)."""
    _check(expr, zone, data.draw(instants(zone), label="after"))


# -- every zone, every kind of change it has ---------------------------------------


def _kinds_of_change(zone: str) -> list[datetime]:
    """One change of each kind the zone has: kinds differ by the shift and by
    the wall time (before the change) at which it happens."""
    tz = _zone(zone)
    seen: dict[tuple[timedelta, int, int], datetime] = {}
    for t in transitions(zone):
        if t.year >= LAST_YEAR:
            continue
        before = (t - MINUTE).astimezone(tz)
        shift = t.astimezone(tz).utcoffset() - before.utcoffset()  # type: ignore[operator]
        wall = before + MINUTE
        seen.setdefault((shift, wall.hour, wall.minute), t)
    return sorted(seen.values())


def _around(zone: str, change: datetime) -> list[str]:
    """Expressions aimed at the wall times a change skips or repeats."""
    tz = _zone(zone)
    before = (change - MINUTE).astimezone(tz) + MINUTE  # the wall time the jump leaves
    after = change.astimezone(tz)  # the wall time it lands on
    day = (before.weekday() + 1) % 7
    exprs = {
        "*/15 * * * *",
        "0 0 * * *",
        "*/30 0 * * *",
        f"*/15 {before.hour} * * *",
        f"* {after.hour} * * *",
        f"{before.minute} {before.hour} * * *",
        f"{after.minute} {after.hour} * * *",
        f"5,35 {before.hour},{after.hour} * * {day}",
        f"{(before.minute + 30) % 60} {before.hour} * * *",
    }
    return sorted(exprs)


@pytest.mark.parametrize("zone", DST_ZONES)
def test_every_zone_at_each_kind_of_change(zone: str) -> None:
    """Four successive fires from two hours before each kind of change, for
    expressions aimed at the skipped or repeated wall times."""
    for change in _kinds_of_change(zone):
        for expr in _around(zone, change):
            current = change - timedelta(hours=2)
            for _ in range(4):
                got = _check(expr, zone, current, horizon_days=2)
                if got is None:
                    break
                current = got


@st.composite
def aimed_at_a_change(draw: st.DrawFn) -> tuple[str, str, datetime]:
    """(zone, expression, start): a change of any zone, an expression whose
    fields name the wall times it skips or repeats, a start near it."""
    zone = draw(ANY_DST_ZONE)
    tz = _zone(zone)
    change = draw(st.sampled_from([t for t in transitions(zone) if t.year < LAST_YEAR]))
    left = (change - MINUTE).astimezone(tz) + MINUTE  # the wall time the jump leaves
    landed = change.astimezone(tz)  # the wall time it lands on
    low, high = min(left, landed), max(left, landed)
    inside = low + (high - low) * draw(st.floats(0, 1, exclude_max=True))
    picks = [left, landed, inside]
    minute = draw(st.one_of(
        st.sampled_from(picks).map(lambda w: str(w.minute)),
        st.sampled_from(["*", "*/5", "*/15", "0,30", "0-59/7", "1", "59"]),
        st.sampled_from(picks).map(lambda w: f"{w.minute}-{min(59, w.minute + 2)}"),
    ))
    hour = draw(st.one_of(
        st.sampled_from(picks).map(lambda w: str(w.hour)),
        st.sampled_from(["*", "*/2", "0", "23"]),
        st.just(f"{low.hour}-{high.hour}" if low.hour <= high.hour else f"{low.hour},{high.hour}"),
    ))
    days = ["*", str((left.weekday() + 1) % 7), str((landed.weekday() + 2) % 7)]
    dom = draw(st.sampled_from(["*", "*", str(left.day), str(landed.day)]))
    dow = draw(st.sampled_from(days))
    start = change + timedelta(minutes=draw(st.integers(-26 * 60, 60)),
                               seconds=draw(st.sampled_from([0, 0, 1, 59])))
    return zone, f"{minute} {hour} {dom} * {dow}", start


@settings(max_examples=500, deadline=None, suppress_health_check=_SUPPRESS)
@given(case=aimed_at_a_change())
def test_aimed_at_a_change_matches_reference(case: tuple[str, str, datetime]) -> None:
    """Successive fires through a change, for expressions that name its wall times."""
    zone, expr, current = case
    for _ in range(3):
        got = _check(expr, zone, current, horizon_days=40)
        if got is None:
            return
        current = got
