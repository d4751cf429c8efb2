"""`jobctl run` as a real process: real signals, real children, real SQLite."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest

from conftest import wait_for, write_config

SETTINGS = '[jobctl]\nstate = "state.db"\nkill_grace = "1s"\nshutdown_grace = "{grace}"\n\n'


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("JOBCTL_")}


def jobctl(*args: str, cwd: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "jobctl", *args], cwd=cwd, env=env(),
                          capture_output=True, text=True, timeout=timeout)


class RunnerProcess:
    def __init__(self, tmp_path: Path, *extra: str) -> None:
        self.out = (tmp_path / "runner.out").open("w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jobctl", "run", "--log-format", "json", *extra],
            cwd=tmp_path, env=env(), stdout=self.out, stderr=subprocess.STDOUT,
        )
        self.tmp_path = tmp_path
        self.wait_event("ready")

    def events(self) -> list[dict[str, object]]:
        self.out.flush()
        text = (self.tmp_path / "runner.out").read_text()
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

    def wait_event(self, kind: str, count: int = 1, timeout: float = 15.0, **match: object) -> list[dict[str, object]]:
        def found() -> list[dict[str, object]] | None:
            hits = [e for e in self.events() if e["event"] == kind
                    and all(e.get(k) == v for k, v in match.items())]
            if self.proc.poll() is not None and len(hits) < count:
                raise AssertionError(f"runner exited {self.proc.returncode}: {self.text()}")
            return hits if len(hits) >= count else None
        return wait_for(found, timeout, f"{count} {kind} events")  # type: ignore[return-value]

    def text(self) -> str:
        return (self.tmp_path / "runner.out").read_text()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)


@pytest.fixture
def runners() -> Iterator[list[RunnerProcess]]:
    started: list[RunnerProcess] = []
    yield started
    for r in started:
        if r.proc.poll() is None:
            r.proc.kill()
            r.proc.wait()


def rows(tmp_path: Path, sql: str = "select task_id, status, trigger from runs order by id") -> list[tuple]:  # type: ignore[type-arg]
    conn = sqlite3.connect(tmp_path / "state.db")
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def test_every_second_task_fires_on_time_and_sigterm_exits_cleanly(tmp_path: Path, runners: list) -> None:  # type: ignore[type-arg]
    write_config(tmp_path, SETTINGS.format(grace="5s") + """
[[tasks]]
id = "tick"
schedule = "every 1s"
argv = ["true"]
""")
    r = RunnerProcess(tmp_path)
    runners.append(r)
    starts = r.wait_event("start", count=3)
    for e in starts[:3]:
        late = (datetime.fromisoformat(str(e["at"])) - datetime.fromisoformat(str(e["scheduled_for"])))
        assert 0 <= late.total_seconds() < 0.5, e
    slots = [e["scheduled_for"] for e in starts]
    assert len(set(slots)) == len(slots)
    assert r.stop() == 0
    assert r.events()[-1]["event"] == "stopped"
    assert rows(tmp_path, "select count(*) from lease") == [(0,)]
    assert rows(tmp_path, "select count(*) from runs where status = 'running'") == [(0,)]


def test_sigterm_mid_run_waits_then_interrupts_and_kills_the_group(tmp_path: Path, runners: list) -> None:  # type: ignore[type-arg]
    pidfile = tmp_path / "child.pid"
    write_config(tmp_path, SETTINGS.format(grace="1s") + f"""
[[tasks]]
id = "long"
schedule = "@reboot"
command = "sleep 60 & echo $! > {pidfile}; wait"
""")
    r = RunnerProcess(tmp_path)
    runners.append(r)
    r.wait_event("start")
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), what="grandchild pid")
    grandchild = int(pidfile.read_text())
    began = time.monotonic()
    assert r.stop() == 0
    assert time.monotonic() - began < 6
    (finish,) = r.wait_event("finish")
    assert finish["status"] == "interrupted" and finish["message"] == "runner stopped"
    assert rows(tmp_path) == [("long", "interrupted", "schedule")]
    wait_for(lambda: not _alive(grandchild), 5, "grandchild to die")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_second_sigint_skips_the_shutdown_wait(tmp_path: Path, runners: list) -> None:  # type: ignore[type-arg]
    write_config(tmp_path, SETTINGS.format(grace="60s") + """
