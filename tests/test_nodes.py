"""Several runners (nodes) on one state: node names, node leases, task scope,
a dead node's runs, and what `status` and `history` show of them. The
multi-node tests use real runner processes on the suite's real PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest

from conftest import wait_for, write_config
from test_runner_e2e import env, jobctl

TASK = '[[tasks]]\nid = "t"\nschedule = "@daily"\nargv = ["true"]\n'


# -- node names ------------------------------------------------------------------


def test_bad_node_settings_and_cluster_reboot_are_config_errors(cli: Any, tmp_path: Path) -> None:
    write_config(tmp_path, """
[jobctl]
node = "web 1"
node_lease = "0s"

[[tasks]]
id = "boot"
schedule = "@reboot"
scope = "cluster"
argv = ["true"]
""")
    result = cli("validate")
    assert result.exit_code == 2, result.output
    out = result.output
    assert "jobctl.toml:2: jobctl.node: 'web 1' is not a valid node name" in out
    assert "jobctl.toml:3: jobctl.node_lease:" in out
    assert "jobctl.toml:8: tasks[0] (boot).scope: 'cluster' cannot go with @reboot" in out
    assert "Traceback" not in out


def test_a_good_node_name_validates(cli: Any, tmp_path: Path) -> None:
    write_config(tmp_path, '[jobctl]\nnode = "Web-1.eu"\nnode_lease = "3s"\n\n' + TASK)
    result = cli("validate")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("how", ["flag", "env"])
def test_a_bad_node_name_from_the_flag_or_env_is_a_usage_error(cli: Any, tmp_path: Path,
                                                               how: str) -> None:
    write_config(tmp_path, f'[jobctl]\nstate = "{tmp_path / "state.db"}"\n\n' + TASK)
    if how == "flag":
        result = cli("run", "--node", "-bad", "--log-format", "text")
        where = "--node"
    else:
        result = cli("run", "--log-format", "text", env={"JOBCTL_NODE": "no/slash"})
        where = "JOBCTL_NODE"
    assert result.exit_code == 2, result.output
    [line] = result.output.strip().splitlines()
    assert line.startswith(f"error: {where}: '") and "not a valid node name" in line, line
    assert not (tmp_path / "state.db").exists()  # nothing half-made


def test_runs_record_their_node_on_sqlite(tmp_path: Path) -> None:
    write_config(tmp_path, '[jobctl]\nstate = "state.db"\n\n' + TASK)
    ran = jobctl("run-now", "t", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    named = subprocess.run([sys.executable, "-m", "jobctl", "run-now", "t"], cwd=tmp_path,
                           env={**env(), "JOBCTL_NODE": "alpha"}, capture_output=True, text=True,
                           timeout=30)
    assert named.returncode == 0, named.stderr
    history = jobctl("history", "--json", cwd=tmp_path)
    assert [r["node"] for r in json.loads(history.stdout)] == ["alpha", socket.gethostname()]
    table = subprocess.run([sys.executable, "-m", "jobctl", "history"], cwd=tmp_path,
                           env={**env(), "COLUMNS": "200"}, capture_output=True, text=True,
                           timeout=30)
    header, first = table.stdout.splitlines()[:2]
    assert "NODE" in header.split() and "alpha" in first.split(), table.stdout
