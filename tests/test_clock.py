"""The system's zone: $TZ as the C library reads it, else the system's settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobctl.clock import system_zone

JOBCTL = str(Path(sys.executable).parent / "jobctl")
BERLIN_FILE = Path("/usr/share/zoneinfo/Europe/Berlin")


def _next_noon(tmp_path: Path, tz: str) -> subprocess.CompletedProcess[str]:
    """`jobctl next` of a bare expression, with no config: the system's zone."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBCTL_")}
    env.update(TZ=tz, XDG_CONFIG_HOME=str(tmp_path / "none"))
    return subprocess.run([JOBCTL, "next", "0 12 * * *", "--after", "2026-01-15T00:00", "-n", "1",
                           "--json"], cwd=tmp_path, env=env, capture_output=True, text=True)


@pytest.mark.skipif(not BERLIN_FILE.exists(), reason="no system zoneinfo files")
@pytest.mark.parametrize("tz", [f":{BERLIN_FILE}", str(BERLIN_FILE), "Europe/Berlin", ":Europe/Berlin"])
def test_tz_as_a_name_or_a_zoneinfo_path_is_the_system_zone(tmp_path: Path, tz: str) -> None:
    proc = _next_noon(tmp_path, tz)
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
    assert json.loads(proc.stdout) == ["2026-01-15T12:00:00+01:00"]


@pytest.mark.parametrize(("tz", "noon"), [("EST5EDT", "2026-01-15T12:00:00-05:00"),
                                          ("CET", "2026-01-15T12:00:00+01:00"),
                                          ("", "2026-01-15T12:00:00+00:00")])
def test_tz_naming_a_tzdata_posix_style_zone_is_that_zone(tmp_path: Path, tz: str, noon: str) -> None:
    proc = _next_noon(tmp_path, tz)
    assert (proc.returncode, proc.stderr) == (0, ""), proc.stderr
    assert json.loads(proc.stdout) == [noon]


@pytest.mark.parametrize("tz", ["CET-1CEST,M3.5.0,M10.5.0/3", "Mars/Olympus"])
def test_tz_naming_no_zone_says_which_zone_is_used(tmp_path: Path, tz: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TZ", raising=False)
    used, note = system_zone()  # the system's own zone, whatever this machine's is
    proc = _next_noon(tmp_path, tz)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == (
        f"warning: TZ={tz!r} names no IANA time zone; using the system's zone, {used} "
        "(set TZ, or [jobctl] timezone, to a name such as Europe/Berlin)\n")
    assert len(json.loads(proc.stdout)) == 1


def test_system_zone_in_process(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TZ", ":America/New_York")
    assert system_zone() == ("America/New_York", None)
    not_a_zone = tmp_path / "zone"
    not_a_zone.write_text("not a TZif file")
    monkeypatch.setenv("TZ", str(not_a_zone))
    name, note = system_zone()
    assert note is not None and f"TZ='{not_a_zone}' names no IANA time zone" in note


def test_an_offset_clock_takes_the_reference_time_corrected_by_half_the_round_trip() -> None:
    from datetime import datetime, timedelta, timezone

    from conftest import FakeClock
    from jobctl.clock import OffsetClock

    base = FakeClock(datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc))
    clock = OffsetClock(base)
    assert clock.now() == base.now() and clock.offset == 0.0  # not measured yet

    def reference() -> datetime:
        # the database reads its clock 40 s behind ours, then the answer takes 0.2 s back
        at = base.now() + timedelta(seconds=0.1 - 40)
        base.advance(0.2)
        return at

    clock.sync(reference)
    assert abs(clock.offset - -40.0) < 1e-6 and clock.round_trip == pytest.approx(0.2)
    assert clock.now() == base.now() - timedelta(seconds=40)
    assert clock.monotonic() == base.monotonic()

    def slow() -> datetime:  # a 3 s round trip says little: the last good offset stays
        base.advance(3)
        return base.now()

    clock.sync(slow)
    assert abs(clock.offset - -40.0) < 1e-6
    clock.sync(lambda: None)  # a state without a clock of its own
    assert abs(clock.offset - -40.0) < 1e-6