[[tasks]]
id = "long"
schedule = "@reboot"
argv = ["sleep", "60"]
""")
    r = RunnerProcess(tmp_path)
    runners.append(r)
    r.wait_event("start")
    began = time.monotonic()
    r.proc.send_signal(signal.SIGINT)
    r.wait_event("stopping")
    r.proc.send_signal(signal.SIGINT)
    assert r.proc.wait(10) == 0
    assert time.monotonic() - began < 8
    assert rows(tmp_path) == [("long", "interrupted", "schedule")]


def test_sigkill_of_the_runner_loses_no_record(tmp_path: Path, runners: list) -> None:  # type: ignore[type-arg]
    write_config(tmp_path, SETTINGS.format(grace="1s") + """
[[tasks]]
id = "long"
schedule = "@reboot"
argv = ["sleep", "60"]
""")
    r = RunnerProcess(tmp_path)
    runners.append(r)
    (start,) = r.wait_event("start")
    child = rows(tmp_path, "select pid from runs")[0][0]
    r.proc.kill()
    r.proc.wait()
    assert rows(tmp_path) == [("long", "running", "schedule")]
    assert _alive(child)
    # a read-only command marks the dead runner's run interrupted and kills its child
    result = jobctl("history", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (run,) = json.loads(result.stdout)
    assert run["status"] == "interrupted" and "stopped or died" in run["error"]
    wait_for(lambda: not _alive(child), 5, "orphaned child to be killed")
    # and a new runner starts: the dead one's lease is taken over
    r2 = RunnerProcess(tmp_path)
    runners.append(r2)
    r2.wait_event("start")
    assert r2.stop(signal.SIGINT) == 0


def test_second_runner_refused_with_75(tmp_path: Path, runners: list) -> None:  # type: ignore[type-arg]
    write_config(tmp_path, SETTINGS.format(grace="1s") + '[[tasks]]\nid = "t"\nschedule = "@daily"\ncommand = "true"\n')
    r = RunnerProcess(tmp_path)
    runners.append(r)
    second = jobctl("run", "--log-format", "text", cwd=tmp_path)
    assert second.returncode == 75
    assert f"pid {r.proc.pid} on host {os.uname().nodename}" in second.stderr
    status = json.loads(jobctl("status", "--json", cwd=tmp_path).stdout)
    assert status["runner"]["pid"] == r.proc.pid
    assert r.stop() == 0
    status = json.loads(jobctl("status", "--json", cwd=tmp_path).stdout)
    assert status["runner"] is None


def test_run_now_against_a_running_runner(tmp_path: Path, runners: list) -> None:  # type: ignore[type-arg]
    write_config(tmp_path, SETTINGS.format(grace="1s") + """
[[tasks]]
id = "long"
schedule = "@reboot"
argv = ["sleep", "60"]

[[tasks]]
id = "swap"
schedule = "@reboot"
argv = ["sleep", "60"]
concurrency = "replace"
""")
    r = RunnerProcess(tmp_path)
    runners.append(r)
    r.wait_event("start", count=2)
    refused = jobctl("run-now", "long", cwd=tmp_path)
    assert refused.returncode == 75
    assert "task 'long' is already running: run #1 (runner pid" in refused.stderr
    forced = subprocess.Popen([sys.executable, "-m", "jobctl", "run-now", "long", "--force"],
                              cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(lambda: rows(tmp_path, "select count(*) from runs where task_id = 'long'"
                                    " and status = 'running'") == [(2,)], 10, "forced second run")
    forced.send_signal(signal.SIGINT)
    assert forced.wait(10) == 130  # Ctrl-C, as a shell reports it
    assert ("long", "interrupted", "manual") in rows(tmp_path)
    replaced = subprocess.Popen([sys.executable, "-m", "jobctl", "run-now", "swap"], cwd=tmp_path,
                                env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(lambda: ("swap", "interrupted", "schedule") in rows(tmp_path), 10, "replace")
    (finish,) = r.wait_event("finish", task_id="swap")
    assert finish["status"] == "interrupted" and "replaced by run" in str(finish["message"])
    replaced.send_signal(signal.SIGTERM)
    # 1: it saw its run replaced first; 143: the SIGTERM came while it was still ending
    assert replaced.wait(10) in (1, 143)
    assert r.stop(signal.SIGINT) == 0


def test_enable_disable_reach_a_live_runner(tmp_path: Path, runners: list) -> None:  # type: ignore[type-arg]
    write_config(tmp_path, SETTINGS.format(grace="1s") + """
