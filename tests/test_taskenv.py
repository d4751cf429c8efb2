"""Shared environment, env files and per-task `user`, end to end: the real CLI,
real child processes, a real SQLite state, a real `jobctl run`. Tests run as
root here; `nobody` is the other user."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import wait_for, write_config

JOBCTL = shutil.which("jobctl", path=os.path.dirname(sys.executable))
NOBODY = pwd.getpwnam("nobody")

# one variable per layer, each set in that layer and every layer under it:
# the value seen names the layer that won
LAYERED = """
[jobctl]
state = "state.db"
env_file = "shared.env"
env = {{ L_JOBCTL_ENV = "jobctl-env", L_TASK_FILE = "jobctl-env", L_TASK_ENV = "jobctl-env" }}

[[tasks]]
id = "show"
schedule = "{schedule}"
env_file = "task.env"
env = {{ L_TASK_ENV = "task-env", JOBCTL_TASK_ID = "spoofed" }}
command = "for v in L_RUNNER L_JOBCTL_FILE L_JOBCTL_ENV L_TASK_FILE L_TASK_ENV JOBCTL_TASK_ID; do eval echo $v=\\\\$$v; done"
"""
SHARED_ENV = "L_JOBCTL_FILE=jobctl-file\nL_JOBCTL_ENV=jobctl-file\nL_TASK_FILE=jobctl-file\nL_TASK_ENV=jobctl-file\n"
TASK_ENV = "# the task's own file\nexport L_TASK_FILE='task-file'\nL_TASK_ENV=\"task-file\"\n"
RUNNER_ENV = {"L_RUNNER": "runner", "L_JOBCTL_FILE": "runner", "L_JOBCTL_ENV": "runner",
              "L_TASK_FILE": "runner", "L_TASK_ENV": "runner"}
EXPECTED = ("L_RUNNER=runner\nL_JOBCTL_FILE=jobctl-file\nL_JOBCTL_ENV=jobctl-env\n"
            "L_TASK_FILE=task-file\nL_TASK_ENV=task-env\nJOBCTL_TASK_ID=show\n")


def private(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def layered(folder: Path, schedule: str = "@daily") -> Path:
    private(folder / "shared.env", SHARED_ENV)
    private(folder / "task.env", TASK_ENV)
    return write_config(folder, LAYERED.format(schedule=schedule))


def base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("JOBCTL_", "L_"))}


def jobctl(*args: str, cwd: Path, env: dict[str, str] | None = None,
           as_nobody: bool = False) -> subprocess.CompletedProcess[str]:
    assert JOBCTL, "the jobctl console script is not installed beside this python"
    prefix: list[str] = []
    full = {**base_env(), **(env or {})}
    if as_nobody:
        setpriv = shutil.which("setpriv")
        assert os.geteuid() == 0 and setpriv, "running jobctl as nobody needs root and setpriv"
        prefix = [setpriv, "--reuid", str(NOBODY.pw_uid), "--regid", str(NOBODY.pw_gid),
                  "--clear-groups"]
        full = {k: v for k, v in full.items() if not k.startswith("XDG_")}
        full["HOME"] = str(cwd)
    return subprocess.run([*prefix, JOBCTL, *args], cwd=cwd, env=full, capture_output=True,
                          text=True, timeout=60)


def runs(state: Path) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(state)
    try:
        return conn.execute("select id, task_id, status, exit_code, error from runs order by id").fetchall()
    finally:
        conn.close()


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder every user can enter (pytest's tmp_path is root's 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="jobctl-taskenv-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- env precedence -------------------------------------------------------------------


def test_env_layers_reach_a_run_now_in_their_documented_order(
        tmp_path: Path, cli: Callable[..., object]) -> None:
    layered(tmp_path)
    result = cli("run-now", "show", env=RUNNER_ENV)
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    assert (tmp_path / "logs" / "1.log").read_text() == EXPECTED
    # the config is read as the warning-free file it is: nothing on stderr about it
    assert "warning" not in result.output  # type: ignore[attr-defined]


def test_env_layers_reach_a_run_of_the_real_runner_and_a_reload_reads_the_env_file_again(
        tmp_path: Path) -> None:
    layered(tmp_path, schedule="every 1s")
    assert JOBCTL
    out = (tmp_path / "runner.out").open("w+")
    proc = subprocess.Popen([JOBCTL, "run", "--log-format", "json"], cwd=tmp_path,
                            env={**base_env(), **RUNNER_ENV}, stdout=out, stderr=subprocess.STDOUT)

    def finished(n: int) -> Callable[[], object]:
        def check() -> object:
            if proc.poll() is not None:
                raise AssertionError((tmp_path / "runner.out").read_text())
            events = [json.loads(line) for line in (tmp_path / "runner.out").read_text().splitlines()
                      if line.startswith("{")]
            done = [e for e in events if e["event"] == "finish"]
            return done[n - 1] if len(done) >= n else None
        return check

    try:
        first = wait_for(finished(1), 30, "a finished run")
        assert first["status"] == "success", first  # type: ignore[index]
        assert (tmp_path / "logs" / f"{first['run_id']}.log").read_text() == EXPECTED  # type: ignore[index]
        # an env file changes: SIGHUP reloads the config, which reads it again
        private(tmp_path / "task.env", "L_TASK_FILE=task-file-2\n")
        proc.send_signal(signal.SIGHUP)

        def reloaded() -> object:
            text = (tmp_path / "runner.out").read_text()
            return '"event": "reload"' in text or '"event":"reload"' in text
        wait_for(reloaded, 30, "the reload event")
        offset = len([e for e in (tmp_path / "runner.out").read_text().splitlines()
                      if '"finish"' in e])
        later = wait_for(finished(offset + 1), 30, "a run after the reload")
        log = (tmp_path / "logs" / f"{later['run_id']}.log").read_text()  # type: ignore[index]
        assert "L_TASK_FILE=task-file-2\n" in log
        assert "L_TASK_ENV=task-env\n" in log
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        out.close()


def test_env_file_paths_are_relative_to_the_config_file_not_the_working_directory(
        tmp_path: Path) -> None:
    conf = tmp_path / "etc"
    conf.mkdir()
    private(tmp_path / "app.env", "WHERE=cwd\n")  # a decoy beside the caller
    (conf / "secrets").mkdir()
    private(conf / "secrets" / "app.env", "WHERE=config-folder\n")
    write_config(conf, """
        [jobctl]
        state = "state.db"
        [[tasks]]
        id = "where"
        schedule = "@daily"
        env_file = "secrets/app.env"
        command = "echo $WHERE"
    """)
    result = jobctl("run-now", "where", "-c", "etc/jobctl.toml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("config-folder\n")
    shown = jobctl("show", "where", "--json", "-c", "etc/jobctl.toml", cwd=tmp_path)
    detail = json.loads(shown.stdout)
    # show names the file, never its values
    assert detail["env_file"] == str(conf / "secrets" / "app.env")
    assert "config-folder" not in shown.stdout


# -- env file problems ----------------------------------------------------------------


def test_a_missing_env_file_is_a_config_error_at_its_key_and_nothing_runs(tmp_path: Path) -> None:
    config = write_config(tmp_path, """
        [jobctl]
        state = "state.db"
        env_file = "nope.env"

        [[tasks]]
        id = "t"
        schedule = "@daily"
        env_file = "also-missing.env"
        command = "true"
    """)
    for args in (("validate",), ("run-now", "t"), ("run",)):
        result = jobctl(*args, cwd=tmp_path)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr
        assert (f"{config}:3: jobctl.env_file: env file {tmp_path / 'nope.env'} does not exist\n"
                in result.stderr), result.stderr
        assert (f"{config}:8: tasks[0] (t).env_file: env file {tmp_path / 'also-missing.env'} "
                "does not exist\n" in result.stderr), result.stderr
    assert not (tmp_path / "state.db").exists()


@pytest.mark.parametrize(("text", "message"), [
    ("GOOD=1\nthis is not a line\n", ":2: cannot parse 'this is not a line': write NAME=VALUE"),
    ("GOOD=1\n\nLONELY\n", ":3: 'LONELY' has no '=' (write LONELY= for an empty value)"),
    ("A=\xff\n", ":1: not UTF-8 text (byte 0xff)"),
], ids=["syntax", "no-equals", "not-utf8"])
def test_an_env_file_that_does_not_parse_is_a_config_error_with_its_own_line(
        tmp_path: Path, text: str, message: str) -> None:
    env_file = tmp_path / "app.env"
    env_file.write_bytes(text.encode("latin-1"))
    env_file.chmod(0o600)
    config = write_config(tmp_path, """
        [[tasks]]
        id = "t"
        schedule = "@daily"
        env_file = "app.env"
        command = "true"
    """)
    result = jobctl("validate", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(
        f"{config}:4: tasks[0] (t).env_file: env file {env_file}{message}"), result.stderr


def test_an_env_file_others_can_change_is_refused_and_a_folder_is_not_a_file(tmp_path: Path) -> None:
    private(tmp_path / "open.env", "A=1\n").chmod(0o666)
    (tmp_path / "dir.env").mkdir()
    config = write_config(tmp_path, """
        [[tasks]]
        id = "open"
        schedule = "@daily"
        env_file = "open.env"
        command = "true"

        [[tasks]]
        id = "dir"
        schedule = "@daily"
        env_file = "dir.env"
        command = "true"
    """)
    result = jobctl("validate", cwd=tmp_path)
    assert result.returncode == 2
    assert (f"{config}:4: tasks[0] (open).env_file: refusing env file {tmp_path / 'open.env'}: "
            "it is writable by group and others (mode 0666)") in result.stderr
    assert (f"{config}:10: tasks[1] (dir).env_file: env file {tmp_path / 'dir.env'} "
            "is not a regular file\n") in result.stderr


def test_an_env_file_readable_by_others_gets_a_warning_naming_it_once(tmp_path: Path) -> None:
    env_file = tmp_path / "app.env"
    private(env_file, "TOKEN=s3cret\n").chmod(0o640)
    config = write_config(tmp_path, """
        [[tasks]]
        id = "a"
        schedule = "@daily"
        env_file = "app.env"
        command = "echo $TOKEN"

        [[tasks]]
        id = "b"
        schedule = "@daily"
        env_file = "app.env"
        command = "true"
    """)
    result = jobctl("validate", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "2 tasks OK\n"
    assert result.stderr == (
        f"{config}:4: tasks[0] (a).env_file: warning: env file {env_file} is readable by its "
        f"group (mode 0640), and env files usually hold secrets; fix: chmod go-r {env_file}\n")
    # a warning, not an error: the task still runs with the file's values
    result = jobctl("run-now", "a", "--state", str(tmp_path / "state.db"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("s3cret\n")


# -- user ----------------------------------------------------------------------------------

USER_TASK = """
    [jobctl]
    state = "state/state.db"
    env = {{ HOME = "{home}" }}

    [[tasks]]
    id = "who"
    schedule = "{schedule}"
    user = "{user}"
    {cwd}
    command = "echo uid=$(id -u) gid=$(id -g) groups=$(id -G) home=$HOME user=$USER logname=$LOGNAME shell=$SHELL pwd=$(pwd)"
