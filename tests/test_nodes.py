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
from datetime import datetime, timezone
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


# -- node leases on PostgreSQL (the store) ----------------------------------------------

SLOT = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)


def pg_rows(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


def expire(url: str, node: str) -> None:
    """End a node's lease now, as if its last heartbeat were long ago."""
    pg_rows(url, f"update jobctl.nodes set expires_at = clock_timestamp() - interval '1 second'"
                 f" where name = '{node}'")


def test_node_leases_are_one_per_name_fenced_and_taken_over(pg_url: str) -> None:
    from jobctl.model import Concurrency, RunStatus, Scope, Trigger
    from jobctl.store import LeaseLostError, NodeHeldError, Owner, open_store

    store = open_store(pg_url, create=True)
    assert store is not None and store.clustered
    try:
        a = Owner(101, "h1", node="a")
        got = store.take_node(a, 30)
        assert (got.name, got.pid, got.epoch, got.alive) == ("a", 101, 1, True)
        # the database's clock: expiry is its now + the lease
        assert 29 < (got.expires_at - got.db_now).total_seconds() <= 30
        a = Owner(101, "h1", node="a", epoch=got.epoch)
        with pytest.raises(NodeHeldError) as held:
            store.take_node(Owner(202, "h2", node="a"), 30)
        assert str(held.value).startswith(f"node 'a' is already running on {store.path} "
                                          "(pid 101 on host h1, since ")
        assert held.value.exit_code == 75
        assert store.take_node(Owner(202, "h2", node="b"), 30).epoch == 1  # side by side
        assert store.node_heartbeat(a)

        claim = store.claim(task_id="job", trigger=Trigger.SCHEDULE, scheduled_for=SLOT,
                            concurrency=Concurrency.ALLOW, force=False, owner=a, now=SLOT,
                            scope=Scope.CLUSTER)
        assert claim.outcome == "started" and claim.run_id is not None
        assert store.interrupt_dead_nodes() == []  # a is alive

        expire(pg_url, "a")
        # fenced: no heartbeat, no claim, no finish under the lapsed lease
        assert not store.node_heartbeat(a)
        with pytest.raises(LeaseLostError):
            store.claim(task_id="job", trigger=Trigger.SCHEDULE,
                        scheduled_for=SLOT.replace(minute=1), concurrency=Concurrency.ALLOW,
                        force=False, owner=a, now=SLOT)
        assert not store.finish(claim.run_id, RunStatus.SUCCESS, SLOT, exit_code=0)
        run = store.get_run(claim.run_id)
        assert run is not None and run.status is RunStatus.RUNNING and run.node == "a"

        # any live look marks the dead node's runs, naming the node
        [dead] = store.interrupt_dead_nodes()
        assert dead.id == claim.run_id
        run = store.get_run(claim.run_id)
        assert run is not None and run.status is RunStatus.INTERRUPTED
        assert run.error is not None and run.error.startswith(
            "node 'a' stopped renewing its lease (expired "), run.error
        assert store.interrupt_dead_nodes() == []

        # another process may take the lapsed name: a new epoch
        taken = store.take_node(Owner(303, "h3", node="a"), 30)
        assert taken.epoch == 2 and taken.pid == 303
        assert not store.node_heartbeat(a)  # the old holder stays fenced
        store.release_node(Owner(303, "h3", node="a", epoch=2))
        assert {n.name: n.alive for n in store.nodes()} == {"a": False, "b": True}
    finally:
        store.close()


def test_cluster_slots_are_one_per_cluster_node_slots_one_per_node(pg_url: str) -> None:
    from jobctl.model import Concurrency, RunStatus, Scope, Trigger
    from jobctl.store import Owner, open_store

    store = open_store(pg_url, create=True)
    assert store is not None
    try:
        owners = []
        for i, name in enumerate(("a", "b")):
            node = store.take_node(Owner(400 + i, "h", node=name), 30)
            owners.append(Owner(400 + i, "h", node=name, epoch=node.epoch))

        def claim(owner: Owner, task: str, scope: Scope, slot: Any = SLOT,
                  concurrency: Concurrency = Concurrency.ALLOW) -> str:
            return store.claim(task_id=task, trigger=Trigger.SCHEDULE, scheduled_for=slot,
                               concurrency=concurrency, force=False, owner=owner, now=slot,
                               scope=scope).outcome

        assert [claim(o, "c", Scope.CLUSTER) for o in owners] == ["started", "duplicate"]
        assert [claim(o, "n", Scope.NODE) for o in owners] == ["started", "started"]
        assert [claim(o, "n", Scope.NODE) for o in owners] == ["duplicate", "duplicate"]
        # forbid holds cluster-wide for a cluster task: the next slot is skipped
        # while a's run goes on, whichever node claims it
        later = SLOT.replace(minute=1)
        assert claim(owners[1], "c", Scope.CLUSTER, later, Concurrency.FORBID) == "skipped"
        assert claim(owners[0], "c", Scope.CLUSTER, later, Concurrency.FORBID) == "duplicate"
        # and per node for a node task: b's own run blocks b only
        store.finish(store.running("n")[0].id, RunStatus.SUCCESS, SLOT, exit_code=0)
        outcomes = [claim(o, "n", Scope.NODE, later, Concurrency.FORBID) for o in owners]
        assert sorted(outcomes) == ["skipped", "started"]
        assert pg_rows(pg_url, "select count(*) from jobctl.runs where task_id = 'c'") == [(2,)]
    finally:
        store.close()


# -- several runner processes on one database ----------------------------------------------


class NodeRunner:
    """`jobctl run --node NAME` in its own process, its JSON events in a file of its own."""

    def __init__(self, tmp_path: Path, node: str, *, wait: bool = True,
                 extra_env: dict[str, str] | None = None) -> None:
        self.path = tmp_path / f"runner-{node}.out"
        self.out = self.path.open("w+")
        self.node = node
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jobctl", "run", "--log-format", "json", "--node", node],
            cwd=tmp_path, env={**env(), **(extra_env or {})}, stdout=self.out,
            stderr=subprocess.STDOUT)
        if wait:
            self.wait_event("ready")

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.path.read_text().splitlines()
                if line.startswith("{")]

    def wait_event(self, kind: str, timeout: float = 20.0, **match: object) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            hits = [e for e in self.events() if e["event"] == kind
                    and all(e.get(k) == v for k, v in match.items())]
            if not hits and self.proc.poll() is not None:
                raise AssertionError(f"{self.node} exited {self.proc.returncode}: "
                                     f"{self.path.read_text()}")
            return hits[0] if hits else None
        return wait_for(found, timeout, f"{kind} on {self.node}")  # type: ignore[return-value]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(20)


