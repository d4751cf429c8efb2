"""The audit trail: each control action's row in the state, through the real
CLI (and a real `jobctl run` process for the runner's start, reloads and
stop), read back with `jobctl events`."""

from __future__ import annotations

import json
import logging
import os
import pwd
import signal
import socket
import stat
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import NOW, wait_for, write_config

from jobctl.store import open_store

CONFIG = """
[jobctl]
timezone = "UTC"
state = "state.db"

[[tasks]]
id = "hello"
schedule = "0 3 * * *"
command = "echo hi"

[[tasks]]
id = "other"
schedule = "@daily"
command = "true"
"""
ME = pwd.getpwuid(os.getuid()).pw_name
HOST = socket.gethostname()


def _events(cli, *args: str) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    result = cli("events", "--json", "--limit", "1000", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def _brief(events: list[dict[str, object]]) -> list[tuple[object, ...]]:
    return [(e["action"], e["task_id"], e["outcome"]) for e in events]


def test_enable_disable_rows_say_when_who_and_what(cli, tmp_path: Path) -> None:
    write_config(tmp_path, CONFIG)
    assert cli("disable", "hello", "other").exit_code == 0
    assert cli("enable", "hello", env={"JOBCTL_NODE": "web1"}).exit_code == 0
    events = _events(cli)
    assert _brief(events) == [("enable", "hello", "ok"), ("disable", "other", "ok"),
                              ("disable", "hello", "ok")]
    newest = events[0]
    assert newest["at"] == NOW.isoformat(timespec="microseconds")
    assert (newest["uid"], newest["user"], newest["host"], newest["node"]) == (
        os.getuid(), ME, HOST, "web1")
    assert events[1]["node"] == HOST  # no node name given: the host's
    assert newest["detail"] == "enabled"
    assert set(newest) == {"id", "at", "action", "task_id", "outcome", "detail", "uid", "user",
                           "host", "node"}


def test_run_now_ok_and_refused(cli, tmp_path: Path) -> None:
    write_config(tmp_path, CONFIG)
    result = cli("run-now", "hello", env={"PATH": os.environ["PATH"]})
    assert result.exit_code == 0, result.output
    # a run of `hello` still going (this test's own live process owns it)
    from jobctl.liveness import self_owner
    from jobctl.model import Concurrency, Trigger

    store = open_store(tmp_path / "state.db", create=False)
    assert store is not None
    try:
        store.claim(task_id="hello", trigger=Trigger.MANUAL, scheduled_for=None,
                    concurrency=Concurrency.FORBID, force=False, owner=self_owner(), now=NOW)
    finally:
        store.close()
    refused = cli("run-now", "hello", env={"PATH": os.environ["PATH"]})
    assert refused.exit_code == 75
    events = _events(cli, "--task", "hello")
    assert _brief(events) == [("run-now", "hello", "refused"), ("run-now", "hello", "ok")]
    assert events[1]["detail"] == "run #1: success"
    assert "already running" in str(events[0]["detail"])


def test_config_edits_are_recorded_ok_and_failed(cli, tmp_path: Path) -> None:
    config = tmp_path / "jobctl.toml"
    assert cli("init", str(config)).exit_code == 0
    # the starter config keeps its state in the user data dir: point it here
    config.write_text(config.read_text().replace("[jobctl]", '[jobctl]\nstate = "state.db"', 1)
                      if "[jobctl]" in config.read_text()
                      else '[jobctl]\nstate = "state.db"\n\n' + config.read_text())
    assert cli("add", "backup", "--schedule", "@daily", "--", "true").exit_code == 0
    assert cli("set", "backup", "timeout=1h").exit_code == 0
    bad = cli("set", "backup", "schedule=0 25 * * *")
    assert bad.exit_code == 2
    assert cli("remove", "backup").exit_code == 0
    before = config.read_bytes()
    assert cli("add", "x", "--schedule", "@nope", "--command", "true").exit_code == 2
    assert config.read_bytes() == before
    events = _events(cli)
    assert _brief(events) == [("add", "x", "failed"), ("remove", "backup", "ok"),
                              ("set", "backup", "failed"), ("set", "backup", "ok"),
                              ("add", "backup", "ok")]
    assert events[1]["detail"] == f"removed backup from {config}"
    assert events[3]["detail"] == f"updated backup in {config}: timeout"
    assert str(events[2]["detail"]).startswith("1 error in config: ")
    assert "bad hour field '25'" in str(events[2]["detail"])
    assert "unknown shortcut '@nope'" in str(events[0]["detail"])
    # `init` went to the state the default config names (the user data dir)
    default_state = Path(os.environ["XDG_DATA_HOME"]) / "jobctl" / "state.db"
    store = open_store(default_state, create=False)
    assert store is not None
    try:
        assert [(e.action, e.outcome, e.detail) for e in store.events()] == [
            ("init", "ok", f"wrote a starter config to {config}")]
    finally:
        store.close()


def test_edit_is_recorded(cli, tmp_path: Path) -> None:
    config = write_config(tmp_path, CONFIG)
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/0 3 \\* \\* \\*/0 4 * * */' \"$1\"\n")
    editor.chmod(0o755)
    env = {"EDITOR": str(editor), "PATH": os.environ["PATH"]}
    assert cli("edit", env=env).exit_code == 0, cli
    assert "0 4 * * *" in config.read_text()
    breaker = tmp_path / "breaker.sh"
    breaker.write_text("#!/bin/sh\nsed -i 's/0 4 \\* \\* \\*/0 99 * * */' \"$1\"\n")
    breaker.chmod(0o755)
    assert cli("edit", env={**env, "EDITOR": str(breaker)}).exit_code == 2
    events = _events(cli)
    assert _brief(events) == [("edit", None, "failed"), ("edit", None, "ok")]
    assert events[1]["detail"] == f"saved {config} (2 tasks)"


def test_an_edit_whose_audit_cannot_be_written_still_happens(cli, tmp_path: Path) -> None:
    # a state path under a regular file: the trail cannot be opened
    config = write_config(tmp_path, CONFIG.replace('state = "state.db"',
                                                   'state = "jobctl.toml/state.db"'))
    result = cli("set", "hello", "timeout=5m")
    assert result.exit_code == 0, result.output
    assert 'timeout = "5m"' in config.read_text()
    [line] = result.stderr.splitlines()
    assert line.startswith("warning: the audit trail could not be written to ")
    assert "jobctl.toml is a file, not a folder" in line


def test_a_failed_edit_does_not_create_a_state(cli, tmp_path: Path) -> None:
    write_config(tmp_path, CONFIG)
    assert cli("set", "nope", "timeout=1h").exit_code == 2
    assert not (tmp_path / "state.db").exists()


def test_events_filters_and_text(cli, clock, tmp_path: Path) -> None:
    write_config(tmp_path, CONFIG)
    cli("disable", "hello")
    clock.advance(3600)
    cli("enable", "hello")
    cli("disable", "other")
    assert _brief(_events(cli, "--since", "30m")) == [("disable", "other", "ok"),
                                                      ("enable", "hello", "ok")]
    assert _brief(_events(cli, "--since", "2026-06-15T12:30:00Z")) == [
        ("disable", "other", "ok"), ("enable", "hello", "ok")]
    assert len(_events(cli, "--since", "2h")) == 3
    assert _brief(_events(cli, "--task", "hello", "--limit", "1")) == [("enable", "hello", "ok")]
    text = cli("events")
    assert text.exit_code == 0
    lines = text.stdout.splitlines()
    assert lines[0].split() == ["WHEN", "ACTION", "TASK", "OUTCOME", "WHO", "DETAIL"]
    assert "disable" in lines[1] and "other" in lines[1] and f"{ME}@{HOST}" in lines[1]
    bad = cli("events", "--since", "yesterday")
    assert bad.exit_code == 2 and "--since: 'yesterday' is neither a duration" in bad.stderr


def test_events_on_no_state_creates_nothing(cli, tmp_path: Path) -> None:
    write_config(tmp_path, CONFIG)
    result = cli("events")
    assert (result.exit_code, result.stdout) == (0, "no events\n")
    assert not (tmp_path / "state.db").exists()


def test_retention_follows_history_limit(cli, tmp_path: Path) -> None:
    write_config(tmp_path, CONFIG.replace('state = "state.db"', 'state = "state.db"\nhistory_limit = 2'))
    for _ in range(3):
        cli("disable", "hello")
        cli("enable", "hello")
    cli("disable", "other")
    assert _brief(_events(cli)) == [("disable", "other", "ok"), ("enable", "hello", "ok"),
                                    ("disable", "hello", "ok")]


def test_events_on_postgresql(cli, tmp_path: Path, pg_url: str) -> None:
    write_config(tmp_path, CONFIG)
    assert cli("disable", "hello", "--state", pg_url).exit_code == 0
    result = cli("events", "--json", "--state", pg_url)
    assert result.exit_code == 0, result.output
    [event] = json.loads(result.stdout)
    assert (event["action"], event["task_id"], event["user"]) == ("disable", "hello", ME)


# -- the runner ---------------------------------------------------------------------


def _jobctl_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("JOBCTL_")}


