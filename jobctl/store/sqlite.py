"""The SQLite state file: runs, per-task state, the runner's lease.

The only module that imports sqlite3. Every multi-statement write is one
`BEGIN IMMEDIATE` transaction, so the runner and any number of CLI commands
can share the file: WAL lets readers go on while one writer writes, and the
busy timeout makes writers queue instead of failing with "database is locked".
"""

from __future__ import annotations

import functools
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from jobctl.model import Concurrency, RunStatus, Scope, Trigger
from jobctl.store.queries import RUN_COLUMNS, RunQueries
from jobctl.store.records import (
    Claim,
    ClaimRequest,
    EventRecord,
    HookFailure,
    Lease,
    LeaseHeldError,
    NodeRecord,
    Owner,
    RunRecord,
    StoreBusyError,
    StoreError,
    from_text,
    to_text,
)

UTC = timezone.utc
BUSY_TIMEOUT_MS = 10_000

# Each entry migrates the schema from version i to i + 1.
MIGRATIONS: list[list[str]] = [
    [
        """create table if not exists runs (
            id integer primary key autoincrement,
            task_id text not null,
            trigger text not null,
            status text not null,
            attempt integer not null default 1,
            scheduled_for text,
            started_at text not null,
            finished_at text,
            exit_code integer,
            error text,
            pid integer,
            proc_start text,
            boot_id text,
            host text not null,
            owner_pid integer not null,
            owner_start text,
            log_path text
        )""",
        "create index if not exists runs_task on runs (task_id, id)",
        "create index if not exists runs_task_status on runs (task_id, status, id)",
        "create index if not exists runs_running on runs (status) where status = 'running'",
        # a scheduled slot fires at most once, whatever the clock does
        """create unique index if not exists runs_slot on runs (task_id, scheduled_for)
            where trigger in ('schedule', 'catch-up')""",
        """create table if not exists task_state (
            task_id text primary key,
            enabled integer,
            last_scheduled text,
            last_run_id integer
        )""",
        """create table if not exists lease (
            id integer primary key check (id = 1),
            pid integer not null,
            host text not null,
            boot_id text,
            proc_start text,
            started_at text not null,
            heartbeat_at text not null,
            anchor text not null
        )""",
        "create table if not exists meta (key text primary key, value integer not null)",
        "insert or ignore into meta (key, value) values ('control_version', 0)",
    ],
    [
        # spans a task spent disabled by `jobctl disable` (until: null while
        # it still is), so catch-up after downtime leaves their fires out
        """create table if not exists paused (
            task_id text not null,
            since text not null,
            until text
        )""",
        "create index if not exists paused_task on paused (task_id)",
    ],
    [
        # a random id for this state file, given to each run as JOBCTL_STATE_ID:
        # run ids start at 1 in every state file, so finding a dead runner's
        # processes by their environment must also match the file
        "insert or ignore into meta (key, value)"
        " values ('state_id', random() & 9223372036854775807)",
    ],
    [
        # the node that ran each run (null before nodes had names: the host)
        "alter table runs add column node text",
    ],
    [
        # the audit trail (feature: events): every control action, who did
        # it and how it ended
        """create table if not exists events (
            id integer primary key autoincrement,
            at text not null,
            action text not null,
            outcome text not null,
            uid integer not null,
            user text not null,
            host text not null,
            node text not null,
            task_id text,
            detail text not null default ''
        )""",
        "create index if not exists events_task on events (task_id, id)",
    ],
    [
        # retries (issue 11): a retry is its slot's next attempt, so a slot
        # fires at most once per attempt, whatever the clock does
        "drop index if exists runs_slot",
        """create unique index if not exists runs_slot_attempt
            on runs (task_id, scheduled_for, attempt)
            where trigger in ('schedule', 'catch-up')""",
    ],
    [
        # alerts (hooks): each task's latest hook/webhook/ping failure, for `jobctl status`
        """create table if not exists hook_failures (
            task_id text primary key,
            run_id integer,
            at text not null,
            message text not null
        )""",
    ],
]
SCHEMA_VERSION = len(MIGRATIONS)




