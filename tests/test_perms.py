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

from conftest import wait_for, write_config

JOBCTL = shutil.which("jobctl", path=os.path.dirname(sys.executable))


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("JOBCTL_")}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


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


# -- trust: a config or manifest another user could change is refused --------------

TRUST_CONFIG = """
[jobctl]
state = "state.db"
plugins = ["plugins/*/plugin.toml"]

[[tasks]]
id = "hello"
schedule = "@daily"
command = "echo hi"
"""

MANIFEST = """
[plugin]
id = "backups"

[[jobs]]
key = "nightly"
schedule = "30 2 * * *"
argv = ["true"]
"""

NOBODY = 65534


def trust_setup(tmp_path: Path) -> tuple[Path, Path]:
    config = write_config(tmp_path, TRUST_CONFIG)
    manifest = tmp_path / "plugins" / "backups" / "plugin.toml"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(MANIFEST)
    for p in (tmp_path / "plugins", manifest.parent):
        p.chmod(0o755)
    manifest.chmod(0o644)
    config.chmod(0o644)
    return config, manifest


LOADING = [("list",), ("validate",), ("show", "hello"), ("next", "hello"), ("run-now", "hello"),
           ("history",), ("status",), ("plugins",), ("disable", "hello"),
           ("set", "hello", "timeout=5m"), ("edit",)]


def refused(result: object, path: Path, what: str, fix: str) -> None:
    assert result.exit_code == 2, result.output  # type: ignore[attr-defined]
    err = result.stderr  # type: ignore[attr-defined]
    assert err.count("\n") == 1, err
    assert err.startswith(f"error: refusing {what} {path}: "), err
    assert err.rstrip().endswith(f"fix: {fix}"), err
    assert "Traceback" not in result.output  # type: ignore[attr-defined]


@pytest.mark.parametrize("args", LOADING, ids=lambda a: a[0])
def test_a_world_writable_config_is_refused_wherever_it_is_loaded(cli, tmp_path: Path, args: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    config, _ = trust_setup(tmp_path)
    config.chmod(0o666)
    before = config.read_bytes()
    result = cli(*args, env={"EDITOR": "false", "PATH": os.environ["PATH"]})
    refused(result, config, "config", f"chmod go-w {config}")
    assert "writable by group and others (mode 0666)" in result.stderr
    assert config.read_bytes() == before and mode(config) == 0o666
    assert not (tmp_path / "state.db").exists()  # nothing written
    assert list(tmp_path.glob(".jobctl*")) == []  # no temporary copy left behind


def test_the_runner_refuses_a_world_writable_config(tmp_path: Path) -> None:
    config, _ = trust_setup(tmp_path)
    config.chmod(0o666)
    result = jobctl("run", cwd=tmp_path)  # a subprocess: a runner that starts would not return
    assert result.returncode == 2, result.stderr
    assert result.stderr == (f"error: refusing config {config}: it is writable by group and others "
                             "(mode 0666), so whoever can change it runs commands as you; "
                             f"fix: chmod go-w {config}\n")
    assert not (tmp_path / "state.db").exists()


@pytest.mark.parametrize(("bits", "who"), [(0o664, "its group"), (0o646, "others")])
def test_a_group_or_other_writable_config_is_refused(cli, tmp_path: Path, bits: int, who: str) -> None:  # type: ignore[no-untyped-def]
    config, _ = trust_setup(tmp_path)
    config.chmod(bits)
    result = cli("validate")
    refused(result, config, "config", f"chmod go-w {config}")
    assert f"writable by {who} (mode {bits:04o})" in result.stderr


def test_a_config_owned_by_another_user_is_refused_one_owned_by_root_is_not(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert os.geteuid() == 0, "these tests simulate another user by chown, which needs root"
    config, _ = trust_setup(tmp_path)
    os.chown(config, NOBODY, NOBODY)
    result = cli("list")
    refused(result, config, "config", f"chown root {config}")
    assert f"it is owned by nobody (uid {NOBODY}), not by root, so" in result.stderr
    os.chown(config, 0, 0)
    assert cli("list").exit_code == 0


def test_an_unsafe_plugin_manifest_refuses_the_config(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config, manifest = trust_setup(tmp_path)
    ok = cli("validate")
    assert ok.exit_code == 0, ok.output
    manifest.chmod(0o666)
    refused(cli("validate"), manifest, "plugin manifest", f"chmod go-w {manifest}")
    manifest.chmod(0o644)
    os.chown(manifest, NOBODY, NOBODY)
    result = cli("run-now", "backups:nightly")
    refused(result, manifest, "plugin manifest", f"chown root {manifest}")
    assert not (tmp_path / "state.db").exists()


def test_a_plugin_folder_others_could_change_refuses_the_config(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config, manifest = trust_setup(tmp_path)
    folder = manifest.parent
    folder.chmod(0o777)
    result = cli("list")
    refused(result, manifest, "plugin manifest", f"chmod go-w {folder}")
    assert f"its folder {folder} is writable by group and others (mode 0777, no sticky bit)" in result.stderr
    folder.chmod(0o1777)  # sticky, as /tmp: others cannot replace our file
    assert cli("list").exit_code == 0
    folder.chmod(0o755)
    os.chown(folder, NOBODY, NOBODY)
    refused(cli("list"), manifest, "plugin manifest", f"chown root {folder}")


def test_set_and_add_keep_the_config_mode_and_init_never_makes_it_writable_by_others(
        cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config, _ = trust_setup(tmp_path)
    config.chmod(0o640)
    result = cli("set", "hello", "timeout=5m")
    assert result.exit_code == 0, result.output
    result = cli("add", "other", "--schedule", "@daily", "--", "true")
    assert result.exit_code == 0, result.output
    assert mode(config) == 0o640
    fresh = tmp_path / "fresh" / "jobctl.toml"
    made = jobctl("init", str(fresh), cwd=tmp_path, umask=0o000)
    assert made.returncode == 0, made.stderr
    assert mode(fresh) == 0o644
    checked = jobctl("validate", "-c", str(fresh), cwd=tmp_path, umask=0o000)
    assert checked.returncode == 0, checked.stderr
