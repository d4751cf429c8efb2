"""The config-editing core: text in, text out, only the intended lines changed."""

from __future__ import annotations

import difflib
import os
import stat
import textwrap
import tomllib
from pathlib import Path

import pytest

from conftest import NOW
from jobctl.editing import (
    ABSENT,
    STARTER,
    ConcurrentChangeError,
    EditError,
    add_task,
    atomic_write,
    fingerprint,
    parse_value,
    remove_task,
    save_config,
    set_keys,
)
from jobctl.errors import ConfigError, UnknownTaskError
from jobctl.resolve import resolve


def dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip()


def changed_lines(old: str, new: str) -> tuple[list[str], list[str]]:
    """(lines only in old, lines only in new), by a line diff."""
    removed, added = [], []
    for line in difflib.ndiff(old.splitlines(), new.splitlines()):
        if line.startswith("- "):
            removed.append(line[2:])
        elif line.startswith("+ "):
            added.append(line[2:])
    return removed, added


COMMENTED = dedent("""
    # My jobs. Keep this header.

    [jobctl]
    timezone = "UTC"   # where I live

    # The backup: nightly.
    # Two comment lines.
    [[tasks]]
    id = "backup"                # the id
    name = 'Nightly backup'      # literal quotes stay
    schedule = "30 2 * * *"
    command = "backup.sh"

    # Polls often.
    [[tasks]]
    id = "poll"
    schedule = "every 30s"
    argv = [
        "curl",   # the program
        "-fsS",
    ]
    [tasks.env]
    URL = "https://example.com"

    [[tasks]]
    id = "last"
    schedule = "@daily"
    command = "true"
    # timeout = "5m"   (commented out key of 'last')

    # footer comment
""")


# -- remove ------------------------------------------------------------------


def test_remove_middle_task_takes_its_own_comment_and_keeps_the_next_ones() -> None:
    new = remove_task(COMMENTED, "backup")
    block = COMMENTED[COMMENTED.index("# The backup"):COMMENTED.index("# Polls often.")]
    assert block.endswith('command = "backup.sh"\n\n')
    assert new == COMMENTED.replace(block, "")
    assert "# Polls often.\n[[tasks]]\nid = \"poll\"" in new
    assert 'timezone = "UTC"   # where I live\n\n# Polls often.\n' in new


def test_remove_task_with_sub_table_and_multiline_array() -> None:
    new = remove_task(COMMENTED, "poll")
    assert "poll" not in new and "curl" not in new and "tasks.env" not in new and "URL" not in new
    assert 'command = "backup.sh"\n\n[[tasks]]\nid = "last"' in new
    assert "# The backup: nightly.\n# Two comment lines.\n[[tasks]]" in new


def test_remove_last_task_keeps_footer_and_takes_its_hugging_comment() -> None:
    new = remove_task(COMMENTED, "last")
    assert "(commented out key of 'last')" not in new and 'id = "last"' not in new
    assert new.endswith('URL = "https://example.com"\n\n# footer comment\n')


def test_remove_only_and_first_and_final_tables() -> None:
    one = '[[tasks]]\nid = "a"\nschedule = "@daily"\ncommand = "x"\n'
    assert remove_task(one, "a") == ""
    two = one + '\n[[tasks]]\nid = "b"\nschedule = "@daily"\ncommand = "y"\n'
    assert remove_task(two, "a") == two[len(one) + 1:]
    assert remove_task(two, "b") == one
    # no final newline: the kept last line stays without one too
    assert remove_task(two.rstrip("\n"), "a") == two[len(one) + 1:].rstrip("\n")


def test_remove_keeps_a_comment_touching_both_tables() -> None:
    text = dedent("""
        [[tasks]]
        id = "a"
        schedule = "@daily"
        command = "x"
        # whose comment is this?
        [[tasks]]
        id = "b"
        schedule = "@daily"
        command = "y"
    """)
    assert "# whose comment is this?" in remove_task(text, "a")
    assert "# whose comment is this?" in remove_task(text, "b")
    # a file's first comment, touching the first header, is the file's
    headed = "# my config\n" + text
    assert remove_task(headed, "a").startswith("# my config\n# whose comment is this?\n[[tasks]]")