def _run(row: sqlite3.Row | tuple) -> RunRecord:  # type: ignore[type-arg]
    return RunRecord(
        id=row[0], task_id=row[1], trigger=Trigger(row[2]), status=RunStatus(row[3]),
        attempt=row[4], scheduled_for=from_text(row[5]), started_at=from_text(row[6]),  # type: ignore[arg-type]
        finished_at=from_text(row[7]), exit_code=row[8], error=row[9], pid=row[10],
        proc_start=row[11], boot_id=row[12], host=row[13],
        owner=Owner(row[14], row[13], row[12] or "", row[15]), log_path=row[16],
        node=row[17] or row[13],
    )


class SqliteStore(RunQueries):
    """jobctl's state in one SQLite file. Use `open_store` to get one."""

    _P = "?"
    _SCHEMA = ""
    _to_run = staticmethod(_run)

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self.conn = conn

    # -- plumbing --------------------------------------------------------------

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        try:
            self.conn.execute("begin immediate")
        except sqlite3.OperationalError as e:
            raise self._translate(e) from None
        try:
            yield self.conn
        except sqlite3.Error as e:
            # e.g. "database or disk is full": a StoreError the caller can
            # report, never a crash
            self._rollback()
            raise self._translate(e) from None
        except BaseException:
            self._rollback()
            raise
        else:
            try:
                self.conn.execute("commit")
            except sqlite3.Error as e:
                self._rollback()
                raise self._translate(e) from None

    def _rollback(self) -> None:
        # SQLite has already rolled back after some errors (a full disk, I/O)
        if self.conn.in_transaction:
            try:
                self.conn.execute("rollback")
            except sqlite3.Error:
                pass

    def _translate(self, e: sqlite3.Error) -> StoreError:
        if "locked" in str(e) or "busy" in str(e):
            return StoreBusyError(self.path)
        if "readonly" in str(e):
            # opened for reading only (SQLite falls back without a word)
            return StoreError(self.path, _read_only_reason(self.path) or str(e))
        return StoreError(self.path, str(e))

    def _query(self, sql: str, args: Sequence[object] = ()) -> list[tuple]:  # type: ignore[type-arg]
        try:
            return self.conn.execute(sql, args).fetchall()
        except sqlite3.Error as e:
            raise self._translate(e) from None

    @property
    def log_dir(self) -> Path:
        return self.path.parent / "logs"

    # -- nodes -----------------------------------------------------------------

    # One runner per state file: no node leases here (runs still record
    # their node name); `clustered` tells the runner to take the single lease.
    clustered = False

    def nodes(self) -> list[NodeRecord]:
        return []

    def take_node(self, owner: Owner, lease_s: float, *, replacing: int | None = None) -> NodeRecord:
        raise StoreError(self.path, "a SQLite state has no node leases (one runner per file)")

    def node_heartbeat(self, owner: Owner) -> bool:
        return False

    def release_node(self, owner: Owner) -> None:
        return None

    def interrupt_dead_nodes(self) -> list[RunRecord]:
        return []

    def cluster_anchor(self, create: bool = True) -> datetime | None:
        return None

    def database_now(self) -> datetime | None:
        return None

    # -- lease -----------------------------------------------------------------

    def lease(self) -> Lease | None:
        rows = self._query(
            "select pid, host, boot_id, proc_start, started_at, heartbeat_at, anchor from lease"
        )
        if not rows:
            return None
        r = rows[0]
        return Lease(r[0], r[1], r[2] or "", r[3], from_text(r[4]), from_text(r[5]), from_text(r[6]))  # type: ignore[arg-type]

    def take_lease(self, owner: Owner, now: datetime, *, replacing: Lease | None = None) -> Lease:
        """Make `owner` the runner of this state file: a compare-and-swap.

        In one `BEGIN IMMEDIATE` transaction the lease row is read and written
        only if it is still what the caller judged free: no row, a row already
        held by `owner`, or exactly `replacing` (a holder the caller found
        dead, unchanged since: same holder, same heartbeat). Any other row
        means another runner took the lease since the caller looked, or is
        alive: a lost race raises LeaseHeldError naming that holder, and
        nothing is written. Of any number of runners starting at once on one
        file, exactly one gets the lease.
        """
        with self._write() as c:
            current = self.lease()
            if current is not None and current.owner != owner and current != replacing:
                raise LeaseHeldError(current, self.path)
            c.execute("delete from lease")
            c.execute(
                "insert into lease (id, pid, host, boot_id, proc_start, started_at, heartbeat_at, anchor)"
                " values (1, ?, ?, ?, ?, ?, ?, ?)",
                # intervals count from the whole second the runner started
                # (as supercronic's @every): fires land on whole seconds
                (owner.pid, owner.host, owner.boot_id, owner.start, to_text(now), to_text(now),
                 to_text(now.replace(microsecond=0))),
            )
        lease = self.lease()
        assert lease is not None
        return lease

    def heartbeat(self, owner: Owner, now: datetime) -> bool:
        """Refresh the lease; False if it is no longer ours."""
        with self._write() as c:
            cur = c.execute(
                "update lease set heartbeat_at = ? where pid = ? and host = ?",
                (to_text(now), owner.pid, owner.host),
            )
            return cur.rowcount == 1

    def release_lease(self, owner: Owner) -> None:
        with self._write() as c:
            c.execute("delete from lease where pid = ? and host = ?", (owner.pid, owner.host))

    # -- control ---------------------------------------------------------------

    @functools.cached_property
    def state_id(self) -> str:
        """This state file's random id (16 hex digits), made once when it was
        created or migrated; "" for an old file opened read-only."""
        rows = self._query("select value from meta where key = 'state_id'")
        return f"{int(rows[0][0]):016x}" if rows else ""

    def control_version(self) -> int:
        rows = self._query("select value from meta where key = 'control_version'")
        return int(rows[0][0]) if rows else 0

    def overrides(self) -> dict[str, bool]:
        rows = self._query("select task_id, enabled from task_state where enabled is not null")
        return {r[0]: bool(r[1]) for r in rows}

    def set_enabled(self, task_ids: Iterable[str], enabled: bool,
                    now: datetime | None = None) -> None:
        """Override the config's `enabled`. With `now`, also note when a
        disabled span starts or ends (see `paused_spans`)."""
        stamp = None if now is None else to_text(now)
        with self._write() as c:
            for task_id in task_ids:
                c.execute(
                    "insert into task_state (task_id, enabled) values (?, ?)"
                    " on conflict (task_id) do update set enabled = excluded.enabled",
                    (task_id, int(enabled)),
                )
                if stamp is None:
                    continue
                if enabled:
                    c.execute("update paused set until = ? where task_id = ? and until is null",
                              (stamp, task_id))
                elif c.execute("select 1 from paused where task_id = ? and until is null",
                               (task_id,)).fetchone() is None:
                    c.execute("insert into paused (task_id, since) values (?, ?)",
                              (task_id, stamp))
            c.execute("update meta set value = value + 1 where key = 'control_version'")

    def paused_spans(self, task_id: str) -> list[tuple[datetime, datetime | None]]:
        """When the task was disabled by `jobctl disable`: (since, until),
        until None while it still is."""
        rows = self._query("select since, until from paused where task_id = ? order by since",
                           (task_id,))
        return [(from_text(a), from_text(b)) for a, b in rows]  # type: ignore[misc]

    def last_scheduled(self, node: str = "") -> dict[str, datetime]:
        rows = self._query("select task_id, last_scheduled from task_state where last_scheduled is not null")
        return {r[0]: from_text(r[1]) for r in rows}  # type: ignore[misc]

    def set_last_scheduled(self, items: Iterable[tuple[str, datetime]], *,
                           node: str = "") -> None:
        texts: dict[datetime, str | None] = {}  # a batch often shares one instant
        rows = []
        for task_id, at in items:
            text = texts.get(at)
            if text is None:
                text = texts[at] = to_text(at)
            rows.append((task_id, text))
        with self._write() as c:
            c.executemany(
                "insert into task_state (task_id, last_scheduled) values (?, ?)"
                " on conflict (task_id) do update set last_scheduled = excluded.last_scheduled",
                rows,
            )

    # -- runs ------------------------------------------------------------------

    def claim(
        self,
        *,
        task_id: str,
        trigger: Trigger,
        scheduled_for: datetime | None,
        concurrency: Concurrency,
        force: bool,
        owner: Owner,
        now: datetime,
        scope: Scope = Scope.NODE,
    ) -> Claim:
        """Check the concurrency policy and record the run, in one transaction.

        The new run is committed as `running` before its process exists; the
        caller starts the process only for outcome 'started'.
        """
        with self._write() as c:
            return self._claim(c, ClaimRequest(task_id, trigger, scheduled_for, concurrency, force),
                               owner, now)

    def claim_many(self, requests: Sequence[ClaimRequest], *, owner: Owner,
                   now: datetime) -> list[Claim]:
        """`claim` for a batch (the fires of one instant) in one transaction."""
        with self._write() as c:
            return [self._claim(c, r, owner, now) for r in requests]

    def _claim(self, c: sqlite3.Connection, request: ClaimRequest, owner: Owner,
               now: datetime) -> Claim:
        task_id, trigger, concurrency, force = (request.task_id, request.trigger,
                                                request.concurrency, request.force)
        slot = to_text(request.scheduled_for)
        scheduled = trigger in (Trigger.SCHEDULE, Trigger.CATCH_UP)
        attempt = request.attempt
        if scheduled and self._slot_taken(c, task_id, slot, attempt):
            return Claim("duplicate")
        running = tuple(_run(r) for r in c.execute(
            f"select {RUN_COLUMNS} from runs where task_id = ? and status = 'running' order by id",
            (task_id,),
        ))
        replaced: tuple[RunRecord, ...] = ()
        if running and concurrency is Concurrency.FORBID and not force:
            if not scheduled:
                return Claim("refused", blocking=running)
            ids = ", ".join(f"#{r.id}" for r in running)
            # claimed a moment ahead of its instant, the skip happens at the
            # instant: not a "start" before the slot in history
            when = now if request.scheduled_for is None else max(now, request.scheduled_for)
            run_id = self._insert(c, task_id, trigger, RunStatus.SKIPPED, slot, when, owner,
                                  error=f"previous run {ids} still running (concurrency = forbid)",
                                  finished=True, attempt=attempt)
            return Claim("skipped", run_id=run_id, blocking=running)
        if running and concurrency is Concurrency.REPLACE:
            replaced = running
        run_id = self._insert(c, task_id, trigger, RunStatus.RUNNING, slot, now, owner,
                              attempt=attempt)
        for old in replaced:
            c.execute(
                "update runs set status = 'interrupted', finished_at = ?, error = ?"
                " where id = ? and status = 'running'",
                (to_text(now), f"replaced by run #{run_id} (concurrency = replace)", old.id),
            )
        log_path = str(self.log_dir / f"{run_id}.log")
        c.execute("update runs set log_path = ? where id = ?", (log_path, run_id))
        return Claim("started", run_id=run_id, blocking=replaced, replaced=replaced)

    @staticmethod
    def _slot_taken(c: sqlite3.Connection, task_id: str, slot: str | None, attempt: int) -> bool:
        return c.execute(
            "select 1 from runs where task_id = ? and scheduled_for = ? and attempt = ?"
            " and trigger in ('schedule', 'catch-up')",
            (task_id, slot, attempt),
        ).fetchone() is not None

    def record_skipped(self, request: ClaimRequest, *, owner: Owner, now: datetime,
                       reason: str) -> int | None:
        """Record a fire or retry that will not run as `skipped` with `reason`;
        None if that attempt of the slot already has a run."""
        slot = to_text(request.scheduled_for)
        with self._write() as c:
            if request.trigger in (Trigger.SCHEDULE, Trigger.CATCH_UP) and \
                    self._slot_taken(c, request.task_id, slot, request.attempt):
                return None
            return self._insert(c, request.task_id, request.trigger, RunStatus.SKIPPED, slot,
                                now, owner, error=reason, finished=True,
                                attempt=request.attempt)

    def _insert(self, c: sqlite3.Connection, task_id: str, trigger: Trigger, status: RunStatus,
                slot: str | None, now: datetime, owner: Owner, *, error: str | None = None,
                finished: bool = False, attempt: int = 1) -> int:
        cur = c.execute(
            "insert into runs (task_id, trigger, status, scheduled_for, started_at, finished_at,"
            " error, host, owner_pid, owner_start, boot_id, node, attempt)"
            " values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (task_id, trigger.value, status.value, slot, to_text(now),
             to_text(now) if finished else None, error, owner.host, owner.pid, owner.start,
             owner.boot_id, owner.node_name, attempt),
        )
        run_id = int(cur.lastrowid)  # type: ignore[arg-type]
        values: list[object] = [task_id, run_id]
        sql = "insert into task_state (task_id, last_run_id) values (?, ?)" \
              " on conflict (task_id) do update set last_run_id = excluded.last_run_id"
        if slot is not None and trigger in (Trigger.SCHEDULE, Trigger.CATCH_UP):
            sql = "insert into task_state (task_id, last_run_id, last_scheduled) values (?, ?, ?)" \
                  " on conflict (task_id) do update set last_run_id = excluded.last_run_id," \
                  " last_scheduled = max(coalesce(last_scheduled, ''), excluded.last_scheduled)"
            values.append(slot)
        c.execute(sql, values)
        return run_id

    def set_processes(self, items: Sequence[tuple[int, int, str | None, str, datetime]]) -> set[int]:
        """Record started processes: (run_id, pid, proc_start, boot_id,
        started_at); returns the run ids recorded (the others were ended
        meanwhile, e.g. replaced). started_at is when the process started,
        a moment after the claim."""
        done = set()
        with self._write() as c:
            for run_id, pid, proc_start, boot_id, started_at in items:
                cur = c.execute(
                    "update runs set pid = ?, proc_start = ?, boot_id = ?, started_at = ?"
                    " where id = ? and status = 'running'",
                    (pid, proc_start, boot_id, to_text(started_at), run_id),
                )
                if cur.rowcount == 1:
                    done.add(run_id)
        return done

    def set_process(self, run_id: int, pid: int, proc_start: str | None, boot_id: str) -> bool:
        """Record a started run's process; False if the run was meanwhile
        ended by someone else (replaced), in which case the caller stops it."""
        with self._write() as c:
            cur = c.execute(
                "update runs set pid = ?, proc_start = ?, boot_id = ? where id = ?"
                " and status = 'running'",
                (pid, proc_start, boot_id, run_id),
            )
            return cur.rowcount == 1

    def finish(self, run_id: int, status: RunStatus, now: datetime, *,
               exit_code: int | None = None, error: str | None = None) -> bool:
        """Record a run's end; False if it was already final (e.g. replaced).

        A run marked `interrupted` when it was replaced keeps that status, but
        gets the real end: when its process exited, and how."""
        with self._write() as c:
            cur = c.execute(
                "update runs set status = ?, finished_at = ?, exit_code = ?, error = ?"
                " where id = ? and status = 'running'",
                (status.value, to_text(now), exit_code, error, run_id),
            )
            if cur.rowcount == 1:
                return True
            c.execute(
                "update runs set finished_at = ?, exit_code = ?"
                " where id = ? and status = 'interrupted' and exit_code is null",
                (to_text(now), exit_code, run_id),
            )
            return False

    def mark_interrupted(self, run_ids: Iterable[int], now: datetime, reason: str) -> list[int]:
        changed = []
        with self._write() as c:
            for run_id in run_ids:
                cur = c.execute(
                    "update runs set status = 'interrupted', finished_at = ?, error = ?"
                    " where id = ? and status = 'running'",
                    (to_text(now), reason, run_id),
                )
                if cur.rowcount:
                    changed.append(run_id)
        return changed

    def latest_runs(self, task_ids: Sequence[str], *, ended: bool = False) -> dict[str, RunRecord]:
        """The most recent run of each of `task_ids` that has one; with
        `ended`, the most recent run that is no longer running."""
        out: dict[str, RunRecord] = {}
        ids = list(dict.fromkeys(task_ids))
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ", ".join("?" * len(chunk))
            only_ended = " and status != 'running'" if ended else ""
            rows = self._query(
                f"select {RUN_COLUMNS} from runs where id in (select max(id) from runs"
                f" where task_id in ({marks}){only_ended} group by task_id)",
                chunk,
            )
            out.update((r[1], _run(r)) for r in rows)
        return out

    def known_task_ids(self, prefix: str) -> list[str]:
        """Ids starting with `prefix` that the state file has seen (a run or
        an enable/disable override), sorted."""
        rows = self._query(
            "select task_id from task_state where substr(task_id, 1, ?) = ? order by task_id",
            (len(prefix), prefix),
        )
        return [r[0] for r in rows]

    def record_hook_failure(self, failure: HookFailure) -> None:
        with self._write() as c:
            c.execute("insert into hook_failures (task_id, run_id, at, message) values (?, ?, ?, ?)"
                      " on conflict (task_id) do update set run_id = excluded.run_id,"
                      " at = excluded.at, message = excluded.message",
                      (failure.task_id, failure.run_id, to_text(failure.at), failure.message))

    def hook_failures(self) -> dict[str, HookFailure]:
        rows = self._query("select task_id, run_id, at, message from hook_failures")
        return {r[0]: HookFailure(r[0], r[1], from_text(r[2]), r[3])  # type: ignore[arg-type]
                for r in rows}

    def prune(self, task_id: str, keep: int) -> list[str]:
        """Delete all but the newest `keep` runs of a task; return their log
        paths. Skipped fires count apart (the newest `keep` of them are kept
        besides), so a task that overruns for hours and piles up skips does
        not push its real runs, and their logs, out of the history."""
        logs: list[str] = []
        with self._write() as c:
            for kind in ("status != 'skipped'", "status = 'skipped'"):
                row = c.execute(
                    f"select id from runs where task_id = ? and {kind}"
                    " order by id desc limit 1 offset ?",
                    (task_id, keep),
                ).fetchone()
                if row is None:
                    continue
                where = f"task_id = ? and id <= ? and {kind} and status != 'running'"
                logs += [r[0] for r in c.execute(
                    f"select log_path from runs where {where} and log_path is not null",
                    (task_id, row[0]),
                )]
                c.execute(f"delete from runs where {where}", (task_id, row[0]))
        return logs

    # -- the audit trail -------------------------------------------------------------

    def record_event(self, event: EventRecord, keep: int) -> int:
        with self._write() as c:
            cur = c.execute(
                "insert into events (at, action, outcome, uid, user, host, node, task_id, detail)"
                " values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (to_text(event.at), event.action, event.outcome, event.uid, event.user,
                 event.host, event.node, event.task_id, event.detail))
            event_id = int(cur.lastrowid or 0)
            # retention as for runs: the newest `keep` of each task
            c.execute(
                "delete from events where task_id is ? and id <= coalesce((select id from events"
                " where task_id is ? order by id desc limit 1 offset ?), 0)",
                (event.task_id, event.task_id, keep))
        return event_id

    def events(self, *, task_id: str | None = None, since: datetime | None = None,
               limit: int = 50) -> list[EventRecord]:
        where, args = _event_filter(task_id, to_text(since) if since else None, "?")
        try:
            rows = self.conn.execute(
                f"select {_EVENT_COLUMNS} from events{where} order by id desc limit ?",
                (*args, limit)).fetchall()
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):
                return []  # a state file opened read-only, of a jobctl before the trail
            raise self._translate(e) from None
        except sqlite3.Error as e:
            raise self._translate(e) from None
        return [EventRecord(at=from_text(r[1]), action=r[2], outcome=r[3], uid=r[4], user=r[5],  # type: ignore[arg-type]
                            host=r[6], node=r[7], task_id=r[8], detail=r[9], id=r[0])
                for r in rows]

    # -- wake-ups and logs: one runner per file, and its logs are files --------

    def control_listener(self) -> None:
        return None

    stores_logs = False

    def append_logs(self, chunks: Sequence[tuple[int, int, bytes]]) -> None:
        pass

    def put_log(self, run_id: int, data: bytes) -> None:
        pass

    def read_log(self, run_id: int, offset: int = 0) -> tuple[bytes, bool] | None:
        return None