[[tasks]]
id = "tick"
schedule = "every 1s"
argv = ["true"]
""")
    r = RunnerProcess(tmp_path)
    runners.append(r)
    (start,) = r.wait_event("start")
    # with a runner up, an interval's next fires count from the runner's start
    listed = json.loads(jobctl("list", "--json", cwd=tmp_path).stdout)
    nexts = json.loads(jobctl("next", "tick", "-n", "2", "--json", cwd=tmp_path).stdout)
    slot = datetime.fromisoformat(str(start["scheduled_for"]))
    for text in (listed[0]["next_run"], *nexts):
        assert (datetime.fromisoformat(text) - slot).total_seconds() % 1 == 0, (text, slot)
    assert jobctl("disable", "tick", cwd=tmp_path).returncode == 0
    disabled_at = time.time()
    time.sleep(2.5)
    late_starts = [e for e in r.events() if e["event"] == "start"
                   and datetime.fromisoformat(str(e["at"])).timestamp() > disabled_at + 1.0]
    assert late_starts == []
    listed = json.loads(jobctl("list", "--json", cwd=tmp_path).stdout)
    assert listed[0]["enabled"] is False and listed[0]["next_run"] is None
    count = len(r.events())
    assert jobctl("enable", "tick", cwd=tmp_path).returncode == 0
    wait_for(lambda: any(e["event"] == "start" for e in r.events()[count:]), 5, "start after enable")
    # the runner says when it applied each change
    controls = [(e["task_id"], e["message"]) for e in r.events() if e["event"] == "control"]
    assert controls == [("tick", "disabled"), ("tick", "enabled")]
    assert r.stop() == 0


def test_reload_on_change_keeps_old_schedule_when_broken(tmp_path: Path, runners: list) -> None:  # type: ignore[type-arg]
    path = write_config(tmp_path, SETTINGS.format(grace="1s") + """
[[tasks]]
id = "tick"
schedule = "every 1s"
argv = ["true"]
""")
    r = RunnerProcess(tmp_path)
    runners.append(r)
    r.wait_event("start")
    path.write_text(path.read_text().replace('schedule = "every 1s"', 'schedule = "every 1 s"'))
    (error,) = r.wait_event("error", timeout=10)
    assert "config not reloaded, old schedule kept" in str(error["message"])
    # the JSON event carries the problems, file:line and all, as text mode does
    assert any("jobctl.toml:" in p and "schedule" in p for p in error["problems"]), error  # type: ignore[attr-defined]
    count = len([e for e in r.events() if e["event"] == "start"])
    r.wait_event("start", count=count + 2, task_id="tick")  # still firing
    path.write_text(path.read_text().replace('id = "tick"\nschedule = "every 1 s"', 'id = "tock"\nschedule = "every 1s"'))
    r.wait_event("reload", timeout=10)
    r.wait_event("start", task_id="tock")
    assert r.stop() == 0


def test_sighup_reloads(tmp_path: Path, runners: list) -> None:  # type: ignore[type-arg]
    path = write_config(tmp_path, SETTINGS.format(grace="1s") + '[[tasks]]\nid = "a"\nschedule = "@daily"\nargv = ["true"]\n')
    r = RunnerProcess(tmp_path)
    runners.append(r)
    path.write_text(path.read_text() + '\n[[tasks]]\nid = "b"\nschedule = "@reboot"\nargv = ["true"]\n')
    r.proc.send_signal(signal.SIGHUP)
    (reload,) = r.wait_event("reload", timeout=10)
    assert "1 added" in str(reload["message"])
    assert r.stop() == 0


def test_huge_output_is_capped_and_runner_memory_bounded(tmp_path: Path, runners: list) -> None:  # type: ignore[type-arg]
    write_config(tmp_path, SETTINGS.format(grace="1s").replace("[jobctl]\n", "[jobctl]\nmax_log_bytes = 65536\n") + """
