"""Manifest plugins: discovery, namespacing, limits, containment, isolation."""

from __future__ import annotations

import json
import os
import re
import textwrap
from pathlib import Path

import pytest

from conftest import NOW, write_config
from jobctl.resolve import resolve

CONFIG = """
[jobctl]
plugins = ["plugins/*/plugin.toml"]

[[tasks]]
id = "own"
schedule = "@daily"
command = "true"
"""


def manifest(tmp_path: Path, folder: str, text: str) -> Path:
    path = tmp_path / "plugins" / folder / "plugin.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


GOOD = """
    [plugin]
    id = "backups"
    name = "Backups"
    version = "1.0"
    priority = 7

    [[jobs]]
    key = "nightly"
    display_name = "Nightly dump"
    schedule = "30 2 * * *"
    argv = ["true"]
    payload = { keep = 3 }
"""


def test_manifest_jobs_join_the_set_namespaced(tmp_path: Path) -> None:
    path = write_config(tmp_path, CONFIG)
    manifest(tmp_path, "backups", GOOD)
    ss = resolve(path, system_zone="UTC", now=NOW)
    assert [t.id for t in ss.tasks] == ["own", "backups:nightly"]
    job = ss.tasks[1]
    assert job.owner == "plugin:backups" and job.name == "Nightly dump" and job.group == "backups"
    assert job.priority == 7 and dict(job.payload or {}) == {"keep": 3}
    assert job.plugin_dir == str(tmp_path / "plugins" / "backups")
    (report,) = ss.plugins
    assert report.loaded and report.jobs == 1 and report.version == "1.0"


# the line is the key's, or the [[jobs]] header's (4) for the whole job
@pytest.mark.parametrize(("job", "expected", "line"), [
    ('key = "x"\nschedule = "*/1 * * * *"\ncommand = "true"',
     "fires as often as every 1m; the limit is every 5m (min_interval)", 6),
    ('key = "x"\nschedule = "every 30s"\ncommand = "true"', "every 30s; the limit is every 5m", 6),
    ('key = "x"\nschedule = "@daily"\ncommand = "true"\ndisplay_name = "' + "n" * 129 + '"',
     "is 129 characters; the limit is 128 (max_display_name)", 8),
    ('key = "x"\nschedule = "0 0 * * ' + ",".join(["mon"] * 40) + '"\ncommand = "true"',
     "the limit is 128 (max_schedule_length)", 6),
    ('key = "x"\nschedule = "@daily"\ncommand = "true"\npayload = { blob = "' + "x" * 110_000 + '" }',
     "bytes encoded; the limit is 102400 (max_payload_bytes)", 8),
    ('key = "x"\nschedule = "@daily"\ncommand = "true"\ncwd = "../.."',
     "is outside the plugin's folder", 8),
    ('key = "x"\nschedule = "@daily"', "needs exactly one of 'command', 'argv' or 'callable'", 4),
    ('key = "x"\nschedule = "@daily"\ncallable = "nomod:run"', "no module 'nomod'", 7),
    ('key = "x:y"\nschedule = "@daily"\ncommand = "true"', "'x:y' is not a valid id", 5),
    ('key = "x"\nschedule = "@daily"\ncommand = "true"\nid = "other:x"', "unknown key 'id'", 8),
    ('key = "x"\nschedule = "@daily"\ncommand = "true"\ncwd = "a\\u0000b"', "contains a NUL character", 8),
])
def test_a_bad_job_leaves_its_plugin_out_and_the_rest_runs(tmp_path: Path, job: str, expected: str,
                                                           line: int, cli) -> None:  # type: ignore[no-untyped-def]
    path = write_config(tmp_path, CONFIG)
    bad = manifest(tmp_path, "bad", f'[plugin]\nid = "bad"\n\n[[jobs]]\n{job}\n')
    manifest(tmp_path, "backups", GOOD)
    ss = resolve(path, system_zone="UTC", now=NOW)
    assert [t.id for t in ss.tasks] == ["own", "backups:nightly"]
    (report,) = [r for r in ss.plugins if r.id == "bad"]
    assert not report.loaded
    assert any(expected in str(p) and str(p).startswith(f"{bad}:{line}: jobs[0]")
               for p in report.problems), report.problems
    # every command reports it; validate exits 2; list still lists the rest
    result = cli("validate")
    assert result.exit_code == 2 and "plugin 'bad'" in result.stderr and expected in result.stderr
    listed = cli("list", "--json")
    assert listed.exit_code == 0 and "plugin 'bad'" in listed.stderr
    assert [t["id"] for t in json.loads(listed.stdout)] == ["own", "backups:nightly"]


