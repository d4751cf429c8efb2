"""Executor and procinfo, with real processes and real files in tmp_path."""

from __future__ import annotations

import io
import os
import signal
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from conftest import wait_for
from hypothesis import given, settings
from hypothesis import strategies as st

from jobctl import procinfo
from jobctl.errors import JobctlError
from jobctl.executor import (
    GroupStopper,
    Launch,
    LogSink,
    RunningProcess,
    SpawnError,
    build_argv,
    build_env,
    reap_orphans,
    spawn,
    spawn_detached,
    stop_group,
    stop_process_group,
)

Spawner = Callable[..., RunningProcess]


def marker(cut: int) -> bytes:
    return f"\n[jobctl: {cut} bytes cut from the middle of this log]\n".encode()


def read_pid(path: Path) -> int:
    wait_for(lambda: path.exists() and path.read_text().endswith("\n"))
    return int(path.read_text())


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "logs" / "task" / "1.log"


@pytest.fixture(params=["posix_spawn", "popen"])
def run(request: pytest.FixtureRequest, log_path: Path) -> Iterator[Spawner]:
    """Spawn with sensible defaults; kill whatever is left at teardown.

    Every test runs twice: once through posix_spawn (no cwd) and once through
    Popen (which the executor uses when a task sets a cwd)."""
    started: list[RunningProcess] = []
    default_cwd = os.getcwd() if request.param == "popen" else None

    def _spawn(
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        max_log_bytes: int = 1024 * 1024,
        echo: io.BytesIO | None = None,
    ) -> RunningProcess:
        proc = spawn(
            Launch(
                argv=list(argv),
                env=dict(os.environ) if env is None else env,
                cwd=default_cwd if cwd is None else cwd,
                log_path=log_path,
                max_log_bytes=max_log_bytes,
                echo=echo,
            )
        )
        started.append(proc)
        return proc

    yield _spawn
    for proc in started:
        proc.signal_group(signal.SIGKILL)
        proc.wait(5)
        proc.close()


def sh(script: str) -> list[str]:
    return build_argv(script, None, "/bin/sh")


# -- argv, shell, env, cwd, stdin --------------------------------------------


def test_build_argv() -> None:
    assert build_argv("echo hi", None, "/bin/bash") == ["/bin/bash", "-c", "echo hi"]
    assert build_argv(None, ("ls", "-l"), "/bin/sh") == ["ls", "-l"]
    with pytest.raises(ValueError):
        build_argv(None, None, "/bin/sh")


def test_argv_is_not_split_or_expanded(run: Spawner, log_path: Path) -> None:
    proc = run([sys.executable, "-c", "import sys; print(sys.argv[1:])", "a b", "$HOME"])
    assert proc.wait(10) == 0
    proc.close()
    assert log_path.read_text() == "['a b', '$HOME']\n"


def test_command_runs_through_the_given_shell(
    run: Spawner, tmp_path: Path, log_path: Path
) -> None:
    shell = tmp_path / "myshell"
    shell.write_text('#!/bin/sh\necho "myshell got: $1 [$2]"\n')
    shell.chmod(0o755)
    proc = run(build_argv("echo hi | tr a-z A-Z", None, str(shell)))
    assert proc.wait(5) == 0
    proc.close()
    assert log_path.read_text() == "myshell got: -c [echo hi | tr a-z A-Z]\n"


def test_shell_command_gets_pipes_and_exit_status(run: Spawner, log_path: Path) -> None:
    proc = run(sh("echo hi | tr a-z A-Z; exit 3"))
    assert proc.wait(5) == 3
    proc.close()
    assert log_path.read_text() == "HI\n"


