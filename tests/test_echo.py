"""Job output echoed to the runner's stdout (a pipe, as in a container):
real `jobctl run` processes, real jobs, a real SQLite state."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

from conftest import wait_for, write_config
from jobctl.echo import MAX_LINE, TRUNCATED, LineEcho

SETTINGS = '[jobctl]\nstate = "state.db"\nkill_grace = "1s"\nshutdown_grace = "5s"\n{extra}\n'


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("JOBCTL_")}


class PipedRunner:
    """`jobctl run` whose stdout is a pipe that a thread reads (unless
    `read` is False: then nobody reads it until `start_reading`)."""

    def __init__(self, tmp_path: Path, *args: str, read: bool = True) -> None:
        self.err = (tmp_path / "runner.err").open("w+")
        self.proc = subprocess.Popen([sys.executable, "-m", "jobctl", "run", *args], cwd=tmp_path,
                                     env=env(), stdout=subprocess.PIPE, stderr=self.err)
        self.lines: list[str] = []
        self.lock = threading.Lock()
        self.reader: threading.Thread | None = None
        if read:
            self.start_reading()

    def start_reading(self) -> None:
        def pump() -> None:
            assert self.proc.stdout is not None
            for raw in self.proc.stdout:
                with self.lock:
                    self.lines.append(raw.decode("utf-8", errors="replace").rstrip("\n"))

        self.reader = threading.Thread(target=pump, daemon=True)
        self.reader.start()

    def text(self) -> list[str]:
        with self.lock:
            return list(self.lines)

    def events(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.text() if line.startswith("{")]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(30)
        if self.reader is not None:
            self.reader.join(30)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def runners() -> list[PipedRunner]:
    started: list[PipedRunner] = []
    yield started  # type: ignore[misc]
    for r in started:
        r.kill()


def runs(tmp_path: Path, sql: str) -> list[tuple]:  # type: ignore[type-arg]
    """Rows of the runner's state; none while it is still creating it."""
    path = tmp_path / "state.db"
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []  # not created yet
    finally:
        db.close()


HELLO = """
[[tasks]]
id = "hello"
schedule = "@reboot"
command = "echo 'first line'; echo 'second line' >&2; printf 'no newline at the end'"
"""


def test_text_mode_echoes_each_line_with_task_and_run(tmp_path: Path, runners: list[PipedRunner]) -> None:
    write_config(tmp_path, SETTINGS.format(extra="") + HELLO)
    r = PipedRunner(tmp_path, "--log-format", "text")
    runners.append(r)
    wait_for(lambda: any(" finish hello" in line for line in r.text()), what="the run's finish")
    wait_for(lambda: sum(" output hello" in line for line in r.text()) >= 3, what="three echoed lines")
    assert r.stop() == 0
    [(run_id,)] = runs(tmp_path, "select id from runs")
    echoed = [line.split(" ", 1)[1] for line in r.text() if " output " in line]
    assert echoed == [f"output hello run={run_id}: first line",
                      f"output hello run={run_id}: second line",
                      f"output hello run={run_id}: no newline at the end"]
    # each echoed line carries a timestamp like the event lines
    assert all(datetime.fromisoformat(line.split(" ", 1)[0]) for line in r.text() if " output " in line)
    # the run's log file is as it was: every byte, newlines and all
    [(log,)] = runs(tmp_path, "select log_path from runs")
    assert Path(log).read_text() == "first line\nsecond line\nno newline at the end"


def test_json_mode_echoes_output_events(tmp_path: Path, runners: list[PipedRunner]) -> None:
    write_config(tmp_path, SETTINGS.format(extra="") + HELLO)
    r = PipedRunner(tmp_path, "--log-format", "json")
    runners.append(r)
    wait_for(lambda: len([e for e in r.events() if e["event"] == "output"]) >= 3, what="output events")
    assert r.stop() == 0
    [(run_id,)] = runs(tmp_path, "select id from runs")
    outputs = [e for e in r.events() if e["event"] == "output"]
    assert [(e["task_id"], e["run_id"], e["line"]) for e in outputs] == [
        ("hello", run_id, "first line"), ("hello", run_id, "second line"),
        ("hello", run_id, "no newline at the end")]
    kinds = [e["event"] for e in r.events()]
    # in order: after the start, before the stop
    assert kinds.index("start") < kinds.index("output") < kinds.index("stopped")


