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
