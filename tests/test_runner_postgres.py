"""`jobctl run` and the commands on a PostgreSQL state: real processes, the
suite's real PostgreSQL, a fresh database per test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

from conftest import wait_for, write_config
from test_runner_e2e import RunnerProcess, env, jobctl, runners  # noqa: F401 (a fixture)


def pg_rows(url: str, sql: str) -> list[tuple]:  # type: ignore[type-arg]
    with psycopg.connect(url) as conn:
        return conn.execute(sql).fetchall()  # type: ignore[arg-type]


def test_runner_and_commands_on_a_postgres_state(tmp_path: Path, pg_url: str,
                                                 runners: list) -> None:  # type: ignore[type-arg]
    password = urlsplit(pg_url).password
    assert password
    # the URL in [jobctl] state is kept as written, not taken for a path
    write_config(tmp_path, f"""
[jobctl]
state = "{pg_url}"
kill_grace = "1s"
shutdown_grace = "1s"

[[tasks]]
id = "tick"
schedule = "every 1s"
argv = ["true"]

[[tasks]]
id = "once"
schedule = "@daily"
argv = ["sh", "-c", "echo hello from once"]
""")
    r = RunnerProcess(tmp_path)
    runners.append(r)
    starts = r.wait_event("start", count=3, task_id="tick")
    assert len({e["scheduled_for"] for e in starts}) == len(starts)
    assert not (tmp_path / "postgresql:").exists()  # no file made of the URL
    wait_for(lambda: pg_rows(pg_url, "select count(*) from jobctl.runs where task_id = 'tick'"
                                     " and status = 'success'")[0][0] >= 2, what="tick runs recorded")
    # one row per slot, none twice
    assert pg_rows(pg_url, "select count(*) = count(distinct scheduled_for) from jobctl.runs"
                           " where task_id = 'tick'") == [(True,)]

    # other processes read and steer it through the same state
    history = jobctl("history", "tick", "--json", cwd=tmp_path)
    assert history.returncode == 0, history.stderr
    assert {run["status"] for run in json.loads(history.stdout)} <= {"success", "running"}
    listed = json.loads(jobctl("list", "--json", cwd=tmp_path).stdout)
    assert [t["id"] for t in listed] == ["tick", "once"]
    status = jobctl("status", "--json", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["runner"]["pid"] == r.proc.pid

    ran = jobctl("run-now", "once", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert pg_rows(pg_url, "select status, trigger from jobctl.runs where task_id = 'once'") == [
        ("success", "manual")]
    logs = jobctl("logs", str(pg_rows(pg_url, "select id from jobctl.runs where task_id = 'once'")[0][0]),
                  cwd=tmp_path)
    assert "hello from once" in logs.stdout, logs.stderr

    assert jobctl("disable", "tick", cwd=tmp_path).returncode == 0
    r.wait_event("control", task_id="tick", message="disabled")
    assert jobctl("enable", "tick", cwd=tmp_path).returncode == 0
    r.wait_event("control", task_id="tick", message="enabled")

    # a second runner on the same database: 75, naming the first
    second = jobctl("run", "--log-format", "text", cwd=tmp_path)
    assert second.returncode == 75, second.stderr
    assert f"pid {r.proc.pid} on host {os.uname().nodename}" in second.stderr
    assert "Traceback" not in second.stderr

    assert r.stop() == 0
    assert pg_rows(pg_url, "select count(*) from jobctl.lease") == [(0,)]
    assert pg_rows(pg_url, "select count(*) from jobctl.runs where status = 'running'") == [(0,)]
    # the password is never printed
    everything = r.text() + "".join(p.stdout + p.stderr for p in (history, status, ran, logs, second))
    assert "postgresql://jobctl@127.0.0.1:" in r.text() or "postgresql://jobctl@127.0.0.1:" in second.stderr
    assert password not in everything


def test_state_url_from_flag_and_env_and_a_bad_one(tmp_path: Path, pg_url: str) -> None:
    write_config(tmp_path, '[[tasks]]\nid = "t"\nschedule = "@daily"\nargv = ["true"]\n')
    password = urlsplit(pg_url).password or ""
    ran = jobctl("run-now", "t", "--state", pg_url, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    by_env = subprocess.run([sys.executable, "-m", "jobctl", "history", "--json"], cwd=tmp_path,
                            env={**env(), "JOBCTL_STATE": pg_url}, capture_output=True, text=True,
                            timeout=30)
    assert by_env.returncode == 0, by_env.stderr
    assert [run["task_id"] for run in json.loads(by_env.stdout)] == ["t"]
    # an unreachable server: one line naming it, exit 2, no password, no traceback
    dead = f"postgresql://jobctl:{password}@127.0.0.1:1/nowhere"
    failed = jobctl("history", "--state", dead, cwd=tmp_path)
    assert failed.returncode == 2
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "error: state postgresql://jobctl@127.0.0.1:1/nowhere: cannot connect to PostgreSQL "
        "database nowhere on 127.0.0.1:1: "), failed.stderr
    assert password not in failed.stderr


_PROBE = """
import atexit, sys
atexit.register(lambda: sys.__stderr__.write("PSYCOPG=%s\\n" % ("psycopg" in sys.modules)))
sys.argv = ["jobctl", *sys.argv[1:]]
from jobctl.__main__ import main
main()
"""


def test_commands_on_a_sqlite_state_never_import_the_postgres_driver(tmp_path: Path) -> None:
    write_config(tmp_path, '[jobctl]\nstate = "state.db"\n\n[[tasks]]\nid = "t"\n'
                           'schedule = "@daily"\nargv = ["true"]\n')
    for args in (["run-now", "t"], ["list"], ["status"], ["history"], ["disable", "t"]):
        done = subprocess.run([sys.executable, "-c", _PROBE, *args], cwd=tmp_path, env=env(),
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        assert "PSYCOPG=False" in done.stderr, (args, done.stderr)
    assert (tmp_path / "state.db").exists()
