"""Jitter: each fire of a task starts its fixed offset after its slot, in the
runner (stepped with a fake clock, real processes, a real SQLite file) and in
what `list`, `show`, `next` and `status` say."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

from conftest import FakeClock, write_config
from jobctl.model import RunStatus
from jobctl.resolve import resolve
from jobctl.runner import Runner
from jobctl.store import Owner
from jobctl.timing import jitter_offset
from test_runner import Harness

UTC = timezone.utc
NOON = datetime(2026, 6, 15, 12, 0, 0, tzinfo=UTC)
ONE = datetime(2026, 6, 15, 13, 0, 0, tzinfo=UTC)
# the offsets are a stable hash (blake2b) of the id, [and of the node]: the
# same in every process, unlike hash(); for jitter = 30m
OFFSET = {"a": 456, "b": 931, "c": 388}
OFFSET_N1 = {"a": 770}
OFFSET_N2 = {"a": 1160}

HOURLY = """
[[tasks]]
id = "{id}"
schedule = "0 * * * *"
cwd = "."
command = "echo $JOBCTL_SCHEDULED_FOR > slot-$JOBCTL_TASK_ID"
jitter = "30m"
scope = "{scope}"
"""


def config(*ids: str, scope: str = "cluster") -> str:
    return "".join(HOURLY.format(id=i, scope=scope) for i in ids)


def test_offsets_are_stable_below_the_jitter_and_spread() -> None:
    assert {t: jitter_offset(t, 1800).total_seconds() for t in OFFSET} == OFFSET
    assert jitter_offset("a", 1800, "n1").total_seconds() == OFFSET_N1["a"]
    assert jitter_offset("a", 1800, "n2").total_seconds() == OFFSET_N2["a"]
    offsets = [jitter_offset(f"task-{i}", 60) for i in range(1000)]
    assert all(timedelta(0) <= o < timedelta(seconds=60) for o in offsets)
    # spread over the whole range, not bunched: every 6s tenth of it is used
    assert {int(o.total_seconds() // 6) for o in offsets} == set(range(10))
    # below a second: milliseconds, still below the jitter
    assert all(timedelta(0) <= jitter_offset(f"t{i}", 0.5) < timedelta(seconds=0.5)
               for i in range(200))


def test_runner_fires_each_task_at_its_slot_plus_offset_and_records_the_slot(
        tmp_path: Path) -> None:
    h = Harness(tmp_path, config("a", "b", "c"), now=NOON + timedelta(seconds=1))
    h.runner.start()
    # 12:00's fires are still to come: each at 12:00 + its offset
    assert sorted(h.runner.upcoming(3)) == sorted(
        (NOON + timedelta(seconds=s), t) for t, s in OFFSET.items())
    for task_id, seconds in sorted(OFFSET.items(), key=lambda kv: kv[1]):
        start = NOON + timedelta(seconds=seconds)
        h.at(start - timedelta(seconds=1))
        assert not h.runs(task_id), f"{task_id} started before its offset"
        h.at(start)
        h.settle()
        [run] = h.runs(task_id)
        assert run.status is RunStatus.SUCCESS
        # history and the run's environment keep the slot, not the start
        assert run.scheduled_for == NOON
        assert datetime.fromisoformat((tmp_path / f"slot-{task_id}").read_text().strip()) == NOON
    # the next fires: 13:00 plus the same offsets
    assert sorted(h.runner.upcoming(3)) == sorted(
        (ONE + timedelta(seconds=s), t) for t, s in OFFSET.items())
    h.runner.finish()


def test_the_offset_is_the_same_after_a_restart(tmp_path: Path) -> None:
    h = Harness(tmp_path, config("a", "b"), now=NOON + timedelta(minutes=20))
    h.runner.start()
    first = sorted(h.runner.upcoming(2))
    assert first == sorted((ONE + timedelta(seconds=s), t) for t, s in OFFSET.items()
                           if t in ("a", "b"))
    h.runner.finish()
    # a second runner (a restart) in another minute schedules the same instants
    h.clock.set(NOON + timedelta(minutes=40))
    h.runner = h.new_runner()
    h.runner.start()
    assert sorted(h.runner.upcoming(2)) == first
    h.runner.finish()


def test_a_node_tasks_offset_depends_on_the_node_name(tmp_path: Path) -> None:
    path = write_config(tmp_path, config("a", scope="node"))
    starts = {}
    for node in ("n1", "n2"):
        store_path = tmp_path / f"{node}.db"
        from jobctl.store import open_store

        store = open_store(store_path, create=True)
        assert store is not None
        clock = FakeClock(NOON + timedelta(seconds=1))
        runner = Runner(resolve(path, system_zone="UTC", now=clock.now()), store, clock=clock,
                        report=lambda e: None, env=dict(os.environ),
                        owner=Owner(os.getpid(), "host", node=node))
        runner.start()
        [(starts[node], _task)] = runner.upcoming(1)
        runner.finish()
        store.close()
    assert starts == {"n1": NOON + timedelta(seconds=OFFSET_N1["a"]),
                      "n2": NOON + timedelta(seconds=OFFSET_N2["a"])}


def test_list_show_next_and_status_show_the_real_start(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    write_config(tmp_path, config("a") + """
[[tasks]]
id = "plain"
schedule = "0 * * * *"
command = "true"
""")
    start = NOON + timedelta(seconds=OFFSET["a"])  # the clock is at 12:00:00
    listed = cli("list", "--json")
    assert listed.exit_code == 0, listed.output
    a, plain = json.loads(listed.stdout)
    assert a["next_run"] == start.isoformat() and a["jitter_s"] == OFFSET["a"]
    assert plain["next_run"] == ONE.isoformat() and "jitter_s" not in plain
    table = cli("list")
    assert "(jitter +7m36s)" in table.stdout
    shown = json.loads(cli("show", "a", "--json").stdout)
    assert shown["next_runs"][:2] == [start.isoformat(), (start + timedelta(hours=1)).isoformat()]
    assert shown["next_slots"][:2] == [NOON.isoformat(), ONE.isoformat()]
    assert shown["jitter"] == 1800 and shown["jitter_s"] == OFFSET["a"]
    text = cli("show", "a").stdout
    assert f"{start.isoformat()}  (in 7m 36s) (jitter +7m36s)" in text, text
    nxt = cli("next", "a", "-n", "2", "--json")
    assert json.loads(nxt.stdout) == [start.isoformat(), (start + timedelta(hours=1)).isoformat()]
    assert "(jitter +7m36s)" in cli("next", "a", "-n", "1").stdout
    status = json.loads(cli("status", "--json").stdout)
    assert status["next"][0] == {"task_id": "a", "at": start.isoformat(),
                                 "jitter_s": OFFSET["a"]}
    assert "(jitter +7m36s)" in cli("status").stdout


def test_list_uses_this_nodes_offset_for_a_node_task(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    write_config(tmp_path, config("a", scope="node"))
    for node, offsets in (("n1", OFFSET_N1), ("n2", OFFSET_N2)):
        rows = json.loads(cli("list", "--json", env={"JOBCTL_NODE": node}).stdout)
        assert rows[0]["next_run"] == (NOON + timedelta(seconds=offsets["a"])).isoformat()


def test_a_jitter_may_reach_past_a_day_on_a_weekly_or_yearly_schedule(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The shortest gap counts the day fields: `0 3 * * 0` fires weekly, so
    a 2-day jitter is fine (systemd's RandomizedDelaySec=2d on a weekly
    timer); a week is not, and the message names the real gap."""
    write_config(tmp_path, '[jobctl]\nstate = "state.db"\ntimezone = "UTC"\n\n'
                           '[[tasks]]\nid = "weekly"\nschedule = "0 3 * * 0"\ncommand = "true"\n'
                           'jitter = "2d"\n\n'
                           '[[tasks]]\nid = "yearly"\nschedule = "0 0 1 1 *"\ncommand = "true"\n'
                           'jitter = "30d"\n')
    result = cli("validate")
    assert result.exit_code == 0, result.output
    shown = json.loads(cli("show", "weekly", "--json").stdout)
    assert 0 <= shown["jitter_s"] < 2 * 86400
    for start, slot in zip(shown["next_runs"], shown["next_slots"]):
        assert datetime.fromisoformat(start) - datetime.fromisoformat(slot) == timedelta(
            seconds=shown["jitter_s"])
    write_config(tmp_path, '[[tasks]]\nid = "weekly"\nschedule = "0 3 * * 0"\n'
                           'command = "true"\njitter = "7d"\n')
    result = cli("validate")
    assert result.exit_code == 2
    assert ("jitter: 7d is not shorter than the shortest gap between two fires of "
            "'0 3 * * 0' (7d)") in result.output, result.output
