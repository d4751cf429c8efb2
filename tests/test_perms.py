"""Permissions at jobctl's edges: what it writes is private whatever the
umask; what it runs commands from must be safe from other users."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import write_config

JOBCTL = shutil.which("jobctl", path=os.path.dirname(sys.executable))


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("JOBCTL_")}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def wait_for(cond: Callable[[], object], timeout: float = 20.0, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def jobctl(*args: str, cwd: Path, umask: int = 0o022) -> subprocess.CompletedProcess[str]:
    assert JOBCTL, "the jobctl console script is not installed beside this python"
    return subprocess.run([JOBCTL, *args], cwd=cwd, env=env(), capture_output=True, text=True,
                          timeout=60, umask=umask)


RUNNER_CONFIG = """
[jobctl]
state = "var/jobctl/state.db"
kill_grace = "1s"
shutdown_grace = "5s"

[[tasks]]
id = "tick"
schedule = "every 1s"
command = "echo secret output"

[[tasks]]
id = "broken"
schedule = "every 1s"
argv = ["/nonexistent/jobctl-test-program"]
"""


@pytest.mark.parametrize("umask", [0o022, 0o000], ids=["umask022", "umask000"])
def test_the_runner_keeps_state_and_logs_private_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    tmp_path.chmod(0o755)
    write_config(tmp_path, RUNNER_CONFIG)
    assert JOBCTL
    out = (tmp_path / "runner.out").open("w+")
    proc = subprocess.Popen([JOBCTL, "run", "--log-format", "json"], cwd=tmp_path, env=env(),
                            stdout=out, stderr=subprocess.STDOUT, umask=umask)
    state = tmp_path / "var" / "jobctl" / "state.db"
    logs = state.parent / "logs"
    try:
        def finished() -> bool:
            if proc.poll() is not None:
                raise AssertionError((tmp_path / "runner.out").read_text())
            events = [json.loads(line) for line in (tmp_path / "runner.out").read_text().splitlines()
                      if line.startswith("{")]
            done = {e.get("task_id") for e in events if e["event"] == "finish"}
            return done >= {"tick", "broken"}
        wait_for(finished, what="a finished run of each task")
        # while the runner is up its -wal and -shm files are there
        assert mode(tmp_path) == 0o755  # not ours: left alone
        assert mode(tmp_path / "var") == 0o700
        assert mode(state.parent) == 0o700
        assert mode(logs) == 0o700
        for f in (state, Path(f"{state}-wal"), Path(f"{state}-shm")):
            assert mode(f) == 0o600, f
        files = list(logs.glob("*.log"))
        assert len(files) >= 2
        assert all(mode(f) == 0o600 for f in files), [(f, oct(mode(f))) for f in files]
        texts = [f.read_text() for f in files]
        assert any("secret output" in t for t in texts) and any("cannot start" in t for t in texts)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        out.close()


@pytest.mark.parametrize("umask", [0o022, 0o000], ids=["umask022", "umask000"])
def test_run_now_keeps_state_and_logs_private_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    (tmp_path / "mine").mkdir(mode=0o755)
    (tmp_path / "mine").chmod(0o755)
    write_config(tmp_path, """
[[tasks]]
id = "hello"
schedule = "@daily"
command = "echo secret output"

[[tasks]]
id = "broken"
schedule = "@daily"
argv = ["/nonexistent/jobctl-test-program"]
""")
    state = tmp_path / "mine" / "new" / "state.db"
    result = jobctl("run-now", "hello", "--state", str(state), cwd=tmp_path, umask=umask)
    assert result.returncode == 0, result.stderr
    result = jobctl("run-now", "broken", "--state", str(state), cwd=tmp_path, umask=umask)
    assert result.returncode == 1, result.stderr
    assert mode(tmp_path / "mine") == 0o755
    assert mode(state.parent) == 0o700
    assert mode(state) == 0o600
    assert mode(state.parent / "logs") == 0o700
    assert (state.parent / "logs" / "1.log").read_text() == "secret output\n"
    assert mode(state.parent / "logs" / "1.log") == 0o600
    assert "cannot start" in (state.parent / "logs" / "2.log").read_text()
    assert mode(state.parent / "logs" / "2.log") == 0o600
    # and nothing else jobctl left beside them is readable by others
    for path in state.parent.rglob("*"):
        assert mode(path) & 0o077 == 0, (path, oct(mode(path)))
