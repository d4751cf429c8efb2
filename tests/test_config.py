"""Resolving configs: every problem is collected with its file, line, task and key."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest

from conftest import NOW, write_config
from jobctl.errors import ConfigError, ConfigNotFoundError
from jobctl.config import find_config, state_path
from jobctl.model import AtSchedule, CatchUp, Concurrency, CronSchedule, IntervalSchedule, Scope
from jobctl.resolve import resolve


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        resolve(path, system_zone="UTC", now=NOW)
    return [str(p) for p in info.value.problems]


def test_full_task_resolves_with_every_key(tmp_path: Path) -> None:
    path = write_config(tmp_path, """
        [jobctl]
        timezone = "Europe/Berlin"
        state = "state/jobctl.db"
        shell = "/bin/bash"

        [[tasks]]
        id = "backup.db"
        name = "Nightly DB backup"
        group = "db"
        description = "pg_dump to S3"
        schedule = "30 2 * * *"
        timezone = "America/New_York"
        argv = ["pg_dump", "-Fc", "app"]
        cwd = "work"
        env = { PGHOST = "db1" }
        timeout = "1h30m"
        concurrency = "replace"
        catch_up = "all"
        enabled = false
        priority = 5
        scope = "cluster"

        [[tasks]]
        id = "poll"
        schedule = "every 30s"
        command = "true"
    """)
    ss = resolve(path, system_zone="UTC", now=NOW)
    assert ss.settings.timezone == "Europe/Berlin"
    assert ss.settings.state == tmp_path / "state/jobctl.db"
    assert ss.settings.shell == "/bin/bash"
    t = ss.tasks[0]
    assert t.id == "backup.db" and t.name == "Nightly DB backup" and t.group == "db"
    assert isinstance(t.schedule, CronSchedule) and t.schedule.fixed_time
    assert t.timezone == "America/New_York"
    assert t.argv == ("pg_dump", "-Fc", "app") and t.command is None
    assert t.cwd == str(tmp_path / "work")
    assert dict(t.env) == {"PGHOST": "db1"}
    assert t.timeout == 5400
    assert t.concurrency is Concurrency.REPLACE and t.catch_up is CatchUp.ALL
    assert t.enabled is False and t.priority == 5 and t.scope is Scope.CLUSTER
    assert t.origin is not None and t.origin.line == 6
    p = ss.tasks[1]
    assert isinstance(p.schedule, IntervalSchedule) and p.schedule.seconds == 30
    assert p.name == "poll" and p.timezone == "Europe/Berlin"  # defaults
    assert p.concurrency is Concurrency.FORBID and p.catch_up is CatchUp.SKIP
    assert p.priority == 1000 and p.enabled and p.scope is Scope.NODE


def test_every_error_is_collected_with_line_task_and_key(tmp_path: Path) -> None:
    path = write_config(tmp_path, """
        [[tasks]]
        id = "a"
        schedule = "61 * * * *"
        command = "true"
        timout = "5m"

        [[tasks]]
        id = "b"
        schedule = "*/5 * * * *"
        command = "true"
        timezone = "Europe/Berln"
        concurrency = "sometimes"

        [[tasks]]
        id = "a"
        schedule = "@daily"
        command = "true"

        [[tasks]]
        id = "Bad Id"
        schedule = "@daily"
        command = "true"
        argv = ["x"]
        priority = "high"
        timeout = "5 minutes"
        enabled = "yes"
    """)
    msgs = problems_of(path)
    joined = "\n".join(msgs)
    # a bad key's own line; the header's for a problem with the whole task
    assert f"{path}:3: tasks[0] (a).schedule: bad minute field '61': 61 is out of range 0-59" in joined
    assert f"{path}:5: tasks[0] (a).timout: unknown key 'timout'; did you mean 'timeout'?" in joined
    assert f"{path}:11: tasks[1] (b).timezone: unknown time zone 'Europe/Berln' (did you mean 'Europe/Berlin'?)" in joined
    assert f"{path}:12: tasks[1] (b).concurrency: unknown value 'sometimes'; expected one of: forbid, allow, replace" in joined
    assert f"{path}:14: tasks[2] (a).id: duplicate id 'a' (first declared at {path}:1)" in joined
    assert f"{path}:20: tasks[3].id: 'Bad Id' is not a valid id" in joined
    assert f"{path}:19: tasks[3]: needs exactly one of 'command' (a shell string) or 'argv' (a list, no shell), not both" in joined
    assert f"{path}:24: tasks[3].priority: expected an integer, got a string" in joined
    assert f"{path}:25: tasks[3].timeout: '5 minutes' is not a duration" in joined
    assert f"{path}:26: tasks[3].enabled: expected true or false, got a string" in joined
    assert len(msgs) == 10, joined


def test_toml_syntax_error_names_line(tmp_path: Path) -> None:
    path = write_config(tmp_path, """
        [[tasks]]
        id = "a"
        schedule = "@daily
        command = "true"
    """)
    (msg,) = problems_of(path)
    assert msg.startswith(f"{path}:3: TOML syntax error:")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('schedule = "@daily"', "needs exactly one of 'command' (a shell string) or 'argv'"),
        ('command = "true"', "needs exactly one of 'schedule' (recurring) or 'at' (one-shot)"),
        ('schedule = "@daily"\nat = "2030-01-01T00:00:00Z"\ncommand = "x"', "not both"),
        ('schedule = "0 0 * * * *"\ncommand = "x"', "6 fields: jobctl reads 5-field cron"),
        ('schedule = "every 0m"\ncommand = "x"', "schedule: '0m' is zero"),
        ('schedule = "fortnightly"\ncommand = "x"', "not a cron expression (5 fields), an @shortcut, or an interval"),
        ('schedule = 5\ncommand = "x"', "schedule: expected a string, got an integer"),
        ('schedule = "@daily"\nargv = []\ncommand_ = "x"', "unknown key 'command_'; did you mean 'command'?"),
        ('schedule = "@daily"\nargv = "ls -l"', "argv: expected an array of strings, got a string"),
        ('schedule = "@daily"\ncommand = "x"\nenv = { N = 5 }', "env: N should be a string, got an integer (quote it)"),
        ('schedule = "@daily"\ncommand = "x"\ncatch_up = "twice"', "catch_up: unknown value 'twice'"),
        ('schedule = "@daily"\ncommand = "x"\nscope = "global"', "scope: unknown value 'global'"),
        ('at = "tomorrow"\ncommand = "x"', "at: 'tomorrow' is not a timestamp"),
        ('schedule = "@daily"\ncommand = "x"\nname = "' + "n" * 129 + '"', "name: is 129 characters; the limit is 128"),
    ],
)
def test_single_problems(tmp_path: Path, body: str, expected: str) -> None:
    path = write_config(tmp_path, '[[tasks]]\nid = "t"\n' + body + "\n")
    msgs = problems_of(path)
    assert any(expected in m for m in msgs), msgs
    lines = path.read_text().splitlines()
    for m in msgs:
        # at its key's line, or at the header for a problem with the whole task
        key = m.removeprefix(f"{path}:").split(": ")[1].removeprefix("tasks[0] (t)").lstrip(".")
        line = next((i for i, text in enumerate(lines, 1) if key and text.startswith(f"{key} =")), 1)
        assert m.startswith(f"{path}:{line}: tasks[0] (t)"), msgs


def test_missing_id_and_long_id(tmp_path: Path) -> None:
    path = write_config(tmp_path, f"""
        [[tasks]]
        schedule = "@daily"
        command = "x"

        [[tasks]]
        id = "{"a" * 65}"
        schedule = "@daily"
        command = "x"
    """)
    msgs = problems_of(path)
    assert f"{path}:1: tasks[0].id: missing required key 'id'" in msgs
    assert any("is 65 characters; the limit is 64" in m for m in msgs)


def test_unknown_top_level_and_settings_keys(tmp_path: Path) -> None:
    path = write_config(tmp_path, """
        [jobctl]
        timezone = "Mars/Olympus"
        shel = "/bin/bash"

        [[task]]
        id = "x"
    """)
    msgs = problems_of(path)
    assert any("unknown key 'task'; did you mean 'tasks'?" in m for m in msgs), msgs
    assert f"{path}:3: jobctl.shel: unknown key 'shel'; did you mean 'shell'?" in msgs
    assert any("jobctl.timezone: unknown time zone 'Mars/Olympus'" in m for m in msgs)


def test_single_bracket_tasks_table_is_explained(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[tasks]\nid = "x"\n')
    assert any("write each task as a [[tasks]] table (double brackets)" in m for m in problems_of(path))


def test_a_shell_that_cannot_start(tmp_path: Path) -> None:
    task = '[[tasks]]\nid = "a"\nschedule = "@daily"\ncommand = "true"\n'
    path = write_config(tmp_path, '[jobctl]\nshell = "/no/such/zsh"\n' + task)
    ss = resolve(path, system_zone="UTC", now=NOW)
    assert [str(w) for w in ss.warnings] == [
        f"{path}:2: jobctl.shell: warning: '/no/such/zsh' is not an executable program here: "
        "every task with a `command` would fail to start"]
    path = write_config(tmp_path, '[jobctl]\nshell = "sh"\n' + task)
    assert resolve(path, system_zone="UTC", now=NOW).warnings == ()
    path = write_config(tmp_path, '[jobctl]\nshell = "/bin/bash -e"\n' + task)
    with pytest.raises(ConfigError) as info:
        resolve(path, system_zone="UTC", now=NOW)
    assert [str(p) for p in info.value.problems] == [
        f"{path}:2: jobctl.shell: '/bin/bash -e' has arguments; the shell is one program, "
        "run as SHELL -c COMMAND (put options in a wrapper script)"]


def test_at_in_past_is_a_warning_not_error(tmp_path: Path) -> None:
    path = write_config(tmp_path, """
        [[tasks]]
        id = "old"
        at = "2020-01-01T00:00:00Z"
        command = "true"

        [[tasks]]
        id = "local"
        at = 2026-12-24T18:00:00
        timezone = "Europe/Berlin"
        command = "true"
    """)
    ss = resolve(path, system_zone="UTC", now=NOW)
    assert [str(w) for w in ss.warnings] == [
        f"{path}:3: tasks[0] (old).at: warning: 2020-01-01T00:00:00+00:00 is in the past; the task will never run"
    ]
    local = ss.tasks[1].schedule
    assert isinstance(local, AtSchedule)
    assert local.at.astimezone(timezone.utc) == datetime(2026, 12, 24, 17, 0, tzinfo=timezone.utc)


def test_header_inside_multiline_string_is_not_counted(tmp_path: Path) -> None:
    path = write_config(tmp_path, '''
        [[tasks]]
        id = "a"
        description = """
        [[tasks]]
        """
        schedule = "@daily"
        command = "x"

        [[tasks]]
        id = "b"
        schedule = "bad"
        command = "x"
    ''')
    (msg,) = problems_of(path)
    assert msg.startswith(f"{path}:11: tasks[1] (b).schedule")


def test_find_config_order_and_missing_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    local = write_config(tmp_path, "")
    assert find_config(None, {}, tmp_path) == local
    other = write_config(tmp_path, "", name="other.toml")
    assert find_config(None, {"JOBCTL_CONFIG": str(other)}, tmp_path) == other
    assert find_config(other, {"JOBCTL_CONFIG": str(local)}, tmp_path) == other
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigNotFoundError) as info:
        find_config(None, {}, empty)
    assert str(empty / "jobctl.toml") in str(info.value)
    assert str(tmp_path / "xdg" / "jobctl" / "jobctl.toml") in str(info.value)


def test_state_path_order(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[jobctl]\nstate = "s.db"\n')
    settings = resolve(path, system_zone="UTC", now=NOW).settings
    assert state_path(None, {}, settings) == tmp_path / "s.db"
    assert state_path(None, {"JOBCTL_STATE": "/e.db"}, settings) == Path("/e.db")
    assert state_path(Path("/f.db"), {"JOBCTL_STATE": "/e.db"}, settings) == Path("/f.db")


def test_task_build_equals_the_dataclass_constructor() -> None:
    from jobctl.model import Task
    from jobctl.timing import parse_schedule

    schedule = parse_schedule("@daily")
    fast = Task.build(id="a", name="A", schedule=schedule, timezone="UTC", command="true")
    assert fast == Task(id="a", name="A", schedule=schedule, timezone="UTC", command="true")
    assert dict(fast.env) == {} and fast.priority == 1000
    with pytest.raises(TypeError):
        Task.build(id="a", schedule=schedule, timezone="UTC")  # no name
    with pytest.raises(TypeError):
        Task.build(id="a", name="A", schedule=schedule, timezone="UTC", colour="red")
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.id = "b"  # type: ignore[misc]


def test_a_resolved_task_stays_small(tmp_path: Path) -> None:
    """The runner holds every task for its lifetime: at 100,000 tasks each
    hundred bytes is 10 MiB of the 200 MiB budget. Slotted Task, Origin and
    schedules keep a task near 530 bytes (with __dict__s it was 1,250)."""
    import gc
    import tracemalloc

    n = 5_000
    config = write_config(tmp_path, '[jobctl]\ntimezone = "UTC"\n' + "".join(
        f'[[tasks]]\nid = "task-{i:06d}"\nschedule = "{i % 60} * * * *"\n'
        f'argv = ["/bin/true", "--flag"]\n\n' for i in range(n)))
    resolve(config, system_zone="UTC", now=NOW)  # warm caches (zones, parsed cron)
    gc.collect()
    tracemalloc.start()
    try:
        schedule_set = resolve(config, system_zone="UTC", now=NOW)
        gc.collect()
        kept, _peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(schedule_set.tasks) == n
    assert kept / n < 800, f"{kept / n:.0f} bytes per resolved task"


def test_offset_at_and_odd_numbers_parse_like_tomllib(tmp_path: Path) -> None:
    # rtoml's own tzinfo class becomes the stdlib's; what rtoml refuses
    # (1e400) tomllib decides
    path = write_config(tmp_path, """
        [jobctl]
        kill_grace = 1e400

        [[tasks]]
        id = "t"
        at = 2030-01-01T09:00:00+01:00
        command = "true"
    """)
    with pytest.raises(ConfigError) as info:
        resolve(path, system_zone="UTC", now=NOW)
    assert [p.where for p in info.value.problems] == ["jobctl.kill_grace"]
    path.write_text(path.read_text().replace("1e400", "5"))
    (task,) = resolve(path, system_zone="UTC", now=NOW).tasks
    assert isinstance(task.schedule, AtSchedule)
    assert type(task.schedule.at.tzinfo) is timezone
    assert task.schedule.at == datetime(2030, 1, 1, 8, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("tail", ["", '\n[other]\nx = 1\n', '\n[tasks.env]\nX = "1"\n'])
def test_chunked_parse_equals_whole_file_parse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               tail: str) -> None:
    import tomllib

    from jobctl import config

    monkeypatch.setattr(config, "_CHUNK_TABLES", 2)
    body = "# header\n[jobctl]\nshell = \"/bin/sh\"\n\n" + "".join(
        f'[[tasks]]\nid = "t{i}"\nschedule = "@daily"\ncommand = "echo {i}"\n'
        f'env = {{ N = "{i}" }}\n\n' if i % 3 else
        f'[[tasks]]\nid = "t{i}"\nschedule = "@daily"\nargv = ["echo", "{i}"]\n[tasks.env]\nK = "{i}"\n\n'
        for i in range(11)
    ) + tail
    offsets: list[int] = []
    config._header_lines(body, offsets)
    assert len(offsets) == 11
    if tail.startswith("\n[tasks.env]"):
        # [tasks.env] twice for the last task: both parsers refuse
        with pytest.raises(tomllib.TOMLDecodeError):
            config._parse_in_chunks(body, offsets)
        return
    assert config._parse_in_chunks(body, offsets) == tomllib.loads(body)


def test_byte_order_mark_and_zone_case(tmp_path: Path) -> None:
    path = tmp_path / "jobctl.toml"
    path.write_bytes(b'\xef\xbb\xbf[[tasks]]\nid = "t"\nschedule = "@daily"\ncommand = "x"\ntimezone = "europe/berlin"\n')
    msgs = problems_of(path)
    assert msgs == [f"{path}:5: tasks[0] (t).timezone: unknown time zone 'europe/berlin' "
                    "(did you mean 'Europe/Berlin'?)"]


def test_a_problem_is_reported_at_its_keys_line(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write_config(tmp_path, '''
        # nightly jobs
        [jobctl]
        timezone = "UTC"
        history_limit = -3

        [jobctl.plugin_limits]
        max_jobs = 1
        min_interval = "soon"

        [[tasks]]
        id = "backup"
        description = """
        timeout = "the text of a string is no key"
        """
        schedule = "@daily"
        command = "true"
        timeout = "1h 30m"
        "priority" = "high"
        env.N = 5

        [[tasks]]
        id = "backup"
        command = "true"
        concurrency = "sometimes"
        [tasks.env]
        N = 5
    ''', name="deep.toml")
    result = cli("validate", "-c", str(path))
    assert result.exit_code == 2
    expected = [f"{path}:{rest}" for rest in [
        "4: jobctl.history_limit: must be at least 1, got -3",
        "8: jobctl.plugin_limits.min_interval: 'soon' is not a duration",
        "17: tasks[0] (backup).timeout: '1h 30m' is not a duration",
        "18: tasks[0] (backup).priority: expected an integer, got a string",
        "19: tasks[0] (backup).env: N should be a string, got an integer (quote it)",
        # a key not among the table's lines (here in a sub-table) and a
        # problem with the whole task stay at the task's header
        "21: tasks[1] (backup).env: N should be a string",
        "21: tasks[1] (backup): needs exactly one of 'schedule' (recurring) or 'at' (one-shot)",
        f"21: tasks[1] (backup).id: duplicate id 'backup' (first declared at {path}:10)",
        "24: tasks[1] (backup).concurrency: unknown value 'sometimes'",
    ]]
    got = result.stderr.splitlines()[:-1]
    assert len(got) == len(expected) and all(g.startswith(e) for g, e in zip(got, expected)), got
    # a sub-table written inline: the line of its key in [jobctl]
    path.write_text('[jobctl]\ntimezone = "UTC"\nplugin_limits = { max_jobs = 0 }\n')
    assert cli("validate", "-c", str(path)).stderr.splitlines()[0] == (
        f"{path}:3: jobctl.plugin_limits.max_jobs: must be at least 1, got 0")


def test_lines_survive_triple_quotes_in_a_string_and_a_quoted_header(tmp_path: Path) -> None:
    path = write_config(tmp_path, '''
        [[tasks]]
        id = "a"
        command = "echo \'\'\' three quotes"
        schedule = "@daily"

        [["tasks"]]
        id = "b"
        command = "true"
        schedule = "@daily"

        [[ 'tasks' ]]
        id = "c"
        command = 'say """'
        schedule = "@dayly"
    ''')
    assert problems_of(path)[0].startswith(f"{path}:14: tasks[2] (c).schedule: unknown shortcut")


def test_not_utf8_names_its_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "jobctl.toml"
    path.write_bytes(b'[[tasks]]\nid = "t"\ncommand = "caf\xe9 \xff"\n')
    assert problems_of(path) == [f"{path}:3: not UTF-8 text: byte 0xe9 (column 15)"]


def test_a_config_path_that_is_a_directory_says_so(cli, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "adir").mkdir()
    result = cli("validate", "-c", "adir")
    assert result.exit_code == 2
    assert result.stderr == "error: adir is a directory, not a config file: name the TOML file itself\n"
    (tmp_path / "jobctl.toml").mkdir()
    result = cli("list")
    assert result.exit_code == 2 and f"{tmp_path / 'jobctl.toml'} is a directory" in result.stderr


def test_nul_characters_are_refused_where_a_process_gets_them(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write_config(tmp_path, r'''
        [[tasks]]
        id = "a"
        schedule = "@daily"
        command = "echo\u0000"
        cwd = "work\u0000"
        env = { "K\u0000" = "v", V = "x\u0000" }

        [[tasks]]
        id = "b"
        schedule = "@daily"
        argv = ["echo", "a\u0000b"]
    ''')
    result = cli("validate")
    assert result.exit_code == 2
    nul = r"contains a NUL character (\u0000), which no command line, path or environment can hold"
    assert result.stderr.splitlines()[:-1] == [
        f"{path}:4: tasks[0] (a).command: {nul}",
        f"{path}:5: tasks[0] (a).cwd: {nul}",
        rf"{path}:6: tasks[0] (a).env: name 'K\u0000' {nul}",
        f"{path}:11: tasks[1] (b).argv: item 1 {nul}",
    ]
    write_config(tmp_path, r'''
        [[tasks]]
        id = "a"
        schedule = "@daily"
        command = "true"
        env = { V = "x\u0000" }
    ''')
    assert cli("validate").stderr.splitlines()[0] == f"{path}:5: tasks[0] (a).env: V {nul}"


def test_a_comment_inside_the_schedule_string_is_explained(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = write_config(tmp_path, '[[tasks]]\nid = "t"\ncommand = "true"\nschedule = "0 3 * * * # nightly"\n')
    result = cli("validate")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == (
        f"{path}:4: tasks[0] (t).schedule: '#' inside the quotes is part of the schedule, not a "
        'comment: write the comment after the closing quote, as in schedule = "0 3 * * *"  # nightly'
    )
    # a Quartz '#' is not taken for a comment
    write_config(tmp_path, '[[tasks]]\nid = "t"\ncommand = "true"\nschedule = "0 3 * * 5#3"\n')
    assert "is a Quartz extension" in cli("validate").stderr


def test_an_unknown_id_in_the_wrong_case_is_suggested(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    write_config(tmp_path, '[[tasks]]\nid = "backup"\nschedule = "@daily"\ncommand = "true"\n')
    result = cli("show", "BACKUP")
    assert result.exit_code == 2
    assert result.stderr == "error: no task with id 'BACKUP' (did you mean 'backup'?)\n"


def test_unknown_top_level_table_or_key_gets_its_line(tmp_path: Path) -> None:
    path = write_config(tmp_path, """
        retries = 3
        [[tasks]]
        id = "a"
        schedule = "@daily"
        command = "true"
        # [jobs] in a comment is not it
        note = '''
        [jobs]'''

        [ "jobs" . extra]
        x = 1
    """)
    assert problems_of(path) == [
        f"{path}:1: unknown key 'retries'; allowed: jobctl, tasks",
        # (since alerts, 'note' is close to a key: notify)
        f"{path}:7: tasks[0] (a).note: unknown key 'note'; did you mean 'notify'?",
        f"{path}:10: unknown key 'jobs'; did you mean 'jobctl'?",
    ]


@pytest.mark.parametrize(("text", "line", "column"), [
    ('[[tasks]]\nid = "a"\nname = """abc\n\nschedule = "@daily"\ncommand = "true"\n', 3, 8),
    ("[[tasks]]\nid = 'a' # it's\nname = '''abc\n\nschedule = '@daily'\n", 3, 8),
    ('[[tasks]]\nid = "a"\nschedule = "@daily"\ncommand = "true\n\n[[tasks]]\nid = "b"\n', 4, 11),
    ('[[tasks]]\nid = "a"\ncommand = "true"\nname = "it\'s', 4, 8),
])
def test_unterminated_string_cites_the_line_it_opens_on(tmp_path: Path, text: str, line: int,
                                                        column: int) -> None:
    path = tmp_path / "jobctl.toml"
    path.write_text(text)
    assert problems_of(path) == [
        f"{path}:{line}: TOML syntax error: Unterminated string (it opens at column {column})"]


def test_command_as_an_array_points_at_argv(tmp_path: Path) -> None:
    path = write_config(tmp_path, """
        [[tasks]]
        id = "a"
        schedule = "@daily"
        command = ["pg_dump", "app"]
    """)
    assert problems_of(path) == [
        f"{path}:4: tasks[0] (a).command: expected a string, got an array; a program and its "
        "arguments as a list go in 'argv' (argv = [...], run without a shell)"]


def test_at_every_interval_suggests_every(tmp_path: Path) -> None:
    path = write_config(tmp_path, """
        [[tasks]]
        id = "a"
        schedule = "@every 5m"
        command = "true"

        [[tasks]]
        id = "b"
        schedule = "@every banana"
        command = "true"
    """)
    first, second = problems_of(path)
    assert first == (f"{path}:3: tasks[0] (a).schedule: unknown shortcut '@every 5m'; an interval "
                     "is written without '@': did you mean 'every 5m'?")
    assert "unknown shortcut '@every banana'; known: @yearly" in second