[[tasks]]
id = "noisy"
schedule = "@reboot"
command = "head -c 100000000 /dev/zero | tr '\\\\0' x; echo THE-END"
""")
    r = RunnerProcess(tmp_path)
    runners.append(r)
    (finish,) = r.wait_event("finish", timeout=60)
    assert finish["status"] == "success"
    with open(f"/proc/{r.proc.pid}/status") as f:
        hwm_kib = int(next(line for line in f if line.startswith("VmHWM")).split()[1])
    assert hwm_kib < 200 * 1024
    log = (tmp_path / "logs" / f"{finish['run_id']}.log").read_bytes()
    assert 65536 <= len(log) < 70000
    assert b"bytes cut from the middle of this log]" in log and log.endswith(b"THE-END\n")
    assert r.stop() == 0


def test_invalid_config_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    write_config(tmp_path, SETTINGS.format(grace="1s") + '[[tasks]]\nid = "t"\nschedule = "@dialy"\ncommand = "true"\n')
    result = jobctl("run", cwd=tmp_path)
    assert result.returncode == 2
    assert "unknown shortcut '@dialy'" in result.stderr
    assert not (tmp_path / "state.db").exists()


def _rows(tmp_path: Path) -> list[tuple[int, str, str]]:
    with sqlite3.connect(tmp_path / "state.db") as db:
        return db.execute("select id, task_id, status from runs order by id").fetchall()


def test_a_reader_that_goes_away_does_not_stop_the_runner(tmp_path: Path) -> None:
    """`jobctl run | head -3`: once stdout is a broken pipe, events go to
    stderr after one line saying so, and the runner carries on."""
    write_config(tmp_path, SETTINGS.format(grace="5s") + """
[[tasks]]
id = "tick"
schedule = "every 1s"
argv = ["true"]
""")
    err_path = tmp_path / "err.txt"
    with err_path.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "jobctl", "run", "--log-format", "text"],
                                cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=err)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith(b"20")  # the first event line
        proc.stdout.close()  # the reader goes away
        wait_for(lambda: err_path.read_text().count(" start tick") >= 2, what="events on stderr")
        assert proc.poll() is None
        text = err_path.read_text()
        assert text.startswith("jobctl: cannot write events to stdout (")
        assert "Traceback" not in text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in err_path.read_text()
    rows = _rows(tmp_path)
    assert len(rows) >= 2 and all(status != "running" for _i, _t, status in rows)


def test_runner_and_run_now_with_stdout_closed(tmp_path: Path) -> None:
    write_config(tmp_path, SETTINGS.format(grace="5s") + """
[[tasks]]
id = "tick"
schedule = "every 1s"
command = "echo hi"
""")
    closed = {"stdin": subprocess.DEVNULL, "stdout": subprocess.DEVNULL}
    proc = subprocess.Popen(
        ["/bin/sh", "-c", f'exec "$0" -m jobctl run >&- 2>"{tmp_path}/err.txt"', sys.executable],
        cwd=tmp_path, env=env(), **closed)  # type: ignore[call-overload]
    try:
        err_path = tmp_path / "err.txt"
        wait_for(lambda: err_path.exists() and err_path.read_text().count(" finish tick") >= 2,
                 what="events on stderr")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in (tmp_path / "err.txt").read_text()
    assert all(status == "success" for _i, _t, status in _rows(tmp_path))
    result = subprocess.run(["/bin/sh", "-c", 'exec "$0" -m jobctl run-now tick >&-', sys.executable],
                            cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "run #" in result.stderr and "tick: success" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_log_that_cannot_be_written_does_not_stop_the_runner(tmp_path: Path) -> None:
    """The logs folder cannot be created (a file is in the way; a full disk
    acts alike): runs still run and are recorded, saying the log is missing."""
    write_config(tmp_path, SETTINGS.format(grace="5s") + """