def test_limits_are_overridable(tmp_path: Path) -> None:
    path = write_config(tmp_path, CONFIG.replace(
        '[jobctl]\n', '[jobctl]\nplugin_limits = { min_interval = "1m", max_jobs = 1 }\n'))
    manifest(tmp_path, "fast", '[plugin]\nid = "fast"\n[[jobs]]\nkey = "a"\nschedule = "* * * * *"\ncommand = "true"\n')
    manifest(tmp_path, "many", '[plugin]\nid = "many"\n' + "".join(
        f'[[jobs]]\nkey = "j{i}"\nschedule = "@daily"\ncommand = "true"\n' for i in range(2)))
    ss = resolve(path, system_zone="UTC", now=NOW)
    by_id = {r.id: r for r in ss.plugins}
    assert by_id["fast"].loaded
    assert not by_id["many"].loaded
    assert "declares 2 jobs; the limit is 1 (max_jobs)" in str(by_id["many"].problems[0])


def test_two_manifests_claiming_one_plugin_id_name_both_files(tmp_path: Path) -> None:
    path = write_config(tmp_path, CONFIG)
    first = manifest(tmp_path, "a", GOOD)
    second = manifest(tmp_path, "b", GOOD)
    ss = resolve(path, system_zone="UTC", now=NOW)
    assert [t.id for t in ss.tasks] == ["own", "backups:nightly"]
    bad = [r for r in ss.plugins if not r.loaded]
    assert len(bad) == 1 and bad[0].source == str(second)
    assert f"plugin id 'backups' is already declared by {first}" in str(bad[0].problems[-1])


def test_duplicate_keys_in_one_manifest(tmp_path: Path) -> None:
    path = write_config(tmp_path, CONFIG)
    manifest(tmp_path, "d", '[plugin]\nid = "d"\n' + 2 * '[[jobs]]\nkey = "k"\nschedule = "@daily"\ncommand = "true"\n')
    (report,) = resolve(path, system_zone="UTC", now=NOW).plugins
    assert not report.loaded and "duplicate key 'k'" in str(report.problems[0])


def test_symlink_out_of_the_plugin_folder_is_refused(tmp_path: Path) -> None:
    path = write_config(tmp_path, CONFIG)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "evil.py").write_text("def run(ctx): pass\n")
    folder = manifest(tmp_path, "s", '[plugin]\nid = "s"\n[[jobs]]\nkey = "a"\nschedule = "@daily"\n'
                      'callable = "evil:run"\n[[jobs]]\nkey = "b"\nschedule = "@daily"\ncommand = "true"\n'
                      'cwd = "out"\n').parent
    os.symlink(outside / "evil.py", folder / "evil.py")
    os.symlink(outside, folder / "out")
    (report,) = resolve(path, system_zone="UTC", now=NOW).plugins
    text = "\n".join(str(p) for p in report.problems)
    assert "resolves outside the plugin's folder" in text and "'out' is outside" in text


