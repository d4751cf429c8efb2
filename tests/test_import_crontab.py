"""`jobctl import crontab`: a crontab in, tasks that run exactly as cron ran them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import rtoml
from typer.testing import CliRunner

from conftest import FakeClock, write_config
from jobctl.cli import app
from jobctl.cli._common import Services

DATA = Path(__file__).parent / "data"

CRONTAB = """\
# every feature a user crontab has
PATH=/usr/local/bin:/usr/bin:/bin
GREETING = "hello world"
MAILTO=ops@example.com,dev@example.com
30 2 * * mon-fri /usr/local/bin/backup-db.sh --full
0 3 * jan 7 /usr/local/bin/backup-db.sh
@reboot cd /srv && ./start-server
@weekly   /usr/bin/cleanup --old
CRON_TZ=America/New_York
GREETING='hi'
SHELL=/bin/bash
15 9 1 * * report > /tmp/report.txt 2>&1
MAILTO=""
*/10 * * * * echo tick
"""


def _invoke(tmp_path: Path, args: list[str], *, env: dict[str, str] | None = None,
            input: str | None = None) -> Any:
    services = Services(clock=FakeClock(), env=dict(env or {"PATH": "/nonexistent"}),
                        cwd=tmp_path, system_zone="UTC")
    return CliRunner().invoke(app, args, obj=services, input=input)


def _tasks(output: str) -> dict[str, dict[str, Any]]:
    return {t["id"]: t for t in rtoml.loads(output).get("tasks", [])}


def test_a_user_crontab_becomes_commented_tasks(tmp_path: Path) -> None:
    source = tmp_path / "crontab"
    source.write_text(CRONTAB)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    mail = bin_dir / "mail"
    mail.write_text("#!/bin/sh\ncat > /dev/null\n")
    mail.chmod(0o755)
    result = _invoke(tmp_path, ["import", "crontab", str(source)], env={"PATH": str(bin_dir)})
    assert result.exit_code == 0, result.output
    doc = rtoml.loads(result.stdout)
    # env lines above the first job are for every task, as in cron
    assert doc["jobctl"]["env"] == {"PATH": "/usr/local/bin:/usr/bin:/bin", "GREETING": "hello world"}
    tasks = _tasks(result.stdout)
    assert list(tasks) == ["backup-db", "backup-db-2", "start-server", "cleanup", "report", "echo"]
    assert tasks["backup-db"]["schedule"] == "30 2 * * mon-fri"
    assert tasks["backup-db"]["command"] == "/usr/local/bin/backup-db.sh --full"
    assert tasks["backup-db-2"]["schedule"] == "0 3 * jan 7"
    assert tasks["start-server"]["schedule"] == "@reboot"
    assert tasks["cleanup"]["schedule"] == "@weekly"
    # MAILTO: a hook mailing the output (its stdin) where `mail` exists
    assert tasks["backup-db"]["on_failure"] == [
        str(mail), "-s", "jobctl: backup-db failed", "ops@example.com", "dev@example.com"]
    # the lines below CRON_TZ, SHELL and a changed variable
    report = tasks["report"]
    assert report["timezone"] == "America/New_York"
    assert report["argv"] == ["/bin/bash", "-c", "report > /tmp/report.txt 2>&1"]
    assert report["env"] == {"GREETING": "hi"}
    assert "timezone" not in tasks["backup-db"] and "env" not in tasks["backup-db"]
    # MAILTO="" turns mail off: no hook, and a comment says so
    assert "on_failure" not in tasks["echo"]
    assert "# MAILTO is empty (line 13): cron sent no mail" in result.stdout
    # each task says where it came from, and what cron did differently
    assert f"# {source}:5: 30 2 * * mon-fri /usr/local/bin/backup-db.sh --full\n" in result.stdout
    assert f"# {source}:12: 15 9 1 * * report > /tmp/report.txt 2>&1\n" in result.stdout
    assert "cron mailed any output of a run; jobctl keeps the output in `jobctl logs` and " \
           "alerts on failure only" in result.stdout
    assert "jobctl runs it each time `jobctl run` starts" in result.stdout  # @reboot


def test_mailto_without_a_mail_command_is_a_comment(tmp_path: Path) -> None:
    result = _invoke(tmp_path, ["import", "crontab", "-"], env={"PATH": str(tmp_path)},
                     input="MAILTO=root\n0 * * * * /usr/bin/true\n")
    assert result.exit_code == 0, result.output
    assert "on_failure" not in _tasks(result.stdout)["true"]
    assert "# MAILTO=root (line 1): cron mailed any output of a run" in result.stdout
    assert "no `mail` command on this machine: to be alerted, set on_failure" in result.stdout


def test_names_and_seven_fire_as_cron_fires_them(tmp_path: Path) -> None:
    config = write_config(tmp_path, '[jobctl]\nstate = "state.db"\n')
    source = tmp_path / "crontab"
    source.write_text("0 3 * jan 7 /usr/bin/true\n30 2 * * mon-fri /usr/bin/true\n")
    result = _invoke(tmp_path, ["import", "crontab", str(source), "--write", "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert "imported 2 tasks into" in result.stdout and "true, true-2" in result.stdout
    sundays = _invoke(tmp_path, ["next", "true", "-n", "3", "--after", "2026-06-15T00:00",
                                 "--json", "-c", str(config)])
    assert sundays.exit_code == 0, sundays.output
    fires = json.loads(sundays.stdout)
    fires = fires["fires"] if isinstance(fires, dict) else fires
    assert [f if isinstance(f, str) else next(iter(f.values())) for f in fires][:3] == [
        "2027-01-03T03:00:00+00:00", "2027-01-10T03:00:00+00:00", "2027-01-17T03:00:00+00:00"]


def test_ids_are_readable_unique_and_stable(tmp_path: Path) -> None:
    text = ("0 1 * * * /opt/bin/backup-db.sh\n0 2 * * * /opt/bin/backup-db.sh --again\n"
            "0 3 * * * PGHOST=db nice -n 10 pg_dump app > /tmp/x\n0 4 * * * test -e /x || "
            "SERVICE_MODE=1 /usr/sbin/e2scrub_all -A\n")
    first = _invoke(tmp_path, ["import", "crontab", "-"], input=text)
    again = _invoke(tmp_path, ["import", "crontab", "-"], input=text)
    assert first.exit_code == 0, first.output
    assert first.stdout == again.stdout
    assert list(_tasks(first.stdout)) == ["backup-db", "backup-db-2", "pg_dump", "e2scrub_all"]
    # into a config that has them already: the next free ones
    config = write_config(tmp_path, '[[tasks]]\nid = "backup-db"\nschedule = "@daily"\n'
                                    'command = "true"\n')
    written = _invoke(tmp_path, ["import", "crontab", "-", "--write", "-c", str(config)],
                      input=text)
    assert written.exit_code == 0, written.output
    ids = [t["id"] for t in rtoml.loads(config.read_text())["tasks"]]
    assert ids == ["backup-db", "backup-db-2", "backup-db-3", "pg_dump", "e2scrub_all"]


def test_random_ranges_are_refused_with_file_and_line(tmp_path: Path) -> None:
    source = tmp_path / "crontab"
    source.write_text("0 1 * * * /usr/bin/true\n# comment\n0~30 2 * * * /usr/bin/false\n"
                      "*/5 * * * 8 /bin/x\n")
    config = write_config(tmp_path, '[[tasks]]\nid = "a"\nschedule = "@daily"\ncommand = "true"\n')
    before = config.read_bytes()
    result = _invoke(tmp_path, ["import", "crontab", str(source), "--write", "-c", str(config)])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert f"refused: {source}:3: '0~30 2 * * *': cronie's '~' picks a random value" in result.stderr
    assert f"refused: {source}:4: bad schedule '*/5 * * * 8'" in result.stderr
    assert "2 lines of" in result.stderr and "nothing was imported" in result.stderr
    assert "Traceback" not in result.output
    assert config.read_bytes() == before
    # --skip-unsupported: the rest, and the list of what was left out
    skipped = _invoke(tmp_path, ["import", "crontab", str(source), "--skip-unsupported",
                                 "--write", "-c", str(config)])
    assert skipped.exit_code == 0, skipped.output
    assert f"skipped: {source}:3: " in skipped.stderr and f"skipped: {source}:4: " in skipped.stderr
    assert [t["id"] for t in rtoml.loads(config.read_text())["tasks"]] == ["a", "true"]
    assert f"# {source}:1: 0 1 * * * /usr/bin/true" in config.read_text()


def test_the_system_format_reads_the_user_field(tmp_path: Path) -> None:
    system = Path("/etc/cron.d/e2scrub_all")
    source = system if system.is_file() else DATA / "cron.d" / "e2scrub_all"
    result = _invoke(tmp_path, ["import", "crontab", str(source)] +
                     ([] if source == system else ["--system"]))
    assert result.exit_code == 0, result.output
    tasks = _tasks(result.stdout)
    assert tasks == {
        "e2scrub_all_cron": {
            "id": "e2scrub_all_cron", "schedule": "30 3 * * 0", "user": "root",
            "command": "test -e /run/systemd/system || SERVICE_MODE=1 "
                       "/usr/lib/x86_64-linux-gnu/e2fsprogs/e2scrub_all_cron"},
        "e2scrub_all": {
            "id": "e2scrub_all", "schedule": "10 3 * * *", "user": "root",
            "command": "test -e /run/systemd/system || SERVICE_MODE=1 /sbin/e2scrub_all -A -r"},
    }
    # the copy outside /etc needs --system: without it "root" is read as the command
    copy = _invoke(tmp_path, ["import", "crontab", str(DATA / "cron.d" / "e2scrub_all")])
    assert _tasks(copy.stdout)["root"]["command"].startswith("root test -e")


def test_write_makes_a_valid_config_that_keeps_its_comments(tmp_path: Path) -> None:
    config = write_config(tmp_path, '# my jobs\n[jobctl]\nstate = "state.db"\n\n'
                                    '[[tasks]]  # the first\nid = "a"\nschedule = "@daily"\n'
                                    'command = "true"\n')
    before = config.read_text()
    result = _invoke(tmp_path, ["import", "crontab", "-", "--write", "-c", str(config)],
                     input="X=1\n5 4 * * * /usr/bin/env\n")
    assert result.exit_code == 0, result.output
    after = config.read_text()
    assert after.startswith(before)
    # an existing config's other tasks must not get the crontab's variables
    assert rtoml.loads(after)["tasks"][1] == {"id": "env", "schedule": "5 4 * * *",
                                              "command": "/usr/bin/env", "env": {"X": "1"}}
    assert "# <stdin>:2: 5 4 * * * /usr/bin/env\n[[tasks]]\n" in after
    valid = _invoke(tmp_path, ["validate", "-c", str(config)])
    assert valid.exit_code == 0, valid.output



def test_importing_the_same_crontab_twice_does_not_double_its_jobs(tmp_path: Path) -> None:
    config = write_config(tmp_path, '# my jobs\n[jobctl]\nstate = "state.db"\n')
    crontab = tmp_path / "my.cron"
    crontab.write_text("X=1\n5 4 * * * /usr/bin/env\n*/10 * * * * echo tick\n")
    args = ["import", "crontab", str(crontab), "--write", "-c", str(config)]
    first = _invoke(tmp_path, args)
    assert first.exit_code == 0, first.output
    again = _invoke(tmp_path, args)
    assert again.exit_code == 0, again.output
    assert f"already in the config as env, not imported again: {crontab}:2: " in again.stderr
    assert "nothing imported: every task of" in again.stdout
    assert [t["id"] for t in rtoml.loads(config.read_text())["tasks"]] == ["env", "echo"]
    # a new line in the crontab: only it is added
    crontab.write_text(crontab.read_text() + "0 0 * * * echo new\n")
    third = _invoke(tmp_path, args)
    assert third.exit_code == 0, third.output
    assert [t["id"] for t in rtoml.loads(config.read_text())["tasks"]] == ["env", "echo", "echo-3"]
    events = _invoke(tmp_path, ["events", "--json", "-c", str(config)])
    assert "nothing imported" in json.loads(events.stdout)[1]["detail"]

PROBE = """\
import json, os, sys
with open(os.environ["PROBE_OUT"], "w") as f:
    json.dump({"argv": sys.argv[1:], "stdin": sys.stdin.read(),
               "greeting": os.environ.get("GREETING")}, f)
