"""The docs stay true: every command is documented and every sample validates."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from jobctl.cli import app
from jobctl.resolve import resolve

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
SAMPLES = sorted((ROOT / "sample-configs").glob("*.toml"))


def test_every_command_is_in_readme() -> None:
    for info in app.registered_commands:
        assert f"`jobctl {info.name}" in README, info.name


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_sample_configs_validate(sample: Path) -> None:
    from conftest import NOW

    schedule_set = resolve(sample, system_zone="UTC", now=NOW)
    assert schedule_set.tasks
    assert all(r.loaded for r in schedule_set.plugins), schedule_set.plugin_problems


def test_quick_start_has_two_setup_commands_and_ci_runs_the_test_one() -> None:
    quick = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", quick, re.S)
    setup = [b.strip() for b in blocks[:2]]
    assert setup[0].startswith("pip install . && jobctl ")
    ci = (ROOT / ".ci" / "run").read_text()
    assert setup[1] in ci.splitlines()


def test_every_setting_and_task_key_is_documented() -> None:
    from jobctl.config import SETTINGS_KEYS, TASK_KEYS

    for key in (*SETTINGS_KEYS, *TASK_KEYS):
        assert f"| `{key}` |" in README, key


def _sh_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", README, re.S)


def test_readme_examples_run_as_written_in_order(tmp_path: Path) -> None:
    """Every ```sh block of the README, line by line, in a fresh checkout-like
    folder and home, with the real `jobctl`: each line exits 0. The setup
    lines (`pip install ...`, the test suite) are left to CI, as
    test_quick_start_... checks; `jobctl run` runs in the background while the
    "second terminal" block runs, then gets Ctrl-C (SIGINT) and must exit 0.
    `EDITOR=nano` finds a stand-in `nano` that adds a comment."""
    import os
    import shutil
    import signal
    import subprocess
    import sys
    import time

    work = tmp_path / "checkout"
    shutil.copytree(ROOT / "sample-configs", work / "sample-configs")
    home = tmp_path / "home"
    home.mkdir()
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    nano = fake_bin / "nano"
    nano.write_text('#!/bin/sh\nprintf "# edited with nano\\n" >> "$1"\n')
    nano.chmod(0o755)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("JOBCTL_", "XDG_", "VISUAL", "EDITOR"))}
    env.update(HOME=str(home), PATH=os.pathsep.join([str(fake_bin), str(Path(sys.executable).parent),
                                                     env.get("PATH", "")]))

    runner = None
    ran = []
    try:
        for block in _sh_blocks():
            for line in block.strip().splitlines():
                if line.startswith("pip install -e"):
                    continue  # the test suite itself (CI runs it)
                if line.startswith("pip install . && "):
                    line = line.removeprefix("pip install . && ")
                    assert line.startswith("jobctl run ")
                    out = (tmp_path / "runner.out").open("w")
                    runner = subprocess.Popen(["bash", "-c", f"exec {line}"], cwd=work, env=env,
                                              stdout=out, stderr=subprocess.STDOUT)
                    # `logs 1` below needs a finished run: the first `every 10s` one
                    deadline = time.monotonic() + 30
                    while "finish" not in (tmp_path / "runner.out").read_text():
                        assert runner.poll() is None, (tmp_path / "runner.out").read_text()
                        assert time.monotonic() < deadline, (tmp_path / "runner.out").read_text()
                        time.sleep(0.05)
                    ran.append(line)
                    continue
                proc = subprocess.run(["bash", "-c", line], cwd=work, env=env, capture_output=True,
                                      text=True, timeout=60)
                assert proc.returncode == 0, (line, proc.stdout, proc.stderr)
                assert "Traceback" not in proc.stderr, (line, proc.stderr)
                ran.append(line)
        assert runner is not None
        runner.send_signal(signal.SIGINT)  # "Ctrl-C stops it"
        assert runner.wait(30) == 0, (tmp_path / "runner.out").read_text()
    finally:
        if runner is not None and runner.poll() is None:
            runner.kill()
            runner.wait()
    assert any(line.startswith("jobctl next ") for line in ran)
    assert any(line.startswith("EDITOR=nano jobctl edit") for line in ran)
    config = home / ".config" / "jobctl" / "jobctl.toml"
    assert config.read_text().endswith("# edited with nano\n")
    assert "[[tasks]]\nid = \"backup\"" in config.read_text()