@pytest.mark.parametrize("how", ["flag", "config"])
def test_no_echo_flag_or_echo_output_false_turns_it_off(tmp_path: Path, runners: list[PipedRunner],
                                                        how: str) -> None:
    write_config(tmp_path, SETTINGS.format(extra="echo_output = false" if how == "config" else "") + HELLO)
    args = ["--log-format", "json"] + (["--no-echo"] if how == "flag" else [])
    r = PipedRunner(tmp_path, *args)
    runners.append(r)
    wait_for(lambda: any(e["event"] == "finish" for e in r.events()), what="the run's finish")
    assert r.stop() == 0
    assert [e for e in r.events() if e["event"] == "output"] == []
    [(log,)] = runs(tmp_path, "select log_path from runs")
    assert Path(log).read_text().startswith("first line\n")  # still logged


def test_a_bad_echo_output_is_a_config_error(tmp_path: Path) -> None:
    write_config(tmp_path, SETTINGS.format(extra='echo_output = "yes"') + HELLO)
    result = subprocess.run([sys.executable, "-m", "jobctl", "run"], cwd=tmp_path, env=env(),
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "jobctl.toml:5" in result.stderr and "echo_output" in result.stderr
    assert "expected true or false" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_huge_line_is_cut_with_a_marker_and_logged_whole(tmp_path: Path, runners: list[PipedRunner]) -> None:
    write_config(tmp_path, SETTINGS.format(extra="max_log_bytes = 4194304") + f"""
[[tasks]]
id = "huge"
schedule = "@reboot"
argv = ["{sys.executable}", "-c", "import sys; sys.stdout.write('x' * 1048576 + '\\\\nafter\\\\n')"]
""")
    r = PipedRunner(tmp_path, "--log-format", "json")
    runners.append(r)
    wait_for(lambda: any(e.get("line") == "after" for e in r.events()), what="the line after the huge one")
    assert r.stop() == 0
    lines = [e["line"] for e in r.events() if e["event"] == "output"]
    assert lines == ["x" * MAX_LINE + TRUNCATED, "after"]
    [(log,)] = runs(tmp_path, "select log_path from runs")
    assert Path(log).stat().st_size == 1048576 + len("\nafter\n")


FLOOD = f"""
[[tasks]]
id = "flood"
schedule = "@reboot"
argv = ["{sys.executable}", "-c", "import sys; sys.stdout.writelines('line %d\\\\n' % i for i in range(100000))"]

[[tasks]]
id = "tick"
schedule = "every 1s"
argv = ["true"]
"""


def _lateness(tmp_path: Path) -> list[float]:
    rows = runs(tmp_path, "select scheduled_for, started_at from runs where task_id = 'tick' order by id")
    return [(datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds() for a, b in rows]


def test_a_flood_of_lines_keeps_other_tasks_on_time_and_every_line_is_accounted_for(
        tmp_path: Path, runners: list[PipedRunner]) -> None:
    write_config(tmp_path, SETTINGS.format(extra="max_log_bytes = 4194304") + FLOOD)
    r = PipedRunner(tmp_path, "--log-format", "json")
    runners.append(r)
    wait_for(lambda: runs(tmp_path, "select count(*) from runs where task_id = 'flood' "
                                    "and status = 'success'") == [(1,)], what="the flood's end")
    wait_for(lambda: len(_lateness(tmp_path)) >= 4, what="four ticks")
    assert r.stop() == 0
    late = _lateness(tmp_path)
    assert max(late) < 1.5, late  # generous: a loaded 2-core machine (a blocked runner never gets here)
    events = r.events()
    echoed = [e["line"] for e in events if e["event"] == "output" and e["task_id"] == "flood"]
    dropped = sum(int(e["lines"]) for e in events if e["event"] == "output_dropped")  # type: ignore[call-overload]
    # exact: each line either echoed, in order, or counted as dropped
    assert len(echoed) + dropped == 100000
    numbers = [int(str(line).split()[1]) for line in echoed]
    assert numbers == sorted(numbers) and numbers[0] == 0
    [(log,)] = runs(tmp_path, "select log_path from runs where task_id = 'flood'")
    assert Path(log).read_text().count("\n") == 100000  # the log has every line


def test_a_reader_that_stops_reading_does_not_block_the_runner(tmp_path: Path, runners: list[PipedRunner]) -> None:
    """Nobody reads the runner's stdout while a job prints 100k lines: the
    pipe fills, the runner drops echoed lines (counted) rather than wait,
    and the tick task keeps firing on time."""
    write_config(tmp_path, SETTINGS.format(extra="max_log_bytes = 4194304") + FLOOD)
    r = PipedRunner(tmp_path, "--log-format", "json", read=False)
    runners.append(r)
    wait_for(lambda: runs(tmp_path, "select count(*) from runs where task_id = 'flood' "
                                    "and status = 'success'") == [(1,)], what="the flood's end")
    wait_for(lambda: len(_lateness(tmp_path)) >= 4, what="four ticks while stdout is full")
    late = _lateness(tmp_path)
    assert max(late) < 1.5, late  # (a runner blocked on its stdout would not fire at all)
    r.start_reading()
    wait_for(lambda: any(e["event"] == "output_dropped" for e in r.events()), what="the dropped count")
    assert r.stop() == 0
    events = r.events()
    echoed = [e for e in events if e["event"] == "output" and e["task_id"] == "flood"]
    dropped = sum(int(e["lines"]) for e in events if e["event"] == "output_dropped")  # type: ignore[call-overload]
    assert dropped > 0 and len(echoed) + dropped == 100000
    # no event was dropped: every tick's start and finish is there
    # (a tick claimed as the stop came never started: it has no start event)
    ticks = runs(tmp_path, "select id from runs where task_id = 'tick' and coalesce(error, '')"
                           " != 'runner stopped before it started'")
    starts = {e["run_id"] for e in events if e["event"] == "start" and e["task_id"] == "tick"}
    assert starts == {run_id for (run_id,) in ticks}


class _Sink:
    def __init__(self) -> None:
        self.got: list[tuple[str, int, str]] = []

    def lines(self, task_id: str, run_id: int, texts: list[str]) -> None:
        self.got += [(task_id, run_id, t) for t in texts]


def test_line_echo_cuts_lines_across_chunks() -> None:
    sink = _Sink()
    echo = LineEcho("t", 7, sink)
    for chunk in (b"ab", b"c\nd\r\n\n", "é".encode()[:1], "é".encode()[1:] + b"\n", b"y" * (MAX_LINE + 5),
                  b"z\nlast"):
        echo.write(chunk)
    assert [t for _, _, t in sink.got] == ["abc", "d", "", "é", "y" * MAX_LINE + TRUNCATED]
    echo.end()
    echo.end()
    assert sink.got[-1] == ("t", 7, "last") and len(sink.got) == 6


def test_line_echo_is_cheap_for_many_short_lines() -> None:
    sink = _Sink()
    echo = LineEcho("t", 1, sink)
    data = b"".join(b"line %d\n" % i for i in range(100000))
    began = time.process_time()
    for i in range(0, len(data), 65536):
        echo.write(data[i:i + 65536])
    assert len(sink.got) == 100000 and sink.got[-1][2] == "line 99999"
    assert time.process_time() - began < 1.0  # about 20 ms here; per line in Python would be ~10x
