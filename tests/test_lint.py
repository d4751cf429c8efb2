"""`validate`'s warnings, `validate --json`, and schedules explained in words,
through the real CLI. The clock is the fake one (NOW = 2026-06-15 12:00 UTC),
so "the next year" of DST checks is 2026-06-15 to 2027-06-16 on any date."""

from __future__ import annotations

import json
import re
import os
from pathlib import Path

from conftest import NOW, write_config

from jobctl.lint import lint, source_locator
from jobctl.resolve import resolve


def _task(tid: str, schedule: str, extra: str = 'timeout = "1h"', zone: str = "UTC") -> str:
    return (f'[[tasks]]\nid = "{tid}"\nschedule = "{schedule}"\ncommand = "true"\n'
            f'timezone = "{zone}"\n{extra}\n\n')


def _warnings(result: object) -> list[str]:
    return [line for line in result.stderr.splitlines() if ": warning: " in line]  # type: ignore[attr-defined]


def test_a_clean_config_has_no_warnings(cli, tmp_path: Path) -> None:
    write_config(tmp_path, _task("a", "*/15 * * * *") + _task("b", "0 3 * * *", zone="Europe/Berlin"))
    result = cli("validate", "--strict")
    assert result.exit_code == 0, result.output
    assert (result.stdout, result.stderr) == ("2 tasks OK\n", "")


def test_dst_gap_and_repeat_say_the_date_and_what_jobctl_does(cli, tmp_path: Path) -> None:
    config = write_config(tmp_path, _task("nightly", "30 2 * * *", zone="Europe/Berlin"))
    result = cli("validate")
    assert result.exit_code == 0, result.output
    assert result.stdout == "1 task OK\n"
    assert _warnings(result) == [
        f"{config}:3: tasks[0] (nightly).schedule: warning: on 2026-10-25 02:30 happens twice in "
        "Europe/Berlin (the clocks go back from 03:00 to 02:00): jobctl runs it once, at the "
        "first 02:30 (UTC+02:00), not again at UTC+01:00",
        f"{config}:3: tasks[0] (nightly).schedule: warning: on 2027-03-28 02:30 does not exist "
        "in Europe/Berlin (the clocks jump from 02:00 to 03:00): jobctl runs it once at 03:00",
    ]
    strict = cli("validate", "--strict")
    assert strict.exit_code == 2
    assert strict.stdout == ""
    assert strict.stderr.splitlines()[-1] == "1 task OK, but 2 warnings (--strict)"


def test_dst_year_counts_from_the_injected_now(cli, clock, tmp_path: Path) -> None:
    from datetime import datetime, timezone

    write_config(tmp_path, _task("nightly", "30 2 * * sun", zone="Europe/Berlin"))
    clock.set(datetime(2030, 1, 1, tzinfo=timezone.utc))
    lines = _warnings(cli("validate"))
    # 2030-03-31 and 2030-10-27 are Sundays: both changes hit the task
    assert [line.split("warning: on ")[1][:16] for line in lines] == ["2030-03-31 02:30",
                                                                       "2030-10-27 02:30"]


def test_dst_only_where_the_day_matches_and_only_fixed_times(cli, tmp_path: Path) -> None:
    # Berlin changes on Sundays: a Monday task never meets them; a wildcard
    # task follows real time through them (no warning); a time outside the
    # changed hour is untouched
    write_config(tmp_path, _task("mon", "30 2 * * mon", zone="Europe/Berlin")
                 + _task("wild", "*/30 2 * * *", zone="Europe/Berlin")
                 + _task("four", "0 4 * * *", zone="Europe/Berlin")
                 + _task("ny", "15 1 * * *", zone="America/New_York"))
    lines = _warnings(cli("validate"))
    assert len(lines) == 1 and "(ny).schedule" in lines[0]
    assert "on 2026-11-01 01:15 happens twice in America/New_York" in lines[0]