[[tasks]]
id = "tick"
schedule = "every 1s"
command = "echo hi"
""")
    (tmp_path / "logs").write_text("not a folder\n")
    r = RunnerProcess(tmp_path)
    try:
        finishes = r.wait_event("finish", count=2, task_id="tick")
        assert all(f["status"] == "success" for f in finishes)
        assert all("incomplete" in str(f["message"]) for f in finishes), finishes
        assert r.stop() == 0
    finally:
        r.stop(signal.SIGKILL)
    assert "Traceback" not in r.text()
    with sqlite3.connect(tmp_path / "state.db") as db:
        errors = [e for (e,) in db.execute("select error from runs where status = 'success'")]
    assert errors and all(e.startswith(f"log {tmp_path}/logs/") and "incomplete: " in e
                          for e in errors), errors


def test_moving_or_removing_the_state_file_under_a_live_runner_is_reported(
        tmp_path: Path, runners: list) -> None:  # type: ignore[type-arg]
    path = write_config(tmp_path, SETTINGS.format(grace="1s") + """
[[tasks]]
id = "a"
schedule = "@daily"
argv = ["true"]
""")
    r = RunnerProcess(tmp_path)
    runners.append(r)
    path.write_text(path.read_text().replace('state = "state.db"', 'state = "other.db"'))
    (error,) = r.wait_event("error", timeout=10)
    assert "now names the state file" in str(error["message"]) and "other.db" in str(error["message"])
    assert f"keeps recording in {tmp_path / 'state.db'}" in str(error["message"])
    for name in ("state.db", "state.db-wal", "state.db-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    r.wait_event("error", count=2, timeout=10)
    assert any("was removed" in str(e["message"]) for e in r.wait_event("error", count=2))
    assert r.stop() == 0


def test_background_output_after_the_run_ends_is_logged_and_does_not_kill_it(
        tmp_path: Path, runners: list) -> None:  # type: ignore[type-arg]
    """`cmd &` in a task: the run ends with its main process, but the runner
    keeps reading the pipe (as cron does), so the background process's later
    output is logged and its writes do not die of SIGPIPE."""
    write_config(tmp_path, SETTINGS.format(grace="1s") + """
[[tasks]]
id = "bg"
schedule = "@reboot"
command = "(sleep 0.5; echo late; echo alive > marker) & echo early"
""")
    r = RunnerProcess(tmp_path)
    runners.append(r)
    (finish,) = r.wait_event("finish", task_id="bg")
    assert finish["status"] == "success"
    wait_for(lambda: (tmp_path / "marker").exists(), 10, "the background process to write")
    log = tmp_path / "logs" / f"{finish['run_id']}.log"
    wait_for(lambda: log.read_text() == "early\nlate\n", 10, "late output in the log")
    assert r.stop() == 0


def test_shutdown_kills_a_background_process_that_ignores_sigterm(
        tmp_path: Path, runners: list) -> None:  # type: ignore[type-arg]
    write_config(tmp_path, SETTINGS.format(grace="1s") + """
