"""Unit tests for jobctl.cron: the zone timeline, the search's guards, the
issue's vectors through the real `jobctl next` command.

Fire times against a brute-force reference in every zone are in
test_timing_property.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zoneinfo
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo
from zoneinfo import _zoneinfo as _pure_zoneinfo  # the pure-Python implementation

import pytest
from conftest import FakeClock, write_config

from jobctl import cron
from jobctl.errors import ScheduleSearchError
from jobctl.model import CronSchedule
from jobctl.resolve import resolve
from jobctl.runner import Event, Runner
from jobctl.store import open_store
from jobctl.timing import fire_times, next_fire, parse_schedule

ALL_ZONES = sorted(zoneinfo.available_timezones())
_1900 = datetime(1900, 1, 1, tzinfo=UTC).timestamp()


def _pure_changes(name: str) -> list[tuple[int, int, int]]:
    """(instant, offset before, offset after) as the pure-Python zoneinfo reads
    the zone's file: the explicit transitions, up to 2037."""
    pure = _pure_zoneinfo.ZoneInfo.no_cache(name)
    offsets = [pure._tti_before.utcoff] + [tti.utcoff for tti in pure._ttinfos]
    out = []
    for i, stamp in enumerate(pure._trans_utc):
        before, after = offsets[i], offsets[i + 1]
        if before != after:
            out.append((stamp, int(before.total_seconds()), int(after.total_seconds())))
    return out


def test_no_zone_changes_its_offset_twice_within_the_probe_step() -> None:
    """The timeline probes every PROBE seconds; that finds every change only
    while no two changes of one zone are closer than that (95 h in 2026's tz
    database, Africa/Freetown in 1939)."""
    closest = min(
        (b[0] - a[0], name)
        for name in ALL_ZONES
        for a, b in zip(_pure_changes(name), _pure_changes(name)[1:])
        if a[0] >= _1900
    )
    assert closest[0] > cron.PROBE, closest


@pytest.mark.parametrize("year", [1916, 1945, 1979, 1993, 2011, 2014, 2022, 2026, 2037])
def test_timeline_finds_every_change_of_every_zone(year: int) -> None:
    start = int(datetime(year, 1, 1, tzinfo=UTC).timestamp())
    end = int(datetime(year + 1, 1, 1, tzinfo=UTC).timestamp())
    for name in ALL_ZONES:
        expected = [c for c in _pure_changes(name) if start < c[0] <= end]
        timeline = cron.ZoneTimeline(ZoneInfo(name))
        assert timeline.changes(start, end) == expected, name
        # and the offset between changes is the one zoneinfo gives
        for instant, before, after in expected:
            assert timeline.offset(instant - 1) == before and timeline.offset(instant) == after


def test_timeline_after_2037_follows_the_zone_rule() -> None:
    """Past the file's table zoneinfo applies the POSIX rule; so does the timeline."""
    timeline = cron.ZoneTimeline(ZoneInfo("America/New_York"))
    start = int(datetime(2100, 1, 1, tzinfo=UTC).timestamp())
    got = timeline.changes(start, start + 366 * 86400)
    assert [datetime.fromtimestamp(t, UTC) for t, _b, _a in got] == [
        datetime(2100, 3, 14, 7, tzinfo=UTC), datetime(2100, 11, 7, 6, tzinfo=UTC)]
    assert [(b, a) for _t, b, a in got] == [(-5 * 3600, -4 * 3600), (-4 * 3600, -5 * 3600)]


def _fires(expr: str, zone: str, after: datetime, count: int) -> list[str]:
    schedule = parse_schedule(expr)
    return [f.isoformat() for f in fire_times(schedule, ZoneInfo(zone), after, count)]