"""


def _jobctl(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    jobctl = shutil.which("jobctl", path=str(Path(sys.executable).parent))
    assert jobctl is not None
    return subprocess.run([jobctl, *args], capture_output=True, text=True, env=env, timeout=120,
                          check=False)


def test_the_percent_rule_gives_the_job_crons_argv_and_stdin(tmp_path: Path) -> None:
    """Each imported task is run for real with `jobctl run-now`; what its
    program saw (argv, stdin) must be what `sh -c` gets under cron's rule."""
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    py = sys.executable
    lines = {
        # (crontab command, the command cron hands sh, the stdin cron writes)
        "plain": (f"{py} {probe} 'a b' c", f"{py} {probe} 'a b' c", ""),
        "percent": (f"{py} {probe} x%line one%line two", f"{py} {probe} x", "line one\nline two"),
        "escaped": (f"{py} {probe} 100\\% 'a\\%b'", f"{py} {probe} 100% 'a%b'", ""),
        "both": (f"{py} {probe} \\%d%50\\% off%%end\\", f"{py} {probe} %d",
                 "50% off\n\nend\\"),
        "backslash": (f"{py} {probe} 'a\\\\b'%x\\y", f"{py} {probe} 'a\\\\b'", "x\\y"),
    }
    crontab = "GREETING=from cron\n" + "".join(
        f"* * * * * {cmd}\n" for cmd, _, _ in lines.values())
    config = write_config(tmp_path, '[jobctl]\nstate = "state.db"\n')
    env = {**os.environ, "JOBCTL_CONFIG": str(config)}
    source = tmp_path / "crontab"
    source.write_text(crontab)
    made = _jobctl("import", "crontab", str(source), "--write", env=env)
    assert made.returncode == 0, made.stderr
    ids = [t["id"] for t in rtoml.loads(config.read_text())["tasks"]]
    assert len(ids) == len(lines)
    for task_id, (name, (_, cron_command, cron_stdin)) in zip(ids, lines.items()):
        ran = _jobctl("run-now", task_id, env={**env, "PROBE_OUT": str(tmp_path / f"{name}.job")})
        assert ran.returncode == 0, (name, ran.stdout, ran.stderr)
        under_cron = subprocess.run(["/bin/sh", "-c", cron_command], input=cron_stdin.encode(),
                                    env={**os.environ, "GREETING": "from cron",
                                         "PROBE_OUT": str(tmp_path / f"{name}.cron")},
                                    check=True, timeout=60)
        assert under_cron.returncode == 0
        job = json.loads((tmp_path / f"{name}.job").read_text())
        cron = json.loads((tmp_path / f"{name}.cron").read_text())
        assert job == cron, name
        assert job["greeting"] == "from cron"
    saw = json.loads((tmp_path / "both.job").read_text())
    assert saw["argv"] == ["%d"] and saw["stdin"] == "50% off\n\nend\\"


