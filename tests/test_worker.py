"""Plugin callables run in a worker process (`python -m jobctl.worker`):
real processes, real state files, real configs with manifest plugins."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from conftest import FakeClock, wait_for, write_config
from jobctl import lifecycle, procinfo
from jobctl.model import RunStatus, ScheduleSet, Settings, Task, Trigger
from jobctl.resolve import resolve
from jobctl.runner import Event, Runner
from jobctl.store import RunRecord, SqliteStore, open_store
from jobctl.timing import parse_schedule

UTC = timezone.utc
T0 = datetime(2026, 6, 15, 12, 0, 30, tzinfo=UTC)
SETTINGS = Settings(timezone="UTC", kill_grace=0.5)

PLUGIN_CODE = '''
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

from jobctl.pluginapi import HostServiceError


def hello(ctx):
    print("payload", json.dumps(ctx.payload, sort_keys=True))
    slot = ctx.scheduled_for.isoformat() if ctx.scheduled_for else None
    print("ctx", ctx.task_id, ctx.key, ctx.plugin_id, ctx.trigger, ctx.attempt, slot)
    print("pid", os.getpid())
    ctx.logger.info("logged %s", ctx.key)
    print("env", ",".join(sorted(k for k in os.environ if k.startswith("JOBCTL_"))))


def boom(ctx):
    print("before the error")
    raise ValueError("boom from the plugin")


def leave(ctx):
    print("leaving with 3")
    sys.exit(3)


def hang(ctx):
    child = subprocess.Popen(["sleep", "60"])
    with open(ctx.payload["pidfile"], "w") as f:
        f.write(f"{child.pid}\\n")
    time.sleep(60)


def crash(ctx):
    print("pid", os.getpid(), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def services(ctx):
    for name, *args in ctx.payload["calls"]:
        try:
            result = getattr(ctx.jobs, name)(*args)
        except HostServiceError as e:
            print("refused", name, e)
            continue
        if isinstance(result, list):
            result = [dataclasses.asdict(view) for view in result]
        print("ok", name, json.dumps(result, sort_keys=True))
'''


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "plugins" / "demo"
    folder.mkdir(parents=True)
    (folder / "demo_jobs.py").write_text(PLUGIN_CODE)
    return folder


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    s = open_store(tmp_path / "state.db", create=True)
    assert s is not None
    return s


def plugin_task(plugin_dir: Path, key: str, function: str, **fields: Any) -> Task:
    return Task.build(**{
        "id": f"demo:{key}", "name": key, "schedule": parse_schedule("0 * * * *"),
        "timezone": "UTC", "owner": "plugin:demo", "group": "demo",
        "callable": f"demo_jobs:{function}", "plugin_dir": str(plugin_dir), **fields,
    })


def run_now(store: SqliteStore, task: Task, settings: Settings = SETTINGS,
            config_path: Path | None = None) -> RunRecord:
    return lifecycle.run_now(store, task, settings, now=lambda: datetime.now(UTC),
                             env=dict(os.environ), echo=None, force=False,
                             stop_requested=lambda: False, config_path=config_path)


def log_of(record: RunRecord) -> str:
    assert record.log_path is not None
    return Path(record.log_path).read_text()


# -- running a callable ----------------------------------------------------------


def test_success_sees_payload_and_ctx_and_its_output_lands_in_the_log(
        store: SqliteStore, plugin_dir: Path) -> None:
    payload = {"top": 5, "to": ["ops@example.com"], "nested": {"a": [1, 2]},
               "since": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)}
    task = plugin_task(plugin_dir, "hello", "hello", payload=payload,
                       env={"JOBCTL_CALLABLE": "spoof:spoof"})
    record = run_now(store, task)
    log = log_of(record)
    assert record.status is RunStatus.SUCCESS and record.exit_code == 0, log
    lines = log.splitlines()
    assert lines[0] == ('payload {"nested": {"a": [1, 2]}, "since": "2026-01-02T03:04:05+00:00", '
                        '"to": ["ops@example.com"], "top": 5}')
    assert lines[1] == "ctx demo:hello hello demo manual 1 None"  # manual: no slot
    worker_pid = int(lines[2].split()[1])
    assert worker_pid == record.pid and worker_pid != os.getpid()
    assert lines[3].endswith(" INFO demo:hello: logged hello")
    # the worker's own variables are gone before plugin code runs
    assert lines[4] == ("env JOBCTL_ATTEMPT,JOBCTL_RUN_ID,JOBCTL_SCHEDULED_FOR,"
                        "JOBCTL_STATE_ID,JOBCTL_TASK_ID,JOBCTL_TRIGGER")


def test_an_exception_fails_the_run_with_its_traceback_in_the_log(
        store: SqliteStore, plugin_dir: Path) -> None:
    record = run_now(store, plugin_task(plugin_dir, "boom", "boom"))
    log = log_of(record)
    assert record.status is RunStatus.FAILED and record.exit_code == 1
    assert record.error == "exit code 1"
    assert log.startswith("before the error\nTraceback (most recent call last):\n")
    assert 'demo_jobs.py", line' in log and "in boom" in log
    assert log.rstrip().endswith("ValueError: boom from the plugin")
    assert "worker.py" not in log  # the traceback starts in the plugin's code


def test_sys_exit_in_the_plugin_is_the_exit_code(store: SqliteStore, plugin_dir: Path) -> None:
    record = run_now(store, plugin_task(plugin_dir, "leave", "leave"))
    assert (record.status, record.exit_code, record.error) == (RunStatus.FAILED, 3, "exit code 3")
    assert log_of(record) == "leaving with 3\n"


def test_a_hang_times_out_and_the_workers_group_is_killed(
        store: SqliteStore, plugin_dir: Path, tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    task = plugin_task(plugin_dir, "hang", "hang", timeout=2.0,
                       payload={"pidfile": str(pidfile)})
    record = run_now(store, task)
    assert record.status is RunStatus.TIMEOUT and record.error == "timed out after 2s"
    grandchild = int(pidfile.read_text())
    assert record.pid is not None
    wait_for(lambda: procinfo.process_start(grandchild) is None, timeout=5)
    wait_for(lambda: not procinfo.group_alive(record.pid or 0), timeout=5)


@pytest.mark.parametrize(("spec", "message"), [
    ("nosuchmod:run", "cannot import 'nosuchmod:run': No module named 'nosuchmod'"),
    ("demo_jobs:nope", "cannot import 'demo_jobs:nope': module 'demo_jobs' has no attribute 'nope'"),
    ("broken:run", "cannot import 'broken:run': syntax error in "),
    ("raises:run", "cannot import 'raises:run': RuntimeError: no config for me"),
    ("demo_jobs", "cannot import 'demo_jobs': expected 'module:function'"),
])
def test_an_import_failure_fails_the_run_with_one_clear_line(
        store: SqliteStore, plugin_dir: Path, spec: str, message: str) -> None:
    (plugin_dir / "broken.py").write_text("def run(ctx)\n    pass\n")
    (plugin_dir / "raises.py").write_text("raise RuntimeError('no config for me')\n")
    task = plugin_task(plugin_dir, "imp", "x", callable=spec)
    record = run_now(store, task)
    log = log_of(record)
    assert record.status is RunStatus.FAILED and record.exit_code == 2
    assert log.startswith(message) and log.count("\n") == 1, log


def test_a_crashing_callable_ends_only_its_worker(store: SqliteStore, plugin_dir: Path) -> None:
    record = run_now(store, plugin_task(plugin_dir, "crash", "crash"))
    assert record.status is RunStatus.FAILED and record.error == "killed by SIGKILL"
    assert int(log_of(record).split()[1]) not in (os.getpid(), os.getppid())
    # this process carries on, and the next run works
    assert run_now(store, plugin_task(plugin_dir, "hello", "hello")).status is RunStatus.SUCCESS


def test_launch_for_runs_a_callable_in_the_worker_and_leaves_commands_alone(
        plugin_dir: Path, tmp_path: Path) -> None:
    task = plugin_task(plugin_dir, "hello", "hello", payload={"n": 1}, plugin_trusted=True,
                       host_services=("jobs.batch_get", "jobs.run"),
                       env={"JOBCTL_STATE": "/spoof", "OTHER": "kept"})
    launch = lifecycle.launch_for(
        task, SETTINGS, run_id=7, log_path=tmp_path / "7.log", scheduled_for=T0,
        trigger=Trigger.SCHEDULE, base_env={"PATH": "/bin", "JOBCTL_CONFIG": "/inherited"},
        started=T0, state_path=tmp_path / "state.db", config_path=None)
    assert launch.argv == [sys.executable, "-P", "-m", "jobctl.worker"]
    assert launch.env == {
        "PATH": "/bin", "OTHER": "kept",
        "JOBCTL_CALLABLE": "demo_jobs:hello", "JOBCTL_PLUGIN_ID": "demo",
        "JOBCTL_PLUGIN_DIR": str(plugin_dir), "JOBCTL_PAYLOAD": '{"n":1}',
        "JOBCTL_PLUGIN_TRUSTED": "1", "JOBCTL_HOST_SERVICES": "jobs.batch_get,jobs.run",
        "JOBCTL_STATE": str(tmp_path / "state.db"), "JOBCTL_CONFIG": "",
        "JOBCTL_TASK_ID": "demo:hello", "JOBCTL_RUN_ID": "7",
        "JOBCTL_SCHEDULED_FOR": T0.isoformat(), "JOBCTL_TRIGGER": "schedule",
        "JOBCTL_ATTEMPT": "1",
    }
    command = Task.build(id="c", name="c", schedule=parse_schedule("@daily"), timezone="UTC",
                         command="echo hi")
    launch = lifecycle.launch_for(
        command, SETTINGS, run_id=8, log_path=tmp_path / "8.log", scheduled_for=T0,
        trigger=Trigger.SCHEDULE, base_env={}, started=T0, state_path=tmp_path / "state.db")
    assert launch.argv == ["/bin/sh", "-c", "echo hi"]
    assert "JOBCTL_CALLABLE" not in launch.env and "JOBCTL_STATE" not in launch.env


def test_an_entry_point_plugins_run_is_called_in_the_worker(
        tmp_path: Path, store: SqliteStore) -> None:
    site = tmp_path / "site"
    (site / "ep_wk").mkdir(parents=True)
    (site / "ep_wk" / "__init__.py").write_text(textwrap.dedent("""
        import os

        class Plugin:
            name = "wk"

            def run(self, ctx):
                print(f"{ctx.key} for {ctx.payload['who']} in {os.getpid()}")
    """))
    (site / "ep_wk-0.1.dist-info").mkdir()
    (site / "ep_wk-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: ep-wk\nVersion: 0.1\n")
    (site / "ep_wk-0.1.dist-info" / "entry_points.txt").write_text(
        "[jobctl.plugins]\nwk = ep_wk:Plugin\n")
    task = Task.build(id="wk:greet", name="greet", schedule=parse_schedule("@hourly"),
                      timezone="UTC", owner="plugin:wk", callable="entry-point:wk",
                      payload={"who": "world"}, env={"PYTHONPATH": str(site)})
    record = run_now(store, task)
    assert record.status is RunStatus.SUCCESS, log_of(record)
    assert log_of(record) == f"greet for world in {record.pid}\n"
    missing = run_now(store, dataclasses.replace(task, id="wk:gone", callable="entry-point:gone"))
    assert missing.exit_code == 2 and log_of(missing) == (
        "cannot import 'entry-point:gone': LookupError: no installed plugin entry point 'gone' "
        "in group jobctl.plugins\n")


# -- real configs with a manifest plugin --------------------------------------------


CONFIG = """
[jobctl]
state = "state.db"
plugins = ["plugins/*/plugin.toml"]