def test_broken_manifest_and_plugins_command(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    write_config(tmp_path, CONFIG)
    manifest(tmp_path, "backups", GOOD)
    broken = manifest(tmp_path, "broken", '[plugin]\nid = "broken"\n[[jobs]\n')
    result = cli("plugins", "--json")
    assert result.exit_code == 0, result.output
    rows = {r["id"]: r for r in json.loads(result.stdout)}
    assert rows["backups"]["loaded"] and rows["backups"]["jobs"] == 1
    (row,) = [r for r in rows.values() if not r["loaded"]]
    assert row["source"] == str(broken) and "TOML syntax error" in row["problems"][0]
    text = cli("plugins")
    table = [re.split(r"  +", line) for line in text.stdout.splitlines()]
    assert table[0] == ["ID", "VERSION", "STATUS", "SOURCE"]
    assert ["backups", "1.0", "loaded, 1 job"] in [r[:3] for r in table]
    assert "left out (1 problem)" in text.stdout


def test_plugin_jobs_work_with_control_commands(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    write_config(tmp_path, CONFIG.replace("[jobctl]\n", '[jobctl]\nstate = "state.db"\n'))
    manifest(tmp_path, "backups", GOOD.replace('argv = ["true"]', 'command = "echo from-plugin"'))
    assert cli("disable", "backups:nightly").exit_code == 0
    shown = json.loads(cli("show", "backups:nightly", "--json").stdout)
    assert shown["enabled"] is False and shown["owner"] == "plugin:backups"
    result = cli("run-now", "backups:nightly")
    assert result.exit_code == 0, result.output
    assert "from-plugin" in result.stdout
    history = json.loads(cli("history", "backups:nightly", "--json").stdout)
    assert [h["status"] for h in history] == ["success"]
    # next takes a plugin job's PLUGIN:KEY like a task id (30 2 * * * in UTC)
    result = cli("next", "backups:nightly", "-n", "1", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == ["2026-06-16T02:30:00+00:00"]
    result = cli("next", "backups:nightlyy")
    assert result.exit_code == 2
    assert "no task with id 'backups:nightlyy' (did you mean 'backups:nightly'?)" in result.stderr


def install_entry_point_plugin(site: Path, body: str, name: str = "demo") -> None:
    """Install a tiny distribution into `site` the way pip would lay it out:
    a package plus a .dist-info with entry_points.txt."""
    package = site / f"ep_{name}"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(body))
    info = site / f"ep_{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: ep-{name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[jobctl.plugins]\n{name} = ep_{name}:Plugin\n")


EP_PLUGIN = '''
    class Plugin:
        name = "demo"
        priority = 5
        version = "0.1"

        def schedules(self):
            return [{"key": "hello", "display_name": "Say hello", "schedule": "@hourly",
                     "payload": {"who": "world"}}]

        def run(self, ctx):
            print(f"hello {ctx.payload['who']} from {ctx.task_id}")

        def cleanup(self):
            pass
'''


def test_entry_point_plugin_is_discovered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    install_entry_point_plugin(site, EP_PLUGIN)
    monkeypatch.syspath_prepend(str(site))
    path = write_config(tmp_path, '[[tasks]]\nid = "own"\nschedule = "@daily"\ncommand = "true"\n')
    ss = resolve(path, system_zone="UTC", now=NOW)
    assert [t.id for t in ss.tasks] == ["own", "demo:hello"]
    job = ss.tasks[1]
    assert job.owner == "plugin:demo" and job.priority == 5 and job.callable == "entry-point:demo"
    assert dict(job.payload or {}) == {"who": "world"}
    (report,) = ss.plugins
    assert report.loaded and report.source.startswith("entry point demo")


@pytest.mark.parametrize(("body", "expected"), [
    ("class Plugin:\n    name = 'bad'\n    def schedules(self):\n        raise RuntimeError('boom')\n",
     "cannot load: RuntimeError: boom"),
    ("class Plugin:\n    name = 'bad'\n    def schedules(self):\n        return [{'key': 'x', 'schedule': '* * * * *'}]\n",
     "fires as often as every 1m"),
    ("class Plugin:\n    name = 'bad'\n    def schedules(self):\n        return [{'key': 'x', 'schedule': '@daily', 'command': 'rm -rf /'}]\n",
     "'command' is not for entry-point plugins"),
    ("raise ImportError('missing dependency')\n", "cannot load: ImportError: missing dependency"),
])
def test_broken_entry_point_plugin_is_left_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               body: str, expected: str) -> None:
    site = tmp_path / "site"
    # a module name per case: sys.modules would hand back an earlier case's
    module = f"bad{sum(map(ord, expected))}"
    install_entry_point_plugin(site, body, name=module)
    monkeypatch.syspath_prepend(str(site))
    path = write_config(tmp_path, '[[tasks]]\nid = "own"\nschedule = "@daily"\ncommand = "true"\n')
    ss = resolve(path, system_zone="UTC", now=NOW)
    assert [t.id for t in ss.tasks] == ["own"]
    (report,) = ss.plugins
    assert not report.loaded and any(expected in str(p) for p in report.problems), report.problems