def test_remove_ignores_headers_inside_multiline_strings() -> None:
    text = dedent('''
        [[tasks]]
        id = "a"
        schedule = "@daily"
        description = """
        [[tasks]]
        id = "fake"
        """
        command = 'x'

        [[tasks]]
        id = "b"
        schedule = "@daily"
        command = "y"
        ''')
    new = remove_task(text, "b")
    assert tomllib.loads(new)["tasks"][0]["description"] == '[[tasks]]\nid = "fake"\n'
    assert new == text.split("\n\n[[tasks]]\nid = \"b\"")[0] + "\n"
    assert 'id = "b"' in remove_task(text, "a")


TRICKY = dedent('''
    [jobctl]
    plugins = [
      "a[1]",   # [[tasks]] in a comment
    ]

    [[tasks]]
    id = "a"
    schedule = "@daily"
    matrix = [
    [1, 2],
    [3],
    ]
    description = \'\'\'
    [[tasks]]
    id = "not-a-task"
    \'\'\'
    command = "echo '[' \\"#\\" {"  # [ in a comment
    env = { X = "]", Y = "\'\'\'" }

    [ "tasks" . env2 ]
    Z = "1"

    [[ tasks ]]  # b
    id = "b"
    schedule = "@daily"
    description = """quote \\""" still inside
    [[tasks]]
    """
    argv = [
      "x",
      "[y]",
    ]
    ''')


def test_scanner_is_not_fooled_by_brackets_in_strings_arrays_and_comments() -> None:
    data = tomllib.loads(TRICKY)
    assert [t["id"] for t in data["tasks"]] == ["a", "b"]
    without_a = remove_task(TRICKY, "a")
    assert without_a == TRICKY[:TRICKY.index("\n[[tasks]]\n") + 1] + TRICKY[TRICKY.index("[[ tasks ]]"):]
    without_b = remove_task(TRICKY, "b")
    assert without_b == TRICKY[:TRICKY.index("\n\n[[ tasks ]]") + 1]
    new = set_keys(TRICKY, "a", [("priority", 1)])
    assert 'env = { X = "]", Y = "\'\'\'" }\npriority = 1\n\n[ "tasks" . env2 ]' in new
    new = set_keys(TRICKY, "b", [("priority", 2), ("argv", ["z"])])
    assert new.endswith("argv = [\"z\"]\npriority = 2\n")
    assert tomllib.loads(new)["tasks"][1]["description"] == data["tasks"][1]["description"]


def test_remove_with_settings_after_the_tasks_and_crlf() -> None:
    text = ('[[tasks]]\r\nid = "a"\r\nschedule = "@daily"\r\ncommand = "x"\r\n\r\n'
            '[jobctl]\r\ntimezone = "UTC"\r\n\r\n'
            '[[tasks]]\r\nid = "b"\r\nschedule = "@daily"\r\ncommand = "y"\r\n')
    new = remove_task(text, "a")
    assert new == '[jobctl]\r\ntimezone = "UTC"\r\n\r\n[[tasks]]\r\nid = "b"\r\nschedule = "@daily"\r\ncommand = "y"\r\n'
    assert tomllib.loads(remove_task(text, "b")) == {
        "tasks": [{"id": "a", "schedule": "@daily", "command": "x"}], "jobctl": {"timezone": "UTC"},
    }


def test_remove_unknown_id_suggests_and_duplicate_id_refused() -> None:
    with pytest.raises(UnknownTaskError, match=r"no task with id 'bakup' \(did you mean 'backup'\?\)"):
        remove_task(COMMENTED, "bakup")
    dup = '[[tasks]]\nid = "a"\n\n[[tasks]]\nid = "a"\n'
    with pytest.raises(EditError, match="declared 2 times"):
        remove_task(dup, "a")


def test_inline_tasks_array_and_bad_toml_are_refused() -> None:
    with pytest.raises(EditError, match="jobctl edit"):
        remove_task('tasks = [{ id = "a", schedule = "@daily", command = "x" }]\n', "a")
    with pytest.raises(EditError, match="not valid TOML"):
        set_keys('[[tasks]]\nid = "a\n', "a", [("name", "x")])


