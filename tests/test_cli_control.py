"""run-now, enable, disable, history, logs and status through the real typer app,
with real `python -m jobctl run-now` processes where a second process is needed."""

from __future__ import annotations

import gc
import json
import os
import socket
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import wait_for, write_config

from jobctl import procinfo
from jobctl.model import Concurrency, RunStatus, Trigger
from jobctl.store import Owner, RunRecord, open_store

UTC = timezone.utc
ISO_MICRO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}[+-]\d\d:\d\d$")
RUN_KEYS = {"id", "task_id", "status", "trigger", "attempt", "scheduled_for", "started_at",
            "finished_at", "duration_s", "exit_code", "signal", "error", "node"}
PATH_ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}

CONFIG = """
[jobctl]
timezone = "UTC"
kill_grace = 1

[[tasks]]
id = "hello"
schedule = "0 3 * * *"
command = "echo out; echo err >&2; echo \\"$JOBCTL_TASK_ID $JOBCTL_RUN_ID $JOBCTL_TRIGGER\\""

[[tasks]]
id = "fail"
schedule = "@daily"
command = "echo failing; exit 3"

[[tasks]]
id = "hang"
schedule = "@hourly"
command = "sleep 30"
timeout = 0.3

[[tasks]]
id = "slow"
schedule = "0 5 * * *"
command = "if [ -n \\"$FAST\\" ]; then echo fast; exit 0; fi; echo started; sleep 30; echo never"

[[tasks]]
id = "swap"
schedule = "0 6 * * *"
concurrency = "replace"
command = "if [ -n \\"$FAST\\" ]; then echo fast; exit 0; fi; echo started; sleep 30"

[[tasks]]
id = "ticker"
schedule = "0 7 * * *"
command = "echo first; sleep 0.4; echo second"

[[tasks]]
id = "broken"
schedule = "0 8 * * *"
argv = ["/nonexistent/jobctl-test-program"]

[[tasks]]
id = "off"
schedule = "30 4 * * *"
command = "echo still runs"
enabled = false
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path, CONFIG)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state" / "state.db"


@pytest.fixture
def ctl(cli: Callable[..., object], state: Path) -> Callable[..., object]:
    """`cli` with --state in tmp_path (the config is ./jobctl.toml)."""

    def invoke(*args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
        return cli(*args, "--state", str(state), env=env)

    return invoke


def runs(state: Path, task_id: str | None = None) -> list[RunRecord]:
    store = open_store(state, create=False)
    if store is None:
        return []
    try:
        return store.history(task_id, limit=1000)
    finally:
        store.close()


def live_members(pgid: int) -> list[int]:
    """Pids in process group `pgid` that are not zombies."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_bytes()
        except OSError:
            continue
        fields = stat.rpartition(b")")[2].split()
        if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            found.append(int(entry.name))
    return found


def snapshot(folder: Path) -> dict[str, bytes] | None:
    """Every file under `folder` with its bytes (None if there is no folder).

    -wal/-shm come and go with connections; after gc every connection is
    closed, so the last one has checkpointed into the main file.
    """
    gc.collect()
    if not folder.exists():
        return None
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.endswith(("-wal", "-shm"))
    }


class RunNow:
    """A real `python -m jobctl run-now` process and the task group it starts."""

    def __init__(self, tmp_path: Path, config: Path, state: Path, task_id: str, *extra: str) -> None:
        self.out = tmp_path / f"run-now-{task_id}-{time.monotonic_ns()}.out"
        env = {k: v for k, v in os.environ.items() if not k.startswith("JOBCTL_")}
        env.pop("FAST", None)
        with self.out.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "jobctl", "run-now", task_id, "-c", str(config),
                 "--state", str(state), *extra],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=tmp_path,
            )
        self.state = state
        self.task_id = task_id
        self.run: RunRecord | None = None

    def output(self) -> str:
        return self.out.read_text()

    def wait_running(self) -> RunRecord:
        """Wait until its run is recorded `running` with the task's pid."""

        def found() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"run-now exited {self.proc.returncode}: {self.output()}")
            mine = [r for r in runs(self.state, self.task_id)
                    if r.status is RunStatus.RUNNING and r.owner.pid == self.proc.pid and r.pid]
            if mine:
                self.run = mine[0]
            return bool(mine)

        wait_for(found, what=f"run-now {self.task_id} running")
        assert self.run is not None
        return self.run

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)
        if self.run is not None and self.run.pid and live_members(self.run.pid):
            os.killpg(self.run.pid, signal.SIGKILL)


@pytest.fixture
def run_now_proc(tmp_path: Path, config: Path, state: Path) -> Iterator[Callable[..., RunNow]]:
    started: list[RunNow] = []

    def start(task_id: str, *extra: str) -> RunNow:
        # Create the state file first: polling a file while another process
        # creates it is a race of its own (see test_store.py).
        created = open_store(state, create=True)
        assert created is not None
        created.close()
        proc = RunNow(tmp_path, config, state, task_id, *extra)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


# -- run-now -------------------------------------------------------------------


