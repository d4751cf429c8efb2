"""The store contract over both backends (the `store` fixture: ids `sqlite`,
a real file in tmp_path, and `postgres`, a fresh database on the suite's
PostgreSQL), plus each backend's own matters (opening, migrations, races
between processes)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import wait_for

from jobctl.store import sqlite as store_module
from jobctl.model import Concurrency, RunStatus, Scope, Trigger
from jobctl.store import (
    SCHEMA_VERSION,
    LeaseHeldError,
    Owner,
    SqliteStore,
    Store,
    StoreError,
    open_store,
)

UTC = timezone.utc
T0 = datetime(2026, 3, 1, 9, 0, 0, tzinfo=UTC)
ME = Owner(4242, "host-a", "boot-1", "777")
OTHER = Owner(5151, "host-b", "boot-2", "888")


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "state.db"


@pytest.fixture(params=[pytest.param("sqlite", id="sqlite"), pytest.param("postgres", id="postgres")])
def target(request: pytest.FixtureRequest, path: Path) -> Path | str:
    """Where a state is: a SQLite file, or the URL of a fresh PostgreSQL database."""
    if request.param == "postgres":
        return request.getfixturevalue("pg_url")  # type: ignore[no-any-return]
    return path


@pytest.fixture
def store(target: Path | str) -> Iterator[Store]:
    s = open_store(target, create=True)
    assert s is not None
    yield s
    s.close()


sqlite_only = pytest.mark.parametrize("target", ["sqlite"], indirect=True)
postgres_only = pytest.mark.parametrize("target", ["postgres"], indirect=True)


def start(s: Store, task_id: str = "backup", *, trigger: Trigger = Trigger.MANUAL,
          slot: datetime | None = None, concurrency: Concurrency = Concurrency.FORBID,
          force: bool = False, now: datetime = T0, owner: Owner = ME):  # type: ignore[no-untyped-def]
    return s.claim(task_id=task_id, trigger=trigger, scheduled_for=slot, concurrency=concurrency,
                   force=force, owner=owner, now=now)


def count_runs(s: Store) -> int:
    return len(s.history(limit=1_000_000))


# -- opening -------------------------------------------------------------------


def test_missing_file_without_create_is_none_and_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "not-yet" / "state.db"
    assert open_store(path, create=False) is None
    assert not (tmp_path / "not-yet").exists()
    assert list(tmp_path.iterdir()) == []


@sqlite_only
def test_create_sets_schema_version_wal_and_busy_timeout(store: Store, path: Path) -> None:
    assert path.exists()
    assert store.conn.execute("pragma user_version").fetchone()[0] == SCHEMA_VERSION >= 1
    assert store.conn.execute("pragma journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("pragma busy_timeout").fetchone()[0] >= 1000
    # WAL is a property of the file: a fresh connection sees it too
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("pragma journal_mode").fetchone()[0] == "wal"
        assert raw.execute("pragma user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        raw.close()


def test_reopen_keeps_data_and_read_only_open_works(store: Store, target: Path | str) -> None:
    run_id = start(store).run_id
    store.close()
    again = open_store(target, create=False)
    assert again is not None
    try:
        run = again.get_run(run_id)  # type: ignore[arg-type]
        assert run is not None and run.task_id == "backup" and run.status is RunStatus.RUNNING
    finally:
        again.close()


@sqlite_only
def test_forward_migration_runs_new_steps_and_keeps_rows(
    store: Store, path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = start(store).run_id
    store.close()
    steps = [*store_module.MIGRATIONS, ["alter table runs add column note text"]]
    monkeypatch.setattr(store_module, "MIGRATIONS", steps)
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", len(steps))
    migrated = open_store(path, create=False)
    assert migrated is not None
    try:
        assert migrated.conn.execute("pragma user_version").fetchone()[0] == len(steps)
        columns = [r[1] for r in migrated.conn.execute("pragma table_info(runs)")]
        assert "note" in columns
        assert migrated.get_run(run_id) is not None  # type: ignore[arg-type]
    finally:
        migrated.close()


@sqlite_only
def test_newer_schema_is_refused(store: Store, path: Path) -> None:
    store.conn.execute(f"pragma user_version = {SCHEMA_VERSION + 1}")
    store.close()
    with pytest.raises(StoreError, match="newer jobctl") as info:
        open_store(path, create=False)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("create", [False, True])
def test_non_sqlite_file_is_a_store_error(tmp_path: Path, create: bool) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"these are my notes, not a database\n" * 50)
    before = path.read_bytes()
    with pytest.raises(StoreError) as info:
        open_store(path, create=create)
    message = str(info.value)
    assert str(path) in message and "not a usable SQLite database" in message
    assert path.read_bytes() == before


@pytest.mark.parametrize("create", [False, True])
def test_foreign_sqlite_database_is_a_store_error_and_left_alone(tmp_path: Path, create: bool) -> None:
    path = tmp_path / "app.db"
    raw = sqlite3.connect(path)
    raw.execute("create table customers (name text)")
    raw.execute("insert into customers values ('ada')")
    raw.commit()
    raw.close()
    before = path.read_bytes()
    # create=True is what run-now, enable and disable pass: they must not
    # turn someone else's database into a jobctl state file either.
    with pytest.raises(StoreError, match="not a jobctl state file") as info:
        open_store(path, create=create)
    assert str(path) in str(info.value)
    assert path.read_bytes() == before
    raw = sqlite3.connect(path)
    try:
        tables = {r[0] for r in raw.execute("select name from sqlite_master where type = 'table'")}
        assert tables == {"customers"}
        assert raw.execute("pragma user_version").fetchone()[0] == 0
    finally:
        raw.close()


# -- claim ---------------------------------------------------------------------


def test_claim_forbid_starts_when_idle_and_sets_log_path(store: Store) -> None:
    claim = start(store)
    assert claim.outcome == "started" and claim.blocking == () and claim.replaced == ()
    run = store.get_run(claim.run_id)  # type: ignore[arg-type]
    assert run is not None
    assert run.status is RunStatus.RUNNING and run.trigger is Trigger.MANUAL
    assert run.started_at == T0 and run.finished_at is None and run.scheduled_for is None
    assert run.attempt == 1 and run.host == "host-a" and run.owner.pid == 4242
    assert run.owner.start == "777"
    assert run.log_path == str(store.log_dir / f"{claim.run_id}.log")
    if isinstance(store, SqliteStore):
        assert store.log_dir == store.path.parent / "logs"
    else:  # local files in this step, a folder per database, under the user data dir
        assert "pg-logs" in store.log_dir.parts


def test_claim_forbid_manual_while_running_is_refused_and_records_nothing(store: Store) -> None:
    first = start(store)
    claim = start(store, now=T0 + timedelta(seconds=5))
    assert claim.outcome == "refused" and claim.run_id is None
    assert [r.id for r in claim.blocking] == [first.run_id]
    assert count_runs(store) == 1
    assert store.last_runs()["backup"].id == first.run_id


def test_claim_forbid_manual_with_force_starts_anyway(store: Store) -> None:
    first = start(store)
    claim = start(store, force=True)
    assert claim.outcome == "started" and claim.run_id != first.run_id
    assert [r.id for r in store.running("backup")] == [first.run_id, claim.run_id]


def test_claim_forbid_scheduled_while_running_is_recorded_skipped(store: Store) -> None:
    first = start(store)
    slot = datetime(2026, 3, 1, 9, 5, tzinfo=UTC)
    claim = start(store, trigger=Trigger.SCHEDULE, slot=slot, now=slot)
    assert claim.outcome == "skipped" and claim.run_id is not None
    assert [r.id for r in claim.blocking] == [first.run_id]
    run = store.get_run(claim.run_id)
    assert run is not None
    assert run.status is RunStatus.SKIPPED and run.trigger is Trigger.SCHEDULE
    assert run.scheduled_for == slot and run.finished_at == slot
    assert run.error == f"previous run #{first.run_id} still running (concurrency = forbid)"
    assert [r.id for r in store.running()] == [first.run_id]
    # a skipped fire still used its slot
    assert store.last_scheduled(node=ME.node_name) == {"backup": slot}
    assert start(store, trigger=Trigger.SCHEDULE, slot=slot, now=slot).outcome == "duplicate"


def test_claim_allow_starts_beside_the_running_one(store: Store) -> None:
    first = start(store, concurrency=Concurrency.ALLOW)
    second = start(store, concurrency=Concurrency.ALLOW, trigger=Trigger.SCHEDULE,
                   slot=datetime(2026, 3, 1, 9, 1, tzinfo=UTC))
    assert second.outcome == "started" and second.blocking == ()
    assert {r.id for r in store.running()} == {first.run_id, second.run_id}


def test_claim_replace_interrupts_the_running_ones(store: Store) -> None:
    first = start(store, concurrency=Concurrency.ALLOW)
    second = start(store, concurrency=Concurrency.ALLOW)
    later = T0 + timedelta(minutes=1)
    claim = start(store, concurrency=Concurrency.REPLACE, now=later)
    assert claim.outcome == "started"
    assert [r.id for r in claim.replaced] == [first.run_id, second.run_id]
    assert all(r.status is RunStatus.RUNNING for r in claim.replaced)  # as they were
    for old_id in (first.run_id, second.run_id):
        old = store.get_run(old_id)  # type: ignore[arg-type]
        assert old is not None and old.status is RunStatus.INTERRUPTED
        assert old.finished_at == later
        assert old.error == f"replaced by run #{claim.run_id} (concurrency = replace)"
    assert [r.id for r in store.running()] == [claim.run_id]
    # the replaced run's own end cannot overwrite `interrupted`
    assert store.finish(first.run_id, RunStatus.FAILED, later, exit_code=-15) is False  # type: ignore[arg-type]
    assert store.get_run(first.run_id).status is RunStatus.INTERRUPTED  # type: ignore[arg-type,union-attr]


def test_claim_replace_when_idle_just_starts(store: Store) -> None:
    claim = start(store, concurrency=Concurrency.REPLACE)
    assert claim.outcome == "started" and claim.replaced == ()


def test_policy_is_per_task(store: Store) -> None:
    start(store, "backup")
    assert start(store, "report").outcome == "started"


def test_scheduled_slot_fires_at_most_once(store: Store) -> None:
    slot = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    first = start(store, trigger=Trigger.SCHEDULE, slot=slot, concurrency=Concurrency.ALLOW, now=slot)
    assert first.outcome == "started"
    store.finish(first.run_id, RunStatus.SUCCESS, slot)  # type: ignore[arg-type]
    # same slot again, whatever the policy and even forced, or as a catch-up
    for concurrency in Concurrency:
        again = start(store, trigger=Trigger.SCHEDULE, slot=slot, concurrency=concurrency,
                      force=True, now=slot + timedelta(seconds=1))
        assert again.outcome == "duplicate" and again.run_id is None
    assert start(store, trigger=Trigger.CATCH_UP, slot=slot).outcome == "duplicate"
    # the same instant given in another zone is the same slot
    berlin = slot.astimezone(ZoneInfo("Europe/Berlin"))
    assert start(store, trigger=Trigger.SCHEDULE, slot=berlin).outcome == "duplicate"
    assert count_runs(store) == 1
    # other slots, other tasks and manual runs are not affected
    assert start(store, "report", trigger=Trigger.SCHEDULE, slot=slot).outcome == "started"
    assert start(store, trigger=Trigger.SCHEDULE, slot=slot + timedelta(hours=1)).outcome == "started"
    assert start(store, force=True).outcome == "started"


def test_a_retry_is_the_slots_next_attempt_unique_per_attempt(store: Store) -> None:
    from jobctl.store import ClaimRequest

    slot = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    first = start(store, trigger=Trigger.SCHEDULE, slot=slot, now=slot)
    store.finish(first.run_id, RunStatus.FAILED, slot, exit_code=1)  # type: ignore[arg-type]

    def retry(attempt: int, at: datetime) -> object:
        [claim] = store.claim_many([ClaimRequest("backup", Trigger.SCHEDULE, slot,
                                                 Concurrency.FORBID, attempt=attempt)],
                                   owner=ME, now=at)
        return claim

    second = retry(2, slot + timedelta(seconds=10))
    assert second.outcome == "started"  # type: ignore[attr-defined]
    # the same attempt of the slot again (another node, a clock jump): once only
    assert retry(2, slot + timedelta(seconds=11)).outcome == "duplicate"  # type: ignore[attr-defined]
    assert start(store, trigger=Trigger.SCHEDULE, slot=slot).outcome == "duplicate"
    store.finish(second.run_id, RunStatus.FAILED, slot + timedelta(seconds=12))  # type: ignore[attr-defined]
    # a retry that will not run: a skipped row with its reason, once per attempt
    request = ClaimRequest("backup", Trigger.SCHEDULE, slot, Concurrency.FORBID, attempt=3)
    dropped = store.record_skipped(request, owner=ME, now=slot + timedelta(seconds=20),
                                   reason="retry dropped: the next slot comes first")
    assert dropped is not None
    assert store.record_skipped(request, owner=ME, now=slot, reason="again") is None
    rows = sorted(store.history("backup"), key=lambda r: r.id)
    assert [(r.attempt, r.status, r.scheduled_for) for r in rows] == [
        (1, RunStatus.FAILED, slot), (2, RunStatus.FAILED, slot), (3, RunStatus.SKIPPED, slot)]
    assert rows[2].error == "retry dropped: the next slot comes first"
    assert rows[2].finished_at == slot + timedelta(seconds=20)
    # manual runs are no slot: their attempts are recorded, never duplicates
    for attempt in (1, 2, 2):
        [manual] = store.claim_many([ClaimRequest("backup", Trigger.MANUAL, None,
                                                  Concurrency.ALLOW, attempt=attempt)],
                                    owner=ME, now=T0)
        assert manual.outcome == "started"
    assert [r.attempt for r in store.history("backup", limit=3)] == [2, 2, 1]


def test_a_cluster_tasks_retry_is_claimed_once_in_the_cluster(store: Store) -> None:
    from jobctl.model import Scope
    from jobctl.store import ClaimRequest

    slot = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    node_a = Owner(1, "h", "b", "s", node="node-a")
    node_b = Owner(2, "h", "b", "s", node="node-b")
    request = ClaimRequest("sync", Trigger.SCHEDULE, slot, Concurrency.ALLOW,
                           scope=Scope.CLUSTER, attempt=2)
    [a] = store.claim_many([request], owner=node_a, now=slot)
    [b] = store.claim_many([request], owner=node_b, now=slot)
    assert a.outcome == "started"
    # PostgreSQL: the retry of a cluster slot is the cluster's, once; a
    # SQLite state has one runner, whatever its node name says
    assert b.outcome == "duplicate"


@sqlite_only
def test_slot_uniqueness_is_enforced_by_the_database(store: Store) -> None:
    slot = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    start(store, trigger=Trigger.SCHEDULE, slot=slot)
    text = store_module.to_text(slot)
    with pytest.raises(sqlite3.IntegrityError):
        store.conn.execute(
            "insert into runs (task_id, trigger, status, scheduled_for, started_at, host, owner_pid)"
            " values ('backup', 'catch-up', 'running', ?, ?, 'h', 1)", (text, text))


# -- finishing -----------------------------------------------------------------


def test_finish_only_changes_running_rows(store: Store) -> None:
    run_id = start(store).run_id
    assert run_id is not None
    end = T0 + timedelta(seconds=90, microseconds=250_000)
    assert store.finish(run_id, RunStatus.FAILED, end, exit_code=3, error="exit code 3") is True
    run = store.get_run(run_id)
    assert run is not None
    assert (run.status, run.exit_code, run.error, run.finished_at) == (RunStatus.FAILED, 3, "exit code 3", end)
    assert run.duration_s == 90.25
    assert store.finish(run_id, RunStatus.SUCCESS, end + timedelta(seconds=1), exit_code=0) is False
    assert store.get_run(run_id) == run
    assert store.running() == []


def test_mark_interrupted_changes_only_running_rows(store: Store) -> None:
    a = start(store, "a").run_id
    b = start(store, "b").run_id
    c = start(store, "c").run_id
    store.finish(b, RunStatus.SUCCESS, T0, exit_code=0)  # type: ignore[arg-type]
    later = T0 + timedelta(minutes=2)
    changed = store.mark_interrupted([a, b, c, 999], later, "runner (pid 4242) stopped or died")  # type: ignore[list-item]
    assert changed == [a, c]
    for run_id in (a, c):
        run = store.get_run(run_id)  # type: ignore[arg-type]
        assert run is not None and run.status is RunStatus.INTERRUPTED
        assert run.finished_at == later and run.error == "runner (pid 4242) stopped or died"
    assert store.get_run(b).status is RunStatus.SUCCESS  # type: ignore[arg-type,union-attr]
    assert store.mark_interrupted([a], later, "again") == []  # type: ignore[list-item]
    assert store.get_run(a).error == "runner (pid 4242) stopped or died"  # type: ignore[arg-type,union-attr]


def test_set_process_records_the_child(store: Store) -> None:
    run_id = start(store).run_id
    store.set_process(run_id, 31337, "12345", "boot-1")  # type: ignore[arg-type]
    run = store.get_run(run_id)  # type: ignore[arg-type]
    assert run is not None and (run.pid, run.proc_start, run.boot_id) == (31337, "12345", "boot-1")
    assert store.get_run(10_000) is None


# -- reading history -----------------------------------------------------------


@pytest.fixture
def filled(store: Store) -> dict[str, list[int]]:
    """backup: success, failed, success, running; report: failed, success."""
    ids: dict[str, list[int]] = {"backup": [], "report": []}
    plan = [("backup", RunStatus.SUCCESS), ("report", RunStatus.FAILED), ("backup", RunStatus.FAILED),
            ("backup", RunStatus.SUCCESS), ("report", RunStatus.SUCCESS), ("backup", None)]
    for i, (task_id, status) in enumerate(plan):
        at = T0 + timedelta(minutes=i)
        run_id = start(store, task_id, concurrency=Concurrency.ALLOW, now=at).run_id
        assert run_id is not None
        if status is not None:
            store.finish(run_id, status, at + timedelta(seconds=30))
        ids[task_id].append(run_id)
    return ids


def test_history_newest_first_with_filters_and_limit(store: Store, filled: dict[str, list[int]]) -> None:
    every = sorted(filled["backup"] + filled["report"], reverse=True)
    assert [r.id for r in store.history()] == every
    assert [r.id for r in store.history(limit=3)] == every[:3]
    assert [r.id for r in store.history("backup")] == filled["backup"][::-1]
    assert [r.id for r in store.history("backup", limit=2)] == filled["backup"][::-1][:2]
    assert [r.id for r in store.history(status=RunStatus.FAILED)] == [filled["backup"][1], filled["report"][0]]
    assert [r.id for r in store.history("report", status=RunStatus.SUCCESS)] == [filled["report"][1]]
    assert [r.id for r in store.history("backup", status=RunStatus.RUNNING)] == [filled["backup"][3]]
    assert store.history("backup", status=RunStatus.TIMEOUT) == []
    assert store.history("nosuch") == []
    started = [r.started_at for r in store.history()]
    assert started == sorted(started, reverse=True)


def test_running_lists_only_running_rows(store: Store, filled: dict[str, list[int]]) -> None:
    assert [r.id for r in store.running()] == [filled["backup"][3]]
    assert [r.id for r in store.running("backup")] == [filled["backup"][3]]
    assert store.running("report") == []


def test_last_runs_is_each_tasks_newest(store: Store, filled: dict[str, list[int]]) -> None:
    last = store.last_runs()
    assert set(last) == {"backup", "report"}
    assert last["backup"].id == filled["backup"][-1] and last["backup"].status is RunStatus.RUNNING
    assert last["report"].id == filled["report"][-1] and last["report"].status is RunStatus.SUCCESS


def test_last_runs_empty_and_not_confused_by_enable_overrides(store: Store) -> None:
    assert store.last_runs() == {}
    store.set_enabled(["backup"], False)
    assert store.last_runs() == {}


# -- retention -----------------------------------------------------------------


def test_prune_keeps_newest_n_and_returns_their_log_paths(store: Store) -> None:
    backup = []
    for i in range(6):
        run_id = start(store, "backup", now=T0 + timedelta(minutes=i)).run_id
        assert run_id is not None
        store.finish(run_id, RunStatus.SUCCESS, T0 + timedelta(minutes=i, seconds=5))
        backup.append(run_id)
        other = start(store, "report", now=T0 + timedelta(minutes=i)).run_id
        store.finish(other, RunStatus.SUCCESS, T0)  # type: ignore[arg-type]
    logs = store.prune("backup", 2)
    assert sorted(logs) == sorted(str(store.log_dir / f"{i}.log") for i in backup[:4])
    assert [r.id for r in store.history("backup")] == [backup[5], backup[4]]
    assert len(store.history("report")) == 6  # other tasks untouched
    assert store.last_runs()["backup"].id == backup[-1]
    assert store.prune("backup", 2) == []
    assert store.prune("backup", 10) == []
    assert store.prune("nosuch", 1) == []


def test_prune_skipped_runs_have_no_log_and_running_rows_stay(store: Store) -> None:
    old = start(store, now=T0).run_id  # still running: never pruned
    slot = datetime(2026, 3, 1, 9, 1, tzinfo=UTC)
    skipped = start(store, trigger=Trigger.SCHEDULE, slot=slot, now=slot)
    assert skipped.outcome == "skipped"
    newer = [start(store, force=True, now=T0 + timedelta(minutes=m)).run_id for m in (2, 3)]
    for run_id in newer:
        store.finish(run_id, RunStatus.SUCCESS, T0 + timedelta(minutes=4))  # type: ignore[arg-type]
    # skipped rows count apart: one skip does not push a real run out
    assert store.prune("backup", 2) == []
    assert {r.id for r in store.history("backup")} == {old, skipped.run_id, *newer}
    assert store.prune("backup", 1) == [str(store.log_dir / f"{newer[0]}.log")]
    assert {r.id for r in store.history("backup")} == {old, skipped.run_id, newer[1]}


def test_prune_keeps_real_runs_when_skips_pile_up(store: Store) -> None:
    """An overrunning task under forbid records a skip per fire; those must
    not push its finished runs (and their logs) out of history_limit."""
    done = start(store, force=True, now=T0).run_id
    store.finish(done, RunStatus.SUCCESS, T0 + timedelta(seconds=30))  # type: ignore[arg-type]
    running = start(store, force=True, now=T0 + timedelta(minutes=1)).run_id
    skips = []
    for m in range(2, 8):
        slot = T0 + timedelta(minutes=m)
        claim = start(store, trigger=Trigger.SCHEDULE, slot=slot, now=slot)
        assert claim.outcome == "skipped"
        skips.append(claim.run_id)
    store.prune("backup", 3)
    kept = [r.id for r in store.history("backup", limit=100)]
    assert kept == [*reversed(skips[-3:]), running, done]


# -- control -------------------------------------------------------------------


def test_set_enabled_overrides_and_control_version(store: Store, target: Path | str) -> None:
    assert store.overrides() == {} and store.control_version() == 0
    store.set_enabled(["backup", "report"], False)
    assert store.overrides() == {"backup": False, "report": False}
    assert store.control_version() == 1
    store.set_enabled(["backup"], True)
    assert store.overrides() == {"backup": True, "report": False}
    assert store.control_version() == 2
    # another connection (a runner) sees both the override and the bump
    other = open_store(target, create=False)
    assert other is not None
    try:
        assert other.overrides() == {"backup": True, "report": False}
        assert other.control_version() == 2
        other.set_enabled(["report"], True)
    finally:
        other.close()
    assert store.control_version() == 3 and store.overrides()["report"] is True


def test_last_scheduled_round_trip_including_dst(store: Store) -> None:
    ny = ZoneInfo("America/New_York")
    # 01:30 happens twice on 2026-11-01 in New York; fold=1 is the second (EST)
    second = datetime(2026, 11, 1, 1, 30, tzinfo=ny, fold=1)
    berlin = datetime(2026, 3, 29, 3, 0, tzinfo=ZoneInfo("Europe/Berlin"))  # right after the gap
    precise = datetime(2026, 3, 1, 9, 0, 0, 123456, tzinfo=UTC)
    store.set_last_scheduled([("a", second), ("b", berlin), ("c", precise)])
    got = store.last_scheduled()
    # compare instants: Python never calls a fold=1 time equal to one in another zone
    assert {k: v.timestamp() for k, v in got.items()} == {
        "a": second.timestamp(), "b": berlin.timestamp(), "c": precise.timestamp()}
    assert got["a"] == datetime(2026, 11, 1, 6, 30, tzinfo=UTC)
    assert got["c"].microsecond == 123456 and got["a"].utcoffset() == timedelta(0)
    # an enable override and the last fire live side by side
    store.set_enabled(["a"], False)
    store.set_last_scheduled([("a", second + timedelta(hours=1))])
    assert store.overrides() == {"a": False}
    assert store.last_scheduled()["a"] == datetime(2026, 11, 1, 7, 30, tzinfo=UTC)


def test_scheduled_claims_advance_last_scheduled_but_never_back(store: Store) -> None:
    late = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    early = datetime(2026, 3, 1, 11, 0, tzinfo=UTC)
    # (a node task's: on a shared state, the claiming node's own watermark)
    mine = ME.node_name
    start(store, trigger=Trigger.SCHEDULE, slot=late, concurrency=Concurrency.ALLOW)
    assert store.last_scheduled(node=mine) == {"backup": late}
    start(store, trigger=Trigger.CATCH_UP, slot=early, concurrency=Concurrency.ALLOW)
    assert store.last_scheduled(node=mine) == {"backup": late}
    start(store, force=True)  # manual runs have no slot
    assert store.last_scheduled(node=mine) == {"backup": late}


def test_a_node_tasks_watermark_is_its_nodes_a_cluster_tasks_the_clusters(store: Store) -> None:
    slot = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    for task_id, scope in (("n", Scope.NODE), ("c", Scope.CLUSTER)):
        store.claim(task_id=task_id, trigger=Trigger.SCHEDULE, scheduled_for=slot,
                    concurrency=Concurrency.ALLOW, force=False, owner=ME, now=slot, scope=scope)
    store.set_last_scheduled([("x", slot)], node="other")
    if store.clustered:
        assert store.last_scheduled() == {"c": slot}
        assert store.last_scheduled(node=ME.node_name) == {"n": slot}
        assert store.last_scheduled(node="other") == {"x": slot}
    else:  # one runner per state: one watermark per task
        assert store.last_scheduled() == store.last_scheduled(node="other") == {
            "n": slot, "c": slot, "x": slot}


# -- lease ---------------------------------------------------------------------


def test_lease_take_heartbeat_release(store: Store) -> None:
    assert store.lease() is None
    lease = store.take_lease(ME, T0)
    assert (lease.pid, lease.host, lease.boot_id, lease.proc_start) == (4242, "host-a", "boot-1", "777")
    assert lease.started_at == lease.heartbeat_at == lease.anchor == T0
    assert lease.owner == ME
    assert store.lease() == lease
    beat = T0 + timedelta(seconds=1, microseconds=500)
    assert store.heartbeat(ME, beat) is True
    assert store.lease().heartbeat_at == beat  # type: ignore[union-attr]
    assert store.lease().started_at == T0  # type: ignore[union-attr]
    assert store.heartbeat(OTHER, beat) is False
    store.release_lease(OTHER)  # not the holder: no effect
    assert store.lease() is not None
    store.release_lease(ME)
    assert store.lease() is None
    assert store.heartbeat(ME, beat) is False


def test_lease_held_by_another_runner(store: Store) -> None:
    store.take_lease(ME, T0)
    with pytest.raises(LeaseHeldError) as info:
        store.take_lease(OTHER, T0 + timedelta(minutes=1))
    assert info.value.lease.pid == 4242
    message = str(info.value)
    assert "pid 4242" in message and "host-a" in message and str(store.path) in message
    assert info.value.exit_code == 75
    assert store.lease().owner == ME  # type: ignore[union-attr]
    # the same owner may take it again (e.g. after a restart of its loop)
    assert store.take_lease(ME, T0 + timedelta(minutes=2)).anchor == T0 + timedelta(minutes=2)
    # a holder the caller found dead is replaced, if the row is still that holder's
    later = T0 + timedelta(minutes=3)
    taken = store.take_lease(OTHER, later, replacing=store.lease())
    assert taken.owner == OTHER and taken.anchor == later
    assert store.heartbeat(ME, later) is False
    # intervals count from the whole second the runner started at
    odd = T0 + timedelta(minutes=4, microseconds=654321)
    taken = store.take_lease(OTHER, odd)
    assert taken.started_at == odd and taken.anchor == T0 + timedelta(minutes=4)


def test_lease_compare_and_swap_loses_to_whoever_changed_the_row(store: Store) -> None:
    third = Owner(5151, "host-c", "boot-3", "999")
    # two runners both saw no lease; the first to write wins
    store.take_lease(ME, T0, replacing=None)
    with pytest.raises(LeaseHeldError) as info:
        store.take_lease(OTHER, T0, replacing=None)
    assert info.value.lease.owner == ME
    # two runners both found ME dead: one replaces it, the other now sees a
    # different row (OTHER's) and loses, naming OTHER
    dead = store.lease()
    assert store.take_lease(OTHER, T0 + timedelta(minutes=1), replacing=dead).owner == OTHER
    with pytest.raises(LeaseHeldError) as info:
        store.take_lease(third, T0 + timedelta(minutes=1), replacing=dead)
    assert info.value.lease.owner == OTHER
    # a holder that heartbeat since the caller looked is alive: not replaced
    seen = store.lease()
    assert store.heartbeat(OTHER, T0 + timedelta(minutes=2))
    with pytest.raises(LeaseHeldError):
        store.take_lease(third, T0 + timedelta(minutes=2), replacing=seen)
    assert store.lease().owner == OTHER  # type: ignore[union-attr]


# -- many processes at once ----------------------------------------------------

_WRITER = textwrap.dedent("""
    import os, sys, time
    from datetime import datetime, timedelta, timezone
    from pathlib import Path
    from jobctl.model import Concurrency, RunStatus, Trigger
    from jobctl.store import Owner, open_store

    path, go, name = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    owner = Owner(os.getpid(), "host-" + name)
    t0 = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)
    (go.parent / ("ready-" + name)).touch()
    deadline = time.monotonic() + 30
    while not go.exists():
        if time.monotonic() > deadline:
            sys.exit("no go signal")
        time.sleep(0.001)
    store = open_store(path, create=True)
    for i in range(200):
        at = t0 + timedelta(seconds=i)
        claim = store.claim(task_id="shared", trigger=Trigger.MANUAL, scheduled_for=None,
                            concurrency=Concurrency.ALLOW, force=False, owner=owner, now=at)
        assert claim.outcome == "started", claim
        # the scheduled path too: a slot of this writer's own task
        slot = store.claim(task_id="own-" + name, trigger=Trigger.SCHEDULE, scheduled_for=at,
                           concurrency=Concurrency.FORBID, force=False, owner=owner, now=at)
        assert slot.outcome == "started", slot
        assert store.finish(claim.run_id, RunStatus.SUCCESS, at, exit_code=0)
        assert store.finish(slot.run_id, RunStatus.SUCCESS, at, exit_code=0)
    store.close()
    print("done")