def test_a_system_crontab_with_users_writes_a_config_whose_tasks_run_as_those_users(
        tmp_path: Path) -> None:
    config = write_config(tmp_path, '[jobctl]\nstate = "state.db"\n')
    # a folder nobody can write in (pytest's own tmp folders are root's only)
    out = Path(tempfile.mkdtemp(prefix="jobctl-import-"))
    out.chmod(0o777)
    crontab = tmp_path / "crontab"
    crontab.write_text("SHELL=/bin/sh\nGREETING=hi\n"
                       f"*/5 * * * * nobody id -u > {out}/nobody; echo $GREETING >> {out}/nobody\n"
                       f"0 4 * * * root id -u > {out}/root\n")
    result = _invoke(tmp_path, ["import", "crontab", "--system", str(crontab), "--write",
                                "-c", str(config)])
    assert result.exit_code == 0, result.output
    checked = _invoke(tmp_path, ["validate", "-c", str(config)])
    assert checked.exit_code == 0, checked.output
    tasks = {t["id"]: t for t in rtoml.load(config)["tasks"]}
    assert {t["user"] for t in tasks.values()} == {"nobody", "root"}
    for task_id in tasks:
        ran = _invoke(tmp_path, ["run-now", task_id, "-c", str(config)],
                      env={"PATH": "/usr/bin:/bin"})
        assert ran.exit_code == 0, ran.output
    try:
        assert (out / "nobody").read_text() == "65534\nhi\n"
        assert (out / "root").read_text() == "0\n"
    finally:
        shutil.rmtree(out)