def test_cleanup_runs_once_per_loaded_plugin_object(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from jobctl.plugins import cleanup_plugins

    marks = tmp_path / "cleanups.txt"
    body = EP_PLUGIN.replace("name = \"demo\"", "name = \"tidy\"").replace(
        "def cleanup(self):\n            pass",
        f"def cleanup(self):\n            open({str(marks)!r}, 'a').write('x')")
    site = tmp_path / "site"
    install_entry_point_plugin(site, body, name="tidy")
    monkeypatch.syspath_prepend(str(site))
    path = write_config(tmp_path, '[[tasks]]\nid = "own"\nschedule = "@daily"\ncommand = "true"\n')
    resolve(path, system_zone="UTC", now=NOW)
    assert not marks.exists()
    resolve(path, system_zone="UTC", now=NOW)  # a reload: the old object is cleaned up
    assert marks.read_text() == "x"
    assert cleanup_plugins() == []  # the runner stops
    assert marks.read_text() == "xx"
    assert cleanup_plugins() == []  # and only once
    assert marks.read_text() == "xx"


def test_installed_entry_point_plugin_runs_for_real(tmp_path: Path) -> None:
    """Installed into a site folder on PYTHONPATH: discovered by the real
    CLI, run by run-now and by the runner in worker processes, cleaned up
    when the runner stops."""
    import signal
    import subprocess
    import sys
    import time

    site = tmp_path / "site"
    marks = tmp_path / "cleanup.txt"
    body = EP_PLUGIN.replace('"schedule": "@hourly"', '"schedule": "@reboot"').replace(
        "def cleanup(self):\n            pass",
        f"def cleanup(self):\n            open({str(marks)!r}, 'a').write('x')")
    install_entry_point_plugin(site, body)
    write_config(tmp_path, '[jobctl]\nstate = "state.db"\n\n[[tasks]]\nid = "own"\nschedule = "@daily"\ncommand = "true"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBCTL_")}
    env["PYTHONPATH"] = str(site)

    def jobctl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "jobctl", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)

    listed = json.loads(jobctl("plugins", "--json").stdout)
    assert [(p["id"], p["loaded"], p["jobs"]) for p in listed] == [("demo", True, 1)]
    result = jobctl("run-now", "demo:hello")
    assert result.returncode == 0, result.stderr
    assert "hello world from demo:hello" in result.stdout
    runner = subprocess.Popen([sys.executable, "-m", "jobctl", "run", "--log-format", "json"],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True)
    try:
        finished = None
        deadline = time.monotonic() + 30
        assert runner.stdout is not None
        while time.monotonic() < deadline and finished is None:
            line = runner.stdout.readline()
            event = json.loads(line) if line.startswith("{") else {}
            if event.get("event") == "finish" and event.get("task_id") == "demo:hello":
                finished = event
        assert finished is not None and finished["status"] == "success", finished
        log = (tmp_path / "logs" / f"{finished['run_id']}.log").read_text()
        assert "hello world from demo:hello" in log
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(20) == 0
    finally:
        if runner.poll() is None:
            runner.kill()
    assert "x" in marks.read_text()


def test_config_edits_point_plugin_jobs_to_their_manifest(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    path = write_config(tmp_path, CONFIG)
    manifest(tmp_path, "backups", GOOD)
    before = path.read_bytes()
    for args in (("set", "backups:nightly", "priority=3"), ("remove", "backups:nightly")):
        result = cli(*args)
        assert result.exit_code == 2
        assert "is a job of plugin 'backups': change it in the plugin's manifest" in result.stderr
    assert path.read_bytes() == before
    shown = json.loads(cli("show", "backups:nightly", "--json").stdout)
    assert shown["payload"] == {"keep": 3} and shown["callable"] is None


def test_manifest_problems_are_at_their_keys_lines(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    write_config(tmp_path, CONFIG)
    bad = manifest(tmp_path, "bad", """
        [plugin]
        id = "bad"
        description = '''
        [[jobs]]
        '''
        priority = "first"

        [[ "jobs" ]]
        key = "y"
        schedule = "@daily"
        command = "true"
        "timeout" = "soon"
        cwd = "../.."
    """)
    result = cli("validate")
    assert result.exit_code == 2
    lines = [line.strip() for line in result.stderr.splitlines()]
    assert f"{bad}:6: plugin.priority: expected an integer, got a string" in lines
    assert any(line.startswith(f"{bad}:12: jobs[0] (y).timeout: 'soon' is not a duration") for line in lines)
    assert any(line.startswith(f"{bad}:13: jobs[0] (y).cwd: '../..' is outside") for line in lines)


def test_a_manifest_that_is_not_utf8_names_its_line(tmp_path: Path) -> None:
    path = write_config(tmp_path, CONFIG)
    bad = manifest(tmp_path, "bad", "")
    bad.write_bytes(b'[plugin]\nid = "b\xff"\n')
    (report,) = resolve(path, system_zone="UTC", now=NOW).plugins
    assert [str(p) for p in report.problems] == [f"{bad}:2: not UTF-8 text: byte 0xff (column 8)"]
