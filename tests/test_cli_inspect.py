"""The read-only commands through the real typer app and the real entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import write_config

CONFIG = """
[jobctl]
timezone = "Europe/Berlin"

[[tasks]]
id = "backup"
name = "Nightly backup"
group = "db"
schedule = "30 2 * * *"
command = "echo backup"

[[tasks]]
id = "poll"
schedule = "every 30s"
argv = ["true"]
timezone = "UTC"

[[tasks]]
id = "off"
schedule = "@hourly"
command = "true"
enabled = false
"""


def test_validate_ok_and_counts(cli, tmp_path: Path) -> None:
    write_config(tmp_path, CONFIG)
    result = cli("validate")
    assert result.exit_code == 0, result.output
    assert result.stdout == "3 tasks OK\n"


def test_validate_reports_all_errors_on_stderr_exit_2(cli, tmp_path: Path) -> None:
    path = write_config(tmp_path, """
        [[tasks]]
        id = "a"
        schedule = "0 25 * * *"
        command = "true"

        [[tasks]]
        id = "b"
        schedule = "@daily"
        comand = "true"
    """)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = cli("validate")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert f"{path}:3: tasks[0] (a).schedule: bad hour field '25': 25 is out of range 0-23" in result.stderr
    assert f"{path}:9: tasks[1] (b).comand: unknown key 'comand'; did you mean 'command'?" in result.stderr
    assert "2 errors in config" in result.stderr or "3 errors in config" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_missing_config_names_paths_tried(cli, tmp_path: Path) -> None:
    result = cli("list")
    assert result.exit_code == 2
    assert "no config file found; tried:" in result.stderr
    assert str(tmp_path / "jobctl.toml") in result.stderr
    result = cli("list", "-c", str(tmp_path / "nope.toml"))
    assert result.exit_code == 2 and str(tmp_path / "nope.toml") in result.stderr


def test_config_from_env(cli, tmp_path: Path) -> None:
    path = write_config(tmp_path, CONFIG, name="elsewhere.toml")
    result = cli("validate", env={"JOBCTL_CONFIG": str(path)})
    assert result.exit_code == 0, result.output


def test_list_json(cli, tmp_path: Path) -> None:
    write_config(tmp_path, CONFIG)
    result = cli("list", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["id"] for r in rows] == ["backup", "poll", "off"]
    assert set(rows[0]) == {"id", "name", "group", "description", "schedule", "timezone",
                            "enabled", "next_run", "owner", "last_run"}
    assert rows[0]["last_run"] is None  # no state file yet
    # NOW is 2026-06-15T12:00Z; 02:30 Berlin (CEST, +02:00) next is the 16th
    assert rows[0]["next_run"] == "2026-06-16T02:30:00+02:00"
    assert rows[0]["owner"] == "config" and rows[0]["group"] == "db"
    assert rows[1]["next_run"] == "2026-06-15T12:00:30+00:00"  # intervals count from now
    assert rows[2]["enabled"] is False and rows[2]["next_run"] is None


def test_list_table(cli, tmp_path: Path) -> None:
    write_config(tmp_path, CONFIG)
    result = cli("list")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "NAME", "GROUP", "SCHEDULE", "TIMEZONE", "ENABLED", "NEXT", "RUN",
                                "LAST", "RUN"]
    backup = next(line for line in lines if line.startswith("backup"))
    assert "Nightly backup" in backup and "30 2 * * *" in backup
    # relative, then compact in the task's zone (the date: not today there)
    assert "in 12h 30m (Jun 16 02:30)" in backup
    off = next(line for line in lines if line.startswith("off"))
    assert " no " in off and off.split()[-2:] == ["disabled", "-"]


def test_show_json_and_text(cli, tmp_path: Path) -> None:
    write_config(tmp_path, CONFIG)
    result = cli("show", "backup", "--json")
    assert result.exit_code == 0, result.output
    detail = json.loads(result.stdout)
    assert detail["next_runs"] == [f"2026-06-{d}T02:30:00+02:00" for d in range(16, 21)]
    assert detail["command"] == "echo backup" and detail["concurrency"] == "forbid"
    assert detail["source"].endswith("jobctl.toml:4")
    text = cli("show", "backup")
    assert text.exit_code == 0
    assert "2026-06-20T02:30:00+02:00" in text.stdout and "Nightly backup" in text.stdout


def test_unknown_id_exit_2_with_suggestion(cli, tmp_path: Path) -> None:
    write_config(tmp_path, CONFIG)
    result = cli("show", "backpu")
    assert result.exit_code == 2
    assert "no task with id 'backpu' (did you mean 'backup'?)" in result.stderr
    assert cli("next", "nosuchtask").exit_code == 2
    result = cli("next", "BACKUP")
    assert result.exit_code == 2
    assert "no task with id 'BACKUP' (did you mean 'backup'?)" in result.stderr


def test_next_bare_expression_needs_no_config(cli) -> None:
    result = cli("next", "0 9 * * mon-fri", "-n", "3", "--tz", "Europe/Berlin", "--json")
    assert result.exit_code == 0, result.output
    # NOW is Monday 2026-06-15 12:00 UTC (14:00 Berlin)
    assert json.loads(result.stdout) == [
        "2026-06-16T09:00:00+02:00", "2026-06-17T09:00:00+02:00", "2026-06-18T09:00:00+02:00",
    ]


def test_next_zone_from_config_then_after(cli, tmp_path: Path) -> None:
    write_config(tmp_path, CONFIG)
    result = cli("next", "@daily", "-n", "1", "--json")
    assert json.loads(result.stdout) == ["2026-06-16T00:00:00+02:00"]
    result = cli("next", "@daily", "-n", "2", "--json", "--after", "2026-12-31T23:30:00")
    assert json.loads(result.stdout) == ["2027-01-01T00:00:00+01:00", "2027-01-02T00:00:00+01:00"]


def test_next_task_id_uses_task_zone(cli, tmp_path: Path) -> None:
    write_config(tmp_path, CONFIG)
    result = cli("next", "backup", "-n", "1", "--json")
    assert json.loads(result.stdout) == ["2026-06-16T02:30:00+02:00"]


def test_next_task_with_tz_shows_the_same_instants_in_that_zone(cli, tmp_path: Path) -> None:
    """--tz on a task changes only the zone the times are shown in (and
    --after is read in): the task still fires at 02:30 in its own zone."""
    write_config(tmp_path, CONFIG)
    result = cli("next", "backup", "-n", "1", "--json", "--tz", "Asia/Tokyo")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == ["2026-06-16T09:30:00+09:00"]
    result = cli("next", "backup", "-n", "1", "--json", "--tz", "Asia/Tokyo",
                 "--after", "2026-06-16T09:30:00")
    assert json.loads(result.stdout) == ["2026-06-17T09:30:00+09:00"]


def test_next_at_the_end_of_time_and_after_a_past_at(cli, tmp_path: Path) -> None:
    result = cli("next", "0 * * * *", "--tz", "UTC", "--after", "9999-12-31T22:59", "-n", "3",
                 "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == ["9999-12-31T23:00:00+00:00"]
    write_config(tmp_path, '[[tasks]]\nid = "once"\nat = "2026-01-01T00:00:00Z"\ncommand = "x"\n')
    result = cli("next", "once")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert ("no fire times: a one-shot at 2026-01-01T00:00:00+00:00, which is not after"
            in result.stderr)


def test_next_dst_fall_back_every_15_minutes(cli) -> None:
    result = cli("next", "*/15 * * * *", "--tz", "America/New_York", "-n", "6", "--json",
                 "--after", "2026-11-01T01:30:00-04:00")
    assert json.loads(result.stdout) == [
        "2026-11-01T01:45:00-04:00", "2026-11-01T01:00:00-05:00", "2026-11-01T01:15:00-05:00",
        "2026-11-01T01:30:00-05:00", "2026-11-01T01:45:00-05:00", "2026-11-01T02:00:00-05:00",
    ]


def test_next_bad_expression_and_bad_zone(cli) -> None:
    result = cli("next", "0 0 32 * *")
    assert result.exit_code == 2
    assert "bad day-of-month field '32': 32 is out of range 1-31" in result.stderr
    result = cli("next", "@daily", "--tz", "Nowhere/City")
    assert result.exit_code == 2 and "unknown time zone 'Nowhere/City'" in result.stderr


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBCTL_")}
    return subprocess.run([sys.executable, "-m", "jobctl", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def test_python_dash_m_entry_point(tmp_path: Path) -> None:
    write_config(tmp_path, CONFIG)
    result = _run("validate", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "3 tasks OK\n"
    result = _run("list", "--json", "-c", str(tmp_path / "missing.toml"), cwd=tmp_path)
    assert result.returncode == 2 and "no config file found" in result.stderr


def test_every_command_has_help(cli) -> None:
    from jobctl.cli import app

    for info in app.registered_commands:
        name = info.name
        result = cli(name, "--help")
        assert result.exit_code == 0, name
        assert "Example:" in result.stdout, name


def test_next_on_an_invalid_task_reports_the_config_errors(cli, tmp_path: Path) -> None:
    path = write_config(tmp_path, '[[tasks]]\nid = "bad"\nschedule = "0 0 * * 8"\ncommand = "x"\n')
    result = cli("next", "bad")
    assert result.exit_code == 2
    assert f"{path}:3: tasks[0] (bad).schedule: bad day-of-week field '8': 8 is out of range 0-7" in result.stderr
    # a bare expression still works beside a broken config
    result = cli("next", "@hourly", "-n", "1", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == ["2026-06-15T13:00:00+00:00"]


def test_validate_of_an_invalid_config_does_not_say_nothing_was_changed(cli, tmp_path: Path) -> None:
    write_config(tmp_path, '[[tasks]]\nid = "a"\nschedule = "0 25 * * *"\ncommand = "true"\n')
    for command in ("validate", "list", "show"):
        result = cli(command, *(["a"] if command == "show" else []))
        assert result.exit_code == 2
        assert result.stderr.splitlines()[-1] == "1 error in config", command


def test_show_prints_durations_as_written(cli, tmp_path: Path) -> None:
    write_config(tmp_path, '[[tasks]]\nid = "a"\nschedule = "@daily"\ncommand = "true"\n'
                           'timeout = "1h30m"\n\n[[tasks]]\nid = "b"\nschedule = "@daily"\n'
                           'command = "true"\ntimeout = 30\n')
    rows = {}
    for task in ("a", "b"):
        result = cli("show", task)
        assert result.exit_code == 0, result.output
        rows[task] = next(line.split()[1] for line in result.stdout.splitlines()
                          if line.startswith("timeout"))
    assert rows == {"a": "1h30m", "b": "30s"}
    assert json.loads(cli("show", "b", "--json").stdout)["timeout"] == 30


def test_show_prints_the_alert_keys_with_the_defaults_they_take(cli, tmp_path: Path) -> None:
    """`show` prints every resolved field: the alerts too, a task's own key
    over the `[jobctl]` default (the README's Alerts example)."""
    write_config(tmp_path, """
[jobctl]
on_failure = "mail -s \\"jobctl: $JOBCTL_TASK_ID\\" ops@example.com"
webhook = "https://alerts.example.com/jobctl"
hook_timeout = "1m"

[[tasks]]
id = "backup"
schedule = "0 3 * * *"
command = "/usr/local/bin/backup"
on_recovery = ["/usr/local/bin/page", "--resolve", "backup"]
notify = "every"
ping_url = "https://hc-ping.com/0f1e8a2c"
""")
    detail = json.loads(cli("show", "backup", "--json").stdout)
    assert {k: detail[k] for k in ("on_failure", "on_success", "on_recovery", "notify",
                                   "webhook", "webhook_events", "hook_timeout", "ping_url")} == {
        "on_failure": 'mail -s "jobctl: $JOBCTL_TASK_ID" ops@example.com',
        "on_success": None,
        "on_recovery": ["/usr/local/bin/page", "--resolve", "backup"],
        "notify": "every",
        "webhook": "https://alerts.example.com/jobctl",
        "webhook_events": ["failure", "recovery"],
        "hook_timeout": 60,
        "ping_url": "https://hc-ping.com/0f1e8a2c",
    }
    result = cli("show", "backup")
    assert result.exit_code == 0, result.output
    text = {line.split(None, 1)[0]: line.split(None, 1)[1] for line in result.stdout.splitlines()
            if line.strip() and not line.startswith(" ")}
    assert text["on_failure"] == 'mail -s "jobctl: $JOBCTL_TASK_ID" ops@example.com'
    assert text["on_recovery"] == "/usr/local/bin/page --resolve backup"
    assert text["on_success"] == "-"
    assert (text["notify"], text["hook_timeout"], text["webhook_events"]) == (
        "every", "1m", "failure recovery")
    assert text["ping_url"] == "https://hc-ping.com/0f1e8a2c"