# -- set -------------------------------------------------------------------------


def test_set_existing_key_changes_only_that_line_keeping_its_comment_column() -> None:
    new = set_keys(COMMENTED, "backup", [("schedule", "*/5 * * * *")])
    assert changed_lines(COMMENTED, new) == (['schedule = "30 2 * * *"'], ['schedule = "*/5 * * * *"'])
    new = set_keys(COMMENTED, "backup", [("id", "nightly")])
    assert changed_lines(COMMENTED, new) == (
        ['id = "backup"                # the id'], ['id = "nightly"               # the id'])


def test_set_new_key_goes_after_the_last_key_not_after_comments_or_sub_tables() -> None:
    new = set_keys(COMMENTED, "poll", [("timeout", "5m"), ("priority", 3)])
    assert changed_lines(COMMENTED, new) == ([], ['timeout = "5m"', "priority = 3"])
    assert '    "-fsS",\n]\ntimeout = "5m"\npriority = 3\n[tasks.env]\n' in new
    new = set_keys(COMMENTED, "last", [("name", "The last")])
    assert 'command = "true"\nname = "The last"\n# timeout = "5m"' in new
    new = set_keys(COMMENTED, "backup", [("enabled", False)])
    assert 'command = "backup.sh"\nenabled = false\n\n# Polls often.' in new


def test_set_values_of_every_kind_round_trip() -> None:
    pairs = [("argv", ["a b", 'say "hi"', "back\\slash"]), ("env", {"A": "1", "B C": "x\ny"}),
             ("enabled", False), ("priority", -2), ("timeout", 90), ("name", "ünïcødé\ttab")]
    new = set_keys(COMMENTED, "backup", [("command", "x")] + pairs[1:])
    task = tomllib.loads(new)["tasks"][0]
    for key, value in pairs[1:]:
        assert task[key] == value
    new = set_keys(new, "backup", [pairs[0]], unset=["command"])
    assert tomllib.loads(new)["tasks"][0]["argv"] == pairs[0][1]
    assert "command" not in tomllib.loads(new)["tasks"][0]


def test_set_same_value_changes_nothing_and_unset_removes_line() -> None:
    assert set_keys(COMMENTED, "backup", [("schedule", "30 2 * * *")]) == COMMENTED
    new = set_keys(COMMENTED, "backup", [], unset=["name"])
    assert changed_lines(COMMENTED, new) == (["name = 'Nightly backup'      # literal quotes stay"], [])
    with pytest.raises(EditError, match="has no key 'timeot' to unset"):
        set_keys(COMMENTED, "backup", [], unset=["timeot"])
    with pytest.raises(EditError, match=r"did you mean 'schedule'\?"):
        set_keys(COMMENTED, "backup", [], unset=["schedul"])
    with pytest.raises(UnknownTaskError, match="did you mean 'poll'"):
        set_keys(COMMENTED, "pol", [("name", "x")])


def test_set_on_last_table_without_final_newline() -> None:
    text = '[[tasks]]\nid = "a"\nschedule = "@daily"\ncommand = "x"'
    assert set_keys(text, "a", [("command", "y")]) == text.replace('"x"', '"y"')
    assert set_keys(text, "a", [("priority", 1)]) == text + "\npriority = 1"


def test_set_and_add_keep_crlf_line_ends() -> None:
    text = '[[tasks]]\r\nid = "a"\r\nschedule = "@daily"\r\ncommand = "x"\r\n'
    assert set_keys(text, "a", [("command", "y"), ("priority", 1)]) == (
        '[[tasks]]\r\nid = "a"\r\nschedule = "@daily"\r\ncommand = "y"\r\npriority = 1\r\n')
    new = add_task(text, {"id": "b", "schedule": "@daily", "command": "x"})
    assert new == text + "\r\n" + text.replace('"a"', '"b"')