_EVENT_COLUMNS = "id, at, action, outcome, uid, user, host, node, task_id, detail"


def _event_filter(task_id: str | None, since: object, p: str) -> tuple[str, list[object]]:
    where: list[str] = []
    args: list[object] = []
    if task_id is not None:
        where.append(f"task_id = {p}")
        args.append(task_id)
    if since is not None:
        where.append(f"at >= {p}")
        args.append(since)
    return (" where " + " and ".join(where) if where else ""), args


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                           check_same_thread=False)
    conn.execute(f"pragma busy_timeout = {BUSY_TIMEOUT_MS}")
    return conn


def _is_foreign(conn: sqlite3.Connection) -> bool:
    """A database with tables but no jobctl schema version is someone else's."""
    version = int(conn.execute("pragma user_version").fetchone()[0])
    tables = int(conn.execute("select count(*) from sqlite_master").fetchone()[0])
    return version == 0 and tables > 0


def _set_wal(conn: sqlite3.Connection) -> None:
    # Switching to WAL does not wait on the busy timeout: retry while another
    # process holds the file (say, a second jobctl creating it at the same time).
    import time

    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            conn.execute("pragma journal_mode = wal")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def open_sqlite(path: Path, *, create: bool) -> SqliteStore | None:
    """Open the state file; None if it does not exist and `create` is False.

    Read-only commands pass create=False so they never create the file. A
    SQLite file that is not jobctl's is refused and left untouched.
    """
    path = path.expanduser()
    if path.is_dir():
        raise StoreError(path, "is a folder, not a state file; give a file path with --state")
    blocker = _file_in_the_way(path)
    if blocker is not None:
        if not create:
            return None  # no state file can be there
        raise StoreError(path, f"{blocker} is a file, not a folder; give a state path "
                         "whose folders are folders")
    if not path.exists():
        if not create:
            return None
        from jobctl.perms import create_private_file, make_private_dirs

        try:
            # private: the history names every command and where its output is
            make_private_dirs(path.parent)
        except OSError as e:
            raise StoreError(path, f"cannot create its folder: {e.strerror or e}") from None
        try:
            create_private_file(path)
        except OSError:
            pass  # SQLite says why below
    try:
        conn = _connect(path)
        # read the version and the tables in one snapshot: another process
        # may be creating the file right now
        conn.execute("begin")
        foreign = _is_foreign(conn)
        version = conn.execute("pragma user_version").fetchone()[0]
        conn.execute("commit")
        if foreign:
            conn.close()
            raise StoreError(path, "not a jobctl state file (it holds other tables); "
                             "choose another path with --state")
        if version < SCHEMA_VERSION:
            _set_wal(conn)
            conn.execute("begin immediate")
            # re-check under the write lock: another process may have migrated
            if _is_foreign(conn):
                conn.execute("rollback")
                conn.close()
                raise StoreError(path, "not a jobctl state file (it holds other tables)")
            version = conn.execute("pragma user_version").fetchone()[0]
            for steps in MIGRATIONS[version:]:
                for sql in steps:
                    conn.execute(sql)
            conn.execute(f"pragma user_version = {SCHEMA_VERSION}")
            conn.execute("commit")
        elif version > SCHEMA_VERSION:
            conn.close()
            raise StoreError(path, f"written by a newer jobctl (schema {version} > {SCHEMA_VERSION})")
        conn.execute("pragma synchronous = normal")
    except sqlite3.DatabaseError as e:
        if "locked" in str(e) or "busy" in str(e):
            raise StoreBusyError(path) from None
        if "unable to open" in str(e) or "readonly" in str(e):
            if not create:
                # a read-only file, folder or mount: reading needs no write access
                return _open_read_only(path, e)
            read_only = _read_only_reason(path)
            if read_only is not None:
                raise StoreError(path, read_only) from None
        raise StoreError(path, f"not a usable SQLite database ({e})") from None
    return SqliteStore(path, conn)