def test_a_step_that_does_not_divide_its_range(cli, tmp_path: Path) -> None:
    config = write_config(tmp_path, _task("seven", "*/7 * * * *") + _task("even", "*/20 * * * *")
                          + _task("hours", "0 */5 * * *") + _task("ranged", "0-30/7 * * * *"))
    lines = _warnings(cli("validate"))
    assert lines == [
        f"{config}:3: tasks[0] (seven).schedule: warning: minute step '*/7' does not divide 60: "
        "it fires at :56 and again at :00, 4 minutes later, not every 7 minutes",
        f"{config}:17: tasks[2] (hours).schedule: warning: hour step '*/5' does not divide 24: "
        "it fires at 20:00 and again at 00:00, 4 hours later, not every 5 hours",
    ]


def test_day_of_month_and_day_of_week_both_restricted(cli, tmp_path: Path) -> None:
    write_config(tmp_path, _task("both", "0 9 1 * mon") + _task("and", "0 9 */1 * mon"))
    lines = _warnings(cli("validate"))
    assert len(lines) == 1
    assert lines[0].endswith(
        "tasks[0] (both).schedule: warning: both day-of-month '1' and day-of-week 'mon' are "
        "restricted, so, as in cron, it runs on either: day 1 of the month and every Monday, "
        "not only when both match")


def test_forbid_without_timeout(cli, tmp_path: Path) -> None:
    config = write_config(tmp_path, _task("hangs", "@hourly", extra='concurrency = "forbid"')
                          + _task("allowed", "@hourly", extra='concurrency = "allow"')
                          + _task("once", "@reboot", extra='concurrency = "forbid"')
                          + _task("capped", "@hourly", extra='concurrency = "forbid"\ntimeout = "1h"')
                          + _task("default", "@hourly", extra=""))
    lines = _warnings(cli("validate"))
    # on the concurrency line; the default forbid (no key written) is not warned
    # about: that would be every task of most configs
    assert lines == [
        f"{config}:6: tasks[0] (hangs).timeout: warning: concurrency is 'forbid' "
        "and there is no timeout: a run that hangs blocks this task for good (every later fire "
        "is skipped); set a timeout, such as timeout = \"1h\"",
    ]


def test_a_day_some_months_lack_fires_less_often_than_it_looks(cli, tmp_path: Path) -> None:
    write_config(tmp_path, _task("d31", "0 0 31 * *") + _task("leap", "0 0 29 2 *")
                 + _task("d30", "0 0 30 * *") + _task("fine", "0 0 31 1,3 *")
                 + _task("yearly", "@yearly"))
    lines = [line.split(": warning: ")[1] for line in _warnings(cli("validate"))]
    assert lines == [
        "day 31 of the month does not exist in every month it names: it fires 7 times a year, "
        "not monthly (never in February, April, June, September, November)",
        "day 29 of the month does not exist in every month it names: it fires once every 4 "
        "years, not yearly (29 February: leap years only)",
        "day 30 of the month does not exist in every month it names: it fires 11 times a year, "
        "not monthly (never in February)",
    ]
    # February 30 is no warning but an error: it never fires
    write_config(tmp_path, _task("feb30", "0 0 30 2 *"))
    result = cli("validate")
    assert result.exit_code == 2 and "no day 30 in February, so it never fires" in result.stderr


def test_plugin_jobs_are_linted_at_their_manifest_line(cli, tmp_path: Path) -> None:
    folder = tmp_path / "plugins" / "p"
    folder.mkdir(parents=True)
    manifest = folder / "plugin.toml"
    manifest.write_text('[plugin]\nid = "p"\n\n[[jobs]]\nkey = "j"\nargv = ["true"]\n'
                        'timeout = "1m"\nschedule = "*/35 * * * *"\n')
    write_config(tmp_path, '[jobctl]\nplugins = ["plugins/*/plugin.toml"]\n')
    lines = _warnings(cli("validate"))
    assert lines == [f"{manifest}:8: jobs[0] (j).schedule: warning: minute step '*/35' does not "
                     "divide 60: it fires at :35 and again at :00, 25 minutes later, not every "
                     "35 minutes"]
    result = json.loads(cli("validate", "--json").stdout)
    assert result["problems"][0]["task"] == "p:j" and result["problems"][0]["line"] == 8