def test_set_env_over_a_sub_table() -> None:
    text = dedent("""
        [[tasks]]
        id = "a"
        schedule = "@daily"
        command = "x"
        [tasks.env]
        A = "1"

        # b's comment
        [[tasks]]
        id = "b"
        schedule = "@daily"
        command = "y"
    """)
    new = set_keys(text, "a", [("env", {"B": "2"})])
    assert tomllib.loads(new)["tasks"][0]["env"] == {"B": "2"}
    assert new.endswith('\n\n# b\'s comment\n[[tasks]]\nid = "b"\nschedule = "@daily"\ncommand = "y"\n')
    new = set_keys(text, "a", [("timeout", "5m")])
    assert diff_added(text, new) == ['timeout = "5m"'] and 'command = "x"\ntimeout = "5m"\n[tasks.env]' in new


def test_set_over_dotted_keys_and_sub_tables_keeps_place_and_indentation() -> None:
    text = '[[tasks]]\n  id = "a"\n  env.A = "1"\n  command = "x"\n  env.B = "2"\n'
    assert set_keys(text, "a", [("env", {"C": "3"})]) == (
        '[[tasks]]\n  id = "a"\n  env = {C = "3"}\n  command = "x"\n')
    assert set_keys(text, "a", [("env", {"A": "1", "B": "2"})]) == text
    with pytest.raises(EditError, match="'env' is given twice"):
        set_keys(text, "a", [("env", {}), ("env", {"C": "3"})])
    text = '[[tasks]]\nid = "a"\ncommand = "x"\n  [tasks.env]\n  A = "1"   # one\n  B = "2"\n'
    assert set_keys(text, "a", [("env", {"A": "1", "C": "3"})]) == (
        '[[tasks]]\nid = "a"\ncommand = "x"\n  [tasks.env]\n  A = "1"   # one\n  C = "3"\n')
    # no longer a table: one line where its header was (resolve then says what is wrong)
    assert set_keys(text, "a", [("env", "x")]) == '[[tasks]]\nid = "a"\ncommand = "x"\n  env = "x"\n'


def diff_added(old: str, new: str) -> list[str]:
    removed, added = changed_lines(old, new)
    assert removed == []
    return added


def test_set_keeps_indentation_of_indented_tables() -> None:
    text = '[[tasks]]\n  id = "a"\n  schedule = "@daily"\n  command = "x"\n'
    assert set_keys(text, "a", [("group", "g")]) == text + '  group = "g"\n'


# -- add -------------------------------------------------------------------------


def test_add_appends_a_table_and_keeps_everything_else() -> None:
    table = {"id": "new", "schedule": "@hourly", "argv": ["pg_dump", "--format=c"],
             "env": {"PGHOST": "db"}, "enabled": False}
    new = add_task(COMMENTED, table)
    assert new.startswith(COMMENTED)
    assert new[len(COMMENTED):] == (
        '\n[[tasks]]\nid = "new"\nschedule = "@hourly"\nargv = ["pg_dump", "--format=c"]\n'
        'env = {PGHOST = "db"}\nenabled = false\n'
    )
    assert tomllib.loads(new)["tasks"][-1] == table


def test_add_to_empty_and_unterminated_files() -> None:
    table = {"id": "a", "schedule": "@daily", "command": "echo \"quoted\" \\ back"}
    assert add_task("", table) == '[[tasks]]\nid = "a"\nschedule = "@daily"\ncommand = "echo \\"quoted\\" \\\\ back"\n'
    new = add_task("# just a comment", table)
    assert new.startswith("# just a comment\n\n[[tasks]]\n")
    assert tomllib.loads(new)["tasks"] == [table]


def test_add_duplicate_id_refused() -> None:
    with pytest.raises(EditError, match=r"a task with id 'poll' already exists \(line 15\)"):
        add_task(COMMENTED, {"id": "poll", "schedule": "@daily", "command": "x"})


def test_add_where_tasks_is_an_inline_array_is_refused() -> None:
    with pytest.raises(EditError, match="would not be valid TOML"):
        add_task("tasks = []\n", {"id": "a", "schedule": "@daily", "command": "x"})