def test_run_now_success_streams_output_and_writes_log(ctl, config: Path, state: Path) -> None:
    result = ctl("run-now", "hello")
    assert result.exit_code == 0, result.output
    # stdout and stderr of the task share one pipe, in order
    assert result.stdout == "out\nerr\nhello 1 manual\n"
    assert result.stderr.startswith("run #1 hello: success in ")
    log = state.parent / "logs" / "1.log"
    assert log.read_text() == "out\nerr\nhello 1 manual\n"
    (run,) = runs(state)
    assert (run.id, run.task_id, run.status, run.trigger) == (1, "hello", RunStatus.SUCCESS, Trigger.MANUAL)
    assert run.exit_code == 0 and run.error is None and run.scheduled_for is None
    assert run.host == procinfo.host_name() and run.owner.pid == os.getpid()
    assert run.pid is not None and run.log_path == str(log)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_run_now_whose_log_fills_the_disk_says_so_as_the_runner_does(
        ctl, config: Path, state: Path) -> None:
    """/dev/full fails every write with ENOSPC, as a full disk does: the run
    keeps the status it earned, and its record (and the summary) say the log
    is incomplete, in the runner's words."""
    logs = state.parent / "logs"
    logs.mkdir(parents=True)
    (logs / "1.log").symlink_to("/dev/full")
    result = ctl("run-now", "hello")
    assert result.exit_code == 0, result.output
    (run,) = runs(state)
    why = f"log {logs}/1.log incomplete: no space left on device"
    assert run.status is RunStatus.SUCCESS and run.exit_code == 0 and run.error == why
    assert result.stderr.startswith("run #1 hello: success in ") and f"({why})" in result.stderr
    result = ctl("run-now", "fail")  # a failure keeps its own reason first
    assert result.exit_code == 1
    (_, failed) = runs(state)[::-1]
    assert failed.error == "exit code 3"  # its log (2.log) was written in full
    (logs / "3.log").symlink_to("/dev/full")
    ctl("run-now", "fail")
    assert runs(state)[0].error == f"exit code 3; log {logs}/3.log incomplete: no space left on device"
    # such a "log" is a device, which reads forever: logs refuses it
    result = ctl("logs", "1")
    assert result.exit_code == 2
    assert result.stderr == f"error: run 1's log {logs}/1.log is not a regular file; not reading it\n"


def test_disable_and_enable_an_id_given_twice_once(ctl, config: Path) -> None:
    result = ctl("disable", "hello", "hello")
    assert result.exit_code == 0, result.output
    assert result.stdout == "disabled hello\n"
    assert ctl("enable", "hello", "hello").stdout == "enabled hello\n"


def test_run_now_env_names_the_run(ctl, config: Path) -> None:
    ctl("run-now", "hello")
    result = ctl("run-now", "hello")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "hello 2 manual"


def test_run_now_failure_exits_1(ctl, config: Path, state: Path) -> None:
    result = ctl("run-now", "fail")
    assert result.exit_code == 1
    assert result.stdout == "failing\n"
    assert "run #1 fail: failed" in result.stderr and "(exit code 3)" in result.stderr
    (run,) = runs(state)
    assert run.status is RunStatus.FAILED and run.exit_code == 3 and run.error == "exit code 3"


def test_run_now_timeout_exits_1_status_timeout(ctl, config: Path, state: Path) -> None:
    t = time.monotonic()
    result = ctl("run-now", "hang", env=PATH_ENV)
    elapsed = time.monotonic() - t
    assert result.exit_code == 1, result.output
    assert 0.3 <= elapsed < 5
    assert "run #1 hang: timeout" in result.stderr
    (run,) = runs(state)
    assert run.status is RunStatus.TIMEOUT and run.error == "timed out after 0.3s"
    assert run.pid is not None and live_members(run.pid) == []


def test_descriptors_jobctl_inherited_do_not_reach_the_task(tmp_path: Path, state: Path) -> None:
    """Whatever started jobctl may leave a descriptor open and inheritable
    (`jobctl run 9>file` in a shell); the task must not get it, as with
    Popen's close_fds."""
    config = write_config(tmp_path, """
[jobctl]
timezone = "UTC"

[[tasks]]
id = "fds"
schedule = "@daily"
command = "if [ -e /proc/$$/fd/57 ]; then echo leaked; else echo clean; fi"
""", name="fds.toml")
    held = os.open(tmp_path / "held", os.O_WRONLY | os.O_CREAT)
    try:
        os.dup2(held, 57, inheritable=True)
        result = subprocess.run(
            [sys.executable, "-m", "jobctl", "run-now", "fds", "-c", str(config),
             "--state", str(state)],
            capture_output=True, text=True, pass_fds=(57,), timeout=60, check=False)
    finally:
        os.close(held)
        os.close(57)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "clean\n"


def test_run_now_program_that_cannot_start_exits_1(ctl, config: Path, state: Path) -> None:
    result = ctl("run-now", "broken")
    assert result.exit_code == 1, result.output
    (run,) = runs(state)
    assert run.status is RunStatus.FAILED and run.exit_code is None
    assert run.error == "cannot start '/nonexistent/jobctl-test-program': no such file or directory"
    assert run.error in result.stderr
    logs = ctl("logs", str(run.id))
    assert logs.exit_code == 0 and run.error in logs.stdout