[[tasks]]
id = "stubborn"
schedule = "@reboot"
command = "sh -c 'trap \\"\\" TERM; echo $$ > bg.pid; exec sleep 101' & sleep 102"
""")
    r = RunnerProcess(tmp_path)
    runners.append(r)
    r.wait_event("start", task_id="stubborn")
    pid_file = tmp_path / "bg.pid"
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 10, "the background pid")
    background = int(pid_file.read_text())
    assert _alive(background)
    assert r.stop() == 0
    # SIGTERM, then SIGKILL after kill_grace (1s), before the runner exits
    assert not _alive(background)


def test_text_events_stay_one_line_each() -> None:
    import io
    from datetime import timezone

    from jobctl.cli.run import PlainReporter
    from jobctl.model import RunStatus
    from jobctl.runner import Event

    out = io.StringIO()
    PlainReporter(out)(Event("finish", datetime(2026, 6, 15, 12, 0, tzinfo=timezone.utc),
                             task_id="t", run_id=1, status=RunStatus.FAILED, duration_s=0.0,
                             message="cannot start 'no\nsuch prog': no such file or directory"))
    text = out.getvalue()
    assert text.count("\n") == 1
    assert "(cannot start 'no\\nsuch prog': no such file or directory)" in text


def test_status_of_a_stopped_runner_says_it_is_not_responding(tmp_path: Path, runners: list) -> None:  # type: ignore[type-arg]
    from datetime import timedelta, timezone

    from typer.testing import CliRunner

    from conftest import FakeClock
    from jobctl.cli import app
    from jobctl.cli._common import Services

    config = write_config(tmp_path, SETTINGS.format(grace="1s")
                          + '[[tasks]]\nid = "t"\nschedule = "@daily"\ncommand = "true"\n')
    r = RunnerProcess(tmp_path)
    runners.append(r)
    assert r.wait_event("ready")[0]["message"] == "1 task"

    def status(after: float) -> object:
        clock = FakeClock(datetime.now(timezone.utc) + timedelta(seconds=after))
        services = Services(clock=clock, env={}, cwd=tmp_path, system_zone="UTC")
        return CliRunner().invoke(app, ["status", "-c", str(config)], obj=services)

    r.proc.send_signal(signal.SIGSTOP)
    try:
        # a SIGSTOPped runner's process is alive, but its heartbeat ages; seen 20 s later:
        result = status(20)
        assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
        assert result.stdout.startswith(f"runner: not responding, pid {r.proc.pid} ")  # type: ignore[attr-defined]
        assert result.stderr.startswith("warning: the runner's last heartbeat was 2")  # type: ignore[attr-defined]
    finally:
        r.proc.send_signal(signal.SIGCONT)
    result = status(0)
    assert result.stdout.startswith(f"runner: up, pid {r.proc.pid} ")  # type: ignore[attr-defined]
    assert r.stop() == 0


def _start_runners_together(tmp_path: Path, count: int) -> list[tuple[subprocess.Popen[str], Path]]:
    """`count` `jobctl run` processes (the console script) released at once:
    each waits reading one fifo before it execs, so they race for the lease."""
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    # held open read-write, the fifo lets every reader in without blocking;
    # closing it, once all of them are in, gives them all EOF at once
    hold = os.open(gate, os.O_RDWR)
    script = Path(sys.executable).with_name("jobctl")
    started = []
    try:
        for i in range(count):
            out = tmp_path / f"runner{i}.out"
            proc = subprocess.Popen(
                ["sh", "-c", f'read _ < "{gate}"; exec "$0" run --log-format json', str(script)],
                cwd=tmp_path, env=env(), stdout=out.open("w"), stderr=subprocess.STDOUT, text=True,
            )
            started.append((proc, out))

        def gated(pid: int) -> bool:
            try:
                return os.readlink(f"/proc/{pid}/fd/0") == str(gate)
            except OSError:
                return False

        wait_for(lambda: all(gated(p.pid) for p, _ in started), 10, "every runner at the gate")
    finally:
        os.close(hold)
    return started


@pytest.mark.parametrize("attempt", range(2))
@pytest.mark.parametrize("state", ["fresh", "stale-lease"])
def test_simultaneous_runners_one_wins_the_rest_exit_75(tmp_path: Path, state: str,
                                                        attempt: int) -> None:
    """8 runners started at one instant on one state file: one takes the lease
    (a fresh file, or one whose holder died), the others exit 75 naming it,
    before they record or start anything."""
    write_config(tmp_path, SETTINGS.format(grace="1s") + """
[[tasks]]
id = "boot"
schedule = "@reboot"
argv = ["sleep", "30"]