def test_build_env_layers_and_jobctl_vars_win() -> None:
    env = build_env(
        {"PATH": "/bin", "A": "base", "JOBCTL_RUN_ID": "spoof"},
        {"A": "task", "B": "task", "JOBCTL_TASK_ID": "spoof"},
        task_id="backup",
        run_id=42,
        scheduled_for="2026-06-15T12:00:00+00:00",
        trigger="manual",
    )
    assert env == {
        "PATH": "/bin",
        "A": "task",
        "B": "task",
        "JOBCTL_TASK_ID": "backup",
        "JOBCTL_RUN_ID": "42",
        "JOBCTL_SCHEDULED_FOR": "2026-06-15T12:00:00+00:00",
        "JOBCTL_TRIGGER": "manual",
        "JOBCTL_ATTEMPT": "1",
    }
    env = build_env({}, {"JOBCTL_CALLABLE": "spoof:spoof"}, task_id="p:k", run_id=1,
                    scheduled_for="x", trigger="schedule", attempt=2,
                    extra={"JOBCTL_CALLABLE": "mod:fn", "JOBCTL_ATTEMPT": "spoof"})
    assert env["JOBCTL_CALLABLE"] == "mod:fn" and env["JOBCTL_ATTEMPT"] == "2"
    # the state file's id: set over any spoof; never inherited from a jobctl
    # that started this one (a run that calls jobctl)
    env = build_env({"JOBCTL_STATE_ID": "parent"}, {"JOBCTL_STATE_ID": "spoof"}, task_id="t",
                    run_id=1, scheduled_for="x", trigger="schedule", state_id="00ab")
    assert env["JOBCTL_STATE_ID"] == "00ab"
    env = build_env({"JOBCTL_STATE_ID": "parent"}, {}, task_id="t", run_id=1,
                    scheduled_for="x", trigger="schedule")
    assert "JOBCTL_STATE_ID" not in env


def test_spawn_detached_starts_in_its_own_session_without_waiting(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = ("import os, pathlib, time; tmp = pathlib.Path(os.environ['OUT'] + '.tmp');"
            "tmp.write_text(f\"{os.getpid()} {os.getsid(0)} {os.environ['GREETING']}\");"
            "tmp.rename(os.environ['OUT']); time.sleep(0.3)")
    started = time.monotonic()
    pid = spawn_detached([sys.executable, "-c", code], {"GREETING": "hi", "OUT": str(out)})
    assert time.monotonic() - started < 0.3  # not waited for
    wait_for(out.exists)
    child, session, greeting = out.read_text().split()
    assert int(child) == pid and int(session) == pid != os.getsid(0) and greeting == "hi"
    with pytest.raises(SpawnError, match="cannot start '/no/such/program': no such file"):
        spawn_detached(["/no/such/program"], {})


def test_env_and_cwd_are_applied(run: Spawner, tmp_path: Path, log_path: Path) -> None:
    workdir = tmp_path / "work dir"
    workdir.mkdir()
    env = build_env(
        {"PATH": os.environ["PATH"], "GREETING": "base", "KEEP": "kept"},
        {"GREETING": "task"},
        task_id="t1",
        run_id=7,
        scheduled_for="2026-06-15T12:00:00+00:00",
        trigger="schedule",
    )
    script = (
        'echo "$GREETING $KEEP $JOBCTL_TASK_ID $JOBCTL_RUN_ID'
        ' $JOBCTL_SCHEDULED_FOR $JOBCTL_TRIGGER"; pwd -P; echo "${HOME-unset}"'
    )
    proc = run(sh(script), env=env, cwd=str(workdir))
    assert proc.wait(5) == 0
    proc.close()
    assert log_path.read_text().splitlines() == [
        "task kept t1 7 2026-06-15T12:00:00+00:00 schedule",
        str(workdir.resolve()),
        "unset",  # nothing leaks in from the runner's own environment
    ]


def test_stdin_is_dev_null(run: Spawner, log_path: Path) -> None:
    proc = run(["cat"])
    assert proc.wait(5) == 0
    proc.close()
    assert log_path.read_bytes() == b""


def test_stdout_and_stderr_are_interleaved(run: Spawner, log_path: Path) -> None:
    proc = run(sh("echo out1; echo err1 >&2; echo out2; echo err2 >&2"))
    assert proc.wait(5) == 0
    proc.close()
    assert log_path.read_text() == "out1\nerr1\nout2\nerr2\n"


def test_echo_gets_a_copy(run: Spawner, log_path: Path) -> None:
    echo = io.BytesIO()
    proc = run(sh("echo one; echo two >&2"), echo=echo)
    assert proc.wait(5) == 0
    proc.close()
    assert echo.getvalue() == log_path.read_bytes() == b"one\ntwo\n"


def test_signal_exit_is_negative(run: Spawner) -> None:
    proc = run(sh("kill -TERM $$"))
    assert proc.wait(5) == -signal.SIGTERM


def test_output_reaches_the_log_while_running(run: Spawner, log_path: Path) -> None:
    proc = run(sh("echo early; exec sleep 30"))

    def logged() -> bool:
        proc.pump()
        return log_path.read_bytes() == b"early\n"

    wait_for(logged)
    assert proc.poll() is None


# -- spawn errors ------------------------------------------------------------


def test_missing_program(run: Spawner) -> None:
    with pytest.raises(SpawnError) as info:
        run(["no-such-program-jobctl"])
    assert str(info.value) == "cannot start 'no-such-program-jobctl': no such file or directory"
    assert isinstance(info.value, JobctlError)


def test_program_is_searched_in_the_tasks_own_path(
    run: Spawner, tmp_path: Path, log_path: Path
) -> None:
    """A bare program name is looked up in the PATH the task gets, as Popen and
    execvp do, not in jobctl's; a non-executable file of that name earlier in
    the PATH is passed over."""
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    (first / "jobctl-test-tool").write_text("#!/bin/sh\necho wrong\n")
    (first / "jobctl-test-tool").chmod(0o644)
    (second / "jobctl-test-tool").write_text("#!/bin/sh\necho found \"$1\"\n")
    (second / "jobctl-test-tool").chmod(0o755)
    env = {**os.environ, "PATH": f"{first}:{second}:/usr/bin:/bin"}
    proc = run(["jobctl-test-tool", "it"], env=env)
    assert proc.wait(5) == 0
    proc.close()
    assert log_path.read_text() == "found it\n"


def test_program_found_only_without_execute_permission(run: Spawner, tmp_path: Path) -> None:
    (tmp_path / "jobctl-test-tool").write_text("#!/bin/sh\n")
    (tmp_path / "jobctl-test-tool").chmod(0o644)
    with pytest.raises(SpawnError, match="cannot start 'jobctl-test-tool': permission denied"):
        run(["jobctl-test-tool"], env={"PATH": str(tmp_path)})


def test_task_gets_default_signal_dispositions(run: Spawner, log_path: Path) -> None:
    """Python ignores SIGPIPE; a task must not inherit that, or `yes | head`
    style pipelines would end with write errors instead of quietly."""
    assert signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN  # what the runner has
    proc = run(sh("grep -E '^Sig(Ign|Blk):' /proc/self/status"))
    assert proc.wait(5) == 0
    proc.close()
    masks = dict(line.split(":") for line in log_path.read_text().splitlines())
    ignored, blocked = int(masks["SigIgn"], 16), int(masks["SigBlk"], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1))
    assert not ignored & (1 << (signal.SIGXFSZ - 1))
    assert blocked == 0