def test_run_now_unknown_id_exit_2_creates_nothing(ctl, config: Path, state: Path) -> None:
    result = ctl("run-now", "helo")
    assert result.exit_code == 2
    assert "no task with id 'helo' (did you mean 'hello'?)" in result.stderr
    assert not state.parent.exists()
    ctl("run-now", "hello")
    before = snapshot(state.parent)
    assert ctl("run-now", "nosuch").exit_code == 2
    assert snapshot(state.parent) == before


def test_run_now_disabled_task_still_runs(ctl, config: Path, state: Path) -> None:
    result = ctl("run-now", "off")  # enabled = false in the config
    assert result.exit_code == 0, result.output
    assert result.stdout == "still runs\n"
    assert ctl("disable", "hello").exit_code == 0
    result = ctl("run-now", "hello")
    assert result.exit_code == 0, result.output
    assert [r.status for r in runs(state)] == [RunStatus.SUCCESS, RunStatus.SUCCESS]


def test_run_now_refused_75_while_another_run_now_runs_then_force(
    ctl, run_now_proc, config: Path, state: Path
) -> None:
    other = run_now_proc("slow")
    busy = other.wait_running()
    # the other process streams its task's output while the task runs
    wait_for(lambda: "started" in other.output(), what="streamed output")
    assert other.proc.poll() is None

    refused = ctl("run-now", "slow", env={"FAST": "1"})
    assert refused.exit_code == 75, refused.output
    assert refused.stdout == ""
    assert "task 'slow' is already running" in refused.stderr
    assert f"#{busy.id}" in refused.stderr and f"pid {other.proc.pid}" in refused.stderr
    assert "--force" in refused.stderr
    assert [r.id for r in runs(state)] == [busy.id]  # nothing recorded

    forced = ctl("run-now", "slow", "--force", env={"FAST": "1"})
    assert forced.exit_code == 0, forced.output
    assert forced.stdout == "fast\n"
    history = runs(state)
    assert [(r.id, r.status) for r in history] == [(busy.id + 1, RunStatus.SUCCESS),
                                                   (busy.id, RunStatus.RUNNING)]
    assert live_members(busy.pid)  # type: ignore[arg-type]  # the other run carries on

    status = ctl("status", "--json")
    assert status.exit_code == 0, status.output
    running = json.loads(status.stdout)["running"]
    assert [(r["id"], r["task_id"], r["trigger"], r["pid"]) for r in running] == [
        (busy.id, "slow", "manual", busy.pid)]
    assert ISO_MICRO.match(running[0]["started_at"]), running[0]

    # SIGTERM to run-now stops its task and records it interrupted (exit 128 + 15)
    other.proc.send_signal(signal.SIGTERM)
    assert other.proc.wait(15) == 143
    final = next(r for r in runs(state) if r.id == busy.id)
    assert final.status is RunStatus.INTERRUPTED
    assert final.error == "stopped by a signal to jobctl run-now"
    wait_for(lambda: live_members(busy.pid) == [], what="task group gone")  # type: ignore[arg-type]


def test_run_now_replace_stops_the_other_run(ctl, run_now_proc, config: Path, state: Path) -> None:
    other = run_now_proc("swap")
    old = other.wait_running()
    assert old.pid is not None and live_members(old.pid)

    result = ctl("run-now", "swap", env={"FAST": "1"})
    assert result.exit_code == 0, result.output
    assert result.stdout == "fast\n"
    new_id = old.id + 1
    replaced = next(r for r in runs(state) if r.id == old.id)
    assert replaced.status is RunStatus.INTERRUPTED
    assert replaced.error == f"replaced by run #{new_id} (concurrency = replace)"
    assert next(r for r in runs(state) if r.id == new_id).status is RunStatus.SUCCESS
    # the old task's processes are gone, and its run-now ends (not a success)
    wait_for(lambda: live_members(old.pid) == [], what="replaced group gone")  # type: ignore[arg-type]
    assert other.proc.wait(15) == 1
    # its own ending did not overwrite `interrupted`
    assert next(r for r in runs(state) if r.id == old.id) == replaced


def test_sigkilled_run_now_row_becomes_interrupted_and_orphan_group_is_killed(
    ctl, run_now_proc, config: Path, state: Path
) -> None:
    other = run_now_proc("slow")
    run = other.wait_running()
    assert run.pid is not None
    wait_for(lambda: len(live_members(run.pid)) == 2, what="sh and sleep up")  # type: ignore[arg-type]
    other.proc.send_signal(signal.SIGKILL)  # jobctl itself, not its task
    other.proc.wait(15)
    assert live_members(run.pid), "the task should outlive its killed run-now"
    assert runs(state)[0].status is RunStatus.RUNNING  # nobody has looked yet

    result = ctl("history", "--json")
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert row["id"] == run.id and row["status"] == "interrupted"
    assert row["error"] == f"jobctl run-now (pid {other.proc.pid}) stopped or died while it ran"
    assert row["finished_at"] is not None
    wait_for(lambda: live_members(run.pid) == [], what="orphan group killed")  # type: ignore[arg-type]
    # the dead run no longer blocks the task (concurrency = forbid)
    again = ctl("run-now", "slow", env={"FAST": "1"})
    assert again.exit_code == 0, again.output