def test_runner_start_reload_refused_reload_and_stop(tmp_path: Path) -> None:
    config = write_config(tmp_path, CONFIG)
    out = (tmp_path / "runner.out").open("w+")
    proc = subprocess.Popen([sys.executable, "-m", "jobctl", "run", "--log-format", "json",
                             "--node", "n1"], cwd=tmp_path, env=_jobctl_env(), stdout=out,
                            stderr=subprocess.STDOUT)

    def kinds() -> list[str]:
        out.flush()
        text = (tmp_path / "runner.out").read_text()
        return [json.loads(line)["event"] for line in text.splitlines() if line.startswith("{")]

    try:
        wait_for(lambda: "ready" in kinds(), 30, "ready")
        config.write_text(config.read_text() + '\n[[tasks]]\nid = "new"\nschedule = "@daily"\n'
                                               'command = "true"\n')
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload" in kinds(), 30, "reload")
        config.write_text(config.read_text().replace('id = "new"', 'id = "new"\nbogus = 1'))
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "error" in kinds(), 30, "a refused reload")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        out.close()
    config.write_text(CONFIG)
    shown = subprocess.run([sys.executable, "-m", "jobctl", "events", "--json"], cwd=tmp_path,
                           env=_jobctl_env(), capture_output=True, text=True, timeout=60)
    events = json.loads(shown.stdout)
    assert [(e["action"], e["outcome"]) for e in events] == [
        ("runner.stop", "ok"), ("runner.reload", "refused"), ("runner.reload", "ok"),
        ("runner.start", "ok")]
    assert all(e["node"] == "n1" and e["user"] == ME and e["task_id"] is None for e in events)
    assert f"pid {proc.pid}" in events[-1]["detail"]
    assert "config not reloaded, old schedule kept" in events[1]["detail"]
    assert "unknown key 'bogus'" in events[1]["detail"]
    assert "1 added" in events[2]["detail"]


