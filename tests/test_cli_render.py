"""What the CLI shows on a terminal and in a pipe: untrusted text escaped,
tables that fit the width, runs ended by signals named as such."""

from __future__ import annotations

import os
import re
import signal
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


# -- tables that fit the terminal ------------------------------------------------

# a whole time: relative, then (where it fits) compact absolute, then a column gap or the end
TIME_RE = (r"(?:in [0-9dhms ]+|now|[0-9dhms ]+ ago)(?: \((?:\d\d:\d\d(?::\d\d)?|[A-Z][a-z]{2} "
           r"\d{1,2} \d\d:\d\d(?::\d\d)?|\d{4}-\d\d-\d\d \d\d:\d\d(?::\d\d)?)\))?(?:  |$)")
STATUS_RE = r"(?:running|success|failed|timeout|skipped|interrupted)"

EXTRA = r"""
[jobctl]
state = "full-state/jobctl.db"

[[tasks]]
id = "disk-usage-report-for-all-mounted-volumes"
name = "A rather long display name that does not fit a narrow terminal at all"
description = "Reports disk usage of every mounted volume, sorted by how full they are"
group = "monitoring-and-alerting"
schedule = "*/5 * * * *"
timezone = "America/Argentina/Buenos_Aires"
command = "echo this run fails with a long message; exit 3"

[[tasks]]
id = "terminated"
schedule = "@daily"
command = "kill -TERM $$"
"""


@pytest.fixture
def samples(tmp_path: Path) -> Path:
    """The sample configs in tmp_path, with a state file holding a few runs."""
    folder = tmp_path / "samples"
    shutil.copytree(ROOT / "sample-configs", folder)
    (folder / "extra.toml").write_text(EXTRA)
    clock = FakeClock(NOW)
    for config, task in (("full.toml", "cache-warm"), ("extra.toml", "terminated"),
                         ("full.toml", "db-backup"),
                         ("extra.toml", "disk-usage-report-for-all-mounted-volumes")):
        result = invoke(folder, "run-now", task, "-c", str(folder / config), clock=clock)
        assert result.exit_code in (0, 1), result.output
        clock.advance(3 * 3600 + 17)
    return folder


def _check_lines(text: str, width: int) -> list[str]:
    lines = text.splitlines()
    for line in lines:
        assert len(line) <= width, (width, line)
        assert line == line.rstrip(), f"trailing spaces: {line!r}"
    return lines