def test_dead_owner_with_a_recycled_task_pid_is_not_killed(ctl, config: Path, state: Path) -> None:
    # a run whose owner is gone, and whose recorded pid now belongs to another
    # process (different start time): the row is closed, the process left alone
    gone = subprocess.Popen(["true"])
    gone.wait()
    stranger = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        store = open_store(state, create=True)
        assert store is not None
        owner = Owner(gone.pid, procinfo.host_name(), procinfo.boot_id(), "1")
        claim = store.claim(task_id="slow", trigger=Trigger.MANUAL, scheduled_for=None,
                            concurrency=Concurrency.FORBID, force=False, owner=owner,
                            now=datetime(2026, 6, 15, 11, 0, tzinfo=UTC))
        assert claim.run_id is not None
        store.set_process(claim.run_id, stranger.pid, "1", procinfo.boot_id())
        store.close()

        result = ctl("history", "slow", "--json")
        assert result.exit_code == 0, result.output
        (row,) = json.loads(result.stdout)
        assert row["status"] == "interrupted"
        assert row["error"] == f"jobctl run-now (pid {gone.pid}) stopped or died while it ran"
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_retention_keeps_history_limit_runs_and_their_logs(cli, tmp_path: Path, state: Path) -> None:
    write_config(tmp_path, CONFIG.replace("kill_grace = 1", "kill_grace = 1\nhistory_limit = 2"))
    for _ in range(4):
        assert cli("run-now", "hello", "--state", str(state)).exit_code == 0
    assert cli("run-now", "fail", "--state", str(state)).exit_code == 1
    assert [(r.id, r.task_id) for r in runs(state)] == [(5, "fail"), (4, "hello"), (3, "hello")]
    assert sorted(p.name for p in (state.parent / "logs").iterdir()) == ["3.log", "4.log", "5.log"]


# -- enable / disable ----------------------------------------------------------


def test_disable_and_enable_override_config(ctl, config: Path, state: Path) -> None:
    result = ctl("disable", "hello", "slow")
    assert result.exit_code == 0, result.output
    assert result.stdout == "disabled hello\ndisabled slow\n"
    assert state.exists()
    rows = {r["id"]: r for r in json.loads(ctl("list", "--json").stdout)}
    assert rows["hello"]["enabled"] is False and rows["hello"]["next_run"] is None
    assert rows["slow"]["enabled"] is False
    assert rows["fail"]["enabled"] is True and rows["fail"]["next_run"] == "2026-06-16T00:00:00+00:00"
    assert json.loads(ctl("show", "hello", "--json").stdout)["enabled"] is False

    result = ctl("enable", "hello", "off")  # `off` is disabled in the config
    assert result.exit_code == 0, result.output
    assert result.stdout == "enabled hello\nenabled off\n"
    rows = {r["id"]: r for r in json.loads(ctl("list", "--json").stdout)}
    assert rows["hello"]["enabled"] is True and rows["hello"]["next_run"] == "2026-06-16T03:00:00+00:00"
    assert rows["off"]["enabled"] is True and rows["off"]["next_run"] == "2026-06-16T04:30:00+00:00"
    assert rows["slow"]["enabled"] is False
    detail = json.loads(ctl("show", "off", "--json").stdout)
    assert detail["enabled"] is True and detail["next_runs"][0] == "2026-06-16T04:30:00+00:00"
    status = json.loads(ctl("status", "--json").stdout)
    assert [n["task_id"] for n in status["next"]] == ["hang", "fail", "hello", "off", "swap"]
    # the disabled spans are noted, so catch-up leaves out their fires
    store = open_store(state, create=False)
    assert store is not None
    try:
        (hello,) = store.paused_spans("hello")
        assert hello[0] is not None and hello[1] is not None and hello[0] <= hello[1]
        assert store.paused_spans("slow")[0][1] is None  # still disabled
    finally:
        store.close()


def test_enable_disable_unknown_id_exit_2_changes_nothing(ctl, config: Path, state: Path) -> None:
    result = ctl("disable", "hello", "nope")
    assert result.exit_code == 2
    assert "no task with id 'nope'" in result.stderr and result.stdout == ""
    assert not state.parent.exists()

    assert ctl("disable", "hello").exit_code == 0
    before = snapshot(state.parent)
    assert before is not None and "state.db" in before
    for args in (("enable", "hello", "nope"), ("disable", "fail", "helo"), ("enable", "nope")):
        result = ctl(*args)
        assert result.exit_code == 2, args
        assert result.stdout == ""
        del result
        assert snapshot(state.parent) == before, args
    rows = {r["id"]: r for r in json.loads(ctl("list", "--json").stdout)}
    assert rows["hello"]["enabled"] is False and rows["fail"]["enabled"] is True


