"""init, edit, add, remove and set through the real typer app and the real entry point."""

from __future__ import annotations

import difflib
import json
import os
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from conftest import write_config

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted((ROOT / "sample-configs").glob("*.toml"))

CONFIG = """
# Team jobs. Ask ops before changing.

[jobctl]
timezone = "Europe/Berlin"   # we are in Berlin

# Nightly backup of the app database.
[[tasks]]
id = "backup"
name = "Nightly backup"      # shown in `jobctl list`
schedule = "30 2 * * *"
command = "echo backup"

# Polls the API; keep it fast.
[[tasks]]
id = "poll"
schedule = "every 30s"
argv = ["true"]

# Hourly report, off for now.
[[tasks]]
id = "report"
schedule = "@hourly"
command = "true"
enabled = false
"""


def config_file(tmp_path: Path, mode: int = 0o640) -> Path:
    path = write_config(tmp_path, CONFIG)
    path.chmod(mode)
    return path


def diff(old: str, new: str) -> tuple[list[str], list[str]]:
    """(lines only in old, lines only in new), by a line diff."""
    removed, added = [], []
    for line in difflib.ndiff(old.lstrip("\n").splitlines(), new.splitlines()):
        if line.startswith("- "):
            removed.append(line[2:])
        elif line.startswith("+ "):
            added.append(line[2:])
    return removed, added


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def refused(result, path: Path, before: bytes, names: list[str]) -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert path.read_bytes() == before
    assert listing(path.parent) == names  # no temporary file left behind


# -- init --------------------------------------------------------------------------


def test_init_writes_starter_to_user_config_dir_creating_folders(cli, tmp_path: Path) -> None:
    from jobctl.config import user_config_dir

    target = user_config_dir() / "jobctl.toml"
    assert not target.parent.exists()
    result = cli("init")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"wrote a starter config to {target}\n"
    assert "[[tasks]]" in target.read_text()
    assert not (tmp_path / "jobctl.toml").exists()  # never ./jobctl.toml by default
    result = cli("validate", "-c", str(target))
    assert result.exit_code == 0, result.output
    assert result.stdout == "1 task OK\n"


def test_init_refuses_existing_file_unless_force(cli, tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dir" / "jobs.toml"
    result = cli("init", str(path))
    assert result.exit_code == 0, result.output
    path.write_text("# mine\n")
    path.chmod(0o600)
    result = cli("init", str(path))
    refused(result, path, b"# mine\n", ["jobs.toml"])
    assert f"{path} already exists; pass --force to overwrite it" in result.stderr
    result = cli("init", str(path), "--force")
    assert result.exit_code == 0, result.output
    assert "[[tasks]]" in path.read_text() and stat.S_IMODE(path.stat().st_mode) == 0o600


def test_init_target_from_config_flag_env_and_folder(cli, tmp_path: Path) -> None:
    flag = tmp_path / "flag.toml"
    assert cli("init", "-c", str(flag)).exit_code == 0 and flag.is_file()
    env = tmp_path / "env.toml"
    assert cli("init", env={"JOBCTL_CONFIG": str(env)}).exit_code == 0 and env.is_file()
    folder = tmp_path / "folder"
    folder.mkdir()
    assert cli("init", str(folder)).exit_code == 0 and (folder / "jobctl.toml").is_file()


def test_init_trailing_slash_means_a_folder(cli, tmp_path: Path) -> None:
    result = cli("init", "adir/")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "adir" / "jobctl.toml").is_file()
    assert result.stdout == f"wrote a starter config to {tmp_path / 'adir' / 'jobctl.toml'}\n"
    result = cli("init", env={"JOBCTL_CONFIG": str(tmp_path / "envdir") + "/"})
    assert result.exit_code == 0, result.output
    assert (tmp_path / "envdir" / "jobctl.toml").is_file()