[[tasks]]
id = "tick"
schedule = "every 1s"
argv = ["true"]
""")
    if state == "stale-lease":
        from jobctl import procinfo
        from jobctl.store import Owner, open_store

        gone = subprocess.Popen(["true"])
        gone.wait()
        store = open_store(tmp_path / "state.db", create=True)
        assert store is not None
        store.take_lease(Owner(gone.pid, procinfo.host_name(), procinfo.boot_id(), "1"),
                         datetime(2026, 6, 15, 11, 0).astimezone())
        store.close()
    started = _start_runners_together(tmp_path, 8)
    try:
        # every loser exits 75 at once; exactly one runner is left
        wait_for(lambda: sum(p.poll() is not None for p, _ in started) >= 7, 30, "7 losers to exit")
        live = [(p, out) for p, out in started if p.poll() is None]
        assert len(live) == 1, [(p.returncode, out.read_text()) for p, out in started]
        winner, winner_out = live[0]
        wait_for(lambda: '"event": "ready"' in winner_out.read_text(), 15, "ready")
        host = os.uname().nodename
        for p, out in started:
            if p is winner:
                continue
            text = out.read_text()
            assert p.returncode == 75, text
            assert "\"event\": \"ready\"" not in text and "Traceback" not in text, text
            assert f"a runner is already running on {tmp_path / 'state.db'} " \
                   f"(pid {winner.pid} on host {host}" in text, text
        # the winner keeps running and does the work: one @reboot run, no skips,
        # nothing recorded by a loser
        wait_for(lambda: rows(tmp_path, "select 1 from runs where task_id = 'tick'"), 15, "a tick")
        time.sleep(0.1)
        assert winner.poll() is None, winner_out.read_text()
        assert "lost the runner lease" not in winner_out.read_text()
        runs = rows(tmp_path, "select task_id, status, owner_pid from runs order by id")
        assert [r for r in runs if r[0] == "boot"] == [("boot", "running", winner.pid)]
        assert {r[2] for r in runs} == {winner.pid}
        assert "skipped" not in {r[1] for r in runs}
        assert rows(tmp_path, "select pid from lease") == [(winner.pid,)]
        winner.send_signal(signal.SIGTERM)
        assert winner.wait(20) == 0
    finally:
        for p, _ in started:
            if p.poll() is None:
                p.kill()
                p.wait()


def _zombie_children(ppid: int) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                fields = Path(f"/proc/{entry.name}/stat").read_bytes().rpartition(b")")[2].split()
            except OSError:
                continue
            if fields[0] == b"Z" and int(fields[1]) == ppid:
                found.append(int(entry.name))
    return found


def test_as_pid_1_the_runner_reaps_orphans_but_never_its_own_runs(tmp_path: Path) -> None:
    """`jobctl run` as PID 1 of a new pid namespace (a container without an
    init): what tasks leave behind is reparented to it and must be reaped;
    its runs' own exit statuses must still be recorded as they were. Needs
    root (CI runs as root): if unshare is refused, this fails."""
    write_config(tmp_path, SETTINGS.format(grace="1s") + """
[[tasks]]
id = "orphans"
schedule = "every 1s"
command = "sleep 0.2 & exec true"