def test_lint_is_a_function_of_the_set_and_now(tmp_path: Path) -> None:
    config = write_config(tmp_path, _task("n", "30 2 * * *", zone="Europe/Berlin"))
    schedule_set = resolve(config, system_zone="UTC", now=NOW)
    found = lint(schedule_set, NOW, lambda task, key: task.origin)  # type: ignore[arg-type,return-value]
    assert [(p.origin.line, p.where, p.severity) for p in found] == [
        (1, "tasks[0] (n).schedule", "warning")] * 2
    assert [p.origin.line for p in lint(schedule_set, NOW, source_locator())] == [3, 3]


# -- validate --json -------------------------------------------------------------


def _json(cli, *args: str) -> tuple[int, dict[str, object]]:  # type: ignore[no-untyped-def]
    result = cli("validate", "--json", *args)
    assert result.stderr == "", result.stderr
    return result.exit_code, json.loads(result.stdout)


def test_json_ok_and_warnings(cli, tmp_path: Path) -> None:
    config = write_config(tmp_path, _task("a", "*/5 * * * *") + _task("b", "*/7 * * * *"))
    code, out = _json(cli)
    assert code == 0
    assert out == {"ok": True, "tasks": 2, "problems": [
        {"severity": "warning", "file": str(config), "line": 10, "task": "b", "key": "schedule",
         "message": "minute step '*/7' does not divide 60: it fires at :56 and again at :00, "
                    "4 minutes later, not every 7 minutes"}]}
    code, out = _json(cli, "--strict")
    assert (code, out["ok"], len(out["problems"])) == (2, False, 1)  # type: ignore[arg-type]


def test_json_toml_syntax_error(cli, tmp_path: Path) -> None:
    config = write_config(tmp_path, '[[tasks]]\nid = "a"\nschedule = "@daily\ncommand = "x"\n')
    before = config.read_bytes()
    code, out = _json(cli)
    assert code == 2
    assert out == {"ok": False, "tasks": 0, "problems": [
        {"severity": "error", "file": str(config), "line": 3, "task": None, "key": None,
         "message": "TOML syntax error: Unterminated string (it opens at column 12)"}]}
    assert config.read_bytes() == before


def test_json_unknown_keys_bad_schedule_and_settings(cli, tmp_path: Path) -> None:
    config = write_config(tmp_path, """
        [jobctl]
        shell = "/no/such/shell"
        colour = "red"

        [[tasks]]
        id = "a"
        schedule = "0 25 * * *"
        command = "true"

        [[tasks]]
        schedule = "@daily"
        comand = "true"
    """)
    code, out = _json(cli)
    assert code == 2 and out["ok"] is False and out["tasks"] == 0
    problems = {(p["line"], p["task"], p["key"], p["severity"]): p["message"]  # type: ignore[index]
                for p in out["problems"]}  # type: ignore[attr-defined]
    # the list of allowed settings grows with jobctl: its start is enough here
    colour = problems[(3, None, "jobctl.colour", "error")]
    assert colour.startswith("unknown key 'colour'; allowed: timezone, state, shell, plugins, ")
    problems[(3, None, "jobctl.colour", "error")] = "unknown key 'colour'; ..."
    assert problems == {
        (2, None, "jobctl.shell", "warning"):
            "'/no/such/shell' is not an executable program here: every task with a `command` "
            "would fail to start",
        (3, None, "jobctl.colour", "error"): "unknown key 'colour'; ...",
        (7, "a", "schedule", "error"):
            "bad hour field '25': 25 is out of range 0-23",
        (10, None, "tasks[1].id", "error"): "missing required key 'id'",
        (12, None, "tasks[1].comand", "error"): "unknown key 'comand'; did you mean 'command'?",
        (10, None, "tasks[1]", "error"):
            "needs exactly one of 'command' (a shell string) or 'argv' (a list, no shell)",
    }
    assert all(set(p) == {"severity", "file", "line", "task", "key", "message"}  # type: ignore[arg-type]
               and p["file"] == str(config) for p in out["problems"])  # type: ignore[attr-defined,index]