class TestIssueVectors:
    """The cases the issue reported, against the engine directly."""

    def test_chatham_fall_back_at_0345(self) -> None:
        after = datetime.fromisoformat("2026-04-05T02:30:00+13:45")
        assert _fires("*/15 3 * * *", "Pacific/Chatham", after, 6) == [
            "2026-04-05T03:00:00+13:45", "2026-04-05T03:15:00+13:45", "2026-04-05T03:30:00+13:45",
            "2026-04-05T03:00:00+12:45", "2026-04-05T03:15:00+12:45", "2026-04-05T03:30:00+12:45",
        ]

    def test_chatham_spring_forward_keeps_0345_to_0355(self) -> None:
        after = datetime.fromisoformat("2026-09-26T12:00:00+12:45")
        assert _fires("*/5 3 * * *", "Pacific/Chatham", after, 4) == [
            "2026-09-27T03:45:00+13:45", "2026-09-27T03:50:00+13:45", "2026-09-27T03:55:00+13:45",
            "2026-09-28T03:00:00+13:45",
        ]

    def test_santiago_midnight_gap_keeps_the_0100_hour(self) -> None:
        after = datetime.fromisoformat("2026-09-04T12:00:00-04:00")
        assert _fires("*/15 1 * * 0", "America/Santiago", after, 4) == [
            "2026-09-06T01:00:00-03:00", "2026-09-06T01:15:00-03:00",
            "2026-09-06T01:30:00-03:00", "2026-09-06T01:45:00-03:00",
        ]

    def test_santiago_midnight_gap_invents_nothing(self) -> None:
        after = datetime.fromisoformat("2026-09-04T12:00:00-04:00")
        assert _fires("*/30 0 * * 0", "America/Santiago", after, 2) == [
            "2026-09-13T00:00:00-03:00", "2026-09-13T00:30:00-03:00"]
        # a fixed time in that gap runs once, at the first instant after it
        assert _fires("30 0 * * 0", "America/Santiago", after, 2) == [
            "2026-09-06T01:00:00-03:00", "2026-09-13T00:30:00-03:00"]

    @pytest.mark.parametrize(("zone", "after", "expected"), [
        # St. John's fell back at 00:01 (1987-2010): 23:01-00:00 ran twice
        ("America/St_Johns", "2009-11-01T00:30:00-02:30",
         ["2009-11-01T00:00:00-02:30", "2009-11-01T00:00:00-03:30", "2009-11-02T00:00:00-03:30"]),
        ("America/Moncton", "2005-10-30T00:30:00-03:00",
         ["2005-10-30T00:00:00-03:00", "2005-10-30T00:00:00-04:00", "2005-10-31T00:00:00-04:00"]),
    ])
    def test_fall_back_at_0001_repeats_midnight(self, zone: str, after: str, expected: list[str]) -> None:
        start = datetime.fromisoformat(after) - timedelta(hours=2)
        assert _fires("0 0-0/1 * * *", zone, start, 3) == expected
        # a fixed time runs at the first occurrence only
        assert _fires("0 0 * * *", zone, start, 2) == [expected[0], expected[2]]

    def test_tehran_midnight_gap_before_2023(self) -> None:
        after = datetime.fromisoformat("2022-03-21T12:00:00+03:30")
        assert _fires("*/30 0 * * *", "Asia/Tehran", after, 2) == [
            "2022-03-23T00:00:00+04:30", "2022-03-23T00:30:00+04:30"]
        assert _fires("15 0 * * *", "Asia/Tehran", after, 2) == [
            "2022-03-22T01:00:00+04:30", "2022-03-23T00:15:00+04:30"]


class TestEdges:
    def test_year_9999_ends_without_error(self) -> None:
        schedule = parse_schedule("0 0 1 1 *")
        assert next_fire(schedule, ZoneInfo("Pacific/Kiritimati"), datetime(9999, 6, 1, tzinfo=UTC)) is None
        assert next_fire(schedule, ZoneInfo("UTC"), datetime(9998, 6, 1, tzinfo=UTC)) == datetime(9999, 1, 1, tzinfo=ZoneInfo("UTC"))

    def test_before_1970_and_leap_day_sundays(self) -> None:
        schedule = parse_schedule("0 0 29 2 */7")  # AND: 29 February on a Sunday
        got = next_fire(schedule, ZoneInfo("UTC"), datetime(1950, 1, 1, tzinfo=UTC))
        assert got is not None and got.isoformat() == "1976-02-29T00:00:00+00:00"

    def test_samoa_skipped_a_whole_day(self) -> None:
        """Apia went from -10 to +14 at the end of 2011-12-29: 30 December never was."""
        after = datetime.fromisoformat("2011-12-29T12:00:00-10:00")
        assert _fires("0 12 * * *", "Pacific/Apia", after, 2) == [
            "2011-12-31T00:00:00+14:00", "2011-12-31T12:00:00+14:00"]
        assert _fires("0 12 30 * *", "Pacific/Apia", after, 1) == ["2011-12-31T00:00:00+14:00"]
        assert _fires("*/30 12 30 * *", "Pacific/Apia", after, 1) == ["2012-01-30T12:00:00+14:00"]


class _StuckTimeline(cron.ZoneTimeline):
    """A timeline whose next change never moves forward (broken zone data)."""

    def around(self, real: int, limit: int) -> tuple[int, None, tuple[int, int, int]]:
        return 0, None, (real, 0, 0)


def test_a_search_that_cannot_progress_raises_instead_of_spinning() -> None:
    pattern = cron.compile_expression("0 0 31 12 *")
    with pytest.raises(ScheduleSearchError) as e:
        cron.next_fire_real(pattern, _StuckTimeline(ZoneInfo("UTC")), 0, expr="0 0 31 12 *")
    assert "schedule '0 0 31 12 *' in UTC" in str(e.value)
    assert "task 'backup': " in str(e.value.for_task("backup"))