def test_disable_refuses_a_foreign_database(cli, tmp_path: Path, config: Path) -> None:
    path = tmp_path / "app.db"
    raw = sqlite3.connect(path)
    raw.execute("create table customers (name text)")
    raw.commit()
    raw.close()
    before = path.read_bytes()
    result = cli("disable", "hello", "--state", str(path))
    assert result.exit_code == 2, result.output
    assert "not a jobctl state file" in result.stderr
    assert path.read_bytes() == before


# -- history -------------------------------------------------------------------


def test_history_json_format_order_and_filters(ctl, clock, config: Path) -> None:
    clock.set(datetime(2026, 6, 15, 12, 0, 0, 123456, tzinfo=UTC))
    for task_id in ("hello", "fail", "hello", "off"):
        ctl("run-now", task_id)
        clock.advance(60)

    result = ctl("history", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["id"] for r in rows] == [4, 3, 2, 1]
    assert [r["task_id"] for r in rows] == ["off", "hello", "fail", "hello"]
    for row in rows:
        assert set(row) == RUN_KEYS
        assert ISO_MICRO.match(row["started_at"]) and ISO_MICRO.match(row["finished_at"])
        assert row["trigger"] == "manual" and row["attempt"] == 1 and row["scheduled_for"] is None
        assert row["duration_s"] == 0.0  # the fake clock did not move during the run
    assert rows[3]["started_at"] == "2026-06-15T12:00:00.123456+00:00"
    assert rows[0]["started_at"] == "2026-06-15T12:03:00.123456+00:00"
    assert rows[2] == {
        "id": 2, "task_id": "fail", "status": "failed", "trigger": "manual", "attempt": 1,
        "scheduled_for": None, "started_at": "2026-06-15T12:01:00.123456+00:00",
        "finished_at": "2026-06-15T12:01:00.123456+00:00", "duration_s": 0.0,
        "exit_code": 3, "signal": None, "error": "exit code 3",
        "node": socket.gethostname(),  # no node name given: the host's
    }

    def ids(*args: str) -> list[int]:
        result = ctl("history", "--json", *args)
        assert result.exit_code == 0, result.output
        return [r["id"] for r in json.loads(result.stdout)]

    assert ids("--status", "failed") == [2]
    assert ids("--status", "success") == [4, 3, 1]
    assert ids("--limit", "2") == [4, 3]
    assert ids("-n", "1", "--status", "success") == [4]
    assert ids("hello") == [3, 1]
    assert ids("hello", "--limit", "1") == [3]
    assert ids("hello", "--status", "failed") == []
    assert ids("--status", "timeout") == []


def test_history_text_table(ctl, config: Path) -> None:
    assert ctl("history").stdout == "no runs yet\n"
    ctl("run-now", "fail")
    result = ctl("history")
    assert result.exit_code == 0, result.output
    header, row = result.stdout.splitlines()
    assert header.split()[:4] == ["RUN", "TASK", "STATUS", "TRIGGER"]
    assert row.split()[:4] == ["1", "fail", "failed", "manual"] and "exit code 3" in row


def test_history_bad_status_and_unknown_task_exit_2(ctl, config: Path, state: Path) -> None:
    result = ctl("history", "--status", "done")
    assert result.exit_code == 2
    assert "unknown status 'done'" in result.stderr
    assert "running, success, failed, timeout, skipped, interrupted" in result.stderr
    result = ctl("history", "--status", "sucess")
    assert result.exit_code == 2
    assert "unknown status 'sucess' (did you mean 'success'?)" in result.stderr
    result = ctl("history", "nosuch")
    assert result.exit_code == 2 and "no task with id 'nosuch'" in result.stderr
    assert ctl("history", "--limit", "0").exit_code == 2
    assert not state.parent.exists()


# -- logs ----------------------------------------------------------------------


def test_logs_prints_the_runs_output(ctl, config: Path) -> None:
    ctl("run-now", "hello")
    ctl("run-now", "fail")
    result = ctl("logs", "1")
    assert result.exit_code == 0, result.output
    assert result.stdout == "out\nerr\nhello 1 manual\n"
    assert ctl("logs", "2").stdout == "failing\n"
    assert ctl("logs", "2", "--follow").stdout == "failing\n"  # finished: prints and returns


def test_logs_unknown_run_exit_2(ctl, config: Path, state: Path) -> None:
    result = ctl("logs", "1")
    assert result.exit_code == 2 and "no run with id 1" in result.stderr
    assert not state.parent.exists()
    ctl("run-now", "hello")
    result = ctl("logs", "7")
    assert result.exit_code == 2 and "no run with id 7" in result.stderr
    assert result.stdout == ""


def test_logs_follow_a_running_run_until_it_ends(ctl, run_now_proc, config: Path) -> None:
    other = run_now_proc("ticker")
    run = other.wait_running()
    result = ctl("logs", str(run.id), "--follow")
    assert result.exit_code == 0, result.output
    assert result.stdout == "first\nsecond\n"
    assert other.proc.wait(15) == 0