@pytest.mark.parametrize("width", [60, 80, 200])
def test_every_table_fits_the_width_and_never_splits_ids_statuses_or_times(
        samples: Path, width: int, monkeypatch: pytest.MonkeyPatch) -> None:
    import re

    monkeypatch.setenv("COLUMNS", str(width))
    later = FakeClock(NOW)
    later.advance(12 * 3600 + 5)

    def run(*args: str, config: str = "full.toml") -> list[str]:
        result = invoke(samples, *args, "-c", str(samples / config), clock=later)
        assert result.exit_code == 0, result.output
        return _check_lines(result.stdout, width)

    for config in ("full.toml", "extra.toml", "quickstart.toml", "plugins.toml"):
        lines = run("list", config=config)
        assert lines[0].startswith("ID  ") and "NEXT RUN" in lines[0]
        assert len(lines) == 1 + len(re.findall(r"^id = ", (samples / config).read_text(), re.M)) \
            + (3 if config == "plugins.toml" else 0)  # one line per task: nothing wrapped
        for line in lines[1:]:
            task_id = line.split("  ")[0]
            assert re.fullmatch(r"[a-z0-9][a-z0-9_.:-]*", task_id), line
            assert re.search(TIME_RE, line) or re.search(r"  (at runner start|disabled)( |$)", line), line

    lines = run("history")
    assert lines[0].split()[:3] == ["RUN", "TASK", "STATUS"] and len(lines) == 5
    for line, run_id in zip(lines[1:], (4, 3, 2, 1)):
        # (a task id too long for the width is cut as a last resort: the run id is the key)
        assert re.match(rf"^ *{run_id}  [a-z0-9][a-z0-9_.:-]*…? +{STATUS_RE}(  |$)", line), line
        assert re.search(TIME_RE, line), line
    assert ("disk-usage-report-for-all-mounted-volumes" in lines[1]) == (width > 60)
    if width >= 200:
        assert "SIGTERM" in lines[3]  # the EXIT column: the signal, not -15

    lines = run("show", "db-backup")
    next_runs = [line for line in lines if re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[-+]\d\d:\d\d  \(in ", line)]
    assert len(next_runs) == 5
    assert any(re.search(r"last run +success \d", line) for line in lines)

    lines = run("show", "disk-usage-report-for-all-mounted-volumes", config="extra.toml")
    assert any("killed" not in line and "exit code 3" in line for line in lines if "last run" in line)

    lines = run("next", "db-backup", "-n", "3")
    assert len(lines) == 4 and lines[0].startswith("At ")  # the schedule in words, then 3 times

    lines = run("status")
    assert lines[:3] == ["runner: not running", "running: nothing", "next:"]
    for line in lines[3:]:
        assert re.fullmatch(rf"  [a-z0-9][a-z0-9_.:-]* +{TIME_RE}", line), line

    lines = run("plugins", config="plugins.toml")
    assert lines[0].split()[:3] == ["ID", "VERSION" if width > 60 else "VERSION", "STATUS"] or \
        lines[0].split()[:2] == ["ID", "STATUS"]
    assert len(lines) == 3 and all("loaded, " in line for line in lines[1:])


def test_a_task_id_too_long_for_a_narrow_terminal_is_cut_not_wrapped(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The longest id allowed (64 characters) at 60 columns: as a last resort the
    id is cut with an ellipsis (its start kept), and the time stays whole."""
    long_id = "a-really-long-task-identifier-for-testing-width.v2-and-then-some"
    assert len(long_id) == 64
    write_config(tmp_path, f"""
        [[tasks]]
        id = "{long_id}"
        schedule = "*/5 * * * *"
        command = "true"

        [[tasks]]
        id = "boot"
        schedule = "@reboot"
        command = "true"
    """)
    for width in (40, 60, 80):
        monkeypatch.setenv("COLUMNS", str(width))
        result = invoke(tmp_path, "list")
        assert result.exit_code == 0, result.output
        lines = _check_lines(result.stdout, width)
        assert len(lines) == 3
        assert lines[1].startswith(long_id[:20]) and re.search(TIME_RE, lines[1]), lines
        assert lines[2].startswith("boot ") and lines[2].endswith("at runner start")
        result = invoke(tmp_path, "status")
        lines = _check_lines(result.stdout, width)
        assert re.fullmatch(rf"  {long_id[:10]}[a-z0-9_.:-]*…? +{TIME_RE}", lines[3]), lines


# -- runs ended by a signal ----------------------------------------------------------


def test_a_run_killed_by_a_signal_is_named_as_such(samples: Path) -> None:
    import json

    config = ["-c", str(samples / "extra.toml")]
    result = invoke(samples, "run-now", "terminated", *config)
    assert result.exit_code == 1
    assert "killed by SIGTERM" in result.stderr and "-15" not in result.stderr
    rows = json.loads(invoke(samples, "history", "terminated", "--json", *config).stdout)
    assert {(r["exit_code"], r["signal"], r["error"]) for r in rows} == {(None, "SIGTERM", "killed by SIGTERM")}
    table = invoke(samples, "history", "terminated", *config).stdout
    assert "killed by SIGTERM" in table and "-15" not in table
    last = json.loads(invoke(samples, "show", "terminated", "--json", *config).stdout)["last_run"]
    assert (last["exit_code"], last["signal"]) == (None, "SIGTERM")
    shown_text = invoke(samples, "show", "terminated", *config).stdout
    assert re.search(r"last run +failed .*killed by SIGTERM", shown_text), shown_text


def test_runner_events_name_the_signal() -> None:
    import io
    import json
    from datetime import datetime, timezone

    from jobctl.cli.run import JsonReporter, PlainReporter, _fields
    from jobctl.model import RunStatus
    from jobctl.runner import Event

    event = Event("finish", datetime(2026, 1, 1, tzinfo=timezone.utc), task_id="t", run_id=1,
                  status=RunStatus.FAILED, exit_code=-15, duration_s=1.0, message="killed by SIGTERM")
    fields = _fields(event)
    assert fields["exit_code"] is None and fields["signal"] == "SIGTERM"
    out = io.StringIO()
    PlainReporter(out)(event)
    assert "signal=SIGTERM" in out.getvalue() and "-15" not in out.getvalue()
    assert json.loads(json.dumps(fields))["signal"] == "SIGTERM"
    assert JsonReporter  # the same fields, one object per line


def test_run_now_interrupted_by_ctrl_c_exits_130(tmp_path: Path) -> None:
    from jobctl.store import open_store

    write_config(tmp_path, '[[tasks]]\nid = "slow"\nschedule = "@daily"\ncommand = "sleep 30"\n')
    state = tmp_path / "state.db"
    created = open_store(state, create=True)
    assert created is not None
    created.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBCTL_")}
    proc = subprocess.Popen([sys.executable, "-m", "jobctl", "run-now", "slow", "--state", str(state)],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while True:
            store = open_store(state, create=False)
            assert store is not None
            try:
                running = [r for r in store.history(None, limit=10) if r.pid]
            finally:
                store.close()
            if running:
                break
            assert time.monotonic() < deadline and proc.poll() is None, "run-now never started"
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert b"interrupted" in err and b"killed by SIGTERM" in err


# -- the live view of `jobctl run` ------------------------------------------------------


def test_live_view_shows_why_a_reload_was_refused_escaped() -> None:
    from datetime import datetime, timezone
    from types import SimpleNamespace

    from rich.console import Console

    from jobctl.cli.run import LiveReporter
    from jobctl.errors import ConfigError
    from jobctl.model import Origin, Problem
    from jobctl.runner import reload_error_event

    problems = [Problem(Origin(Path("/etc/jobctl.toml"), n), "bad minute field \x1b[2J",
                        where=f"tasks[{n}] (x).schedule") for n in range(3, 10)]
    error = ConfigError(problems)
    live = LiveReporter()
    live(reload_error_event(error, datetime(2026, 1, 1, tzinfo=timezone.utc)))
    live.runner = SimpleNamespace(tasks=[], store=SimpleNamespace(path=Path("/s.db")), stopping=False,
                                  active={}, upcoming=lambda n: [])  # type: ignore[assignment]
    screen = Console(width=120, record=True, force_terminal=True)
    screen.print(live.render())
    text = screen.export_text()
    assert "config not reloaded, old schedule kept" in text
    assert "/etc/jobctl.toml:3: tasks[3] (x).schedule: bad minute field \\x1b[2J" in text
    assert "/etc/jobctl.toml:7" in text and "/etc/jobctl.toml:8" not in text
    assert "... and 2 more" in text
    assert "\x1b[2J" not in text
    assert "jobctl run: 0 tasks, state /s.db" in text
    live.runner.tasks = [object()]  # type: ignore[attr-defined]
    screen = Console(width=120, record=True, force_terminal=True)
    screen.print(live.render())
    assert "jobctl run: 1 task, state /s.db" in screen.export_text()