[[tasks]]
id = "own"
schedule = "@daily"
command = "true"
"""


def write_plugins(tmp_path: Path, *, trusted: bool = False, services: Sequence[str] = (),
                  calls: Sequence[Sequence[object]] = (), schedule: str = "0 * * * *") -> Path:
    """A config with plugin 'demo' (jobs 'hosts', running demo_jobs:services
    with `calls` as its payload, and 'other', a command) and plugin 'rival'."""
    config = write_config(tmp_path, CONFIG)
    demo = tmp_path / "plugins" / "demo"
    demo.mkdir(parents=True, exist_ok=True)
    if not (demo / "demo_jobs.py").exists():
        (demo / "demo_jobs.py").write_text(PLUGIN_CODE)
    (demo / "plugin.toml").write_text(textwrap.dedent(f"""
        [plugin]
        id = "demo"
        trusted = {json.dumps(trusted)}
        host_services = {json.dumps(list(services))}

        [[jobs]]
        key = "hosts"
        display_name = "Host services"
        schedule = "{schedule}"
        callable = "demo_jobs:services"
        payload = {{ calls = {json.dumps([list(c) for c in calls])} }}

        [[jobs]]
        key = "other"
        display_name = "Other job"
        schedule = "30 2 * * *"
        command = "echo ran-by-plugin"
    """))
    rival = tmp_path / "plugins" / "rival"
    rival.mkdir(parents=True, exist_ok=True)
    (rival / "plugin.toml").write_text(textwrap.dedent("""
        [plugin]
        id = "rival"

        [[jobs]]
        key = "x"
        schedule = "@daily"
        command = "true"
    """))
    return config


def run_hosts(tmp_path: Path, store: SqliteStore, **manifest: Any) -> tuple[RunRecord, list[str]]:
    config = write_plugins(tmp_path, **manifest)
    schedule_set = resolve(config, system_zone="UTC", now=datetime.now(UTC))
    assert all(report.loaded for report in schedule_set.plugins), schedule_set.plugins
    task = schedule_set.get("demo:hosts")
    assert task is not None
    record = run_now(store, task, schedule_set.settings, config_path=config)
    log = log_of(record)
    assert record.status is RunStatus.SUCCESS, log
    return record, log.splitlines()


def test_batch_get_views_the_plugins_own_jobs(tmp_path: Path, store: SqliteStore) -> None:
    store.set_enabled(["demo:other"], False)
    _record, lines = run_hosts(tmp_path, store, services=["jobs.batch_get"],
                               calls=[["batch_get", ["demo:hosts", "demo:other"]]])
    assert lines[0].startswith("ok batch_get ")
    hosts, other = json.loads(lines[0][len("ok batch_get "):])
    next_run = hosts.pop("next_run")
    assert datetime.fromisoformat(next_run) - datetime.now(UTC) <= timedelta(hours=1)
    assert hosts == {"id": "demo:hosts", "name": "Host services", "group": "demo",
                     "status": "running", "enabled": True, "last_run_status": None}
    assert other == {"id": "demo:other", "name": "Other job", "group": "demo", "status": None,
                     "enabled": False, "next_run": None, "last_run_status": None}


def test_last_run_status_is_the_latest_ended_run(tmp_path: Path, store: SqliteStore) -> None:
    calls = [["batch_get", ["demo:hosts"]]]
    run_hosts(tmp_path, store, services=["jobs.batch_get"], calls=calls)
    _record, lines = run_hosts(tmp_path, store, services=["jobs.batch_get"], calls=calls)
    (view,) = json.loads(lines[0][len("ok batch_get "):])
    assert (view["status"], view["last_run_status"]) == ("running", "success")


def test_other_plugins_and_unknown_ids_are_refused(tmp_path: Path, store: SqliteStore) -> None:
    _record, lines = run_hosts(tmp_path, store, services=["jobs.batch_get"], calls=[
        ["batch_get", ["demo:hosts", "rival:x"]],
        ["batch_get", ["own"]],
        ["batch_get", ["demo:nope"]],
    ])
    assert lines == [
        ("refused batch_get plugin 'demo' may only use its own jobs (ids starting 'demo:'); "
         "'rival:x' is not one of them"),
        ("refused batch_get plugin 'demo' may only use its own jobs (ids starting 'demo:'); "
         "'own' is not one of them"),
        "refused batch_get plugin 'demo' has no job 'demo:nope'",
    ]


def test_undeclared_services_are_refused(tmp_path: Path, store: SqliteStore) -> None:
    _record, lines = run_hosts(tmp_path, store, trusted=True, services=["jobs.batch_get"], calls=[
        ["set_status", "demo:other", "disabled"],
        ["run", "demo:other"],
    ])
    assert lines == [
        ("refused set_status plugin 'demo' did not declare host service 'jobs.set_status' "
         "(list it in host_services in its manifest)"),
        ("refused run plugin 'demo' did not declare host service 'jobs.run' "
         "(list it in host_services in its manifest)"),
    ]
    assert store.overrides() == {}


def test_untrusted_plugins_cannot_run_or_set_status(tmp_path: Path, store: SqliteStore) -> None:
    _record, lines = run_hosts(
        tmp_path, store, services=["jobs.batch_get", "jobs.run", "jobs.set_status"],
        calls=[["set_status", "demo:other", "disabled"], ["run", "demo:other"]])
    assert lines == [
        ("refused set_status plugin 'demo' is not trusted: host service 'jobs.set_status' "
         "needs trusted = true in its manifest"),
        ("refused run plugin 'demo' is not trusted: host service 'jobs.run' "
         "needs trusted = true in its manifest"),
    ]
    assert store.overrides() == {}
    assert store.history("demo:other") == []


def test_trusted_set_status_changes_the_override(tmp_path: Path, store: SqliteStore) -> None:
    before = store.control_version()
    _record, lines = run_hosts(tmp_path, store, trusted=True,
                               services=["jobs.batch_get", "jobs.set_status"], calls=[
        ["set_status", "demo:other", "disabled"],
        ["batch_get", ["demo:other"]],
        ["set_status", "demo:other", "paused"],
        ["set_status", "rival:x", "disabled"],
    ])
    assert lines[0].endswith(" INFO demo:hosts: jobs.set_status: demo:other is now disabled")
    assert lines[1] == "ok set_status null"
    assert json.loads(lines[2][len("ok batch_get "):])[0]["enabled"] is False
    assert lines[3:] == [
        ("refused set_status plugin 'demo' cannot set status 'paused' on 'demo:other': "
         "expected 'enabled' or 'disabled'"),
        ("refused set_status plugin 'demo' may only use its own jobs (ids starting 'demo:'); "
         "'rival:x' is not one of them"),
    ]
    assert store.overrides() == {"demo:other": False}
    assert store.control_version() > before  # a live runner notices within a second


def test_trusted_run_starts_a_recorded_manual_run(tmp_path: Path, store: SqliteStore) -> None:
    record, lines = run_hosts(tmp_path, store, trusted=True, services=["jobs.run"],
                              calls=[["run", "demo:other"]])
    assert "jobs.run: started jobctl run-now demo:other (pid " in lines[0]
    pid = int(lines[1].split()[-1])
    assert pid != record.pid

    def ran() -> bool:
        runs = store.history("demo:other")
        return bool(runs) and runs[0].status is not RunStatus.RUNNING

    wait_for(ran, timeout=20)
    (run,) = store.history("demo:other")
    assert run.status is RunStatus.SUCCESS and run.trigger is Trigger.MANUAL
    assert log_of(run) == "ran-by-plugin\n"


def test_without_a_readable_config_jobs_come_from_the_state_file(
        tmp_path: Path, store: SqliteStore, plugin_dir: Path) -> None:
    store.set_enabled(["demo:seen"], False)
    calls = [["batch_get", ["demo:me", "demo:seen"]], ["batch_get", ["demo:never"]],
             ["run", "demo:seen"]]
    task = plugin_task(plugin_dir, "me", "services", payload={"calls": calls},
                       plugin_trusted=True, host_services=("jobs.batch_get", "jobs.run"))
    (tmp_path / "bad.toml").write_text("[[tasks]\n")
    record = run_now(store, task, config_path=tmp_path / "bad.toml")
    lines = log_of(record).splitlines()
    assert record.status is RunStatus.SUCCESS, lines
    assert " WARNING demo:me: jobctl: cannot read the config " in lines[0]
    assert "job details come from the state file only" in lines[0]
    me, seen = json.loads(lines[1][len("ok batch_get "):])
    assert me == {"id": "demo:me", "name": "demo:me", "group": None, "status": "running",
                  "enabled": None, "next_run": None, "last_run_status": None}
    assert seen["enabled"] is False and seen["name"] == "demo:seen"
    assert lines[2] == "refused batch_get plugin 'demo' has no job 'demo:never'"
    assert lines[3] == (f"refused run plugin 'demo' cannot run 'demo:seen': the config "
                        f"{tmp_path / 'bad.toml'} could not be read or does not declare it")
    # no config path at all: jobs.run says what it lacks
    record = run_now(store, task)
    lines = log_of(record).splitlines()
    assert lines[-1] == ("refused run plugin 'demo' cannot run 'demo:seen': this run was started "
                         "without a config path (jobctl run-now does not pass one yet), "
                         "and jobs.run needs it")


# -- the runner ----------------------------------------------------------------------


def test_the_runner_runs_a_callable_on_schedule(tmp_path: Path) -> None:
    config = write_plugins(tmp_path, services=["jobs.batch_get"],
                           calls=[["batch_get", ["demo:hosts"]]], schedule="*/5 * * * *")
    clock = FakeClock(T0)
    schedule_set: ScheduleSet = resolve(config, system_zone="UTC", now=T0)
    store = open_store(tmp_path / "state.db", create=True)
    assert store is not None
    events: list[Event] = []
    runner = Runner(schedule_set, store, clock=clock, report=events.append, env=dict(os.environ))
    runner.start()
    fire = datetime(2026, 6, 15, 12, 5, tzinfo=UTC)
    clock.set(fire)
    runner.tick(fire)
    deadline = time.monotonic() + 10
    while runner.active and time.monotonic() < deadline:
        runner.tick(fire)
        time.sleep(0.01)
    runner.finish()
    (run,) = store.history("demo:hosts")
    log = log_of(run)
    assert run.status is RunStatus.SUCCESS and run.trigger is Trigger.SCHEDULE, log
    assert run.scheduled_for == fire and run.pid not in (None, os.getpid())
    (view,) = json.loads(log[len("ok batch_get "):])
    # the runner passed the config: the view comes from the manifest
    assert (view["name"], view["group"], view["status"]) == ("Host services", "demo", "running")
    assert view["next_run"] is not None


def test_a_postgres_state_reaches_the_worker_without_its_password(
        plugin_dir: Path, tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import logging
    from urllib.parse import urlsplit

    from jobctl import worker

    password = urlsplit(pg_url).password
    assert password
    store = open_store(pg_url, create=True)
    assert store is not None
    try:
        store.set_enabled(["demo:hello"], False)
        task = plugin_task(plugin_dir, "hello", "hello", host_services=("jobs.batch_get",))
        launch = lifecycle.launch_for(
            task, SETTINGS, run_id=7, log_path=tmp_path / "7.log", scheduled_for=T0,
            trigger=Trigger.SCHEDULE, base_env={"PATH": "/bin"}, started=T0,
            state_path=store.path, config_path=None)
    finally:
        store.close()
    bare = launch.env["JOBCTL_STATE"]
    assert bare.startswith("postgresql://jobctl@127.0.0.1:") and bare == str(store.path)
    assert password not in " ".join([*launch.argv, *launch.env.values()])
    # the worker keeps it a URL, and finds the password where libpq looks
    monkeypatch.setenv("PGPASSWORD", password)
    jobs = worker.HostJobs(plugin_id="demo", task_id="demo:hello", trusted=False,
                           services=["jobs.batch_get"], state_path=worker._state_or_none(bare),
                           config_path=None, logger=logging.getLogger("t"), now=lambda: T0)
    try:
        (view,) = jobs.batch_get(["demo:hello"])
        assert view.enabled is False
    finally:
        jobs.close()