# -- values ----------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "value"), [
    ("5", 5), ("-3", -3), ("false", False), ("1.5", 1.5),
    ('["a", "b"]', ["a", "b"]), ('"quoted"', "quoted"), ("'literal'", "literal"),
    ('{ A = "1" }', {"A": "1"}),
    ("*/5 * * * *", "*/5 * * * *"), ("@daily", "@daily"), ("every 5m", "every 5m"),
    ("5m", "5m"), ("echo hi", "echo hi"), ("", ""), ("/usr/bin/x", "/usr/bin/x"),
    ("5 # five", "5 # five"), ('"a" "b"', '"a" "b"'), ("1\nx = 2", "1\nx = 2"),
])
def test_parse_value(raw: str, value: object) -> None:
    assert parse_value(raw) == value
    assert type(parse_value(raw)) is type(value)


# -- writing ---------------------------------------------------------------------


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_atomic_write_keeps_mode_and_symlinks(tmp_path: Path) -> None:
    path = tmp_path / "jobctl.toml"
    path.write_text("old\n")
    path.chmod(0o640)
    atomic_write(path, "new\n")
    assert path.read_text() == "new\n" and stat.S_IMODE(path.stat().st_mode) == 0o640
    link = tmp_path / "link.toml"
    link.symlink_to(path)
    atomic_write(link, "via link\n")
    assert link.is_symlink() and path.read_text() == "via link\n"
    assert _listing(tmp_path) == ["jobctl.toml", "link.toml"]


def test_atomic_write_new_file_follows_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        atomic_write(tmp_path / "new.toml", "x\n", expect=ABSENT)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.toml").stat().st_mode) == 0o640
    with pytest.raises(ConcurrentChangeError):
        atomic_write(tmp_path / "new.toml", "y\n", expect=ABSENT)
    assert (tmp_path / "new.toml").read_text() == "x\n"


def test_atomic_write_refuses_on_concurrent_change_or_failed_check(tmp_path: Path) -> None:
    path = tmp_path / "jobctl.toml"
    path.write_bytes(b"one\n")
    seen = fingerprint(path)
    path.write_bytes(b"two\n")
    with pytest.raises(ConcurrentChangeError, match="was changed by someone else"):
        atomic_write(path, "three\n", expect=seen)
    assert path.read_bytes() == b"two\n"

    def refuse(tmp: Path) -> None:
        assert tmp.parent == tmp_path and tmp.read_text() == "four\n"
        raise ValueError("no")

    with pytest.raises(ValueError):
        atomic_write(path, "four\n", check=refuse)
    assert path.read_bytes() == b"two\n"
    assert _listing(tmp_path) == ["jobctl.toml"]
    assert fingerprint(tmp_path / "missing") == ABSENT


def test_save_config_validates_and_reports_against_the_real_path(tmp_path: Path) -> None:
    path = tmp_path / "jobctl.toml"
    path.write_text(COMMENTED)
    before = path.read_bytes()
    bad = add_task(COMMENTED, {"id": "x", "schedule": "0 25 * * *", "command": "y"})
    with pytest.raises(ConfigError) as info:
        save_config(path, bad, expect=fingerprint(path), system_zone="UTC", now=NOW)
    assert [str(p) for p in info.value.problems] == [
        f"{path}:35: tasks[3] (x).schedule: bad hour field '25': 25 is out of range 0-23"]
    assert path.read_bytes() == before and _listing(tmp_path) == ["jobctl.toml"]
    good = set_keys(COMMENTED, "poll", [("at", "2020-01-01T00:00:00Z")], unset=["schedule"])
    warnings = save_config(path, good, expect=fingerprint(path), system_zone="UTC", now=NOW)
    assert [w.origin.path for w in warnings] == [path] and "in the past" in warnings[0].message
    assert path.read_text() == good and _listing(tmp_path) == ["jobctl.toml"]


def test_starter_config_resolves(tmp_path: Path) -> None:
    path = tmp_path / "jobctl.toml"
    path.write_text(STARTER)
    schedule_set = resolve(path, system_zone="UTC", now=NOW)
    assert [t.id for t in schedule_set.tasks] == ["hello"] and not schedule_set.warnings
    # and the commented-out example is a valid task once uncommented
    example = STARTER.split("# Another shape:")[1].split("\n", 1)[1]
    uncommented = "\n".join(line.removeprefix("# ") for line in example.splitlines())
    path.write_text(STARTER + "\n" + uncommented + "\n")
    assert [t.id for t in resolve(path, system_zone="UTC", now=NOW).tasks] == ["hello", "backup"]
