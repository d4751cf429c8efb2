"""What the CLI shows on a terminal and in a pipe: untrusted text escaped,
tables that fit the width, runs ended by signals named as such."""

from __future__ import annotations

import os
import pty
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import NOW, FakeClock, write_config
from typer.testing import CliRunner

from jobctl.cli import app
from jobctl.cli._common import Services

ROOT = Path(__file__).resolve().parent.parent
ESC = "\x1b"
HOSTILE = "\x1b]0;pwned\x07\x1b[2J"
PATH_ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}

CONFIG = r"""
[jobctl]
timezone = "UTC"

[[tasks]]
id = "evil"
name = "[bold]x"
description = "desc \u001b[2J here"
schedule = "0 3 * * *"
command = '''printf '\033]0;pwned\007\033[2Jhello\n' '''
"""


def invoke(tmp_path: Path, *args: str, tty: bool | None = None, clock: FakeClock | None = None,
           env: dict[str, str] | None = None) -> Any:
    services = Services(clock=clock or FakeClock(), env=dict(env or PATH_ENV), cwd=tmp_path,
                        system_zone="UTC", tty=tty)
    return CliRunner().invoke(app, list(args), obj=services)


@pytest.fixture
def evil(tmp_path: Path) -> Path:
    write_config(tmp_path, CONFIG)
    result = invoke(tmp_path, "run-now", "evil", "--state", str(tmp_path / "state.db"))
    assert result.exit_code == 0, result.output
    return tmp_path


def test_logs_on_a_terminal_escapes_control_characters(evil: Path) -> None:
    state = str(evil / "state.db")
    result = invoke(evil, "logs", "1", "--state", state, tty=True)
    assert result.exit_code == 0, result.output
    assert result.stdout == "\\x1b]0;pwned\\x07\\x1b[2Jhello\n"
    # --raw, and any pipe: the stored bytes
    raw = "\x1b]0;pwned\x07\x1b[2Jhello\n"
    assert invoke(evil, "logs", "1", "--raw", "--state", state, tty=True).stdout == raw
    assert invoke(evil, "logs", "1", "--state", state, tty=False).stdout == raw
    assert invoke(evil, "logs", "1", "--follow", "--state", state, tty=True).stdout \
        == "\\x1b]0;pwned\\x07\\x1b[2Jhello\n"


def test_logs_on_a_terminal_keeps_utf8_split_across_reads_and_escapes_c1(tmp_path: Path) -> None:
    from jobctl.cli.control import _EscapingWriter

    class Sink:
        data = b""

        def write(self, b: bytes) -> None:
            self.data += b

        def flush(self) -> None:
            pass

    sink = Sink()
    writer = _EscapingWriter(sink)
    text = "é\u009b\tok\r\n".encode()
    for i in range(len(text)):
        writer.write(text[i:i + 1])
    writer.write(b"\xff\xc3")
    writer.finish()
    assert sink.data.decode() == "é\\x9b\tok\\x0d\n\\xff\\xc3"


@pytest.mark.parametrize("args", [("list",), ("show", "evil"), ("history",), ("status",)])
def test_tables_on_a_terminal_escape_control_characters_and_markup(evil: Path, args: tuple[str, ...]) -> None:
    result = invoke(evil, *args, "--state", str(evil / "state.db"), tty=True)
    assert result.exit_code == 0, result.output
    # rich's own colours are `ESC [ ... m`; nothing else may reach the terminal
    stripped = _strip_sgr(result.stdout)
    assert ESC not in stripped and "\x07" not in stripped
    if args[0] in ("list", "show"):
        assert "[bold]x" in stripped
    if args[0] == "show":
        assert "desc \\x1b[2J here" in stripped


def test_validate_errors_on_a_terminal_are_escaped(tmp_path: Path) -> None:
    write_config(tmp_path, '[[tasks]]\nid = "a"\nschedule = "\\u001b]0;pwned\\u0007"\ncommand = "true"\n')
    result = invoke(tmp_path, "validate", tty=True)
    assert result.exit_code == 2
    assert ESC not in result.stderr and "\\x1b]0;pwned\\x07" in result.stderr
    piped = invoke(tmp_path, "validate", tty=False)
    assert piped.exit_code == 2 and "\x1b]0;pwned\x07" in piped.stderr


def test_plain_runner_events_escape_control_characters() -> None:
    import io
    from datetime import datetime, timezone

    from jobctl.cli.run import PlainReporter
    from jobctl.model import RunStatus
    from jobctl.runner import Event

    out = io.StringIO()
    reporter = PlainReporter(out)
    reporter(Event("finish", datetime(2026, 1, 1, tzinfo=timezone.utc), task_id="t", run_id=1,
                   status=RunStatus.FAILED, duration_s=1.0, message=f"boom {HOSTILE}\nnext"))
    reporter(Event("error", datetime(2026, 1, 1, tzinfo=timezone.utc),
                   message="config not reloaded", data={"problems": [f"x.toml:3: {HOSTILE}"]}))
    text = out.getvalue()
    assert ESC not in text and "\x07" not in text
    assert "boom \\x1b]0;pwned\\x07\\x1b[2J\\nnext" in text
    assert len(text.splitlines()) == 3


def _strip_sgr(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def _read_pty(fd: int, proc: subprocess.Popen[bytes], deadline: float) -> bytes:
    data = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the other side is closed
                break
            if not chunk:
                break
            data += chunk
        elif proc.poll() is not None:
            break
    return data


def test_real_jobctl_logs_on_a_pty_escapes_and_piped_passes_bytes(evil: Path) -> None:
    jobctl = shutil.which("jobctl", path=str(Path(sys.executable).parent))
    assert jobctl is not None
    args = [jobctl, "logs", "1", "-c", str(evil / "jobctl.toml"), "--state", str(evil / "state.db")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBCTL_")}
    main, child = pty.openpty()
    try:
        proc = subprocess.Popen(args, stdin=child, stdout=child, stderr=child, env=env)
        os.close(child)
        child = -1
        out = _read_pty(main, proc, time.monotonic() + 20)
        assert proc.wait(20) == 0, out
    finally:
        os.close(main)
        if child != -1:
            os.close(child)
    # the terminal turns \n into \r\n
    assert out.replace(b"\r\n", b"\n") == b"\\x1b]0;pwned\\x07\\x1b[2Jhello\n"
    piped = subprocess.run(args, capture_output=True, env=env, timeout=20)
    assert piped.returncode == 0 and piped.stdout == b"\x1b]0;pwned\x07\x1b[2Jhello\n"