[[tasks]]
id = "seven"
schedule = "every 1s"
command = "sleep 0.1 & exit 7"
""")
    script = Path(sys.executable).with_name("jobctl")
    out = tmp_path / "runner.out"
    # --kill-child: if the test kills unshare, the runner (and so its
    # namespace) goes too
    ns = subprocess.Popen(["unshare", "--fork", "--kill-child", "--pid", "--mount-proc",
                           str(script), "run", "--log-format", "json"],
                          cwd=tmp_path, env=env(), stdout=out.open("w"), stderr=subprocess.STDOUT)
    pid: object = None
    try:
        def runner_pid() -> int | None:
            assert ns.poll() is None, f"unshare exited {ns.returncode}: {out.read_text()}"
            children = Path(f"/proc/{ns.pid}/task/{ns.pid}/children").read_text().split()
            return int(children[0]) if children else None

        pid = wait_for(runner_pid, 15, "the runner in its namespace")
        assert isinstance(pid, int)
        # the runner is PID 1 there
        status = Path(f"/proc/{pid}/status").read_text()
        assert [line.split()[-1] for line in status.splitlines()
                if line.startswith("NSpid:")] == ["1"], status

        def finished(task: str) -> int:
            return sum(1 for line in out.read_text().splitlines()
                       if '"event": "finish"' in line and f'"task_id": "{task}"' in line)

        most = 0

        def fired_enough() -> bool:
            nonlocal most
            assert ns.poll() is None, out.read_text()
            most = max(most, len(_zombie_children(pid)))
            return finished("orphans") >= 5 and finished("seven") >= 5

        wait_for(fired_enough, 30, "5 fires of each task")
        # every orphan is reaped soon after it exits: none piles up
        wait_for(lambda: not _zombie_children(pid), 5, "no <defunct> process left")
        # (without reaping, 5 fires of each leave 10 behind)
        assert most <= 4, f"{most} <defunct> processes at once"
        pid_ns = os.readlink(f"/proc/{pid}/ns/pid")
        in_ns = [e.name for e in os.scandir("/proc") if e.name.isdigit()
                 and _readlink(f"/proc/{e.name}/ns/pid") == pid_ns]
        defunct = [p for p in in_ns if _state(p) == "Z"]
        assert len(defunct) <= 2, defunct  # at most those exiting this very moment
        os.kill(pid, signal.SIGTERM)
        assert ns.wait(20) == 0, out.read_text()
    finally:
        if ns.poll() is None:
            if isinstance(pid, int):
                os.kill(pid, signal.SIGKILL)
            ns.kill()
            ns.wait()
    # the runs' own exit statuses were not taken by the reaping
    runs = rows(tmp_path, "select task_id, status, exit_code from runs"
                          " where status != 'interrupted' order by id")
    assert {r for r in runs if r[0] == "seven"} == {("seven", "failed", 7)}
    assert {r for r in runs if r[0] == "orphans"} == {("orphans", "success", 0)}
    history = jobctl("history", "seven", cwd=tmp_path)
    assert history.returncode == 0 and "exit code 7" in history.stdout, history.stdout


def _readlink(path: str) -> str | None:
    try:
        return os.readlink(path)
    except OSError:
        return None


def _state(pid: str) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_bytes().rpartition(b")")[2].split()[0].decode()
    except (OSError, IndexError):
        return None


def test_recovering_a_killed_runner_leaves_another_state_files_same_run_alone(
        tmp_path: Path, runners: list) -> None:  # type: ignore[type-arg]
    """Two jobctl instances side by side: same task id, separate state files,
    so both have a run #1. One runner is SIGKILLed in the window where it has
    started its run but not yet written the run's pid (simulated by clearing
    the pid, as a kill between spawn and record leaves it): recovery finds
    the run by its environment, and must stop only that state file's
    process. The other instance's run #1 goes on and is recorded success."""
    task = ('[[tasks]]\nid = "job"\nschedule = "@reboot"\n'
            # waits for its release file (at most 60 s, should the test fail)
            'command = "i=0; while [ ! -e release ] && [ $i -lt 1200 ]; do sleep 0.05;'
            ' i=$((i + 1)); done"\n')
    dirs = [tmp_path / "a", tmp_path / "b"]
    for d in dirs:
        d.mkdir()
        write_config(d, SETTINGS.format(grace="5s") + task)
    a, b = RunnerProcess(dirs[0]), RunnerProcess(dirs[1])
    runners += [a, b]
    for r in (a, b):
        r.wait_event("start", task_id="job")
    [(a_run, a_pid)] = rows(dirs[0], "select id, pid from runs")
    [(b_run, b_pid)] = rows(dirs[1], "select id, pid from runs")
    assert a_run == b_run == 1 and a_pid and b_pid
    a_env = Path(f"/proc/{a_pid}/environ").read_bytes().split(b"\0")
    b_env = Path(f"/proc/{b_pid}/environ").read_bytes().split(b"\0")
    assert a.stop(signal.SIGKILL) == -signal.SIGKILL
    conn = sqlite3.connect(dirs[0] / "state.db")
    with conn:
        conn.execute("update runs set pid = null, proc_start = null where id = 1")
    conn.close()
    # a read-only command on a's state file recovers a's run
    history = jobctl("history", "--json", cwd=dirs[0])
    assert history.returncode == 0, history.stderr
    assert [(r["id"], r["status"]) for r in json.loads(history.stdout)] == [(1, "interrupted")]
    assert not _alive(a_pid)
    # b's run #1 is untouched: its process lives on, and ends as it would
    assert _alive(b_pid)
    assert rows(dirs[1], "select status from runs where id = 1") == [("running",)]
    (dirs[1] / "release").touch()
    b.wait_event("finish", task_id="job")
    assert rows(dirs[1], "select status, exit_code from runs where id = 1") == [("success", 0)]
    assert b.stop() == 0
    # what told them apart: each run carries its own state file's id
    a_ids = [v for v in a_env if v.startswith(b"JOBCTL_STATE_ID=")]
    b_ids = [v for v in b_env if v.startswith(b"JOBCTL_STATE_ID=")]
    assert len(a_ids) == len(b_ids) == 1 and a_ids != b_ids