def _file_in_the_way(path: Path) -> Path | None:
    """The nearest existing ancestor of `path` if it is not a folder."""
    for parent in path.parents:
        if parent.exists():
            return None if parent.is_dir() else parent
        if parent.is_symlink():
            return None  # dangling: let mkdir say so
    return None


def _read_only_reason(path: Path) -> str | None:
    """Why jobctl cannot write the state file, if that is why SQLite failed:
    it writes the file and, beside it, its -wal and -shm files."""
    folder = path.parent
    if path.exists() and not os.access(path, os.W_OK):
        return ("is read-only for this user; only commands that just read "
                "(list, show, history, status, logs) work on it")
    if os.path.isdir(folder) and not os.access(folder, os.W_OK):
        return (f"its folder {folder} is read-only (jobctl writes the state file and its -wal "
                "and -shm files there); make it writable, or choose another path with --state")
    for f in (Path(f"{path}-wal"), Path(f"{path}-shm")):
        if f.exists() and not os.access(f, os.W_OK):
            return (f"{f.name} beside it is read-only for this user; only commands that just "
                    "read (list, show, history, status, logs) work on it")
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return f"its folder {folder} is on a read-only file system"
    except OSError:
        pass
    return None


def _open_read_only(path: Path, error: sqlite3.DatabaseError) -> SqliteStore:
    """Open a state file jobctl cannot write, for reading. WAL mode needs a
    writable -shm file beside it, unless no one can write the file at all,
    which is the case here: SQLite's `immutable` reads it as it is."""
    if not os.access(path, os.R_OK):
        raise StoreError(path, "cannot be read (permission denied)")
    for query in ("mode=ro", "immutable=1"):
        try:
            conn = sqlite3.connect(f"{path.absolute().as_uri()}?{query}", uri=True, isolation_level=None,
                                   timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
            version = conn.execute("pragma user_version").fetchone()[0]
            if _is_foreign(conn):
                conn.close()
                raise StoreError(path, "not a jobctl state file (it holds other tables)")
            if version > SCHEMA_VERSION:
                conn.close()
                raise StoreError(path, f"written by a newer jobctl (schema {version} > {SCHEMA_VERSION})")
            return SqliteStore(path, conn)
        except sqlite3.DatabaseError:
            continue
    raise StoreError(path, f"cannot be opened, even read-only ({error}): "
                     "check the permissions of the file and its folder")
