"""The `jobctl` console script itself: version, shell completion, Ctrl-C at start-up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from jobctl import __version__
from jobctl.cli import app

JOBCTL = str(Path(sys.executable).parent / "jobctl")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("_JOBCTL")}
    env.update(extra)
    return env


def test_version_prints_the_package_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output == f"jobctl {__version__}\n"
    proc = subprocess.run([JOBCTL, "--version"], capture_output=True, text=True, env=_env())
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, f"jobctl {__version__}\n", "")


def test_help_lists_version_and_completion_options() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    for option in ("--version", "--install-completion", "--show-completion"):
        assert option in result.output


def test_show_completion_prints_a_script_that_completes_commands_and_options() -> None:
    proc = subprocess.run([JOBCTL, "--show-completion", "bash"], capture_output=True, text=True,
                          env=_env())
    assert proc.returncode == 0, proc.stderr
    assert "_JOBCTL_COMPLETE=complete_bash" in proc.stdout
    assert "complete -o default -F _jobctl_completion jobctl" in proc.stdout
    # what bash runs on <TAB>, per the script above
    proc = subprocess.run([JOBCTL], capture_output=True, text=True, env=_env(
        COMP_WORDS="jobctl run-", COMP_CWORD="1", _JOBCTL_COMPLETE="complete_bash"))
    assert (proc.returncode, proc.stdout.split()) == (0, ["run-now"]), proc.stderr
    proc = subprocess.run([JOBCTL], capture_output=True, text=True, env=_env(
        COMP_WORDS="jobctl history --sta", COMP_CWORD="2", _JOBCTL_COMPLETE="complete_bash"))
    assert (proc.returncode, sorted(proc.stdout.split())) == (0, ["--state", "--status"]), proc.stderr


# A sitecustomize that stalls the import of one module, so a SIGINT sent once
# the marker file exists lands while jobctl is still importing.
SLOW_IMPORT = """
import os, sys, time

class _SlowImport:
    def find_spec(self, name, path=None, target=None):
        if name == os.environ["SLOW_MODULE"]:
            open(os.environ["SLOW_MARKER"], "w").close()
            time.sleep(300)
        return None

sys.meta_path.insert(0, _SlowImport())
"""


@pytest.mark.parametrize(("module", "args"), [
    ("typer", ["--help"]),  # the CLI's own imports, before any command
    ("typer", ["list"]),
    ("jobctl.resolve", ["validate"]),  # a command's lazy imports
])
def test_ctrl_c_while_importing_exits_130_without_a_traceback(
        tmp_path: Path, module: str, args: list[str]) -> None:
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(textwrap.dedent(SLOW_IMPORT))
    (tmp_path / "jobctl.toml").write_text('[[tasks]]\nid = "a"\nschedule = "@daily"\ncommand = "true"\n')
    marker = tmp_path / "importing"
    env = _env(PYTHONPATH=str(hook), SLOW_MODULE=module, SLOW_MARKER=str(marker))
    proc = subprocess.Popen([JOBCTL, *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        # deadlines, not sleeps: generous for a loaded machine, free when it is not
        deadline = time.monotonic() + 90
        while not marker.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the import hook never ran"
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        out, errors = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, (out, errors)
    assert "Traceback" not in errors, errors
    assert "KeyboardInterrupt" not in errors, errors


def _full_app(*args: str) -> subprocess.CompletedProcess[str]:
    """The whole app, as typer runs it untrimmed."""
    return subprocess.run([sys.executable, "-c", "from jobctl.cli import app; app(prog_name='jobctl')",
                           *args], capture_output=True, text=True, env=_env(COLUMNS="100"))


@pytest.mark.parametrize("args", [["--help"], [], ["-h"], ["lst"], ["--version"], ["list", "--help"],
                                  ["--help", "list"], ["list", "--bogus"]])
def test_the_trimmed_app_says_what_the_whole_app_says(args: list[str]) -> None:
    proc = subprocess.run([JOBCTL, *args], capture_output=True, text=True, env=_env(COLUMNS="100"))
    full = _full_app(*args)
    assert (proc.returncode, proc.stdout, proc.stderr) == (full.returncode, full.stdout, full.stderr)


def test_top_level_help_builds_no_command_options_and_imports_no_core() -> None:
    from jobctl.cli import _app_for, _outline

    outline = _app_for(["--help"])
    # a command group (`import`) is outlined as a command of the same name
    assert [c.name for c in outline.registered_commands] == (
        [c.name for c in app.registered_commands] + [g.name for g in app.registered_groups])
    assert all(c.callback is _outline for c in outline.registered_commands)
    assert [c.name for c in _app_for(["list", "--json"]).registered_commands] == ["list"]
    assert _app_for(["--help"]).registered_callback is app.registered_callback
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "jobctl", "--help"],
                          capture_output=True, text=True, env=_env())
    assert proc.returncode == 0
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines()}
    assert not {m for m in imported if m.startswith(("rich", "jobctl.")) and not m.startswith("jobctl.cli")}
    assert not {"tzlocal", "sqlite3", "tomllib", "rtoml", "tomlkit", "zoneinfo"} & imported