@pytest.fixture
def nodes() -> Any:
    started: list[NodeRunner] = []
    yield started
    for r in started:
        if r.proc.poll() is None:
            r.proc.kill()
            r.proc.wait()


CLUSTER_CONFIG = """
[jobctl]
state = "{url}"
kill_grace = "1s"
shutdown_grace = "1s"
node_lease = "{lease}"

[[tasks]]
id = "cluster-tick"
schedule = "every 1s"
scope = "cluster"
argv = ["true"]

[[tasks]]
id = "node-tick"
schedule = "every 1s"
argv = ["true"]
"""


def test_one_live_runner_per_node_name_and_different_names_side_by_side(
        tmp_path: Path, pg_url: str, nodes: list[NodeRunner]) -> None:
    write_config(tmp_path, CLUSTER_CONFIG.format(url=pg_url, lease="30s"))
    first = NodeRunner(tmp_path, "alpha")
    nodes.append(first)
    # the same name again, from another process: 75, naming the first
    second = jobctl("run", "--log-format", "text", "--node", "alpha", cwd=tmp_path)
    assert second.returncode == 75, second.stderr
    [line] = second.stderr.strip().splitlines()
    assert line.startswith("error: node 'alpha' is already running on postgresql://"), line
    assert f"(pid {first.proc.pid} on host {socket.gethostname()}, since " in line
    # another name runs beside it, and both fire their node task
    other = NodeRunner(tmp_path, "beta")
    nodes.append(other)
    other.wait_event("start", task_id="node-tick")
    first.wait_event("start", task_id="node-tick")
    assert first.proc.poll() is None and other.proc.poll() is None
    assert sorted(pg_rows(pg_url, "select name, pid from jobctl.nodes")) == [
        ("alpha", first.proc.pid), ("beta", other.proc.pid)]

    # status, from another process: both nodes, alive
    status = jobctl("status", "--json", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    listed = json.loads(status.stdout)["nodes"]
    assert [(n["name"], n["host"], n["pid"], n["alive"]) for n in listed] == [
        ("alpha", socket.gethostname(), first.proc.pid, True),
        ("beta", socket.gethostname(), other.proc.pid, True)]
    assert set(listed[0]) == {"name", "host", "pid", "started_at", "heartbeat_at",
                              "heartbeat_age_s", "alive"}
    assert 0 <= listed[0]["heartbeat_age_s"] < 10
    text = subprocess.run([sys.executable, "-m", "jobctl", "status"], cwd=tmp_path,
                          env={**env(), "COLUMNS": "200"}, capture_output=True, text=True,
                          timeout=30).stdout
    lines = text.splitlines()
    at = lines.index("nodes:")
    assert lines[at + 1].split()[:4] == ["alpha", socket.gethostname(), "pid", str(first.proc.pid)]
    assert lines[at + 1].split()[-1] == "alive" and lines[at + 2].split()[0] == "beta", text

    assert first.stop() == 0 and other.stop() == 0
    after = json.loads(jobctl("status", "--json", cwd=tmp_path).stdout)["nodes"]
    assert [(n["name"], n["alive"]) for n in after] == [("alpha", False), ("beta", False)]
    assert "down" in jobctl("status", cwd=tmp_path).stdout.split()
    # a stopped node's lease ends with it: its name is free at once
    assert pg_rows(pg_url, "select count(*) from jobctl.nodes where expires_at > now()") == [(0,)]
    assert pg_rows(pg_url, "select count(*) from jobctl.runs where status = 'running'") == [(0,)]


def slot_counts(url: str, task: str) -> dict[datetime, Counter[str]]:
    out: dict[datetime, Counter[str]] = {}
    for slot, node in pg_rows(url, f"select scheduled_for, node from jobctl.runs"
                                   f" where task_id = '{task}' and trigger = 'schedule'"):
        out.setdefault(slot, Counter())[node] += 1
    return out


def test_three_nodes_fire_cluster_slots_once_and_node_slots_once_per_node(
        tmp_path: Path, pg_url: str, nodes: list[NodeRunner]) -> None:
    write_config(tmp_path, CLUSTER_CONFIG.format(url=pg_url, lease="30s"))
    names = ["n1", "n2", "n3"]
    for name in names:
        nodes.append(NodeRunner(tmp_path, name, wait=False))
    for r in nodes:
        r.wait_event("ready")

    def full_slots() -> list[datetime]:
        """Slots of the node task that every node fired."""
        return sorted(s for s, c in slot_counts(pg_url, "node-tick").items() if len(c) == 3)

    wait_for(lambda: len(full_slots()) >= 5, timeout=30, what="5 slots fired by all 3 nodes")
    first, last = full_slots()[0], full_slots()[-1]
    for r in nodes:
        assert r.stop() == 0
    node_slots = slot_counts(pg_url, "node-tick")
    cluster_slots = slot_counts(pg_url, "cluster-tick")
    # never twice: at most one run per (slot, node), and one per cluster slot
    assert all(n == 1 for c in node_slots.values() for n in c.values()), node_slots
    assert all(sum(c.values()) == 1 for c in cluster_slots.values()), cluster_slots
    # none missing from the first slot every node was up for
    span = [s for s in cluster_slots if first <= s <= last]
    expected = int((last - first).total_seconds()) + 1
    assert len(span) == expected and len([s for s in node_slots if first <= s <= last]) == expected
    for slot in span:
        assert sorted(node_slots[slot]) == names, (slot, node_slots[slot])
    # and nothing was skipped, interrupted or failed on the way
    assert pg_rows(pg_url, "select count(*) from jobctl.runs where status not in"
                           " ('success', 'skipped')") == [(0,)]


SPREAD_CONFIG = """
[jobctl]
state = "{url}"
kill_grace = "1s"
shutdown_grace = "1s"
""" + "".join(f"""
[[tasks]]
id = "c{i}"
schedule = "every 1s"
scope = "cluster"
argv = ["true"]
""" for i in range(12))


def test_cluster_slots_are_spread_over_the_live_nodes_and_still_run_once(
        tmp_path: Path, pg_url: str, nodes: list[NodeRunner]) -> None:
    import time

    write_config(tmp_path, SPREAD_CONFIG.format(url=pg_url))
    names = ["n1", "n2", "n3"]
    for name in names:
        nodes.append(NodeRunner(tmp_path, name, wait=False))
    for r in nodes:
        r.wait_event("ready")
    # each node looks at which nodes are alive every 2 s: from then on
    # every slot has one preferred node among the three
    since = datetime.now(timezone.utc).timestamp() + 3
    time.sleep(3)
    wait_for(lambda: pg_rows(pg_url, "select count(distinct scheduled_for) from jobctl.runs where"
                                     f" scheduled_for >= to_timestamp({since})")[0][0] >= 4,
             timeout=30, what="4 more slots")
    for r in nodes:
        assert r.stop() == 0
    per_slot = pg_rows(pg_url, "select task_id, scheduled_for, count(*) from jobctl.runs"
                               " group by 1, 2 having count(*) > 1")
    assert per_slot == []  # still exactly once
    rows = pg_rows(pg_url, "select node, count(*) from jobctl.runs where scheduled_for >="
                           f" to_timestamp({since}) group by node")
    counts = dict(rows)
    total = sum(counts.values())
    assert total >= 48, counts
    # about a third each (whichever node claims a batch first would take it all)
    assert sorted(counts) == names and all(n >= total // 10 for n in counts.values()), counts


DEAD_NODE_CONFIG = CLUSTER_CONFIG + """
[[tasks]]
id = "long"
schedule = "every 1s"
scope = "cluster"
concurrency = "forbid"
argv = ["sleep", "60"]
"""


def test_a_killed_nodes_runs_are_interrupted_and_the_survivors_go_on(
        tmp_path: Path, pg_url: str, nodes: list[NodeRunner]) -> None:
    import time

    write_config(tmp_path, DEAD_NODE_CONFIG.format(url=pg_url, lease="3s"))
    for name in ("n1", "n2", "n3"):
        nodes.append(NodeRunner(tmp_path, name, wait=False))
    for r in nodes:
        r.wait_event("ready")
    # the one running `long` (forbid: the other slots are skipped meanwhile)
    [(run_id, victim_name, pid)] = wait_for(lambda: pg_rows(
        pg_url, "select id, node, pid from jobctl.runs where task_id = 'long'"
                " and status = 'running' and pid is not null"), what="long running")
    victim = next(r for r in nodes if r.node == victim_name)
    victim.stop(signal.SIGKILL)
    killed = time.monotonic()

    def interrupted() -> object:
        return pg_rows(pg_url, f"select error from jobctl.runs where id = {run_id}"
                               " and status = 'interrupted'")
    [(error,)] = wait_for(interrupted, timeout=15, what="the dead node's run interrupted")
    took = time.monotonic() - killed
    assert took < 3 + 4, took  # within node_lease plus a few seconds
    assert error.startswith(f"node '{victim_name}' stopped renewing its lease (expired "), error
    # its process group went with it (same host: provably the same process)
    wait_for(lambda: not os.path.exists(f"/proc/{pid}") or
             open(f"/proc/{pid}/stat").read().split()[2] == "Z", what="orphan stopped")
    survivors = [r for r in nodes if r is not victim]
    # the survivor that marked it says so (its event follows the commit)
    wait_for(lambda: any(e.get("run_id") == run_id for r in survivors for e in r.events()
                         if e["event"] == "interrupted"), what="an interrupted event")
    # the survivors take `long` over, and keep firing the cluster tick
    wait_for(lambda: pg_rows(pg_url, "select node from jobctl.runs where task_id = 'long'"
                                     f" and status = 'running' and id > {run_id}"),
             what="long started again on a survivor")
    [(after_kill,)] = pg_rows(pg_url, "select max(scheduled_for) from jobctl.runs"
                                      " where task_id = 'cluster-tick'")
    wait_for(lambda: pg_rows(pg_url, "select count(*) from jobctl.runs where task_id ="
                                     f" 'cluster-tick' and scheduled_for > '{after_kill.isoformat()}'"
                                     )[0][0] >= 3, what="3 more cluster slots")
    for r in survivors:
        assert r.stop() == 0
    cluster = slot_counts(pg_url, "cluster-tick")
    assert all(sum(c.values()) == 1 for c in cluster.values()), cluster
    slots = sorted(cluster)
    # none lost, before the kill or after: each slot from the first to the last
    assert len(slots) == int((slots[-1] - slots[0]).total_seconds()) + 1
    assert {n for s in slots if s > after_kill for n in cluster[s]} <= {r.node for r in survivors}


def test_a_node_that_lost_its_lease_writes_nothing_more_and_stops(
        tmp_path: Path, pg_url: str, nodes: list[NodeRunner]) -> None:
    # every node has a run going when it is stopped: a node task that sleeps
    write_config(tmp_path, DEAD_NODE_CONFIG.format(url=pg_url, lease="3s") + """
[[tasks]]
id = "node-long"
schedule = "every 1s"
argv = ["sleep", "60"]
""")
    stale, live = NodeRunner(tmp_path, "stale"), NodeRunner(tmp_path, "live")
    nodes += [stale, live]
    stale.wait_event("start", task_id="node-long")
    stale.proc.send_signal(signal.SIGSTOP)
    try:
        # the live node sees the lease lapse (the database's clock) and takes
        # over the stale node's running runs
        wait_for(lambda: pg_rows(pg_url, "select count(*) from jobctl.runs where node = 'stale'"
                                         " and status = 'interrupted'")[0][0] >= 1,
                 timeout=15, what="stale runs interrupted")
        [(rows_before,)] = pg_rows(pg_url, "select count(*) from jobctl.runs where node = 'stale'")
    finally:
        stale.proc.send_signal(signal.SIGCONT)
    # woken, it claims nothing more, says why, and stops (exit 75: the lease is someone else's)
    assert stale.proc.wait(20) == 75, stale.path.read_text()
    text = stale.path.read_text()
    assert "lost the node 'stale' lease; stopping" in text, text
    assert pg_rows(pg_url, "select count(*) from jobctl.runs where node = 'stale'") == [(rows_before,)]
    assert pg_rows(pg_url, "select count(*) from jobctl.runs where node = 'stale'"
                           " and status = 'running'") == [(0,)]
    assert live.proc.poll() is None
    assert live.stop() == 0


def test_a_node_restarted_after_sigkill_takes_its_name_back_at_once(
        tmp_path: Path, pg_url: str, nodes: list[NodeRunner]) -> None:
    write_config(tmp_path, CLUSTER_CONFIG.format(url=pg_url, lease="30s") + """
[[tasks]]
id = "node-long"
schedule = "every 1s"
argv = ["sleep", "60"]
""")
    first = NodeRunner(tmp_path, "solo")
    nodes.append(first)
    [(run_id, pid)] = wait_for(lambda: pg_rows(
        pg_url, "select id, pid from jobctl.runs where task_id = 'node-long'"
                " and status = 'running' and pid is not null"), what="node-long running")
    first.stop(signal.SIGKILL)
    # its lease has 30 s left, but its holder is provably dead on this host:
    # the same name starts now, marks the old run and stops its process
    again = NodeRunner(tmp_path, "solo")
    nodes.append(again)
    [(status, error)] = pg_rows(pg_url, f"select status, error from jobctl.runs where id = {run_id}")
    # (found dead on this host as the new runner opened the state, before
    # it took the lease)
    assert status == "interrupted" and error == (
        f"runner (pid {first.proc.pid} of node 'solo') stopped or died while it ran"), error
    wait_for(lambda: not os.path.exists(f"/proc/{pid}") or
             open(f"/proc/{pid}/stat").read().split()[2] == "Z", what="orphan stopped")
    assert pg_rows(pg_url, "select pid, epoch from jobctl.nodes") == [(again.proc.pid, 2)]
    assert again.stop() == 0


# -- wake-ups: LISTEN/NOTIFY ---------------------------------------------------------


def test_enable_and_disable_wake_every_node_at_once_through_notify(
        tmp_path: Path, pg_url: str, nodes: list[NodeRunner]) -> None:
    import time

    write_config(tmp_path, CLUSTER_CONFIG.format(url=pg_url, lease="30s"))
    # a control poll so slow that only a notice can explain a fast wake
    slow = {"JOBCTL_TEST_CONTROL_POLL": "60"}
    a, b = (NodeRunner(tmp_path, n, extra_env=slow) for n in ("a", "b"))
    nodes += [a, b]
    # both are past their first control read (at start and at the first step)
    for r in nodes:
        r.wait_event("start", task_id="node-tick")

    def woken(what: str) -> float:
        began = time.monotonic()
        done = jobctl(what, "node-tick", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        returned = time.monotonic()
        for r in nodes:
            r.wait_event("control", timeout=15, task_id="node-tick", message=f"{what}d")
        took = time.monotonic() - returned
        assert took < 10, (what, took, time.monotonic() - began)  # far below the 60 s poll
        return took

    woken("disable")
    woken("enable")

    # the listener's connection dropped (a server restart, a proxy): the
    # runner says so, reconnects, and the next change wakes it again
    pg_rows(pg_url, "select pg_terminate_backend(pid) from pg_stat_activity"
                    " where query = 'listen jobctl_control'")
    for r in nodes:
        r.wait_event("error", message="enable/disable wake-ups lost their database connection; "
                                      "polling every 60s until it is back")
        r.wait_event("reconnected", message="enable/disable wake-ups on again")
    took = woken("disable")
    assert a.stop() == 0 and b.stop() == 0
    # every change reached each node once
    for r in nodes:
        assert [e["message"] for e in r.events() if e["event"] == "control"] == [
            "disabled", "enabled", "disabled"], r.events()


# -- the database restarting under live runners --------------------------------------


def restartable(server: Any) -> Any:
    from pgserver import URL_ENV

    if os.environ.get(URL_ENV):
        pytest.skip(f"restarts only a server the suite started itself (not {URL_ENV})")
    return server


def test_nodes_ride_out_a_database_restart_shorter_than_their_lease(
        tmp_path: Path, pg_server: Any, pg_url: str, nodes: list[NodeRunner]) -> None:
    server = restartable(pg_server)
    write_config(tmp_path, CLUSTER_CONFIG.format(url=pg_url, lease="20s"))
    a, b = NodeRunner(tmp_path, "a"), NodeRunner(tmp_path, "b")
    nodes += [a, b]
    for r in nodes:
        r.wait_event("start", task_id="node-tick")
    server.restart(down_s=3)
    [(restarted,)] = pg_rows(pg_url, "select pg_postmaster_start_time()")
    for r in nodes:
        # the outage is reported once, and its end
        wait_for(lambda r=r: any(e["event"] == "reconnected" and e["message"].startswith(
            "the state postgresql://") for e in r.events()), timeout=30,
            what=f"{r.node} reconnected")
        assert r.proc.poll() is None
    # after the restart each task fires again, on both nodes for the node task
    wait_for(lambda: len(pg_rows(pg_url, "select distinct node from jobctl.runs where task_id ="
                                         f" 'node-tick' and started_at > '{restarted.isoformat()}'"
                                         " and status = 'success'")) == 2,
             timeout=30, what="node-tick on both nodes after the restart")
    wait_for(lambda: pg_rows(pg_url, "select count(*) from jobctl.runs where task_id ="
                                     f" 'cluster-tick' and started_at > '{restarted.isoformat()}'"
                                     " and status = 'success'")[0][0] >= 2,
             timeout=30, what="cluster-tick after the restart")
    assert a.stop() == 0 and b.stop() == 0
    for r in nodes:
        errors = [e["message"] for e in r.events() if e["event"] == "error"
                  and e["message"].startswith("reading control state")]
        assert len(errors) == 1, r.events()  # reported once, not every poll
    # never twice, none left running
    assert all(sum(c.values()) == 1 for c in slot_counts(pg_url, "cluster-tick").values())
    assert all(n == 1 for c in slot_counts(pg_url, "node-tick").values() for n in c.values())
    assert pg_rows(pg_url, "select count(*) from jobctl.runs where status = 'running'") == [(0,)]


def test_a_database_outage_longer_than_the_lease_fences_the_nodes(
        tmp_path: Path, pg_server: Any, pg_url: str, nodes: list[NodeRunner]) -> None:
    server = restartable(pg_server)
    write_config(tmp_path, CLUSTER_CONFIG.format(url=pg_url, lease="2s"))
    a = NodeRunner(tmp_path, "a")
    nodes.append(a)
    a.wait_event("start", task_id="cluster-tick")
    server.restart(down_s=5)
    [(restarted,)] = pg_rows(pg_url, "select pg_postmaster_start_time()")
    # back, it finds its lease lapsed (the database's clock): it claims
    # nothing more and stops, exit 75, saying why
    assert a.proc.wait(30) == 75, a.path.read_text()
    assert "lost the node 'a' lease; stopping" in a.path.read_text()
    assert pg_rows(pg_url, "select count(*) from jobctl.runs where started_at >"
                           f" '{restarted.isoformat()}'") == [(0,)]
    # what it could not record is marked by the next look at the state
    assert jobctl("status", cwd=tmp_path).returncode == 0
    assert pg_rows(pg_url, "select count(*) from jobctl.runs where status = 'running'") == [(0,)]

# -- one interval grid for the cluster ---------------------------------------------------

GRID_CONFIG = """
[jobctl]
state = "{url}"
kill_grace = "1s"
shutdown_grace = "1s"

[[tasks]]
id = "grid"
schedule = "every 2s"
scope = "cluster"
argv = ["true"]
"""


def test_cluster_intervals_share_one_anchor_kept_across_a_cluster_restart(
        tmp_path: Path, pg_url: str, nodes: list[NodeRunner]) -> None:
    write_config(tmp_path, GRID_CONFIG.format(url=pg_url))
    a = NodeRunner(tmp_path, "a")
    nodes.append(a)
    [(anchor,)] = pg_rows(pg_url, "select value from jobctl.meta where key = 'cluster_anchor'")

    def start_second(name: str) -> int:
        [(at,)] = pg_rows(pg_url, f"select started_at from jobctl.nodes where name = '{name}'")
        return int(at.timestamp())

    # b must start in a whole second of the other parity than a's, where its
    # own start would put `every 2s` on another grid (started again until it does)
    for _ in range(8):
        b = NodeRunner(tmp_path, "b")
        nodes.append(b)
        if (start_second("b") - start_second("a")) % 2 == 1:
            break
        assert b.stop() == 0
    else:
        raise AssertionError("b never started on an odd second after a")
    [(ready_slots,)] = pg_rows(pg_url, "select count(*) from jobctl.runs where task_id = 'grid'")
    wait_for(lambda: pg_rows(pg_url, "select count(*) from jobctl.runs where task_id = 'grid'"
                                     )[0][0] >= ready_slots + 4, timeout=30, what="4 more slots")
    assert a.stop() == 0
    # b alone: its own start is on the other grid, yet `list`, `status` and
    # `next` show the slots the cluster fires (from the cluster's anchor)
    listed = jobctl("list", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    [grid] = [t for t in json.loads(listed.stdout) if t["id"] == "grid"]
    shown = jobctl("next", "grid", "-n", "3", "--json", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    status = jobctl("status", "--json", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    upcoming = [f["at"] for f in json.loads(status.stdout)["next"] if f["task_id"] == "grid"]
    for text in [grid["next_run"], *json.loads(shown.stdout), *upcoming]:
        at = datetime.fromisoformat(text)
        assert (int(at.timestamp()) - anchor) % 2 == 0 and at.microsecond == 0, (anchor, text)
    assert b.stop() == 0

    # the whole cluster restarts: the anchor stays, and so does the grid
    again = NodeRunner(tmp_path, "b")
    nodes.append(again)
    [(before,)] = pg_rows(pg_url, "select max(scheduled_for) from jobctl.runs")
    wait_for(lambda: pg_rows(pg_url, f"select count(*) from jobctl.runs where scheduled_for >"
                                     f" '{before.isoformat()}'")[0][0] >= 1, what="a slot after")
    assert again.stop() == 0
    assert pg_rows(pg_url, "select value from jobctl.meta where key = 'cluster_anchor'") == [
        (anchor,)]
    slots = slot_counts(pg_url, "grid")
    assert all(sum(c.values()) == 1 for c in slots.values()), slots
    # every slot on the one grid, whichever node fired it
    off = [s for s in slots if (int(s.timestamp()) - anchor) % 2 or s.microsecond]
    assert off == [], (anchor, sorted(slots))


# -- catch-up watermarks: the cluster's for cluster tasks, each node's for node tasks ----------

CATCH_UP_CONFIG = """
[jobctl]
kill_grace = 1

[[tasks]]
id = "c"
schedule = "0 * * * *"
scope = "cluster"
catch_up = "once"
argv = ["true"]

[[tasks]]
id = "n"
schedule = "0 * * * *"
catch_up = "once"
argv = ["true"]
"""


def test_catch_up_runs_once_for_a_cluster_task_and_once_per_node_for_a_node_task(
        tmp_path: Path, pg_url: str) -> None:
    import dataclasses

    from conftest import FakeClock
    from jobctl import liveness
    from jobctl.resolve import resolve
    from jobctl.runner import Runner
    from jobctl.store import open_store

    path = write_config(tmp_path, CATCH_UP_CONFIG)
    clock = FakeClock(datetime(2025, 3, 1, 9, 30, tzinfo=timezone.utc))
    me = liveness.self_owner()
    stores: list[Any] = []

    def start(name: str) -> Runner:
        store = open_store(pg_url, create=True)
        stores.append(store)
        runner = Runner(resolve(path, system_zone="UTC", now=clock.now()), store, clock=clock,
                        report=lambda e: None, owner=dataclasses.replace(me, node=name))
        runner.start()
        return runner

    def caught_up() -> list[tuple[str, str, str]]:
        return sorted(pg_rows(pg_url, "select task_id, node, to_char(scheduled_for at time zone"
                                      " 'UTC', 'HH24:MI') from jobctl.runs"
                                      " where trigger = 'catch-up'"))

    try:
        # the cluster watches the tasks from 09:30, then is down 10:00 to 12:00
        for r in [start(n) for n in ("n1", "n2", "n3")]:
            r.finish()
        clock.set(datetime(2025, 3, 1, 12, 30, tzinfo=timezone.utc))
        # all three start together: one catch-up of the cluster task, one of
        # the node task on each node
        together = [start(n) for n in ("n1", "n2", "n3")]
        for r in together:
            r.tick(clock.now())
        for r in together:
            r.finish()
        assert caught_up() == [("c", "n1", "12:00"), ("n", "n1", "12:00"), ("n", "n2", "12:00"),
                               ("n", "n3", "12:00")]

        # down again over 15:00; n1 comes back first and catches both up; n2,
        # ten minutes later, still catches up its own node task, not the
        # cluster's, which n1 did
        clock.set(datetime(2025, 3, 1, 15, 30, tzinfo=timezone.utc))
        first = start("n1")
        first.tick(clock.now())
        clock.set(datetime(2025, 3, 1, 15, 40, tzinfo=timezone.utc))
        second = start("n2")
        second.tick(clock.now())
        first.finish()
        second.finish()
        assert [r for r in caught_up() if r[2] == "15:00"] == [
            ("c", "n1", "15:00"), ("n", "n1", "15:00"), ("n", "n2", "15:00")]
        assert sorted(pg_rows(pg_url, "select task_id, node, to_char(last_scheduled at time zone"
                                      " 'UTC', 'HH24:MI') from jobctl.node_watermarks")) == [
            ("n", "n1", "15:00"), ("n", "n2", "15:00"), ("n", "n3", "12:00")]
    finally:
        for store in stores:
            store.close()


# -- the database's clock decides when a slot is due ----------------------------------------

FAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


def skewed(offset: str) -> dict[str, str]:
    """The environment of a process whose wall clock is `offset` off (libfaketime;
    its monotonic clock stays true, as on a machine with a wrong clock)."""
    assert os.path.exists(FAKETIME), f"{FAKETIME} missing: apt-get install libfaketime"
    return {"LD_PRELOAD": FAKETIME, "FAKETIME": offset, "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


def test_nodes_with_skewed_clocks_fire_on_the_databases_time_never_early_never_twice(
        tmp_path: Path, pg_url: str, nodes: list[NodeRunner]) -> None:
    # the skew is real: the runner processes' own clocks say so
    check = subprocess.run([sys.executable, "-c", "import time; print(time.time())"],
                           env={**env(), **skewed("+40s")}, capture_output=True, text=True)
    import time
    assert 35 < float(check.stdout) - time.time() < 45, check
    write_config(tmp_path, CLUSTER_CONFIG.format(url=pg_url, lease="30s"))
    skews = {"fast": "+40s", "true": "+0s", "slow": "-40s"}
    for name, offset in skews.items():
        nodes.append(NodeRunner(tmp_path, name, wait=False, extra_env=skewed(offset)))
    for r in nodes:
        r.wait_event("ready")

    def full_slots() -> list[datetime]:
        return sorted(s for s, c in slot_counts(pg_url, "node-tick").items() if len(c) == 3)

    wait_for(lambda: len(full_slots()) >= 5, timeout=40, what="5 slots fired by all 3 nodes")
    for r in nodes:
        assert r.stop() == 0
    node_slots = slot_counts(pg_url, "node-tick")
    cluster_slots = slot_counts(pg_url, "cluster-tick")
    assert all(n == 1 for c in node_slots.values() for n in c.values()), node_slots
    assert all(sum(c.values()) == 1 for c in cluster_slots.values()), cluster_slots
    rows = pg_rows(pg_url, "select task_id, node, extract(epoch from claimed_at - scheduled_for),"
                           " extract(epoch from started_at - scheduled_for) from jobctl.runs"
                           " where trigger = 'schedule'")
    assert {r[1] for r in rows if r[0] == "node-tick"} == set(skews)
    # by the database's clock, no claim came before the runner's usual lead
    # (it claims a batch at most 0.4 s before its instant) and none came 40 s
    # late; by each node's corrected clock, no run started before its slot
    early = [r for r in rows if r[2] < -0.5]
    late = [r for r in rows if r[2] > 5]
    assert early == [] and late == [], (early, late)
    assert [r for r in rows if r[3] < 0] == []
    # nor did the fast node get its slots refused as early: its offset was right
    for r in nodes:
        assert not [e for e in r.events() if "not yet due" in e.get("message", "")], r.node


def test_the_claim_refuses_a_slot_not_yet_due_by_the_databases_clock(pg_url: str) -> None:
    from datetime import timedelta

    from jobctl.model import Concurrency, Scope, Trigger
    from jobctl.store import Owner, open_store

    store = open_store(pg_url, create=True)
    assert store is not None
    try:
        db_now = store.database_now()
        assert db_now is not None
        owner = Owner(500, "h", node="ahead")

        def claim(slot: datetime, trigger: Trigger = Trigger.SCHEDULE) -> str:
            return store.claim(task_id="c", trigger=trigger, scheduled_for=slot,
                               concurrency=Concurrency.ALLOW, force=False, owner=owner,
                               now=slot, scope=Scope.CLUSTER).outcome

        # a node 40 s ahead that believes the slot has come
        assert claim(db_now + timedelta(seconds=40)) == "early"
        assert pg_rows(pg_url, "select count(*) from jobctl.runs") == [(0,)]
        # within the tolerance (the runner claims a batch just before its instant)
        assert claim(db_now + timedelta(seconds=0.5)) == "started"
        [(claimed_at,)] = pg_rows(pg_url, "select claimed_at from jobctl.runs")
        assert claimed_at >= db_now
    finally:
        store.close()


def test_a_runner_whose_clock_is_ahead_claims_its_slots_only_as_they_come_due(
        tmp_path: Path, pg_url: str) -> None:
    import dataclasses
    import time
    from datetime import timedelta

    from conftest import FakeClock
    from jobctl import liveness
    from jobctl.resolve import resolve
    from jobctl.runner import Runner
    from jobctl.store import open_store

    path = write_config(tmp_path, '[jobctl]\nkill_grace = 1\n\n[[tasks]]\nid = "c"\n'
                                  'schedule = "every 1s"\nscope = "cluster"\nargv = ["true"]\n')
    store = open_store(pg_url, create=True)
    assert store is not None
    try:
        db_now = store.database_now()
        assert db_now is not None
        # this node's clock is 3 s fast, and (a fake clock) not corrected by an offset
        clock = FakeClock(db_now + timedelta(seconds=3))
        events: list[Any] = []
        runner = Runner(resolve(path, system_zone="UTC", now=clock.now()), store, clock=clock,
                        report=events.append,
                        owner=dataclasses.replace(liveness.self_owner(), node="ahead"))
        runner.start()
        began = time.monotonic()
        moved = 0.0
        while time.monotonic() < began + 30 and pg_rows(
                pg_url, "select count(*) from jobctl.runs")[0][0] < 3:
            runner.tick(clock.now())
            time.sleep(0.05)
            # the node's clock runs as real time does, 3 s ahead
            elapsed = time.monotonic() - began
            clock.advance(elapsed - moved)
            moved = elapsed
        runner.finish()
        rows = pg_rows(pg_url, "select extract(epoch from claimed_at - scheduled_for)"
                               " from jobctl.runs")
        assert len(rows) >= 3
        # refused until the database's clock reached them (less its tolerance of 1 s)
        assert all(r[0] >= -1.0 for r in rows), rows
        said = [e for e in events if "not yet due by the database's clock" in e.message]
        assert len(said) == 1, said  # said once, not at every retry
    finally:
        store.close()


# -- replace across nodes ---------------------------------------------------------------------

REPLACE_CONFIG = """
[jobctl]
state = "{url}"
kill_grace = "1s"
shutdown_grace = "1s"
node_lease = "30s"

[[tasks]]
id = "long"
schedule = "every 1s"
scope = "cluster"
concurrency = "{concurrency}"
argv = ["sleep", "60"]
"""


def test_replace_stops_a_run_on_another_node_through_that_node(
        tmp_path: Path, pg_url: str, nodes: list[NodeRunner]) -> None:
    import time

    # two nodes on one host, each with its config: a's `long` forbids (its
    # run goes on, a's claims are skips); b's replaces, so once b claims a
    # slot it replaces a's run, which only a may stop: b leaves other nodes'
    # processes alone even on its own host
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write_config(tmp_path / "a", REPLACE_CONFIG.format(url=pg_url, concurrency="forbid"))
    write_config(tmp_path / "b", REPLACE_CONFIG.format(url=pg_url, concurrency="replace"))
    a = NodeRunner(tmp_path / "a", "a")
    nodes.append(a)
    [(run_id, pid)] = wait_for(lambda: pg_rows(
        pg_url, "select id, pid from jobctl.runs where task_id = 'long' and node = 'a'"
                " and status = 'running' and pid is not null"), what="a's long running")
    b = NodeRunner(tmp_path / "b", "b")
    nodes.append(b)
    [(error,)] = wait_for(lambda: pg_rows(
        pg_url, f"select error from jobctl.runs where id = {run_id} and status = 'interrupted'"),
        timeout=30, what="a's run replaced by b")
    replaced = time.monotonic()
    [(by,)] = pg_rows(pg_url, "select node from jobctl.runs where id = "
                              f"{int(error.split('#')[1].split()[0])}")
    assert by == "b" and error.startswith("replaced by run #"), error

    def gone() -> bool:
        return not os.path.exists(f"/proc/{pid}") or \
            open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    wait_for(gone, timeout=10, what="the replaced run's process gone")
    assert time.monotonic() - replaced < 5
    # a stopped it, and said so; the run keeps its reason and gets its end
    event = a.wait_event("interrupted", run_id=run_id)
    assert "was ended elsewhere (replaced by run #" in event["message"], event
    wait_for(lambda: pg_rows(pg_url, f"select finished_at from jobctl.runs where id = {run_id}"
                                     " and exit_code is not null"), what="its end recorded")
    assert pg_rows(pg_url, f"select status, error from jobctl.runs where id = {run_id}") == [
        ("interrupted", error)]
    assert a.stop() == 0 and b.stop() == 0
