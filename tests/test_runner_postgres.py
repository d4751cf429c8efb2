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
from test_nodes import nodes  # noqa: F401 (a fixture)
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


# -- run logs in the database ---------------------------------------------------------

LOGS_CONFIG = """
[jobctl]
state = "{url}"
kill_grace = "1s"
shutdown_grace = "1s"
max_log_bytes = 1000

[[tasks]]
id = "talk"
schedule = "every 1s"
argv = ["sh", "-c", "if [ ! -e started ]; then touch started; echo first; while [ ! -e go ]; do sleep 0.05; done; echo second; else echo again; fi"]

[[tasks]]
id = "big"
schedule = "every 1s"
argv = ["sh", "-c", "if [ ! -e big-started ]; then touch big-started; head -c 3000 /dev/zero | tr '\\\\0' a; while [ ! -e go2 ]; do sleep 0.05; done; head -c 2000 /dev/zero | tr '\\\\0' b; fi"]
"""


def test_run_logs_are_read_from_the_database_by_another_machine(
        tmp_path: Path, pg_url: str, nodes: list) -> None:  # type: ignore[type-arg]
    from test_nodes import NodeRunner

    write_config(tmp_path, LOGS_CONFIG.format(url=pg_url))
    a = NodeRunner(tmp_path, "a")
    nodes.append(a)
    # "another machine": no home, no data dir in common with node a
    elsewhere = {**env(), "HOME": str(tmp_path / "other-home"),
                 "XDG_DATA_HOME": str(tmp_path / "other-data")}

    def remote(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "jobctl", *args], cwd=tmp_path,
                              env=elsewhere, capture_output=True, text=True, timeout=60)

    [(talk,)] = wait_for(lambda: pg_rows(pg_url, "select id from jobctl.runs where task_id ="
                                                 " 'talk' and status = 'running'"), what="talk")
    follow_out = (tmp_path / "follow.out").open("w+")
    follower = subprocess.Popen([sys.executable, "-m", "jobctl", "logs", str(talk), "--follow"],
                                cwd=tmp_path, env=elsewhere, stdout=follow_out,
                                stderr=subprocess.PIPE, text=True)
    try:
        # the running run's output arrives while it runs (copied about once a second)
        wait_for(lambda: (tmp_path / "follow.out").read_text() == "first\n", timeout=30,
                 what="the running log followed from elsewhere")
        assert follower.poll() is None
        (tmp_path / "go").touch()
        assert follower.wait(60) == 0, follower.stderr.read() if follower.stderr else ""
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
    assert (tmp_path / "follow.out").read_text() == "first\nsecond\n"
    shown = remote("logs", str(talk))
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == "first\nsecond\n"
    assert not list((tmp_path / "other-data").rglob("*.log"))  # nothing local over there

    # the bound: while it runs, at most the head the node's file keeps; at
    # the end, head + marker + tail, as in the node's own file
    [(big,)] = wait_for(lambda: pg_rows(pg_url, "select id from jobctl.runs where task_id ="
                                                " 'big' and status = 'running'"), what="big")
    wait_for(lambda: remote("logs", str(big)).stdout == "a" * 500, timeout=30,
             what="the head of big's log")
    [(stored,)] = pg_rows(pg_url, f"select sum(length(data)) from jobctl.run_logs where run_id = {big}")
    assert stored == 500
    (tmp_path / "go2").touch()
    wait_for(lambda: pg_rows(pg_url, f"select 1 from jobctl.run_logs where run_id = {big}"
                                     " and final"), timeout=30, what="big's final log")
    final = remote("logs", str(big))
    assert final.returncode == 0, final.stderr
    marker = "\n[jobctl: 4000 bytes cut from the middle of this log]\n"
    assert final.stdout == "a" * 500 + marker + "b" * 500
    # node a's own file (its data dir is the suite's)
    [own] = list(Path(os.environ["XDG_DATA_HOME"]).rglob(f"{big}.log"))
    assert own.read_text() == final.stdout

    assert a.stop() == 0
    assert pg_rows(pg_url, "select count(*) from jobctl.run_logs l where not exists"
                           " (select 1 from jobctl.runs r where r.id = l.run_id)") == [(0,)]
    # every ended run's log is final in the database
    assert pg_rows(pg_url, "select count(*) from jobctl.runs r where status = 'success' and"
                           " not exists (select 1 from jobctl.run_logs l where l.run_id = r.id"
                           " and l.final)") == [(0,)]


def test_stored_logs_are_pruned_with_their_runs(pg_url: str) -> None:
    from datetime import datetime, timezone

    from jobctl.model import Concurrency, RunStatus, Trigger
    from jobctl.store import Owner, open_store

    store = open_store(pg_url, create=True)
    assert store is not None and store.stores_logs
    try:
        owner = Owner(os.getpid(), "h", node="a")
        at = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)
        ids = []
        for minute in range(3):
            claim = store.claim(task_id="t", trigger=Trigger.SCHEDULE,
                                scheduled_for=at.replace(minute=minute),
                                concurrency=Concurrency.ALLOW, force=False, owner=owner, now=at)
            assert claim.run_id is not None
            ids.append(claim.run_id)
            store.append_logs([(claim.run_id, 0, b"hel"), (claim.run_id, 3, b"lo")])
            store.append_logs([(claim.run_id, 3, b"lo")])  # a retry: kept once
            assert store.read_log(claim.run_id) == (b"hello", False)
            assert store.read_log(claim.run_id, 2) == (b"llo", False)
            store.finish(claim.run_id, RunStatus.SUCCESS, at, exit_code=0)
            store.put_log(claim.run_id, b"hello, world\n")
            assert store.read_log(claim.run_id) == (b"hello, world\n", True)
        assert store.read_log(999) is None
        store.prune("t", 1)
        assert [store.read_log(i) for i in ids[:2]] == [None, None]
        assert store.read_log(ids[2]) == (b"hello, world\n", True)
        assert pg_rows(pg_url, "select run_id from jobctl.run_logs") == [(ids[2],)]
    finally:
        store.close()