"""


def user_config(folder: Path, user: str = "nobody", schedule: str = "@daily", cwd: str = "",
                home: str = "") -> Path:
    text = USER_TASK if home else USER_TASK.replace('env = {{ HOME = "{home}" }}\n', "")
    return write_config(folder, text.format(user=user, schedule=schedule, home=home,
                                            cwd=f'cwd = "{cwd}"' if cwd else ""))


def who_line(entry: pwd.struct_passwd, home: str | None = None, pwd_: str = "") -> str:
    groups = " ".join(str(g) for g in os.getgrouplist(entry.pw_name, entry.pw_gid))
    return (f"uid={entry.pw_uid} gid={entry.pw_gid} groups={groups} home={home or entry.pw_dir} "
            f"user={entry.pw_name} logname={entry.pw_name} shell={entry.pw_shell} pwd={pwd_}")


def test_a_task_with_user_runs_as_that_user_and_its_log_stays_the_runners(shared_dir: Path) -> None:
    (shared_dir / "work").mkdir(mode=0o755)
    user_config(shared_dir, cwd="work")
    result = jobctl("run-now", "who", cwd=shared_dir)
    assert result.returncode == 0, result.stderr
    expected = who_line(NOBODY, pwd_=str(shared_dir / "work"))
    assert result.stdout.splitlines()[0] == expected
    assert expected.startswith("uid=65534 gid=65534 groups=65534 home=/nonexistent user=nobody "
                               "logname=nobody shell=/usr/sbin/nologin")
    log = shared_dir / "state" / "logs" / "1.log"
    assert log.read_text() == expected + "\n"
    st = log.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, 0, 0o600)
    assert (shared_dir / "state" / "logs").stat().st_mode & 0o777 == 0o700
    shown = json.loads(jobctl("show", "who", "--json", cwd=shared_dir).stdout)
    assert shown["user"] == "nobody"


def test_a_user_gets_its_supplementary_groups_and_config_env_may_set_its_home(
        shared_dir: Path) -> None:
    # a user in more groups than its primary one (postgres: ssl-cert here)
    members = [e for e in pwd.getpwall() if e.pw_uid != 0
               and set(os.getgrouplist(e.pw_name, e.pw_gid)) - {e.pw_gid}]
    assert members, "this test needs a user in a supplementary group"
    entry = members[0]
    user_config(shared_dir, user=entry.pw_name, home="/srv/elsewhere")
    result = jobctl("run-now", "who", cwd=shared_dir)
    assert result.returncode == 0, result.stderr
    line = result.stdout.splitlines()[0]
    assert line == who_line(entry, home="/srv/elsewhere", pwd_=str(shared_dir))
    groups = set(line.split("groups=")[1].split(" home=")[0].split())
    assert len(groups) >= 2


def test_the_real_runner_runs_a_user_task_as_that_user(shared_dir: Path) -> None:
    user_config(shared_dir, schedule="every 1s")
    assert JOBCTL
    out = (shared_dir / "runner.out").open("w+")
    proc = subprocess.Popen([JOBCTL, "run", "--log-format", "json"], cwd=shared_dir,
                            env=base_env(), stdout=out, stderr=subprocess.STDOUT)
    try:
        def finished() -> object:
            if proc.poll() is not None:
                raise AssertionError((shared_dir / "runner.out").read_text())
            return [json.loads(line) for line in (shared_dir / "runner.out").read_text().splitlines()
                    if line.startswith("{") and '"finish"' in line]
        [first, *_] = wait_for(finished, 30, "a finished run")  # type: ignore[misc]
        assert first["status"] == "success", first
        log = shared_dir / "state" / "logs" / f"{first['run_id']}.log"
        assert log.read_text() == who_line(NOBODY, pwd_=str(shared_dir)) + "\n"
        assert (log.stat().st_uid, log.stat().st_mode & 0o777) == (0, 0o600)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        out.close()


def test_a_cwd_the_user_cannot_enter_is_a_failed_run_saying_so(shared_dir: Path) -> None:
    (shared_dir / "private").mkdir(mode=0o700)
    (shared_dir / "private").chmod(0o700)
    user_config(shared_dir, cwd="private")
    result = jobctl("run-now", "who", cwd=shared_dir)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    reason = (f"cwd '{shared_dir / 'private'}' is not accessible to user 'nobody': "
              f"'{shared_dir / 'private'}' (mode 0700) does not let it in")
    assert reason in result.stderr
    [(run_id, task, status, code, error)] = runs(shared_dir / "state" / "state.db")
    assert (task, status, code, error) == ("who", "failed", None, reason)
    assert (shared_dir / "state" / "logs" / f"{run_id}.log").read_text() == f"[jobctl: {reason}]\n"


def test_an_unknown_user_is_a_config_error_at_its_line(tmp_path: Path) -> None:
    config = user_config(tmp_path, user="no-such-user-here")
    result = jobctl("validate", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(
        f"{config}:7: tasks[0] (who).user: unknown user 'no-such-user-here': no such user on "
        "this machine (passwd)\n"), result.stderr


def test_a_runner_that_is_not_root_refuses_user_and_validate_says_it_would(shared_dir: Path) -> None:
    config = user_config(shared_dir)
    with (shared_dir / "jobctl.toml").open("a") as f:
        f.write('\n[[tasks]]\nid = "plain"\nschedule = "@daily"\ncommand = "echo plain"\n')
    (shared_dir / "state").mkdir(mode=0o755)
    os.chown(shared_dir / "state", NOBODY.pw_uid, NOBODY.pw_gid)
    problem = (f"{config}:7: tasks[0] (who).user: runs as user 'nobody', which only a runner "
               f"running as root can do (this is uid {NOBODY.pw_uid}); a runner that is not root "
               "refuses this config")
    validate = jobctl("validate", cwd=shared_dir, as_nobody=True)
    assert validate.returncode == 0, validate.stderr
    assert validate.stdout == "2 tasks OK\n"
    assert validate.stderr == f"{problem.replace('.user: ', '.user: warning: ')}\n"
    for args in (("run",), ("run-now", "who")):
        result = jobctl(*args, cwd=shared_dir, as_nobody=True)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert result.stderr.startswith(f"{problem}\n1 error in config"), result.stderr
        assert "Traceback" not in result.stderr
    assert not (shared_dir / "state" / "state.db").exists()
    # run-now of a task without a user is not this task's problem
    plain = jobctl("run-now", "plain", cwd=shared_dir, as_nobody=True)
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.startswith("plain\n")


def test_an_env_file_the_user_cannot_read_is_a_config_error(shared_dir: Path) -> None:
    private(shared_dir / "app.env", "A=1\n")  # root's, 0600
    config = write_config(shared_dir, """
        [[tasks]]
        id = "t"
        schedule = "@daily"
        env_file = "app.env"
        command = "true"
    """)
    result = jobctl("validate", cwd=shared_dir, as_nobody=True)
    assert result.returncode == 2
    assert result.stderr.startswith(
        f"{config}:4: tasks[0] (t).env_file: cannot read env file {shared_dir / 'app.env'}: "
        "permission denied\n"), result.stderr


# -- plugin jobs ----------------------------------------------------------------------


def test_plugin_jobs_get_the_shared_env_and_cannot_declare_user_or_env_file(tmp_path: Path) -> None:
    private(tmp_path / "shared.env", "FROM_FILE=shared-file\n")
    write_config(tmp_path, """
        [jobctl]
        state = "state.db"
        plugins = ["plugins/*/plugin.toml"]
        env = { SHARED = "jobctl-env" }
        env_file = "shared.env"

        [[tasks]]
        id = "own"
        schedule = "@daily"
        command = "true"
    """)
    folder = tmp_path / "plugins" / "demo"
    folder.mkdir(parents=True)
    (folder / "jobs.py").write_text(
        "import os\n\ndef run(ctx):\n    print('callable', os.environ['SHARED'], os.environ['FROM_FILE'])\n")
    (folder / "plugin.toml").write_text(
        '[plugin]\nid = "demo"\n\n'
        '[[jobs]]\nkey = "call"\nschedule = "@daily"\ncallable = "jobs:run"\n\n'
        '[[jobs]]\nkey = "cmd"\nschedule = "@daily"\ncommand = "echo command $SHARED $FROM_FILE"\n')
    for key, expected in (("call", "callable jobctl-env shared-file"),
                          ("cmd", "command jobctl-env shared-file")):
        result = jobctl("run-now", f"demo:{key}", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith(expected + "\n"), result.stdout
    # a plugin does not choose who its jobs run as, nor read files for them
    (folder / "plugin.toml").write_text(
        '[plugin]\nid = "demo"\n\n'
        '[[jobs]]\nkey = "cmd"\nschedule = "@daily"\ncommand = "true"\nuser = "nobody"\n'
        'env_file = "x.env"\n')
    listed = json.loads(jobctl("plugins", "--json", cwd=tmp_path).stdout)
    [demo] = listed
    assert not demo["loaded"]
    assert any("unknown key 'user'" in p for p in demo["problems"]), demo["problems"]
    assert any("unknown key 'env_file'" in p for p in demo["problems"]), demo["problems"]