""")


def test_two_writer_processes_at_once(path: Path, tmp_path: Path) -> None:
    created = open_store(path, create=True)  # first opens race: see the tests below
    assert created is not None
    created.close()
    go = tmp_path / "go"
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(path), str(go), name],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name in ("a", "b")
    ]
    try:
        # release both together, once both have imported jobctl
        deadline = time.monotonic() + 30
        while not all((tmp_path / f"ready-{name}").exists() for name in ("a", "b")):
            assert time.monotonic() < deadline, "writers did not start"
            assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
            time.sleep(0.02)
        go.touch()
        reads = 0
        reader = None
        while any(p.poll() is None for p in procs):
            # a CLI-like reader alongside the writers never sees "locked"
            if reader is None and path.exists():
                reader = open_store(path, create=False)
            if reader is not None:
                reader.history(limit=5)
                reader.running()
                reads += 1
            time.sleep(0.02)
        outs = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert out == "done\n" and err == ""
    final = open_store(path, create=False)
    assert final is not None
    try:
        runs = final.history(limit=10_000)
        assert len([r for r in runs if r.task_id == "shared"]) == 400
        assert len(runs) == 800
        assert {r.status for r in runs} == {RunStatus.SUCCESS}
        assert len({r.id for r in runs}) == 800
        assert {r.host for r in runs if r.task_id == "shared"} == {"host-a", "host-b"}
        assert final.running() == []
    finally:
        final.close()
        if reader is not None:
            reader.close()


def test_first_open_waits_for_a_writer_instead_of_failing(path: Path) -> None:
    # Another connection holds the write lock on a brand-new file, as a second
    # jobctl process does while it switches the file to WAL. The busy timeout
    # must cover the switch to WAL too: wait, don't fail at once.
    path.parent.mkdir()
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("begin immediate")
    timer = threading.Timer(0.2, other.execute, ("commit",))
    timer.start()
    began = time.monotonic()
    try:
        opened = open_store(path, create=True)
    finally:
        timer.join()
        other.close()
    assert opened is not None
    try:
        assert time.monotonic() - began >= 0.15
        assert opened.conn.execute("pragma journal_mode").fetchone()[0] == "wal"
        assert opened.conn.execute("pragma user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        opened.close()



_FIRST_OPEN = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from jobctl.store import StoreError, open_store

    base, role, files = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    failures = []
    for k in range(files):
        folder = base / str(k)
        folder.mkdir(exist_ok=True)
        (folder / ("ready-" + role)).touch()
        deadline = time.monotonic() + 30
        # spin, don't sleep: both must reach open_store at the same instant
        while sum(1 for f in os.listdir(folder) if f.startswith("ready-")) < 2:
            if time.monotonic() > deadline:
                sys.exit("the other process never came")
        try:
            if role == "creator":  # e.g. the runner's first start
                open_store(folder / "state.db", create=True).close()
                continue
            while time.monotonic() < deadline:  # e.g. `jobctl status` in a loop
                store = open_store(folder / "state.db", create=False)
                if store is not None:
                    store.close()
                    break
        except StoreError as e:
            failures.append(f"{role} {k}: {e}")
    print("\\n".join(failures))
""")


