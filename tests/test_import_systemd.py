"""`jobctl import systemd`: timers whose fire times match systemd-analyze's."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import rtoml
from typer.testing import CliRunner

from conftest import FakeClock, write_config
from jobctl.cli import app
from jobctl.cli._common import Services
from jobctl.importers.systemd import CalendarError, calendar_to_cron, parse_unit
from jobctl.timing import load_zone, next_fire, parse_schedule

UTC = timezone.utc
DATA = Path(__file__).parent / "data" / "systemd"
DEBIAN_TIMERS = ("apt-daily", "man-db", "fstrim", "e2scrub_all", "dpkg-db-backup",
                 "systemd-tmpfiles-clean")
ANALYZE = shutil.which("systemd-analyze")
# around both clock changes of 2026 in Europe and the US, and a quiet day
BASES = (datetime(2026, 3, 7, 12, tzinfo=UTC), datetime(2026, 3, 27, 12, tzinfo=UTC),
         datetime(2026, 10, 24, 12, tzinfo=UTC), datetime(2026, 6, 15, 12, tzinfo=UTC))
ZONES = ("UTC", "Europe/Berlin", "America/New_York")


def _invoke(tmp_path: Path, args: list[str], zone: str = "UTC") -> Any:
    services = Services(clock=FakeClock(), env={"PATH": "/nonexistent"}, cwd=tmp_path,
                        system_zone=zone)
    return CliRunner().invoke(app, args, obj=services)


def _analyze(expression: str, base: datetime, n: int) -> list[datetime]:
    assert ANALYZE is not None
    out = subprocess.run(
        [ANALYZE, "calendar", f"--iterations={n}", f"--base-time=@{int(base.timestamp())}",
         expression], capture_output=True, text=True, env={**os.environ, "TZ": "UTC"},
        check=True, timeout=60).stdout
    found = re.findall(r"(?:Next elapse|Iter\. #\d+): \w+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", out)
    assert len(found) == n, out
    return [datetime.fromisoformat(f).replace(tzinfo=UTC) for f in found]


def _jobctl_fires(expression: str, base: datetime, n: int) -> list[datetime]:
    expr, zone = calendar_to_cron(expression)
    schedule, tz = parse_schedule(expr), load_zone(zone or "UTC")
    fires: list[datetime] = []
    after = base
    for _ in range(n):
        fire = next_fire(schedule, tz, after)
        assert fire is not None
        fires.append(fire.astimezone(UTC))
        after = fire
    return fires


def _calendars(name: str) -> list[str]:
    return [e.value for e in parse_unit((DATA / f"{name}.timer").read_text())
            if e.section == "Timer" and e.key == "OnCalendar"]


def test_every_listed_debian_timer_is_in_tests_data() -> None:
    missing = [n for n in DEBIAN_TIMERS
               if not (DATA / f"{n}.timer").is_file() or not (DATA / f"{n}.service").is_file()]
    assert not missing, f"copy these units from /lib/systemd/system into {DATA}: {missing}"
    # the copies are what this machine ships, where it ships them
    for name in DEBIAN_TIMERS:
        for kind in ("timer", "service"):
            shipped = Path("/lib/systemd/system") / f"{name}.{kind}"
            if shipped.is_file():
                assert shipped.read_text() == (DATA / f"{name}.{kind}").read_text(), shipped


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed here")
@pytest.mark.parametrize("name", DEBIAN_TIMERS)
def test_debian_timers_fire_when_systemd_analyze_says(name: str) -> None:
    for calendar in _calendars(name):
        for zone in ZONES:
            expression = f"{calendar} {zone}"
            for base in BASES:
                assert _jobctl_fires(expression, base, 12) == _analyze(expression, base, 12), \
                    (expression, base)


EXACT = {
    "daily": "0 0 * * *",
    "weekly": "0 0 * * 1",
    "hourly": "0 * * * *",
    "monthly": "0 0 1 * *",
    "minutely": "* * * * *",
    "quarterly": "0 0 1 1,4,7,10 *",
    "*-*-* 6,18:00": "0 6,18 * * *",
    "Sun *-*-* 03:10:00": "10 3 * * 0",
    "Mon..Fri 09:00": "0 9 * * 1-5",
    "Sat,Sun 10:30": "30 10 * * 0,6",
    "*:0/15": "0-59/15 * * * *",
    "*-*-01..07 12:00": "0 12 1-7 * *",
    "*-02-29 00:00": "0 0 29 2 *",
    "Fri..Sun *-*-* 22:00": "0 22 * * 0,5-6",
}


@pytest.mark.parametrize("calendar", sorted(EXACT))
def test_calendar_forms_become_cron(calendar: str) -> None:
    assert calendar_to_cron(calendar) == (EXACT[calendar], None)
    assert calendar_to_cron(f"{calendar} America/New_York") == (EXACT[calendar], "America/New_York")


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed here")
@pytest.mark.parametrize("calendar", sorted(EXACT))
def test_calendar_forms_fire_when_systemd_analyze_says(calendar: str) -> None:
    for base in (datetime(2026, 6, 15, 12, 7, tzinfo=UTC), datetime(2027, 12, 31, 23, 59, tzinfo=UTC)):
        expression = f"{calendar} UTC"
        assert _jobctl_fires(expression, base, 30) == _analyze(expression, base, 30), base


@pytest.mark.parametrize(("calendar", "reason"), [
    ("*-*-* 06:00:30", "seconds ':30': cron fires on whole minutes only"),
    ("*-*~03 00:00", "'~' counts days from the end of the month"),
    ("2027-*-* 00:00", "year '2027': cron has no year field"),
    ("Mon *-*-01..07 00:00", "a weekday and a day of the month together"),
    ("Fri..Mon 22:00", "systemd refuses a range that wraps around"),
    ("daily Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
])
def test_calendars_without_an_exact_cron_are_refused(calendar: str, reason: str) -> None:
    with pytest.raises(CalendarError, match=re.escape(reason)):
        calendar_to_cron(calendar)


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed here")
def test_clock_change_differences_are_real_and_refused(tmp_path: Path) -> None:
    # what systemd does at a clock change, which jobctl (cronie's rules) does not
    gap = "*-*-* 02:30 Europe/Berlin"
    base = datetime(2026, 3, 28, 12, tzinfo=UTC)
    assert _analyze(gap, base, 1) == [datetime(2026, 3, 30, 0, 30, tzinfo=UTC)]
    assert _jobctl_fires(gap, base, 1) == [datetime(2026, 3, 29, 1, 0, tzinfo=UTC)]
    repeat = "*:0/15 Europe/Berlin"
    base = datetime(2026, 10, 25, 0, 50, tzinfo=UTC)
    assert _analyze(repeat, base, 1) == [datetime(2026, 10, 25, 2, 0, tzinfo=UTC)]
    assert _jobctl_fires(repeat, base, 1) == [datetime(2026, 10, 25, 1, 0, tzinfo=UTC)]
    # so the importer refuses both, with file:line, when the zone has such a change
    timer = tmp_path / "dst.timer"
    timer.write_text("[Timer]\nOnCalendar=*-*-* 02:30\nOnCalendar=*:0/15\n"
                     "OnCalendar=*-*-* 02:30 UTC\n")
    (tmp_path / "dst.service").write_text("[Service]\nExecStart=/bin/true\n")
    result = _invoke(tmp_path, ["import", "systemd", str(timer)], zone="Europe/Berlin")
    assert result.exit_code == 2
    assert f"refused: {timer}:2: OnCalendar=*-*-* 02:30: in Europe/Berlin the clock skips 02:30 " \
           "on 2027-03-28: systemd does not fire that day" in result.stderr
    assert f"refused: {timer}:3: OnCalendar=*:0/15: in Europe/Berlin the clock repeats " \
           in result.stderr
    in_utc = _invoke(tmp_path, ["import", "systemd", str(timer)], zone="UTC")
    assert in_utc.exit_code == 0, in_utc.output
    assert [t["schedule"] for t in rtoml.loads(in_utc.stdout)["tasks"]] == [
        "30 2 * * *", "0-59/15 * * * *", "30 2 * * *"]


def _import(tmp_path: Path, name: str, *extra: str) -> Any:
    return _invoke(tmp_path, ["import", "systemd", str(DATA / f"{name}.timer"), *extra])


def test_debian_timers_import_or_are_refused_with_reasons(tmp_path: Path) -> None:
    e2scrub = _import(tmp_path, "e2scrub_all")
    assert e2scrub.exit_code == 0, e2scrub.output
    assert rtoml.loads(e2scrub.stdout)["tasks"] == [{
        "id": "e2scrub_all", "description": "Periodic ext4 Online Metadata Check for All Filesystems",
        "schedule": "10 3 * * 0", "argv": ["/sbin/e2scrub_all"], "env": {"SERVICE_MODE": "1"},
        "jitter": "1m", "catch_up": "once"}]
    assert f"# {DATA}/e2scrub_all.timer:6: OnCalendar=Sun *-*-* 03:10:00" in e2scrub.stdout
    assert "not imported: ConditionACPower=true (systemd skipped a run" in e2scrub.stdout
    fstrim = rtoml.loads(_import(tmp_path, "fstrim").stdout)["tasks"][0]
    assert (fstrim["schedule"], fstrim["jitter"]) == ("0 0 * * 1", "1h40m")
    assert "AccuracySec=1h: systemd could fire up to that late" in _import(tmp_path, "fstrim").stdout
    # ExecStartPre=- then ExecStart=, in turn in one `sh -c`, as systemd runs them
    apt = _import(tmp_path, "apt-daily")
    assert apt.exit_code == 0, apt.output
    assert rtoml.loads(apt.stdout)["tasks"][0]["argv"] == [
        "/bin/sh", "-c",
        "/usr/lib/apt/apt-helper wait-online || :; exec /usr/lib/apt/apt.systemd.daily update"]
    # several ExecStart= lines (and a '+' one): nothing to run, so nothing imported
    man = _import(tmp_path, "man-db", "--skip-unsupported")
    assert man.exit_code == 2
    assert f"{DATA}/man-db.service:9: ExecStart=+/usr/bin/install" in man.stderr
    assert f"{DATA}/man-db.service:11: ExecStart=/usr/bin/find" in man.stderr
    assert "several ExecStart= lines" in man.stderr
    # OnBootSec=15min: jobctl cannot wait after start; OnUnitActiveSec=1d is an interval
    tmpfiles = _import(tmp_path, "systemd-tmpfiles-clean")
    assert tmpfiles.exit_code == 2
    assert f"{DATA}/systemd-tmpfiles-clean.timer:16: OnBootSec=15min: jobctl cannot wait" \
           in tmpfiles.stderr
    tmpfiles = _import(tmp_path, "systemd-tmpfiles-clean", "--skip-unsupported")
    task = rtoml.loads(tmpfiles.stdout)["tasks"][0]
    assert (task["schedule"], task["argv"]) == ("every 1d", ["systemd-tmpfiles", "--clean"])


def test_a_timer_without_issue_11_keys_writes_a_valid_config(tmp_path: Path) -> None:
    config = write_config(tmp_path, '[jobctl]\nstate = "state.db"\n')
    result = _invoke(tmp_path, ["import", "systemd", str(DATA / "dpkg-db-backup.timer"),
                                str(DATA / "dpkg-db-backup.service"), "--write", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert rtoml.loads(config.read_text())["tasks"] == [{
        "id": "dpkg-db-backup", "description": "Daily dpkg database backup timer",
        "schedule": "0 0 * * *", "argv": ["/usr/libexec/dpkg/dpkg-db-backup"]}]
    listed = _invoke(tmp_path, ["list", "--json", "-c", str(config)])
    assert listed.exit_code == 0, listed.output


def test_a_service_translates_key_by_key(tmp_path: Path) -> None:
    timer = tmp_path / "backup.timer"
    timer.write_text("[Unit]\nDescription=Backups\n[Timer]\nOnCalendar=Mon..Fri 09:00 UTC\n"
                     "OnCalendar=Sat 12:00 Europe/Berlin\nOnBootSec=0\nPersistent=yes\n"
                     "Unit=other.service\n")
    (tmp_path / "other.service").write_text(
        "[Service]\nType=oneshot\nExecStart=-/usr/bin/backup --to \"/srv/my backups\" 'a b'\n"
        "WorkingDirectory=/srv\nEnvironment=A=1 \"B=two words\"\nEnvironment=C=3\n"
        "User=backup\nTimeoutStartSec=1h 30min\n")
    result = _invoke(tmp_path, ["import", "systemd", str(timer)])
    assert result.exit_code == 0, result.output
    tasks = rtoml.loads(result.stdout)["tasks"]
    assert [(t["id"], t["group"], t["schedule"], t.get("timezone"), t.get("catch_up"))
            for t in tasks] == [
        ("backup-1", "backup", "0 9 * * 1-5", "UTC", "once"),
        ("backup-2", "backup", "0 12 * * 6", "Europe/Berlin", "once"),
        ("backup-3", "backup", "@reboot", None, None)]
    first = tasks[0]
    assert first["argv"] == ["/bin/sh", "-c", '"$@" || :', "/usr/bin/backup", "/usr/bin/backup",
                             "--to", "/srv/my backups", "a b"]
    assert (first["cwd"], first["user"], first["timeout"]) == ("/srv", "backup", "1h30m")
    assert first["env"] == {"A": "1", "B": "two words", "C": "3"}
    assert "'-': systemd counted a failing exit as success" in result.stdout


@pytest.mark.parametrize(("line", "reason"), [
    ("ExecStart=@/bin/prog name", "'@' gives the program another argv[0]"),
    ("ExecStart=/bin/echo $HOME", "systemd expands $VARIABLES"),
    ("ExecStart=/bin/echo %n", "a %-specifier"),
    ("ExecStartPost=/bin/true", "jobctl runs one command per task"),
])
def test_service_lines_without_an_equivalent_are_refused(tmp_path: Path, line: str,
                                                         reason: str) -> None:
    timer = tmp_path / "t.timer"
    timer.write_text("[Timer]\nOnCalendar=daily UTC\n")
    service = tmp_path / "t.service"
    service.write_text(f"[Service]\nExecStart=/bin/true\n{line}\n"
                       if line.startswith("ExecStartPost") else f"[Service]\n{line}\n")
    result = _invoke(tmp_path, ["import", "systemd", str(timer)])
    assert result.exit_code == 2
    number = 3 if line.startswith("ExecStartPost") else 2
    assert f"refused: {service}:{number}: {line}: {reason}" in result.stderr, result.stderr
    assert "Traceback" not in result.output


def test_exec_start_pre_lines_run_first_and_stop_the_run_as_in_systemd(tmp_path: Path) -> None:
    config = write_config(tmp_path, '[jobctl]\nstate = "state.db"\n')
    out = tmp_path / "out"
    cases = {"ignored": "ExecStartPre=-/bin/false\n", "fatal": "ExecStartPre=/bin/sh -c 'exit 3'\n",
             "fine": f"ExecStartPre=/bin/sh -c 'echo pre >> {out}-fine'\n"}
    for name, pre in cases.items():
        (tmp_path / f"{name}.timer").write_text("[Timer]\nOnCalendar=daily UTC\n")
        (tmp_path / f"{name}.service").write_text(
            f"[Service]\nType=oneshot\n{pre}ExecStart=/bin/sh -c 'echo main >> {out}-{name}'\n")
        written = _invoke(tmp_path, ["import", "systemd", str(tmp_path / f"{name}.timer"),
                                     "--write", "-c", str(config)])
        assert written.exit_code == 0, written.output
    codes = {name: _invoke(tmp_path, ["run-now", name, "-c", str(config)]).exit_code
             for name in cases}
    # a failing ExecStartPre= with '-' is ignored; without, the main command never runs
    assert codes == {"ignored": 0, "fatal": 1, "fine": 0}
    assert (tmp_path / "out-ignored").read_text() == "main\n"
    assert not (tmp_path / "out-fatal").exists()
    assert (tmp_path / "out-fine").read_text() == "pre\nmain\n"


def test_a_missing_service_is_a_clear_error(tmp_path: Path) -> None:
    timer = tmp_path / "lonely.timer"
    timer.write_text("[Timer]\nOnCalendar=daily\n")
    result = _invoke(tmp_path, ["import", "systemd", str(timer)])
    assert result.exit_code == 2
    assert f"no service unit {tmp_path / 'lonely.service'} beside {timer}" in result.stderr


def test_a_jitter_that_reaches_the_next_fire_is_shortened_to_a_valid_one(tmp_path: Path) -> None:
    # Debian's apt-daily.timer: RandomizedDelaySec=12h on a timer firing at 06:00 and 18:00;
    # jobctl refuses a jitter that is not shorter than the gap, so the import must not keep it
    config = write_config(tmp_path, '[jobctl]\nstate = "state.db"\n')
    printed = _import(tmp_path, "apt-daily", "--skip-unsupported")
    assert printed.exit_code == 0, printed.output
    assert rtoml.loads(printed.stdout)["tasks"][0]["jitter"] == "11h59m"
    assert "RandomizedDelaySec=12h reaches the next fire (12h apart)" in printed.stdout
    (tmp_path / "printed.toml").write_text(printed.stdout)
    check = _invoke(tmp_path, ["validate", "-c", str(tmp_path / "printed.toml")])
    assert check.exit_code == 0, check.output
    written = _import(tmp_path, "apt-daily", "--skip-unsupported", "--write", "-c", str(config))
    assert written.exit_code == 0, written.output
    assert rtoml.loads(config.read_text())["tasks"][0]["jitter"] == "11h59m"
    # every minute: no room for any jitter
    timer = tmp_path / "often.timer"
    timer.write_text("[Timer]\nOnCalendar=*:*:00 UTC\nRandomizedDelaySec=5min\n")
    (tmp_path / "often.service").write_text("[Service]\nExecStart=/bin/true\n")
    often = _invoke(tmp_path, ["import", "systemd", str(timer)])
    assert often.exit_code == 0, often.output
    assert "jitter" not in rtoml.loads(often.stdout)["tasks"][0]


def test_importing_a_timer_twice_does_not_double_its_task(tmp_path: Path) -> None:
    config = write_config(tmp_path, '[jobctl]\nstate = "state.db"\n')
    args = ["import", "systemd", str(DATA / "dpkg-db-backup.timer"), "--write", "-c", str(config)]
    assert _invoke(tmp_path, args).exit_code == 0
    again = _invoke(tmp_path, args)
    assert again.exit_code == 0, again.output
    assert "already in the config as dpkg-db-backup, not imported again" in again.stderr
    assert [t["id"] for t in rtoml.loads(config.read_text())["tasks"]] == ["dpkg-db-backup"]


def test_an_optional_environment_file_that_is_missing_is_left_out(tmp_path: Path) -> None:
    # EnvironmentFile=-PATH: systemd reads nothing when PATH is missing; an env_file naming
    # it would make the imported config invalid
    timer = tmp_path / "t.timer"
    timer.write_text("[Timer]\nOnCalendar=daily UTC\n")
    present = tmp_path / "present.env"
    present.write_text("A=1\n")
    present.chmod(0o600)
    missing = tmp_path / "missing.env"
    (tmp_path / "t.service").write_text(f"[Service]\nEnvironmentFile=-{missing}\n"
                                        "ExecStart=/bin/true\n")
    result = _invoke(tmp_path, ["import", "systemd", str(timer)])
    assert result.exit_code == 0, result.output
    assert "env_file" not in rtoml.loads(result.stdout)["tasks"][0]
    assert f"the file does not exist, which systemd allowed ('-'); not imported: if you " \
           f'create it, add env_file = "{missing}"' in result.stdout
    (tmp_path / "out.toml").write_text(result.stdout)
    check = _invoke(tmp_path, ["validate", "-c", str(tmp_path / "out.toml")])
    assert check.exit_code == 0, check.output
    # an optional file that is there is imported
    (tmp_path / "t.service").write_text(f"[Service]\nEnvironmentFile=-{present}\n"
                                        "ExecStart=/bin/true\n")
    there = _invoke(tmp_path, ["import", "systemd", str(timer)])
    assert rtoml.loads(there.stdout)["tasks"][0]["env_file"] == str(present)