def test_program_not_executable(run: Spawner, tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("echo hi\n")
    script.chmod(0o644)
    with pytest.raises(SpawnError, match=r"cannot start '.*script.sh': permission denied"):
        run([str(script)])


def test_missing_cwd(run: Spawner, tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(SpawnError) as info:
        run(["true"], cwd=str(missing))
    assert str(info.value) == f"cwd '{missing}' does not exist"


def test_cwd_is_a_file(run: Spawner, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(SpawnError, match="is not a directory"):
        run(["true"], cwd=str(tmp_path / "f"))


def test_empty_argv(run: Spawner) -> None:
    with pytest.raises(SpawnError, match="empty command"):
        run([])


# -- the bounded log ---------------------------------------------------------


def test_log_sink_under_limit_is_plain_and_live(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "x.log"
    sink = LogSink(path, 10)
    sink.write(b"hello")
    assert path.read_bytes() == b"hello"  # flushed: another reader sees it now
    sink.write(b"world")
    sink.close()
    sink.close()
    assert path.read_bytes() == b"helloworld"
    assert sink.cut == 0


def test_log_sink_one_byte_over(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    sink = LogSink(path, 10)
    sink.write(b"0123456789")
    sink.write(b"A")
    assert path.read_bytes() == b"01234"  # the head; the rest is held as tail
    sink.close()
    assert sink.cut == 1
    assert path.read_bytes() == b"01234" + marker(1) + b"6789A"


def test_log_sink_write_after_close(tmp_path: Path) -> None:
    sink = LogSink(tmp_path / "x.log", 10)
    sink.close()
    with pytest.raises(ValueError):
        sink.write(b"x")


@settings(max_examples=300, deadline=None)
@given(
    chunks=st.lists(st.binary(max_size=40), max_size=12),
    max_bytes=st.integers(min_value=0, max_value=64),
)
def test_log_sink_keeps_head_and_tail(
    tmp_path_factory: pytest.TempPathFactory, chunks: list[bytes], max_bytes: int
) -> None:
    path = tmp_path_factory.mktemp("sink") / "x.log"
    sink = LogSink(path, max_bytes)
    for chunk in chunks:
        sink.write(chunk)
    sink.close()
    data = b"".join(chunks)
    if len(data) <= max_bytes:
        assert path.read_bytes() == data
        assert sink.cut == 0
    else:
        head = max_bytes // 2
        cut = len(data) - max_bytes
        assert sink.cut == cut
        assert path.read_bytes() == data[:head] + marker(cut) + data[head + cut:]


def test_log_sink_memory_is_bounded(tmp_path: Path) -> None:
    chunk = bytes(range(256)) * 256  # 64 KiB
    tracemalloc.start()
    try:
        sink = LogSink(tmp_path / "x.log", 64 * 1024)
        for _ in range(800):  # 50 MiB
            sink.write(chunk)
        sink.write(chunk * 4)  # one write bigger than the whole tail
        sink.write(b"END")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    sink.close()
    assert peak < 4 * 64 * 1024 + 256 * 1024  # the chunk*4 temporary plus the tail
    log = (tmp_path / "x.log").read_bytes()
    assert log.endswith(b"END")
    assert len(log) == 64 * 1024 + len(marker(sink.cut))


def test_huge_output_gives_a_bounded_log(run: Spawner, log_path: Path) -> None:
    total = 50_000_000
    script = f"printf START; head -c {total} /dev/zero | tr '\\0' x; printf THE-END"
    limit = 64 * 1024
    tracemalloc.start()
    try:
        proc = run(sh(script), max_log_bytes=limit)
        assert proc.wait(60) == 0
        proc.close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Pipe chunks plus the tail buffer; holding the output would be ~50 MB.
    assert peak < 2 * 1024 * 1024
    log = log_path.read_bytes()
    cut = len("START") + total + len("THE-END") - limit
    head_size, tail_size = limit // 2, limit - limit // 2
    assert log[:head_size] == b"START" + b"x" * (head_size - 5)
    assert log[head_size:-tail_size] == marker(cut)
    assert log[-tail_size:] == b"x" * (tail_size - 7) + b"THE-END"
    assert len(log) == limit + len(marker(cut))


def test_pump_reads_at_most_about_a_mebibyte(run: Spawner, log_path: Path) -> None:
    proc = run(sh("head -c 5000000 /dev/zero"), max_log_bytes=100_000_000)

    def some_logged() -> bool:
        proc.pump()
        return log_path.stat().st_size > 0

    wait_for(some_logged)
    before = log_path.stat().st_size
    time.sleep(0.05)  # let the writer refill the pipe
    proc.pump()
    assert log_path.stat().st_size - before <= 1024 * 1024
    assert proc.wait(30) == 0


# -- process groups and stopping ---------------------------------------------


def test_pgid_is_pid(run: Spawner) -> None:
    proc = run(["sleep", "30"])
    assert proc.pgid == proc.pid
    assert os.getpgid(proc.pid) == proc.pid
    assert os.getsid(proc.pid) == proc.pid
    assert procinfo.group_alive(proc.pgid)


def test_signal_group_reaches_the_grandchild(run: Spawner, tmp_path: Path) -> None:
    pid_file = tmp_path / "gc.pid"
    proc = run(sh(f"sleep 30 & echo $! > '{pid_file}'; sleep 30"))
    grandchild = read_pid(pid_file)
    assert procinfo.process_start(grandchild) is not None
    proc.signal_group(signal.SIGKILL)
    assert proc.wait(5) == -signal.SIGKILL
    # Gone or a zombie nobody has reaped yet: either way, not running.
    wait_for(lambda: procinfo.process_start(grandchild) is None)
    proc.signal_group(signal.SIGKILL)  # an empty group is not an error


def test_stop_group_terms_child_and_grandchild(run: Spawner, tmp_path: Path) -> None:
    pid_file = tmp_path / "gc.pid"
    proc = run(sh(f"sleep 30 & echo $! > '{pid_file}'; sleep 30"))
    grandchild = read_pid(pid_file)
    started = time.monotonic()
    assert stop_group(proc, grace=5) == -signal.SIGTERM
    assert time.monotonic() - started < 2
    wait_for(lambda: procinfo.process_start(grandchild) is None)


def test_stop_group_kills_what_ignores_term(run: Spawner, tmp_path: Path) -> None:
    pid_file = tmp_path / "gc.pid"
    # Ignored signals stay ignored across fork and exec, so both ignore TERM.
    script = f"trap '' TERM; sleep 30 & echo $! > '{pid_file}'; sleep 30"
    proc = run(sh(script))
    grandchild = read_pid(pid_file)
    started = time.monotonic()
    assert stop_group(proc, grace=0.3) == -signal.SIGKILL
    assert time.monotonic() - started < 2
    wait_for(lambda: procinfo.process_start(grandchild) is None)


def test_stop_group_kills_a_grandchild_left_after_the_child_exits(
    run: Spawner, tmp_path: Path
) -> None:
    pid_file = tmp_path / "gc.pid"
    # The child exits on TERM; the grandchild ignores it and needs the KILL.
    script = f"(trap '' TERM; exec sleep 30) & echo $! > '{pid_file}'; sleep 30"
    proc = run(sh(script))
    grandchild = read_pid(pid_file)
    wait_for(lambda: _ignores_term(grandchild))
    assert stop_group(proc, grace=5) == -signal.SIGTERM
    wait_for(lambda: procinfo.process_start(grandchild) is None)


def test_stop_group_uses_the_injected_clock(run: Spawner) -> None:
    proc = run(sh("trap '' TERM; sleep 30"))
    wait_for(lambda: _ignores_term(proc.pid))
    now = [0.0]
    naps: list[float] = []

    def fake_sleep(seconds: float) -> None:
        naps.append(seconds)
        now[0] += seconds

    assert stop_group(proc, 0.2, sleep=fake_sleep, clock=lambda: now[0]) == -signal.SIGKILL
    assert naps and sum(naps) == pytest.approx(0.2)


def test_stopper_terms_at_once_and_kills_when_the_grace_is_over(run: Spawner) -> None:
    proc = run(sh("trap '' TERM; sleep 30"))
    wait_for(lambda: _ignores_term(proc.pid))
    stopper = GroupStopper(proc.pgid, 5.0, 100.0, proc=proc)
    assert stopper.kill_at == 105.0 and not stopper.done
    assert stopper.step(104.9) is False
    assert proc.wait(0.2) is None  # TERM was ignored; no KILL before the grace is over
    assert stopper.step(105.0) is True
    assert stopper.done and stopper.kill_at is None
    assert proc.wait(5) == -signal.SIGKILL
    assert stopper.step(200.0) is True  # done stays done


def test_stopper_gives_the_group_the_rest_of_the_grace_after_the_child_exits(
    run: Spawner, tmp_path: Path
) -> None:
    pid_file = tmp_path / "gc.pid"
    script = f"(trap '' TERM; exec sleep 30) & echo $! > '{pid_file}'; sleep 30"
    proc = run(sh(script))
    grandchild = read_pid(pid_file)
    wait_for(lambda: _ignores_term(grandchild))
    stopper = GroupStopper(proc.pgid, 5.0, 0.0, proc=proc)
    assert proc.wait(5) == -signal.SIGTERM
    assert stopper.step(4.0) is False  # the grandchild is still in the group
    assert procinfo.process_start(grandchild) is not None
    assert stopper.step(5.0) is True
    wait_for(lambda: procinfo.process_start(grandchild) is None)


@pytest.mark.parametrize("own", [True, False], ids=["own-child", "another-group"])
def test_stopper_is_done_before_the_grace_once_the_group_is_empty(
    run: Spawner, own: bool
) -> None:
    proc = run(["sleep", "30"])
    stopper = GroupStopper(proc.pgid, 5.0, 0.0, proc=proc if own else None)
    # without `proc`, an unreaped zombie is no live member: the group is empty
    wait_for(lambda: stopper.step(0.1), what="the group to empty")
    assert stopper.done
    assert proc.wait(5) == -signal.SIGTERM


def test_stopper_of_a_group_that_is_gone_is_done_at_once(run: Spawner) -> None:
    proc = run(["true"])
    assert proc.wait(5) == 0
    stopper = GroupStopper(proc.pgid, 5.0, 0.0)
    assert stopper.done and stopper.step(0.0)
    stopper.kill()  # nothing to kill is not an error


def test_stop_process_group_kills_what_ignores_term(run: Spawner) -> None:
    proc = run(sh("trap '' TERM; sleep 30"))
    wait_for(lambda: _ignores_term(proc.pid))
    started = time.monotonic()
    stop_process_group(proc.pgid, 0.3)
    assert 0.3 <= time.monotonic() - started < 2
    assert proc.wait(5) == -signal.SIGKILL


def test_stop_process_group_returns_when_the_group_is_empty(run: Spawner) -> None:
    proc = run(["sleep", "30"])
    started = time.monotonic()
    stop_process_group(proc.pgid, 5.0)
    assert time.monotonic() - started < 2
    assert proc.wait(5) == -signal.SIGTERM


def test_stop_process_group_uses_the_injected_clock(run: Spawner) -> None:
    proc = run(sh("trap '' TERM; sleep 30"))
    wait_for(lambda: _ignores_term(proc.pid))
    now = [0.0]
    naps: list[float] = []

    def fake_sleep(seconds: float) -> None:
        naps.append(seconds)
        now[0] += seconds

    stop_process_group(proc.pgid, 0.2, sleep=fake_sleep, clock=lambda: now[0])
    assert naps and sum(naps) == pytest.approx(0.2) and max(naps) <= 0.02 + 1e-9
    assert proc.wait(5) == -signal.SIGKILL


def test_close_is_prompt_when_a_grandchild_holds_the_pipe(
    run: Spawner, log_path: Path
) -> None:
    proc = run(sh("echo before; sleep 30 & exit 0"))
    started = time.monotonic()
    assert proc.wait(5) == 0
    proc.close()
    proc.close()
    assert time.monotonic() - started < 1
    assert log_path.read_text() == "before\n"
    assert procinfo.group_alive(proc.pgid)  # the sleep is still there
    with pytest.raises(ValueError):
        proc.fileno()
    assert proc.pump() is False


def test_wait_times_out(run: Spawner) -> None:
    proc = run(["sleep", "30"])
    started = time.monotonic()
    assert proc.wait(0.1) is None
    assert time.monotonic() - started < 1
    assert proc.poll() is None


# -- process identity --------------------------------------------------------


def test_identity_of_a_live_child(run: Spawner) -> None:
    proc = run(["sleep", "30"])
    assert proc.identify() is not None
    assert proc.start_token is not None and proc.start_token.isdigit()
    assert proc.boot == procinfo.boot_id() != ""
    assert procinfo.process_start(proc.pid) == proc.start_token
    assert procinfo.is_same_process(proc.pid, proc.start_token, proc.boot)
    assert procinfo.is_same_process(proc.pid, None, None)
    assert procinfo.is_same_process(proc.pid, "", "")
    assert not procinfo.is_same_process(proc.pid, str(int(proc.start_token) - 1), proc.boot)
    assert not procinfo.is_same_process(proc.pid, proc.start_token, "another-boot")

    proc.signal_group(signal.SIGKILL)
    assert proc.wait(5) is not None  # reaped
    assert procinfo.process_start(proc.pid) is None
    assert not procinfo.is_same_process(proc.pid, proc.start_token, proc.boot)
    assert not procinfo.is_same_process(proc.pid, None, None)


def test_zombie_is_not_alive(run: Spawner) -> None:
    proc = run(["true"])
    # Not polled, so not reaped: it lingers as a zombie.
    wait_for(lambda: procinfo.process_start(proc.pid) is None)
    os.kill(proc.pid, 0)  # the pid still exists
    assert not procinfo.is_same_process(proc.pid, None, None)
    assert proc.wait(5) == 0


def test_start_token_survives_odd_comm(run: Spawner, tmp_path: Path) -> None:
    # comm comes from the exec'd file name, so it can hold ") " and spaces.
    odd = tmp_path / "a) b (c) d"
    odd.symlink_to(_which("sleep"))
    proc = run([str(odd), "30"])
    # Popen can return (vfork) a moment before the kernel renames the child
    wait_for(lambda: Path(f"/proc/{proc.pid}/comm").read_text().strip() == odd.name[:15])
    token = procinfo.process_start(proc.pid)
    assert token is not None and token.isdigit()
    # Field 22 is ticks since boot, so it must match the uptime right now.
    ticks = os.sysconf("SC_CLK_TCK")
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    assert abs(int(token) / ticks - uptime) < 10
    assert procinfo.is_same_process(proc.pid, token, procinfo.boot_id())


def test_process_start_of_nonsense_pids() -> None:
    assert procinfo.process_start(0) is None
    assert procinfo.process_start(-1) is None
    assert procinfo.process_start(2**22 + 12345) is None
    assert procinfo.process_start(os.getpid())
    assert not procinfo.group_alive(0)
    assert procinfo.group_alive(os.getpgid(0))


def test_host_name() -> None:
    assert procinfo.host_name()


def _which(name: str) -> str:
    for folder in os.environ["PATH"].split(os.pathsep):
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise AssertionError(f"{name} not on PATH")


def _ignores_term(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    ignored = next(line for line in status.splitlines() if line.startswith("SigIgn:"))
    return bool(int(ignored.split()[1], 16) & (1 << (signal.SIGTERM - 1)))



@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_disk_stops_the_log_not_the_task(tmp_path: Path) -> None:
    """/dev/full fails every write with ENOSPC, as a full disk does: the
    output is still drained (a task blocked on a full pipe would hang), the
    exit status is kept, and log_error says why the log is incomplete."""
    proc = spawn(Launch(argv=sh("head -c 300000 /dev/zero; echo done; exit 3"),
                        env=dict(os.environ), cwd=None, log_path=Path("/dev/full"),
                        max_log_bytes=1024 * 1024, lazy_log=True))
    assert proc.wait(10) == 3
    proc.close()
    assert proc.log_error == "log /dev/full incomplete: no space left on device"


def test_without_setsid_in_posix_spawn_popen_takes_over(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Python raises NotImplementedError for setsid where the C library has no
    POSIX_SPAWN_SETSID (an old glibc, some musl): runs still start, by Popen."""
    from jobctl import executor

    def unsupported(*_args: object, **_kwargs: object) -> int:
        raise NotImplementedError("setsid")

    monkeypatch.setattr(executor.os, "posix_spawn", unsupported)
    monkeypatch.setattr(executor, "_spawn_ok", None)
    proc = spawn(Launch(argv=sh("echo via popen; exit 4"), env=dict(os.environ), cwd=None,
                        log_path=tmp_path / "p.log", max_log_bytes=1024))
    assert proc.wait(10) == 4
    proc.close()
    assert (tmp_path / "p.log").read_text() == "via popen\n"
    assert executor._spawn_ok is False


def test_reap_orphans_takes_only_children_it_was_not_told_about(tmp_path: Path) -> None:
    """What a runner as PID 1 calls: an untracked exited child is reaped; a
    run's process, exited too, keeps its status for its own poll()."""
    run = spawn(Launch(argv=sh("exit 7"), env=dict(os.environ), cwd=None,
                       log_path=tmp_path / "run.log", max_log_bytes=1024))
    stray = spawn_detached(["sh", "-c", "exit 3"], dict(os.environ))
    try:
        def both_exited() -> bool:
            return procinfo.process_start(run.pid) is None and procinfo.process_start(stray) is None
        deadline = time.monotonic() + 10
        while not both_exited():
            assert time.monotonic() < deadline, "children did not exit"
            time.sleep(0.01)
        zombies = set(procinfo.zombie_children(os.getpid()))
        assert zombies >= {run.pid, stray}
        # other tests' unreaped children are left alone too
        assert reap_orphans(zombies - {stray}) == [stray]
        assert set(procinfo.zombie_children(os.getpid())) == zombies - {stray}
        assert run.wait(5) == 7
    finally:
        run.close()