def test_runner_reports_a_stuck_search_and_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A task whose search cannot progress gets an error event naming it; the
    runner keeps running the other tasks."""
    import jobctl.runner as runner_module

    real = runner_module.next_fire

    def stuck_for_one(schedule, tz, after, anchor=None):  # type: ignore[no-untyped-def]
        if getattr(schedule, "expr", "") == "0 0 31 12 *":
            raise ScheduleSearchError("0 0 31 12 *", tz.key, after)
        return real(schedule, tz, after, anchor)

    monkeypatch.setattr(runner_module, "next_fire", stuck_for_one)
    config = write_config(tmp_path, """
        [[tasks]]
        id = "stuck"
        schedule = "0 0 31 12 *"
        argv = ["true"]

        [[tasks]]
        id = "fine"
        schedule = "* * * * *"
        argv = ["true"]
    """)
    clock = FakeClock(datetime(2026, 6, 15, 12, 0, 30, tzinfo=UTC))
    store = open_store(tmp_path / "state.db", create=True)
    events: list[Event] = []
    runner = Runner(resolve(config, system_zone="UTC", now=clock.now()), store, clock=clock,
                    report=events.append, env=dict(os.environ))
    runner.start()
    errors = [e for e in events if e.kind == "error"]
    assert [e.task_id for e in errors] == ["stuck"]
    assert "task 'stuck': schedule '0 0 31 12 *' in UTC" in errors[0].message
    assert runner.upcoming(5) == [(datetime(2026, 6, 15, 12, 1, tzinfo=UTC), "fine")]
    runner.finish()
    store.close()


def _jobctl(*args: str) -> subprocess.CompletedProcess[str]:
    # a separate process with a deadline: a search that spins fails the test
    return subprocess.run([sys.executable, "-m", "jobctl", *args], capture_output=True,
                          text=True, timeout=60)


def test_cli_next_in_chatham_answers_every_fire() -> None:
    result = _jobctl("next", "*/15 3 * * *", "--tz", "Pacific/Chatham",
                     "--after", "2026-04-05T02:30:00+13:45", "-n", "6", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        "2026-04-05T03:00:00+13:45", "2026-04-05T03:15:00+13:45", "2026-04-05T03:30:00+13:45",
        "2026-04-05T03:00:00+12:45", "2026-04-05T03:15:00+12:45", "2026-04-05T03:30:00+12:45",
    ]


def test_cli_next_in_santiago_keeps_the_hour_after_a_midnight_gap() -> None:
    result = _jobctl("next", "*/15 1 * * 0", "--tz", "America/Santiago",
                     "--after", "2026-09-04T12:00:00-04:00", "-n", "4")
    assert result.returncode == 0, result.stderr
    assert "2026-09-06T01:00:00-03:00" in result.stdout
    assert "2026-09-13" not in result.stdout


def test_cron_schedule_mode() -> None:
    assert isinstance(parse_schedule("0-59/15 3 * * *"), CronSchedule)
    assert not cron.compile_expression("0-59/15 3 * * *").fixed
    assert cron.compile_expression("15,45 3 * * *").fixed


class TestEndsOfTime:
    """Year 1 and year 9999: right answers or a clear error, never a traceback."""

    def test_first_day_of_year_1(self) -> None:
        start = datetime(1, 1, 1, 5, tzinfo=UTC)
        assert _fires("* * * * *", "UTC", start, 2) == ["0001-01-01T05:01:00+00:00", "0001-01-01T05:02:00+00:00"]
        assert _fires("0 12 * * *", "UTC", datetime(1, 1, 1, tzinfo=UTC), 1) == ["0001-01-01T12:00:00+00:00"]
        # Tokyo's local mean time then was +09:18:59
        assert _fires("* * * * *", "Asia/Tokyo", datetime(1, 1, 1, 12, tzinfo=UTC), 1) == [
            "0001-01-01T21:19:00+09:18:59"]

    @pytest.mark.parametrize(("zone", "after"), [("America/New_York", "9999-12-31T23:00:00"),
                                                 ("Asia/Tokyo", "0001-01-01T05:00:00")])
    def test_a_local_time_outside_the_range_is_a_usage_error(self, zone: str, after: str) -> None:
        result = _jobctl("next", "* * * * *", "--tz", zone, "--after", after, "-n", "2")
        assert result.returncode == 2
        assert "Traceback" not in result.stderr
        assert f"--after: '{after}' read in {zone} falls outside the years 1 to 9999" in result.stderr

    def test_an_at_outside_the_range_is_a_config_error(self, tmp_path: Path) -> None:
        config = write_config(tmp_path, """
            [[tasks]]
            id = "a"
            at = "9999-12-31T23:00:00"
            timezone = "America/New_York"
            command = "true"
        """)
        result = _jobctl("validate", "-c", str(config))
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert "jobctl.toml:3: tasks[0] (a).at: '9999-12-31T23:00:00' read in America/New_York falls" in result.stderr