def test_logs_follow_ends_when_the_runs_owner_dies(run_now_proc, tmp_path: Path, config: Path,
                                                   state: Path) -> None:
    other = run_now_proc("slow")
    run = other.wait_running()
    out = tmp_path / "follow.out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBCTL_")}
    with out.open("wb") as sink:
        follower = subprocess.Popen(
            [sys.executable, "-m", "jobctl", "logs", str(run.id), "--follow", "-c", str(config),
             "--state", str(state)],
            stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    try:
        wait_for(lambda: out.read_text() == "started\n", what="follower caught up")
        other.proc.send_signal(signal.SIGKILL)
        other.proc.wait(15)
        # nobody else will ever finish this run: the follower must notice
        try:
            code = follower.wait(8)
        except subprocess.TimeoutExpired:
            raise AssertionError("logs --follow still following a run whose owner died") from None
        assert code == 0, out.read_text()
        # the output, then (on stderr, here in the same file) why it ended
        assert out.read_text() == (f"started\nrun {run.id} was interrupted: jobctl run-now "
                                   f"(pid {other.proc.pid}) stopped or died while it ran\n")
        assert runs(state)[0].status is RunStatus.INTERRUPTED
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()


# -- read-only commands and status ---------------------------------------------

READ_ONLY = [
    ("validate",), ("list",), ("list", "--json"), ("show", "hello"), ("show", "hello", "--json"),
    ("next", "hello"), ("history",), ("history", "--json"), ("history", "hello"),
    ("status",), ("status", "--json"), ("logs", "1"),
]


def _with_state(args: tuple[str, ...], state: Path) -> list[str]:
    # validate and next take no --state
    return [*args] if args[0] in ("validate", "next") else [*args, "--state", str(state)]


def test_read_only_commands_never_create_the_state_file(cli, config: Path, state: Path) -> None:
    for args in READ_ONLY:
        result = cli(*_with_state(args, state))
        assert result.exit_code == (2 if args[0] == "logs" else 0), (args, result.output)
        assert not state.parent.exists(), args
    assert json.loads(cli("history", "--json", "--state", str(state)).stdout) == []
    rows = json.loads(cli("list", "--json", "--state", str(state)).stdout)
    assert all(r["last_run"] is None for r in rows)


def test_read_only_commands_change_nothing(cli, ctl, config: Path, state: Path) -> None:
    ctl("run-now", "hello")
    ctl("disable", "fail")
    before = snapshot(state.parent)
    for args in READ_ONLY:
        result = cli(*_with_state(args, state))
        assert result.exit_code == 0, (args, result.output)
        del result
        assert snapshot(state.parent) == before, args


def test_status_json_without_runner(ctl, config: Path, state: Path) -> None:
    result = ctl("status", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "runner": None,
        "nodes": [],  # a SQLite state has no node leases
        "running": [],
        # NOW is 2026-06-15T12:00Z; five soonest, `off` is disabled
        "next": [
            {"task_id": "hang", "at": "2026-06-15T13:00:00+00:00"},
            {"task_id": "fail", "at": "2026-06-16T00:00:00+00:00"},
            {"task_id": "hello", "at": "2026-06-16T03:00:00+00:00"},
            {"task_id": "slow", "at": "2026-06-16T05:00:00+00:00"},
            {"task_id": "swap", "at": "2026-06-16T06:00:00+00:00"},
        ],
        "hook_failures": [],  # each task's latest hook failure: none
    }
    text = ctl("status")
    assert text.exit_code == 0
    assert text.stdout.splitlines()[:2] == ["runner: not running", "running: nothing"]
    assert not state.parent.exists()


def test_list_and_show_json_last_run(ctl, clock, config: Path) -> None:
    clock.set(datetime(2026, 6, 15, 11, 0, tzinfo=UTC))
    ctl("run-now", "hello")
    clock.advance(30)
    ctl("run-now", "fail")
    rows = {r["id"]: r for r in json.loads(ctl("list", "--json").stdout)}
    last = rows["fail"]["last_run"]
    assert set(last) == {"id", "status", "started_at", "exit_code", "signal"}
    assert (last["id"], last["status"], last["exit_code"], last["signal"]) == (2, "failed", 3, None)
    assert datetime.fromisoformat(last["started_at"]) == datetime(2026, 6, 15, 11, 0, 30, tzinfo=UTC)
    assert datetime.fromisoformat(last["started_at"]).utcoffset() is not None
    assert rows["hello"]["last_run"]["id"] == 1 and rows["hello"]["last_run"]["status"] == "success"
    assert rows["slow"]["last_run"] is None
    last = json.loads(ctl("show", "hello", "--json").stdout)["last_run"]
    assert (last["id"], last["status"]) == (1, "success")
    assert datetime.fromisoformat(last["started_at"]) == datetime(2026, 6, 15, 11, 0, tzinfo=UTC)
    assert json.loads(ctl("show", "slow", "--json").stdout)["last_run"] is None


def test_status_json_runner_lease(ctl, clock, config: Path, state: Path) -> None:
    store = open_store(state, create=True)
    assert store is not None
    gone = subprocess.Popen(["true"])
    gone.wait()
    since = datetime(2026, 6, 15, 11, 0, tzinfo=UTC)
    try:
        # a lease left by a runner that died is not a runner
        store.take_lease(Owner(gone.pid, procinfo.host_name(), procinfo.boot_id(), "1"), since)
        assert json.loads(ctl("status", "--json").stdout)["runner"] is None
        assert ctl("status").stdout.startswith("runner: not running\n")
        # a live holder (this process) is
        me = Owner(os.getpid(), procinfo.host_name(), procinfo.boot_id(),
                   procinfo.process_start(os.getpid()))
        store.take_lease(me, since, replacing=store.lease())
        store.heartbeat(me, clock.now() - timedelta(seconds=1.5))
    finally:
        store.close()
    runner = json.loads(ctl("status", "--json").stdout)["runner"]
    assert runner == {"pid": os.getpid(), "host": procinfo.host_name(),
                      "since": since.isoformat(timespec="microseconds"), "heartbeat_age_s": 1.5,
                      "responding": True}
    assert ISO_MICRO.match(runner["since"])
    result = ctl("status")
    assert result.stdout.startswith(f"runner: up, pid {os.getpid()} on ") and result.stderr == ""
    # alive but silent for three beats: stopped (SIGSTOP) or hung, not up
    clock.advance(15)
    result = ctl("status", "--json")
    assert json.loads(result.stdout)["runner"]["responding"] is False
    result = ctl("status")
    assert result.exit_code == 0
    assert result.stdout.startswith(f"runner: not responding, pid {os.getpid()} on ")
    assert "heartbeat 16.5s ago" in result.stdout.splitlines()[1]
    assert result.stderr == ("warning: the runner's last heartbeat was 16s ago (it beats every "
                             "5s): it is stopped (SIGSTOP?) or hung, and fires nothing until it "
                             "resumes\n")


def test_out_of_range_numbers_and_a_folder_as_state(ctl, cli, tmp_path: Path, config: Path,
                                                    state: Path) -> None:
    assert ctl("run-now", "hello").exit_code == 0
    result = ctl("history", "--limit", "99999999999999999999")
    assert result.exit_code == 2 and "Traceback" not in result.output
    result = ctl("logs", "99999999999999999999999")
    assert result.exit_code == 2
    assert "no run with id 99999999999999999999999" in result.stderr
    result = ctl("history", "--status", "running")
    assert result.exit_code == 0 and result.stdout == "no running runs\n"
    result = cli("history", "--state", str(tmp_path / "typo.db"))
    assert result.exit_code == 0 and result.stdout == "no runs yet\n"
    assert f"(no state file at {tmp_path / 'typo.db'} yet)" in result.stderr
    result = cli("history", "--state", str(tmp_path))
    assert result.exit_code == 2
    assert f"state file {tmp_path}: is a folder, not a state file" in result.stderr


def test_sighup_to_run_now_stops_and_records_its_task(tmp_path: Path, config: Path, state: Path,
                                                      run_now_proc) -> None:  # type: ignore[no-untyped-def]
    """A closed terminal or a dropped ssh session sends SIGHUP: the task is
    stopped and recorded, not left running unsupervised."""
    proc = run_now_proc("slow")
    run = proc.wait_running()
    proc.proc.send_signal(signal.SIGHUP)
    assert proc.proc.wait(15) == 129  # 128 + SIGHUP, as a shell reports it
    final = next(r for r in runs(state) if r.id == run.id)
    assert final.status is RunStatus.INTERRUPTED
    assert final.error == "stopped by a signal to jobctl run-now"
    assert live_members(run.pid) == []  # type: ignore[arg-type]


def test_a_run_started_but_not_yet_recorded_by_a_killed_runner_is_found_and_stopped(
        ctl, config: Path, state: Path, tmp_path: Path) -> None:
    """A runner SIGKILLed while it started a batch has spawned processes whose
    pids it had not written yet. The next command finds them by the run's
    environment, stops their groups and marks the runs interrupted."""
    from jobctl.executor import Launch, build_env, spawn

    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = Owner(gone.pid, procinfo.host_name(), procinfo.boot_id(), "1")
    store = open_store(state, create=True)
    assert store is not None
    try:
        claims = [store.claim(task_id=t, trigger=Trigger.SCHEDULE,
                              scheduled_for=datetime(2026, 6, 15, 11, 0, tzinfo=UTC),
                              concurrency=Concurrency.FORBID, force=False, owner=dead,
                              now=datetime(2026, 6, 15, 11, 0, tzinfo=UTC)) for t in ("slow", "hello")]
        state_id = store.state_id
    finally:
        store.close()
    assert len(state_id) == 16
    # only the first one got as far as its process
    run_id = claims[0].run_id
    proc = spawn(Launch(argv=["sleep", "30"], env=build_env(
        os.environ, {}, task_id="slow", run_id=run_id, scheduled_for="x", trigger="schedule",
        state_id=state_id),
        cwd=None, log_path=tmp_path / "x.log", max_log_bytes=1024))
    # an unrelated process with another run's id is left alone
    other = spawn(Launch(argv=["sleep", "30"], env=build_env(
        os.environ, {}, task_id="slow", run_id=run_id + 100, scheduled_for="x", trigger="schedule",
        state_id=state_id),
        cwd=None, log_path=tmp_path / "y.log", max_log_bytes=1024))
    # and so is the same run of another state file (run ids start at 1 in each)
    stranger = spawn(Launch(argv=["sleep", "30"], env=build_env(
        os.environ, {}, task_id="slow", run_id=run_id, scheduled_for="x", trigger="schedule",
        state_id="0123456789abcdef"),
        cwd=None, log_path=tmp_path / "z.log", max_log_bytes=1024))
    try:
        assert [r.pid for r in runs(state)] == [None, None]
        result = ctl("history", "--json")
        assert result.exit_code == 0, result.output
        assert {(r["task_id"], r["status"]) for r in json.loads(result.stdout)} == {
            ("slow", "interrupted"), ("hello", "interrupted")}
        assert proc.wait(5) is not None
        assert live_members(proc.pgid) == []
        assert other.poll() is None
        assert stranger.poll() is None
    finally:
        for p in (proc, other, stranger):
            p.signal_group(signal.SIGKILL)
            p.wait(5)
            p.close()


# -- a state file or folder this user cannot write ------------------------------------

NOBODY = 65534


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder under the system temp dir that another user can reach
    (pytest's tmp_path sits in a root-only 0700 folder)."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="jobctl-shared-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def as_nobody(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The jobctl console script as another user (uid/gid 65534). Fails, not
    skips, where that cannot be done: the test would prove nothing."""
    import shutil

    assert os.geteuid() == 0, "simulating another user needs root"
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to run jobctl as another user"
    script = Path(sys.executable).parent / "jobctl"
    assert script.exists(), script
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBCTL_", "XDG_"))}
    env["HOME"] = str(cwd)
    return subprocess.run([setpriv, "--reuid", str(NOBODY), "--regid", str(NOBODY),
                           "--clear-groups", str(script), *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def test_a_state_file_this_user_can_read_but_not_write_still_shows_what_is_there(
        shared_dir: Path) -> None:
    config = write_config(shared_dir, CONFIG)
    state = shared_dir / "state" / "state.db"
    made = subprocess.run([sys.executable, "-m", "jobctl", "run-now", "hello", "-c", str(config),
                           "--state", str(state)], capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    # as an admin sharing it would: root-owned, readable by all, not writable
    for p in (state.parent, state.parent / "logs"):
        p.chmod(0o755)
    state.chmod(0o644)
    (state.parent / "logs" / "1.log").chmod(0o644)
    before = state.read_bytes()
    common = ("-c", str(config), "--state", str(state))
    for args in (("list",), ("history",), ("status",), ("logs", "1"), ("show", "hello")):
        result = as_nobody(*args, *common, cwd=shared_dir)
        assert result.returncode == 0, (args, result.stderr)
        assert "Traceback" not in result.stderr and "not a usable" not in result.stderr
    assert "success" in as_nobody("history", *common, cwd=shared_dir).stdout
    assert as_nobody("logs", "1", *common, cwd=shared_dir).stdout == "out\nerr\nhello 1 manual\n"
    result = as_nobody("disable", "hello", *common, cwd=shared_dir)
    assert result.returncode == 2
    assert result.stderr == (f"error: state file {state}: is read-only for this user; only commands "
                             "that just read (list, show, history, status, logs) work on it\n")
    assert state.read_bytes() == before


def test_a_read_only_state_folder_is_named_not_called_corrupt(shared_dir: Path) -> None:
    config = write_config(shared_dir, CONFIG)
    folder = shared_dir / "state"
    folder.mkdir()
    state = folder / "state.db"
    common = ("-c", str(config), "--state", str(state))
    os.chown(folder, NOBODY, NOBODY)
    made = as_nobody("run-now", "hello", *common, cwd=shared_dir)
    assert made.returncode == 0, made.stderr
    folder.chmod(0o555)
    why = (f"error: state file {state}: its folder {folder} is read-only (jobctl writes the state "
           "file and its -wal and -shm files there); make it writable, or choose another path "
           "with --state\n")
    for args in (("disable", "hello"), ("run",)):
        result = as_nobody(*args, *common, cwd=shared_dir)
        assert (result.returncode, result.stderr) == (2, why), args
    assert as_nobody("history", *common, cwd=shared_dir).returncode == 0
    empty = shared_dir / "empty"
    empty.mkdir(mode=0o555)
    os.chown(empty, NOBODY, NOBODY)
    result = as_nobody("run-now", "hello", "-c", str(config), "--state", str(empty / "s.db"),
                       cwd=shared_dir)
    assert result.returncode == 2 and f"its folder {empty} is read-only" in result.stderr
    assert list(empty.iterdir()) == []


def test_a_state_path_under_a_regular_file_says_so(ctl, config: Path, tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    bad = config / "state.db"
    for args in (("disable", "hello"), ("run-now", "hello")):
        result = cli(*args, "--state", str(bad))
        assert result.exit_code == 2, result.output
        assert result.stderr == (f"error: state file {bad}: {config} is a file, not a folder; "
                                 "give a state path whose folders are folders\n")
    result = cli("history", "--state", str(bad))
    assert result.exit_code == 0 and "no runs yet" in result.stdout