def test_read_only_open_while_another_process_creates_the_file(tmp_path: Path) -> None:
    procs = [
        subprocess.Popen([sys.executable, "-c", _FIRST_OPEN, str(tmp_path), role, "60"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for role in ("creator", "reader")
    ]
    try:
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err
    failures = "".join(out for out, _ in outs).strip()
    assert failures == "", f"open_store failed while the file was being created:\n{failures}"
    for k in range(60):
        raw = sqlite3.connect(tmp_path / str(k) / "state.db")
        try:
            assert raw.execute("pragma journal_mode").fetchone()[0] == "wal"
            assert raw.execute("pragma user_version").fetchone()[0] == SCHEMA_VERSION
        finally:
            raw.close()


@sqlite_only
def test_a_full_database_is_a_store_error_and_the_store_stays_usable(store: Store) -> None:
    """SQLite rolls a transaction back itself on SQLITE_FULL; the store must
    report a StoreError (which the runner and commands print), not crash on a
    second rollback, and work again once there is room."""
    pages = store.conn.execute("pragma page_count").fetchone()[0]
    store.conn.execute(f"pragma max_page_count = {pages}")
    with pytest.raises(StoreError, match="database or disk is full"):
        for i in range(2000):
            start(store, f"task-{i}-" + "x" * 40, force=True)
    assert not store.conn.in_transaction
    store.conn.execute("pragma max_page_count = 1073741823")
    claim = start(store, "after", force=True)
    assert claim.outcome == "started"
    assert store.get_run(claim.run_id).task_id == "after"  # type: ignore[union-attr]


def test_a_skip_claimed_ahead_of_its_instant_is_stamped_at_the_instant(store: Store) -> None:
    start(store, force=True, now=T0)  # running
    slot = T0 + timedelta(minutes=1)
    claim = start(store, trigger=Trigger.SCHEDULE, slot=slot, now=slot - timedelta(milliseconds=10))
    assert claim.outcome == "skipped"
    record = store.get_run(claim.run_id)
    assert record is not None and record.started_at == record.finished_at == slot


def test_each_state_file_gets_its_own_id_and_old_files_are_migrated(tmp_path: Path) -> None:
    from jobctl.store import MIGRATIONS, SCHEMA_VERSION

    # a state file written by the jobctl before state ids (schema 2), with a run
    old = tmp_path / "old.db"
    conn = sqlite3.connect(old)
    for steps in MIGRATIONS[:2]:
        for sql in steps:
            conn.execute(sql)
    conn.execute("insert into runs (task_id, trigger, status, started_at, host, owner_pid)"
                 " values ('backup', 'schedule', 'success', '2026-06-15T12:00:00.000000+00:00',"
                 " 'h', 1)")
    conn.execute("pragma user_version = 2")
    conn.commit()
    conn.close()
    ids = []
    for path in (old, tmp_path / "a.db", tmp_path / "b.db"):
        store = open_store(path, create=True)
        assert store is not None
        try:
            ids.append(store.state_id)
        finally:
            store.close()
    assert all(len(i) == 16 and int(i, 16) >= 0 for i in ids)
    assert len(set(ids)) == 3
    store = open_store(old, create=False)
    assert store is not None
    try:
        assert store.state_id == ids[0]  # made once, kept
        assert [(r.task_id, r.status) for r in store.history()] == [("backup", RunStatus.SUCCESS)]
        assert store.conn.execute("pragma user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        store.close()


# -- races between processes, on both backends -----------------------------------

_RACER = textwrap.dedent("""
    import os, sys, time
    from datetime import datetime, timezone
    from pathlib import Path
    from jobctl.model import Concurrency, Scope, Trigger
    from jobctl.store import LeaseHeldError, NodeHeldError, Owner, open_store

    target, go, name, action = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4]
    if not target.startswith("postgres"):
        target = Path(target)
    owner = Owner(os.getpid(), "host-" + name)
    (go.parent / ("ready-" + name)).touch()
    deadline = time.monotonic() + 30
    while not go.exists():
        if time.monotonic() > deadline:
            sys.exit("no go signal")
        time.sleep(0.001)
    # the first open is part of the race: the schema is made by one of them
    store = open_store(target, create=True)
    slot = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)
    if action in ("claim", "claim-node"):
        # each racer is a node of its own (its host's name)
        scope = Scope.CLUSTER if action == "claim" else Scope.NODE
        claim = store.claim(task_id="shared", trigger=Trigger.SCHEDULE, scheduled_for=slot,
                            concurrency=Concurrency.ALLOW, force=False, owner=owner, now=slot,
                            scope=scope)
        print(claim.outcome, claim.run_id)
    elif action == "node":
        try:
            store.take_node(Owner(os.getpid(), "host-" + name, node="same"), 30)
            print("won")
        except NodeHeldError as e:
            print("lost", e.node.host)
    else:
        try:
            store.take_lease(owner, slot, replacing=None)
            print("won")
        except LeaseHeldError as e:
            print("lost", e.lease.host)
    store.close()
""")


def race(target: Path | str, tmp_path: Path, action: str, n: int = 8) -> list[str]:
    """Start `n` processes that each open the (empty) state and do `action`
    at one signal; their answers."""
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", _RACER, str(target), str(go), str(i), action],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(n)]
    try:
        wait_for(lambda: len(list(tmp_path.glob("ready-*"))) == n, what="racers ready")
        go.touch()
        outs = []
        for p in procs:
            out, errs = p.communicate(timeout=60)
            assert p.returncode == 0, errs
            outs.append(out.strip())
        return outs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_concurrent_claims_of_one_slot_start_exactly_one_run(target: Path | str, tmp_path: Path) -> None:
    outs = race(target, tmp_path, "claim")
    outcomes = sorted(o.split()[0] for o in outs)
    assert outcomes == ["duplicate"] * 7 + ["started"], outs
    store = open_store(target, create=False)
    assert store is not None
    try:
        runs = store.history("shared")
        assert len(runs) == 1 and runs[0].status is RunStatus.RUNNING
        assert f"started {runs[0].id}" in outs
    finally:
        store.close()


def test_concurrent_node_task_claims_start_one_run_per_node(target: Path | str,
                                                             tmp_path: Path) -> None:
    outs = race(target, tmp_path, "claim-node", n=4)
    outcomes = sorted(o.split()[0] for o in outs)
    if isinstance(target, str):
        # a node task's slot is one per node: four nodes, four runs
        assert outcomes == ["started"] * 4, outs
    else:
        # one runner per SQLite file: scope changes nothing
        assert outcomes == ["duplicate"] * 3 + ["started"], outs


def test_concurrent_takes_of_one_node_name_have_exactly_one_winner(pg_url: str,
                                                                   tmp_path: Path) -> None:
    outs = race(pg_url, tmp_path, "node")
    assert sorted(o.split()[0] for o in outs) == ["lost"] * 7 + ["won"], outs
    store = open_store(pg_url, create=False)
    assert store is not None
    try:
        [node] = store.nodes()
        assert node.name == "same" and node.alive and node.epoch == 1
        assert {o.split()[1] for o in outs if o.startswith("lost")} == {node.host}
    finally:
        store.close()


def test_concurrent_lease_takes_have_exactly_one_winner(target: Path | str, tmp_path: Path) -> None:
    outs = race(target, tmp_path, "lease")
    assert sorted(o.split()[0] for o in outs) == ["lost"] * 7 + ["won"], outs
    store = open_store(target, create=False)
    assert store is not None
    try:
        holder = store.lease()
        assert holder is not None
        # every loser named the one winner
        assert {o.split()[1] for o in outs if o.startswith("lost")} == {holder.host}
    finally:
        store.close()


# -- PostgreSQL's own matters ------------------------------------------------------------


@postgres_only
def test_postgres_slot_uniqueness_is_enforced_by_the_database(store: Store) -> None:
    import psycopg

    from jobctl.store.postgres import PostgresStore

    assert isinstance(store, PostgresStore)
    slot = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    start(store, trigger=Trigger.SCHEDULE, slot=slot)
    # the slot is the task's, per node for a node task (slot_node: its node)
    [(slot_node,)] = store.conn.execute("select slot_node from jobctl.runs").fetchall()
    with pytest.raises(psycopg.errors.UniqueViolation):
        store.conn.execute(
            "insert into jobctl.runs (task_id, trigger, status, scheduled_for, started_at, host,"
            " owner_pid, slot_node) values ('backup', 'catch-up', 'running', %s, %s, 'h', 1, %s)",
            (slot, slot, slot_node))


@postgres_only
def test_postgres_newer_schema_and_foreign_schema_are_refused(store: Store, target: str) -> None:
    from jobctl.store.postgres import SCHEMA_VERSION as PG_VERSION, PostgresStore

    assert isinstance(store, PostgresStore)
    store.conn.execute("update jobctl.meta set value = %s where key = 'schema_version'",
                       (PG_VERSION + 1,))
    with pytest.raises(StoreError, match="newer jobctl") as info:
        open_store(target, create=True)
    assert f"schema {PG_VERSION + 1} > {PG_VERSION}" in str(info.value)
    # a `jobctl` schema someone else made (no version row) is left alone
    store.conn.execute("delete from jobctl.meta where key = 'schema_version'")
    with pytest.raises(StoreError, match="not a jobctl state"):
        open_store(target, create=True)
    assert store.conn.execute("select count(*) from jobctl.meta where key = 'schema_version'"
                              ).fetchone()[0] == 0  # type: ignore[index]


@postgres_only
def test_postgres_read_only_open_creates_nothing_and_ids_are_per_database(
        target: str, pg_server: object) -> None:
    import psycopg

    assert open_store(target, create=False) is None
    with psycopg.connect(target) as conn:
        assert conn.execute("select to_regnamespace('jobctl')").fetchone() == (None,)
    ids = []
    other = pg_server.create_database()  # type: ignore[attr-defined]
    try:
        for url in (target, pg_server.url(other)):  # type: ignore[attr-defined]
            s = open_store(url, create=True)
            assert s is not None
            ids.append(s.state_id)
            s.close()
        again = open_store(target, create=False)
        assert again is not None and again.state_id == ids[0]
        again.close()
    finally:
        pg_server.drop_database(other)  # type: ignore[attr-defined]
    assert all(len(i) == 16 for i in ids) and ids[0] != ids[1]


@postgres_only
def test_postgres_password_is_never_shown_and_may_come_from_pgpassword(
        target: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from urllib.parse import urlsplit

    from jobctl.store import without_password

    password = urlsplit(target).password
    assert password
    bare = without_password(target)
    assert password not in bare and bare.startswith("postgresql://jobctl@127.0.0.1:")
    # a wrong password: the message names the host and database, not the password
    wrong = target.replace(f":{password}@", ":not-the-password@")
    with pytest.raises(StoreError) as info:
        open_store(wrong, create=True)
    message = str(info.value)
    database = urlsplit(target).path.lstrip("/")
    assert f"cannot connect to PostgreSQL database {database} on 127.0.0.1:" in message
    assert "not-the-password" not in message and password not in message
    # nothing listens: the same, one line
    with pytest.raises(StoreError, match="cannot connect to PostgreSQL database x on 127.0.0.1:1"):
        open_store(f"postgresql://jobctl:{password}@127.0.0.1:1/x", create=True)
    # the URL without a password works with PGPASSWORD, as libpq users expect
    monkeypatch.setenv("PGPASSWORD", password)
    s = open_store(bare, create=True)
    assert s is not None
    try:
        assert s.path == bare
        s.take_lease(ME, T0)
        with pytest.raises(LeaseHeldError) as held:
            s.take_lease(OTHER, T0)
        assert bare in str(held.value) and password not in str(held.value)
    finally:
        s.close()


# -- the audit trail ---------------------------------------------------------------


def _event(action: str, task_id: str | None = None, at: datetime = T0, outcome: str = "ok",
           detail: str = ""):  # type: ignore[no-untyped-def]
    from jobctl.store import EventRecord

    return EventRecord(at=at, action=action, outcome=outcome, uid=1000, user="alice",
                       host="host-a", node="web1", task_id=task_id, detail=detail)


def test_events_are_recorded_with_who_and_read_newest_first(store: Store) -> None:
    first = store.record_event(_event("enable", "backup", detail="enabled"), keep=10)
    second = store.record_event(_event("runner.start", at=T0 + timedelta(seconds=5)), keep=10)
    third = store.record_event(_event("run-now", "backup", at=T0 + timedelta(seconds=9),
                                      outcome="refused", detail="already running"), keep=10)
    assert first < second < third
    got = store.events()
    assert [e.id for e in got] == [third, second, first]
    newest = got[0]
    assert (newest.action, newest.task_id, newest.outcome, newest.detail) == (
        "run-now", "backup", "refused", "already running")
    assert (newest.uid, newest.user, newest.host, newest.node) == (1000, "alice", "host-a", "web1")
    assert newest.at == T0 + timedelta(seconds=9) and newest.at.tzinfo is not None
    assert [e.id for e in store.events(task_id="backup")] == [third, first]
    assert [e.id for e in store.events(since=T0 + timedelta(seconds=5))] == [third, second]
    assert [e.id for e in store.events(limit=1)] == [third]


def test_event_retention_keeps_the_newest_per_task_and_taskless_apart(store: Store) -> None:
    for i in range(5):
        store.record_event(_event("enable", "a", at=T0 + timedelta(seconds=i), detail=str(i)),
                           keep=3)
        store.record_event(_event("runner.reload", at=T0 + timedelta(seconds=i), detail=str(i)),
                           keep=2)
    store.record_event(_event("disable", "b"), keep=3)
    assert [e.detail for e in store.events(task_id="a")] == ["4", "3", "2"]
    assert [e.detail for e in store.events() if e.task_id is None] == ["4", "3"]
    assert len(store.events(task_id="b")) == 1


def test_events_survive_reopening(store: Store, target: Path | str) -> None:
    store.record_event(_event("add", "x"), keep=5)
    store.close()
    again = open_store(target, create=False)
    assert again is not None
    try:
        assert [e.action for e in again.events()] == ["add"]
    finally:
        again.close()