def test_init_under_a_file_says_it_is_not_a_directory(cli, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    for target in ("afile/sub.toml", "afile/deeper/sub.toml", "afile/"):
        result = cli("init", target)
        assert result.exit_code == 2, result.output
        assert f"{tmp_path / 'afile'} is not a directory" in result.stderr
        assert "File exists" not in result.stderr
        assert listing(tmp_path) == ["afile"] and (tmp_path / "afile").read_text() == "x"


def test_init_notes_a_local_config_that_would_be_read_first(cli, tmp_path: Path) -> None:
    config_file(tmp_path)
    result = cli("init")
    assert result.exit_code == 0, result.output
    assert f"note: {tmp_path / 'jobctl.toml'} is read before it" in result.stderr


# -- add ---------------------------------------------------------------------------


def test_add_with_command_keeps_comments_and_prints_one_line(cli, tmp_path: Path) -> None:
    path = config_file(tmp_path)
    result = cli("add", "cleanup", "--schedule", "15 3 * * *", "--command", "find /tmp -delete",
                 "--name", "Clean up", "--group", "maint", "--timezone", "UTC", "--timeout", "90",
                 "--concurrency", "replace", "--cwd", "/tmp", "--env", "A=1", "--env", "B=x=y",
                 "--disabled", "-c", str(path))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"added cleanup to {path}\n"
    text = path.read_text()
    assert text.startswith(CONFIG.lstrip())  # every line before stays as it was
    assert text[len(CONFIG.lstrip()):] == (
        '\n[[tasks]]\nid = "cleanup"\nname = "Clean up"\ngroup = "maint"\nschedule = "15 3 * * *"\n'
        'timezone = "UTC"\ncommand = "find /tmp -delete"\ncwd = "/tmp"\nenv = {A = "1", B = "x=y"}\n'
        'timeout = 90\nconcurrency = "replace"\nenabled = false\n'
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    shown = json.loads(cli("show", "cleanup", "--json", "-c", str(path)).stdout)
    assert shown["timeout"] in ("1m30s", 90, 90.0, "90s") and shown["enabled"] is False


def test_add_argv_after_double_dash(cli, tmp_path: Path) -> None:
    path = config_file(tmp_path)
    result = cli("add", "dump", "--schedule", "@daily", "-c", str(path), "--",
                 "pg_dump", "--format=c", "-h", "db host")
    assert result.exit_code == 0, result.output
    task = tomllib.loads(path.read_text())["tasks"][-1]
    assert task == {"id": "dump", "schedule": "@daily", "argv": ["pg_dump", "--format=c", "-h", "db host"]}


def test_add_at_one_shot(cli, tmp_path: Path) -> None:
    path = config_file(tmp_path)
    result = cli("add", "once", "--at", "2026-12-24T18:00:00Z", "--command", "x", "-c", str(path))
    assert result.exit_code == 0, result.output
    assert tomllib.loads(path.read_text())["tasks"][-1]["at"] == "2026-12-24T18:00:00Z"


@pytest.mark.parametrize(("args", "message"), [
    (["backup", "--schedule", "@daily", "--command", "x"], "a task with id 'backup' already exists (line 7)"),
    (["new", "--schedule", "0 25 * * *", "--command", "x"], "bad hour field '25': 25 is out of range 0-23"),
    (["new", "--schedule", "@daily", "--command", "x", "--concurrency", "never"], "unknown value 'never'"),
    (["new", "--schedule", "@daily", "--command", "x", "--timezone", "Mars/Base"], "unknown time zone"),
    (["Bad_Id", "--schedule", "@daily", "--command", "x"], "'Bad_Id' is not a valid id"),
    (["new", "--schedule", "@daily"], "no command: give --command, or a program"),
    (["new", "--schedule", "@daily", "--command", "x", "--", "prog"], "give either --command"),
    (["new", "--command", "x"], "give exactly one of --schedule and --at"),
    (["new", "--schedule", "@daily", "--command", "x", "--env", "NOEQUALS"], "expected KEY=VALUE"),
    (["new", "--schedule", "@daily", "--command", "x", "--env", "A=1", "--env", "A=2"],
     "--env: 'A' is given twice"),
])
def test_add_refused_leaves_file_untouched(cli, tmp_path: Path, args: list[str], message: str) -> None:
    path = config_file(tmp_path)
    before, names = path.read_bytes(), listing(tmp_path)
    result = cli("add", *args, "-c", str(path))
    refused(result, path, before, names)
    assert message in result.stderr
    if "no command" in message:
        assert "not both" not in result.stderr


def test_add_without_config_points_at_init(cli) -> None:
    result = cli("add", "x", "--schedule", "@daily", "--command", "y")
    assert result.exit_code == 2
    assert "no config file found" in result.stderr and "`jobctl init`" in result.stderr


# -- remove ------------------------------------------------------------------------


def test_remove_keeps_other_tasks_comments(cli, tmp_path: Path) -> None:
    path = config_file(tmp_path)
    result = cli("remove", "poll", "-c", str(path))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"removed poll from {path}\n"
    removed, added = diff(CONFIG, path.read_text())
    assert added == []
    assert removed == ["# Polls the API; keep it fast.", "[[tasks]]", 'id = "poll"',
                       'schedule = "every 30s"', 'argv = ["true"]', ""]
    text = path.read_text()
    assert "# Nightly backup of the app database.\n[[tasks]]" in text
    assert 'command = "echo backup"\n\n# Hourly report, off for now.\n[[tasks]]\nid = "report"' in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert cli("validate", "-c", str(path)).stdout == "2 tasks OK\n"


def test_remove_unknown_id_suggests(cli, tmp_path: Path) -> None:
    path = config_file(tmp_path)
    before, names = path.read_bytes(), listing(tmp_path)
    result = cli("remove", "repotr", "-c", str(path))
    refused(result, path, before, names)
    assert "no task with id 'repotr' (did you mean 'report'?)" in result.stderr


def test_remove_refused_when_result_is_invalid(cli, tmp_path: Path) -> None:
    # the file is already invalid elsewhere: removing another task does not fix it
    path = write_config(tmp_path, CONFIG.replace('"@hourly"', '"@hourli"'))
    before, names = path.read_bytes(), listing(tmp_path)
    result = cli("remove", "poll", "-c", str(path))
    refused(result, path, before, names)
    assert f"{path}:16: tasks[1] (report).schedule:" in result.stderr
    # removing the broken task does fix it
    result = cli("remove", "report", "-c", str(path))
    assert result.exit_code == 0, result.output


# -- set ---------------------------------------------------------------------------


def test_set_changes_only_the_touched_lines(cli, tmp_path: Path) -> None:
    path = config_file(tmp_path)
    result = cli("set", "backup", "schedule=*/5 * * * *", "name=Every five", "priority=5", "-c", str(path))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"updated backup in {path}: schedule, name, priority\n"
    assert diff(CONFIG, path.read_text()) == (
        ['name = "Nightly backup"      # shown in `jobctl list`', 'schedule = "30 2 * * *"'],
        ['name = "Every five"          # shown in `jobctl list`', 'schedule = "*/5 * * * *"',
         "priority = 5"],
    )
    task = tomllib.loads(path.read_text())["tasks"][0]
    assert task["priority"] == 5 and task["schedule"] == "*/5 * * * *"


def test_set_toml_values_and_unset(cli, tmp_path: Path) -> None:
    path = config_file(tmp_path)
    result = cli("set", "report", "enabled=true", 'argv=["/bin/echo", "hi"]', "timeout=90",
                 "--unset", "command", "-c", str(path))
    assert result.exit_code == 0, result.output
    task = tomllib.loads(path.read_text())["tasks"][2]
    assert task == {"id": "report", "schedule": "@hourly", "enabled": True,
                    "argv": ["/bin/echo", "hi"], "timeout": 90}
    result = cli("set", "report", 'name="true"', "-c", str(path))
    assert result.exit_code == 0, result.output
    assert tomllib.loads(path.read_text())["tasks"][2]["name"] == "true"


def test_set_same_value_writes_nothing(cli, tmp_path: Path) -> None:
    path = config_file(tmp_path)
    before = path.stat().st_ino
    result = cli("set", "poll", "schedule=every 30s", "-c", str(path))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"no change to poll in {path}\n"
    assert path.stat().st_ino == before and path.read_text() == CONFIG.lstrip()


def test_set_same_array_or_table_writes_nothing(cli, tmp_path: Path) -> None:
    text = CONFIG.replace('argv = ["true"]', 'argv = [\n  "pg_dump",   # the tool\n  "-Fc",\n]\n'
                          'env = { A = "1" }')
    path = write_config(tmp_path, text)
    before, inode = path.read_bytes(), path.stat().st_ino
    result = cli("set", "poll", 'argv=["pg_dump", "-Fc"]', 'env={A="1"}', "schedule=every 30s",
                 "-c", str(path))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"no change to poll in {path}\n"
    assert path.read_bytes() == before and path.stat().st_ino == inode
    # a changed key beside an unchanged array: the array keeps its lines and comment
    result = cli("set", "poll", 'argv=["pg_dump", "-Fc"]', "priority=5", "-c", str(path))
    assert result.exit_code == 0, result.output
    assert diff(text, path.read_text()) == ([], ["priority = 5"])


DOTTED = """
[[tasks]]
id = "a"
schedule = "@daily"
env.A = "1"   # first
command = "true"
env.B = "2"

[[tasks]]
id = "b"
schedule = "@daily"
command = "true"
"""


def test_set_env_written_as_dotted_keys(cli, tmp_path: Path) -> None:
    path = write_config(tmp_path, DOTTED)
    result = cli("set", "-c", str(path), "a", 'env={ C = "3" }')
    assert result.exit_code == 0, result.output
    assert result.stdout == f"updated a in {path}: env\n"
    # one line where the first dotted key was; the rest of the file as it was
    assert diff(DOTTED, path.read_text()) == (['env.A = "1"   # first', 'env.B = "2"'], ['env = {C = "3"}'])
    assert 'schedule = "@daily"\nenv = {C = "3"}\ncommand = "true"\n\n' in path.read_text()
    assert tomllib.loads(path.read_text())["tasks"][0]["env"] == {"C": "3"}


def test_set_unset_add_remove_around_dotted_keys(cli, tmp_path: Path) -> None:
    path = write_config(tmp_path, DOTTED)
    result = cli("set", "-c", str(path), "a", "name=A", "env={A = \"1\", B = \"2\"}")
    assert result.exit_code == 0, result.output
    assert diff(DOTTED, path.read_text()) == ([], ['name = "A"'])  # the same env: kept as written
    result = cli("set", "-c", str(path), "a", "--unset", "env")
    assert result.exit_code == 0, result.output
    assert diff(DOTTED, path.read_text()) == (['env.A = "1"   # first', 'env.B = "2"'], ['name = "A"'])
    path = write_config(tmp_path, DOTTED)
    assert cli("add", "-c", str(path), "c", "--schedule", "@daily", "--command", "x").exit_code == 0
    assert path.read_text().startswith(DOTTED.lstrip())
    result = cli("remove", "-c", str(path), "a")
    assert result.exit_code == 0, result.output
    assert [t["id"] for t in tomllib.loads(path.read_text())["tasks"]] == ["b", "c"]


def test_set_env_keeps_an_indented_sub_table(cli, tmp_path: Path) -> None:
    text = CONFIG.replace('enabled = false\n', 'enabled = false\n  [tasks.env]\n  A = "1"   # keep\n  C = "2"\n')
    path = write_config(tmp_path, text)
    result = cli("set", "report", 'env={ A = "1", B = "2" }', "-c", str(path))
    assert result.exit_code == 0, result.output
    assert diff(text, path.read_text()) == (['  C = "2"'], ['  B = "2"'])
    result = cli("set", "report", 'env={ B = "2" }', "-c", str(path))
    assert result.exit_code == 0, result.output
    assert path.read_text().endswith('enabled = false\n  [tasks.env]\n  B = "2"\n')


def test_set_same_key_twice_refused(cli, tmp_path: Path) -> None:
    path = config_file(tmp_path)
    before, names = path.read_bytes(), listing(tmp_path)
    result = cli("set", "backup", "schedule=@hourly", "schedule=@weekly", "-c", str(path))
    refused(result, path, before, names)
    assert "'schedule' is given twice" in result.stderr


@pytest.mark.parametrize("args", [
    ["set", "backup", "name=x"],
    ["add", "new", "--schedule", "@daily", "--command", "x"],
    ["remove", "poll"],
    ["edit"],
])
def test_a_read_only_config_is_not_rewritten(cli, tmp_path: Path, args: list[str]) -> None:
    # root may write anything: for it, read-only means no write bit, as for vi
    path = config_file(tmp_path, mode=0o444)
    env = editor(tmp_path, 'sed -i "s/every 30s/every 45s/" "$1"')
    before, names = path.read_bytes(), listing(tmp_path)
    result = cli(*args, "-c", str(path), env=env)
    refused(result, path, before, names)
    assert f"{path} is read-only" in result.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o444


def _can_write_in_read_only_folder(tmp_path: Path) -> bool:
    folder = tmp_path / "probe"
    folder.mkdir(mode=0o555)
    try:
        (folder / "x").touch()
        return True
    except PermissionError:
        return False
    finally:
        folder.chmod(0o755)
        shutil.rmtree(folder)


def test_a_config_in_a_read_only_folder_says_why(cli, tmp_path: Path) -> None:
    if _can_write_in_read_only_folder(tmp_path):
        pytest.skip("this user (root) may write in a read-only folder")
    folder = tmp_path / "rodir"
    folder.mkdir()
    path = config_file(folder)
    before = path.read_bytes()
    folder.chmod(0o555)
    try:
        result = cli("set", "backup", "name=x", "-c", str(path))
        refused(result, path, before, ["jobctl.toml"])
        assert f"cannot write {path}: its folder {folder} is not writable (jobctl writes the " \
               "file atomically" in result.stderr
    finally:
        folder.chmod(0o755)


@pytest.mark.parametrize(("args", "message"), [
    (["backup", "schedule=0 0 32 * *"], "bad day-of-month field '32'"),
    (["backup", "priority=high"], "(backup).priority: expected an integer, got a string"),
    (["backup", "enabled=yes"], "expected true or false"),
    (["backup", "timeot=5m"], "unknown key 'timeot'; did you mean 'timeout'?"),
    (["backup", "id=poll"], "duplicate id 'poll'"),
    (["backup", "argv=[\"x\"]"], "needs exactly one of 'command'"),
    (["backpu", "name=x"], "no task with id 'backpu' (did you mean 'backup'?)"),
    (["backup", "--unset", "timeout"], "task 'backup' has no key 'timeout' to unset"),
    (["backup", "noequals"], "expected KEY=VALUE"),
    (["backup"], "nothing to change"),
])
def test_set_refused_leaves_file_untouched(cli, tmp_path: Path, args: list[str], message: str) -> None:
    path = config_file(tmp_path)
    before, names = path.read_bytes(), listing(tmp_path)
    result = cli("set", *args, "-c", str(path))
    refused(result, path, before, names)
    assert message in result.stderr


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_every_sample_round_trips_through_set(cli, tmp_path: Path, sample: Path) -> None:
    path = tmp_path / sample.name
    shutil.copyfile(sample, path)
    original = path.read_text()
    first = tomllib.loads(original)["tasks"][0]
    old_priority = first.get("priority")
    result = cli("set", first["id"], "priority=7", "name=Renamed task", "-c", str(path))
    assert result.exit_code == 0, result.output
    removed, added = diff(original, path.read_text())
    # exactly the name and priority lines: changed in place, or added once each
    assert len(added) == 2 and len(removed) == (first.get("name") is not None) + (old_priority is not None)
    assert any(line.startswith('name = "Renamed task"') for line in added)
    assert any(line.startswith("priority = 7") for line in added)
    assert all(line.startswith(("name =", "priority =")) for line in removed)
    data = tomllib.loads(path.read_text())
    assert data["tasks"][0] == {**first, "priority": 7, "name": "Renamed task"}
    assert data["tasks"][1:] == tomllib.loads(original)["tasks"][1:]
    assert cli("validate", "-c", str(path)).exit_code == 0


# -- edit --------------------------------------------------------------------------


def editor(tmp_path: Path, body: str, name: str = "editor.sh") -> dict[str, str]:
    """An $EDITOR script: `body` runs with the file to edit as $1."""
    script = tmp_path / "bin" / name
    script.parent.mkdir(exist_ok=True)
    script.write_text("#!/bin/sh\nset -e\n" + body + "\n")
    script.chmod(0o755)
    return {"EDITOR": str(script), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def edit_copies(folder: Path) -> list[Path]:
    return sorted(folder.glob(".jobctl.edit-*.toml"))


def test_edit_valid_change_replaces_file_keeping_mode(cli, tmp_path: Path) -> None:
    path = config_file(tmp_path, mode=0o600)
    names = listing(tmp_path)
    env = editor(tmp_path, 'sed -i "s/every 30s/every 45s/" "$1"\necho "$1" > ' + str(tmp_path / "seen"))
    result = cli("edit", "-c", str(path), env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"saved {path} (3 tasks)\n"
    assert diff(CONFIG, path.read_text()) == (['schedule = "every 30s"'], ['schedule = "every 45s"'])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    edited = Path((tmp_path / "seen").read_text().strip())
    assert edited.parent == tmp_path and edited.suffix == ".toml" and edited != path
    assert listing(tmp_path) == sorted(names + ["bin", "seen"])  # the copy is gone


def test_edit_unchanged_says_so(cli, tmp_path: Path) -> None:
    path = config_file(tmp_path)
    before, names = path.read_bytes(), listing(tmp_path)
    result = cli("edit", env=editor(tmp_path, "true"))  # ./jobctl.toml from the cwd
    assert result.exit_code == 0, result.output
    assert result.stdout == f"no changes to {path}\n"
    assert path.read_bytes() == before and listing(tmp_path) == sorted(names + ["bin"])


def test_edit_prefers_visual_then_editor(cli, tmp_path: Path) -> None:
    path = config_file(tmp_path)
    env = editor(tmp_path, 'sed -i "s/every 30s/every 1m/" "$1"', name="visual.sh")
    env["VISUAL"] = env.pop("EDITOR")
    env["EDITOR"] = "false"
    result = cli("edit", "-c", str(path), env=env)
    assert result.exit_code == 0, result.output
    assert 'schedule = "every 1m"' in path.read_text()


def test_edit_invalid_without_terminal_leaves_original_and_keeps_copy(cli, tmp_path: Path) -> None:
    path = config_file(tmp_path)
    before = path.read_bytes()
    env = editor(tmp_path, 'sed -i "s/every 30s/every 30x/; s/@hourly/@hourli/" "$1"')
    result = cli("edit", "-c", str(path), env=env)
    assert result.exit_code == 2
    assert path.read_bytes() == before
    [copy] = edit_copies(tmp_path)
    # line numbers refer to the copy the user edited
    assert f"{copy}:16: tasks[1] (poll).schedule: '30x' is not a duration" in result.stderr
    assert f"{copy}:22: tasks[2] (report).schedule:" in result.stderr
    assert "2 errors in config" in result.stderr
    assert f"your edited copy is kept in {copy}" in result.stderr
    assert "Edit again?" not in result.output
    assert 'schedule = "every 30x"' in copy.read_text()


def test_edit_invalid_on_terminal_offers_to_edit_again(cli, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import jobctl.cli.edit

    monkeypatch.setattr(jobctl.cli.edit, "_interactive", lambda: True)
    path = config_file(tmp_path)
    count = tmp_path / "count"
    env = editor(tmp_path, f"""
        echo x >> {count}
        if [ "$(wc -l < {count})" -eq 1 ]; then
            sed -i "s/every 30s/every 30x/" "$1"
        else
            sed -i "s/every 30x/every 40s/" "$1"
        fi""")
    result = cli("edit", "-c", str(path), env=env, input="y\n")
    assert result.exit_code == 0, result.output
    assert "Edit again? [Y/n]" in result.stdout
    assert "'30x' is not a duration" in result.stderr
    assert count.read_text() == "x\nx\n"
    assert diff(CONFIG, path.read_text()) == (['schedule = "every 30s"'], ['schedule = "every 40s"'])
    assert edit_copies(tmp_path) == []


def test_edit_invalid_on_terminal_declined(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import jobctl.cli.edit

    monkeypatch.setattr(jobctl.cli.edit, "_interactive", lambda: True)
    path = config_file(tmp_path)
    before = path.read_bytes()
    env = editor(tmp_path, 'sed -i "s/every 30s/every 30x/" "$1"')
    result = cli("edit", "-c", str(path), env=env, input="n\n")
    assert result.exit_code == 2
    assert "Edit again? [Y/n]" in result.stdout
    assert path.read_bytes() == before
    assert len(edit_copies(tmp_path)) == 1


def test_edit_refuses_to_overwrite_a_concurrent_change(cli, tmp_path: Path) -> None:
    path = config_file(tmp_path)
    env = editor(tmp_path, f'sed -i "s/every 30s/every 45s/" "$1"\necho "# added meanwhile" >> {path}')
    result = cli("edit", "-c", str(path), env=env)
    assert result.exit_code == 2
    assert path.read_text() == CONFIG.lstrip() + "# added meanwhile\n"
    [copy] = edit_copies(tmp_path)
    assert 'schedule = "every 45s"' in copy.read_text()
    assert f"{path} was changed by someone else meanwhile; it was not overwritten" in result.stderr
    assert f"Your edited version is kept in {copy}" in result.stderr


def test_edit_editor_failure_changes_nothing(cli, tmp_path: Path) -> None:
    path = config_file(tmp_path)
    before, names = path.read_bytes(), listing(tmp_path)
    env = editor(tmp_path, 'sed -i "s/every 30s/every 45s/" "$1"\nexit 3')
    result = cli("edit", "-c", str(path), env=env)
    assert result.exit_code == 2
    assert "exited with status 3" in result.stderr
    assert path.read_bytes() == before and listing(tmp_path) == sorted(names + ["bin"])


@pytest.mark.parametrize("how", ["via the shell", "exec"])
def test_edit_editor_killed_by_a_signal_says_so_and_changes_nothing(cli, tmp_path: Path,
                                                                   how: str) -> None:
    path = config_file(tmp_path)
    before, names = path.read_bytes(), listing(tmp_path)
    env = editor(tmp_path, 'sed -i "s/every 30s/every 45s/" "$1"\nkill -KILL $$')
    if how == "exec":  # the editor is the process jobctl waits for: a negative status
        env["EDITOR"] = f"exec {env['EDITOR']}"
    result = cli("edit", "-c", str(path), env=env)
    assert result.exit_code == 2
    assert "was killed by SIGKILL; nothing was changed" in result.stderr, result.stderr
    assert "status" not in result.stderr and "Traceback" not in result.output
    assert path.read_bytes() == before and listing(tmp_path) == sorted(names + ["bin"])


def test_edit_without_config_points_at_init(cli, tmp_path: Path) -> None:
    result = cli("edit", env=editor(tmp_path, "true"))
    assert result.exit_code == 2 and "`jobctl init`" in result.stderr


def test_edit_through_a_symlink_keeps_the_link(cli, tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    target = config_file(real)
    link = tmp_path / "link.toml"
    link.symlink_to(target)
    result = cli("edit", "-c", str(link), env=editor(tmp_path, 'sed -i "s/every 30s/every 45s/" "$1"'))
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and "every 45s" in target.read_text()


# -- the real entry point -----------------------------------------------------------


def _run(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("JOBCTL_")}
    return subprocess.run([sys.executable, "-m", "jobctl", *args], check=False, cwd=cwd, env={**base, **env},
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def test_python_dash_m_entry_point(tmp_path: Path) -> None:
    path = tmp_path / "jobctl.toml"
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "JOBCTL_CONFIG": str(path)}
    steps = [
        (["init"], f"wrote a starter config to {path}"),
        (["add", "dump", "--schedule", "@daily", "--", "pg_dump", "-Fc"], f"added dump to {path}"),
        (["set", "dump", "priority=3"], f"updated dump in {path}: priority"),
        (["remove", "hello"], f"removed hello from {path}"),
    ]
    for args, out in steps:
        result = _run(*args, cwd=tmp_path, env=env)
        assert result.returncode == 0, (args, result.stderr)
        assert result.stdout == out + "\n"
    assert _run("init", cwd=tmp_path, env=env).returncode == 2
    editor_env = {**env, **editor(tmp_path, 'sed -i "s/priority = 3/priority = 4/" "$1"')}
    result = _run("edit", cwd=tmp_path, env=editor_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"saved {path} (1 task)\n"
    assert tomllib.loads(path.read_text())["tasks"] == [
        {"id": "dump", "schedule": "@daily", "argv": ["pg_dump", "-Fc"], "priority": 4}]


def test_an_edit_that_leaves_a_plugin_out_is_refused(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "jobctl.toml"
    config.write_text('[jobctl]\nplugins = ["plugins/*/plugin.toml"]\n\n[[tasks]]\nid = "own"\n'
                      'schedule = "@daily"\ncommand = "true"\n')
    plugin = tmp_path / "plugins" / "p" / "plugin.toml"
    plugin.parent.mkdir(parents=True)
    plugin.write_text('[plugin]\nid = "p"\n[[jobs]]\nkey = "k"\nschedule = "*/10 * * * *"\n'
                      'command = "true"\n')
    before = config.read_bytes()
    result = cli("set", "own", "priority=5")
    assert result.exit_code == 0, result.output
    before = config.read_bytes()
    # a stricter plugin limit would leave plugin p out: refused, file untouched
    text = config.read_text().replace("[jobctl]\n", '[jobctl]\nplugin_limits = { min_interval = "1h" }\n')
    editor = tmp_path / "ed.sh"
    editor.write_text(f"#!/bin/sh\ncat > \"$1\" <<'EOF2'\n{text}EOF2\n")
    editor.chmod(0o755)
    result = cli("edit", env={"EDITOR": str(editor)})
    assert result.exit_code == 2
    assert "fires as often as every 10m; the limit is every 1h" in result.stderr
    assert config.read_bytes() == before


def test_add_cites_the_options_it_was_given_not_lines_it_never_wrote(cli, tmp_path: Path) -> None:
    path = config_file(tmp_path)
    before, names = path.read_bytes(), listing(tmp_path)
    result = cli("add", "new", "--schedule", "@every 5m", "--timezone", "Mars/Base",
                 "--timeout", "5x", "-c", str(path), "--", "pg_dump", "app")
    refused(result, path, before, names)
    lines = result.stderr.splitlines()
    assert lines[0] == (f"{path}: --schedule: unknown shortcut '@every 5m'; an interval is written "
                        "without '@': did you mean 'every 5m'?")
    assert lines[1] == f"{path}: --timezone: unknown time zone 'Mars/Base'"
    assert lines[2].startswith(f"{path}: --timeout: '5x' is not a duration")
    assert lines[3:] == ["3 errors in config (nothing was changed)"]


def test_add_to_an_invalid_file_cites_the_files_own_lines(cli, tmp_path: Path) -> None:
    path = tmp_path / "jobctl.toml"
    path.write_text('[[tasks]]\nid = "old"\nschedule = "0 25 * * *"\ncommand = "x"\n')
    result = cli("add", "new", "--schedule", "@dialy", "--command", "x", "-c", str(path))
    assert result.exit_code == 2
    assert result.stderr.splitlines()[:2] == [
        f"{path}:3: tasks[0] (old).schedule: bad hour field '25': 25 is out of range 0-23",
        f"{path}: --schedule: unknown shortcut '@dialy'; known: @yearly, @annually, @monthly, "
        "@weekly, @daily, @midnight, @hourly, @reboot",
    ]