def test_json_plugin_problems(cli, tmp_path: Path) -> None:
    folder = tmp_path / "plugins" / "p"
    folder.mkdir(parents=True)
    manifest = folder / "plugin.toml"
    manifest.write_text('[plugin]\nid = "p"\nflavour = 1\n\n[[jobs]]\nkey = "j"\n'
                        'argv = ["true"]\nschedule = "* * * * *"\n')
    write_config(tmp_path, '[jobctl]\nplugins = ["plugins/*/plugin.toml"]\n\n'
                 + _task("own", "@daily"))
    code, out = _json(cli)
    assert code == 2 and out["ok"] is False and out["tasks"] == 1
    assert out["problems"] == [
        {"severity": "error", "file": str(manifest), "line": 3, "task": None,
         "key": "plugin.flavour",
         "message": "unknown key 'flavour'; allowed: id, name, version, description, priority, "
                    "trusted, host_services"},
        {"severity": "error", "file": str(manifest), "line": 8, "task": "p:j", "key": "schedule",
         "message": "fires as often as every 1m; the limit is every 5m (min_interval)"},
    ]


def test_json_no_config_and_an_untrusted_config(cli, tmp_path: Path) -> None:
    code, out = _json(cli, "-c", str(tmp_path / "missing.toml"))
    assert code == 2 and out["ok"] is False and out["tasks"] == 0
    [problem] = out["problems"]  # type: ignore[misc]
    assert problem["file"] == str(tmp_path / "missing.toml") and problem["line"] is None
    assert problem["message"].startswith("no config file found; tried:")
    config = write_config(tmp_path, _task("a", "@daily"))
    os.chmod(config, 0o666)
    code, out = _json(cli)
    [problem] = out["problems"]  # type: ignore[misc]
    assert code == 2 and problem["file"] == str(config) and problem["severity"] == "error"
    assert "writable by group and others" in problem["message"]


# -- in words --------------------------------------------------------------------


def test_show_and_next_say_what_an_expression_means(cli, tmp_path: Path) -> None:
    write_config(tmp_path, _task("weekdays", "30 2 * * 1-5", zone="Europe/Berlin")
                 + _task("poll", "every 90s") + _task("boot", "@reboot"))
    shown = cli("show", "weekdays")
    assert shown.exit_code == 0, shown.output
    assert re.search(r"^explanation +At 02:30, Monday through Friday$", shown.stdout, re.M), \
        shown.stdout
    assert json.loads(cli("show", "weekdays", "--json").stdout)["explanation"] == \
        "At 02:30, Monday through Friday"
    assert json.loads(cli("show", "poll", "--json").stdout)["explanation"] == \
        "Every 1m30s, counted from the runner's start"
    assert json.loads(cli("show", "boot", "--json").stdout)["explanation"] == \
        "Once each time the runner starts"
    result = cli("next", "0 0 1 * mon", "-n", "1", "--tz", "UTC")
    assert result.stdout.splitlines()[0] == "At 00:00, on day 1 of the month, or on Monday (UTC)"
    result = cli("next", "@hourly", "-n", "1", "--json", "--tz", "UTC")
    assert json.loads(result.stdout) == ["2026-06-15T13:00:00+00:00"]  # JSON: times only


def test_the_describing_library_is_imported_only_when_explaining(tmp_path: Path) -> None:
    import subprocess
    import sys

    write_config(tmp_path, _task("a", "@daily"))
    probe = ("import sys\nfrom jobctl.cli import main\nsys.argv = ['jobctl'] + sys.argv[1:]\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\n"
             "print('LOADED' if 'cron_descriptor' in sys.modules else 'NOT')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBCTL_")}
    for args, loaded in ((["list"], "NOT"), (["validate"], "NOT"), (["show", "a"], "LOADED")):
        out = subprocess.run([sys.executable, "-c", probe, *args], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=60)
        assert out.stdout.splitlines()[-1] == loaded, (args, out.stdout, out.stderr)