# -- plugins' host services -----------------------------------------------------------


def test_plugin_jobs_run_and_set_status_are_recorded(tmp_path: Path) -> None:
    from jobctl import worker
    from jobctl.pluginapi import HostServiceError

    folder = tmp_path / "plugins" / "p"
    folder.mkdir(parents=True)
    (folder / "plugin.toml").write_text(
        '[plugin]\nid = "p"\ntrusted = true\nhost_services = ["jobs.run", "jobs.set_status"]\n\n'
        '[[jobs]]\nkey = "a"\nschedule = "@daily"\nargv = ["true"]\n')
    config = write_config(tmp_path, '[jobctl]\nstate = "state.db"\n'
                                     'plugins = ["plugins/*/plugin.toml"]\n')
    state = tmp_path / "state.db"
    open_store(state, create=True).close()  # type: ignore[union-attr]
    launched: list[list[str]] = []

    def spawner(argv: object, env: object) -> int:
        launched.append(list(argv))  # type: ignore[call-overload]
        return 4321

    jobs = worker.HostJobs(plugin_id="p", task_id="p:a", trusted=True,
                           services=["jobs.run", "jobs.set_status"], state_path=state,
                           config_path=config, logger=logging.getLogger("t"),
                           now=lambda: NOW + timedelta(minutes=1), spawner=spawner,
                           env={"JOBCTL_NODE": "n2"})
    try:
        assert jobs.run("p:a") == 4321
        jobs.set_status("p:a", "disabled")
        with pytest.raises(HostServiceError):
            jobs.set_status("other:x", "enabled")
    finally:
        jobs.close()
    assert launched and launched[0][4:6] == ["run-now", "p:a"]
    store = open_store(state, create=False)
    assert store is not None
    try:
        events = store.events()
        assert store.overrides() == {"p:a": False}
    finally:
        store.close()
    assert [(e.action, e.task_id, e.outcome, e.node) for e in events] == [
        ("jobs.set_status", "other:x", "refused", "n2"), ("jobs.set_status", "p:a", "ok", "n2"),
        ("jobs.run", "p:a", "ok", "n2")]
    assert events[2].detail == "plugin 'p' (run of p:a): started jobctl run-now (pid 4321)"
    assert "may only use its own jobs" in events[0].detail
    assert events[0].at == NOW + timedelta(minutes=1)
    assert stat.S_IMODE(state.stat().st_mode) == 0o600


def test_import_write_is_recorded_ok_and_refused(cli, tmp_path: Path) -> None:
    config = write_config(tmp_path, CONFIG)
    crontab = tmp_path / "crontab"
    crontab.write_text("15 4 * * * /usr/bin/backup-db --full\n")
    assert cli("import", "crontab", str(crontab)).exit_code == 0  # prints only: no record
    assert cli("import", "crontab", str(crontab), "--write").exit_code == 0
    crontab.write_text("0 1~5 * * * /usr/bin/rotate\n")
    before = config.read_bytes()
    assert cli("import", "crontab", str(crontab), "--write").exit_code == 2
    assert config.read_bytes() == before
    events = _events(cli)
    assert _brief(events) == [("import", None, "failed"), ("import", None, "ok")]
    assert events[1]["detail"] == f"imported backup-db from {crontab} into {config}"
    assert "cannot be imported exactly" in str(events[0]["detail"])
