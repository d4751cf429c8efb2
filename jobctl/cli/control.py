"""Commands that steer or inspect runs: run-now, enable, disable, history, logs, status."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from jobctl.cli._common import (
    ConfigOption,
    JsonOption,
    StateOption,
    command,
    err,
    load_view,
    open_state,
    print_json,
    services,
)


def _run_json(record: Any) -> dict[str, Any]:
    from jobctl.cli.render import exit_fields

    def ts(dt: Any) -> str | None:
        return None if dt is None else dt.isoformat(timespec="microseconds")

    return {
        "id": record.id,
        "task_id": record.task_id,
        "status": record.status.value,
        "trigger": record.trigger.value,
        "attempt": record.attempt,
        "scheduled_for": ts(record.scheduled_for),
        "started_at": ts(record.started_at),
        "finished_at": ts(record.finished_at),
        "duration_s": record.duration_s,
        **exit_fields(record.exit_code),
        "error": record.error,
        "node": record.node,
    }


@command
def run_now(
    ctx: typer.Context,
    task_id: Annotated[str, typer.Argument(metavar="ID", help="Task id.")],
    force: Annotated[bool, typer.Option("--force", help="Start even if a run is going and concurrency is 'forbid'.")] = False,
    no_retry: Annotated[bool, typer.Option("--no-retry", help="Run once, even if the task has `retries`.")] = False,
    config: ConfigOption = None,
    state: StateOption = None,
) -> None:
    """Run a task now, in this terminal, and record it (trigger: manual).

    A failed attempt is retried as the task's `retries` say (after its
    delay) unless --no-retry; the exit status is the last attempt's.
    Streams the task's output; exits 0 on success, 1 on failure or timeout,
    75 if the task is already running and its concurrency is 'forbid', and
    128 + the signal's number if stopped by one (130 for Ctrl-C).
    Works whether or not a runner is up, and on disabled tasks too.

    Example: jobctl run-now backup
    """
    import signal

    from jobctl.errors import UnknownTaskError
    from jobctl.lifecycle import run_now as run_task
    from jobctl.model import RunStatus

    svc = services(ctx)
    schedule_set = svc.load(config)
    task = schedule_set.get(task_id)
    if task is None:
        raise UnknownTaskError(task_id, schedule_set.ids)
    import os

    from jobctl.config import require_user_switch

    # only this task needs to switch user: the config's others do not matter here
    require_user_switch([task], os.geteuid())
    from dataclasses import replace

    from jobctl.config import node_name
    from jobctl.liveness import self_owner

    owner = self_owner()
    # the run records the node it ran on ($JOBCTL_NODE, [jobctl] node, the host)
    owner = replace(owner, node=node_name(None, svc.env, schedule_set.settings, owner.host))
    store = open_state(svc, schedule_set, state, create=True)
    assert store is not None
    stops = {"n": 0, "first": 0}

    def on_signal(signum: int, _frame: Any) -> None:
        stops["n"] += 1
        stops["first"] = stops["first"] or signum

    # SIGHUP too: a closed terminal or a dropped ssh session must stop the
    # task and record it, not leave it running unsupervised
    previous = {sig: signal.signal(sig, on_signal)
                for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    from jobctl import audit
    from jobctl.errors import JobctlError

    asked = svc.now()
    outcome, detail = audit.FAILED, "interrupted"
    try:
        echo = getattr(sys.stdout, "buffer", None)
        if echo is not None:
            try:
                sys.stdout.flush()
            except OSError:
                echo = None
        try:
            record = run_task(
                store, task, schedule_set.settings, now=svc.now, env=svc.env,
                echo=echo,
                force=force, stop_requested=lambda: stops["n"] > 0,
                config_path=schedule_set.path, owner=owner,
                retry=not no_retry,
                on_attempt=lambda record, delay: err(_run_summary(record, task, delay)),
                report=lambda event: err(f"jobctl: {event.kind}: {event.message}"),
            )
        except JobctlError as e:
            outcome = audit.REFUSED if e.exit_code == 75 else audit.FAILED
            detail = str(e)
            raise
        outcome = audit.OK
        detail = f"run #{record.id}: {record.status.value}" + (" (--force)" if force else "")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _audit(store, audit.event("run-now", asked, node=owner.node, task_id=task.id,
                                  outcome=outcome, detail=detail), schedule_set)
        store.close()
    if stops["first"] and record.status is not RunStatus.SUCCESS:
        # as a shell reports a command a signal stopped: 130 for Ctrl-C
        raise typer.Exit(128 + stops["first"])
    raise typer.Exit(0 if record.status is RunStatus.SUCCESS else 1)


def _jittered(cells: Any, offset: float | None) -> Any:
    """A time cell, with ' (jitter +2m13s)' when its task has jitter."""
    if offset is not None:
        from jobctl.timing import format_duration

        for part in cells:
            part.append(f" (jitter +{format_duration(offset) if offset else '0s'})")
    return cells


def _run_summary(record: Any, task: Any, retry_in: float | None) -> str:
    """`run #7 backup: failed in 0.01s (exit code 1); retry in 10s (attempt 2 of 4)`."""
    from jobctl.cli.render import signal_name

    duration = f"{record.duration_s:.2f}s" if record.duration_s is not None else ""
    summary = f"run #{record.id} {task.id}: {record.status.value} in {duration}"
    notes = [record.error] if record.error else []
    name = signal_name(record.exit_code)
    if name and not any(f"killed by {name}" in n for n in notes):
        notes.append(f"killed by {name}")
    if notes:
        summary += f" ({'; '.join(notes)})"
    if retry_in is not None:
        summary += f"; retry in {retry_in:g}s (attempt {record.attempt + 1} of {task.retries + 1})"
    elif record.attempt > 1:
        summary += f" [attempt {record.attempt} of {task.retries + 1}]"
    return summary


def _audit(store: Any, events: Any, schedule_set: Any) -> None:
    """Record control actions; a trail that cannot be written is a warning."""
    from jobctl.audit import record

    warning = record(store, events, schedule_set.settings.history_limit)
    if warning:
        err(f"warning: {warning}")


def _set_enabled(ctx: typer.Context, ids: list[str], config: Any, state: Any, enabled: bool) -> None:
    from jobctl.errors import UnknownTaskError

    svc = services(ctx)
    schedule_set = svc.load(config)
    ids = list(dict.fromkeys(ids))  # an id given twice is done (and said) once
    for task_id in ids:
        if schedule_set.get(task_id) is None:
            raise UnknownTaskError(task_id, schedule_set.ids)
    store = open_state(svc, schedule_set, state, create=True)
    assert store is not None
    from jobctl import audit
    from jobctl.config import node_name
    from jobctl.procinfo import host_name

    node = node_name(None, svc.env, schedule_set.settings, host_name())
    word = "enabled" if enabled else "disabled"
    now = svc.now()
    try:
        store.set_enabled(ids, enabled, now=now)
        _audit(store, [audit.event("enable" if enabled else "disable", now, node=node,
                                   task_id=task_id, detail=word) for task_id in ids],
               schedule_set)
    finally:
        store.close()
    for task_id in ids:
        typer.echo(f"{word} {task_id}")


IdsArgument = Annotated[list[str], typer.Argument(metavar="ID...", help="Task ids.")]


@command
def enable(ctx: typer.Context, ids: IdsArgument, config: ConfigOption = None,
           state: StateOption = None) -> None:
    """Enable tasks, overriding the config's `enabled` (stored in the state file).

    A live runner applies it within a second.

    Example: jobctl enable backup report
    """
    _set_enabled(ctx, ids, config, state, True)


@command
def disable(ctx: typer.Context, ids: IdsArgument, config: ConfigOption = None,
            state: StateOption = None) -> None:
    """Disable tasks, overriding the config's `enabled` (stored in the state file).

    A live runner applies it within a second; `run-now` still works.

    Example: jobctl disable backup
    """
    _set_enabled(ctx, ids, config, state, False)


@command
def history(
    ctx: typer.Context,
    task_id: Annotated[str | None, typer.Argument(metavar="[ID]", help="Only this task's runs.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1_000_000_000,
                                       help="How many runs.")] = 20,
    status: Annotated[str | None, typer.Option("--status", help="Only runs with this status.")] = None,
    config: ConfigOption = None,
    state: StateOption = None,
    json: JsonOption = False,
) -> None:
    """Show past and current runs, newest first.

    Example: jobctl history backup --status failed --limit 5
    """
    from jobctl.cli.render import STATUS_STYLE
    from jobctl.errors import UnknownTaskError, UsageError
    from jobctl.model import RunStatus

    svc = services(ctx)
    schedule_set = svc.load(config)
    wanted = None
    if status is not None:
        try:
            wanted = RunStatus(status)
        except ValueError:
            import difflib

            values = [s.value for s in RunStatus]
            close = difflib.get_close_matches(status.lower(), values, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise UsageError(f"--status: unknown status '{status}'{hint}; expected one of: "
                             f"{', '.join(values)}") from None
    store = open_state(svc, schedule_set, state, create=False)
    records = store.history(task_id, limit=limit, status=wanted) if store else []
    if task_id is not None and schedule_set.get(task_id) is None and not records:
        raise UnknownTaskError(task_id, schedule_set.ids)
    if json:
        print_json([_run_json(r) for r in records])
        return
    if not records:
        typer.echo("no runs yet" if wanted is None else f"no {wanted.value} runs")
        if store is None:
            from jobctl.config import state_path

            from jobctl.store.url import shown_target

            path = state_path(state, svc.env, schedule_set.settings)
            err(f"(no state file at {shown_target(path)} yet)")
        return
    from jobctl.cli.render import Column, cell, is_terminal, print_table, signal_name, time_cell

    tty = is_terminal(sys.stdout)
    now = svc.now()
    # attempts of retried slots: a column only when some run is a retry
    tries = any(r.attempt > 1 for r in records)
    columns = [Column("RUN", right=True), Column("TASK", squeeze=True), Column("STATUS"),
               *([Column("TRY", right=True, drop=5)] if tries else []),
               Column("TRIGGER", drop=5), Column("SCHEDULED", drop=6), Column("STARTED"),
               Column("DURATION", drop=4, right=True), Column("EXIT", drop=3),
               Column("NODE", drop=7), Column("ERROR", flex=True, drop=2)]
    rows = []
    for r in records:
        code = r.exit_code
        rows.append([cell(v, terminal=tty) for v in (
            r.id, r.task_id)] + [
            cell(r.status.value, STATUS_STYLE.get(r.status.value, ""), terminal=tty),
            *([cell(r.attempt, terminal=tty)] if tries else []),
            cell(r.trigger.value, terminal=tty),
            time_cell(r.scheduled_for.astimezone(), now, terminal=tty) if r.scheduled_for
            else cell("-", terminal=tty),
            time_cell(r.started_at.astimezone(), now, terminal=tty),
            cell(f"{r.duration_s:.2f}s" if r.duration_s is not None else "-", terminal=tty),
            cell("-" if code is None else (signal_name(code) or str(code)), terminal=tty),
            cell(r.node, terminal=tty),
            cell(r.error or "", terminal=tty),
        ])
    print_table(columns, rows)


@command
def logs(
    ctx: typer.Context,
    run_id: Annotated[int, typer.Argument(metavar="RUN_ID", help="Run id (see `jobctl history`).")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing a running run's output until it ends.")] = False,
    raw: Annotated[bool, typer.Option("--raw", help="On a terminal too, write the output's bytes as they are (escape sequences included).")] = False,
    config: ConfigOption = None,
    state: StateOption = None,
) -> None:
    """Print the captured output (stdout and stderr) of one run.

    On a terminal, control characters other than newline and tab are shown
    escaped (ESC as \\x1b), so a job's output cannot drive your terminal;
    --raw passes them through. Piped, the output is the stored bytes.

    Example: jobctl logs 42 --follow
    """
    import time
    from pathlib import Path

    from jobctl.errors import UsageError
    from jobctl.lifecycle import recover_orphans
    from jobctl.liveness import owner_alive
    from jobctl.model import RunStatus

    svc = services(ctx)
    schedule_set = svc.load(config)
    store = open_state(svc, schedule_set, state, create=False)
    in_range = 0 < run_id < 2**63  # what SQLite can hold
    record = store.get_run(run_id) if store and in_range else None
    if record is None or store is None:
        raise UsageError(f"no run with id {run_id}")
    # a run of another node on a state that keeps logs (PostgreSQL): read
    # them from there; its node's own file, when it is on this machine, is
    # read as on SQLite
    from_store = store.stores_logs and (record.log_path is None
                                        or not Path(record.log_path).exists())
    if from_store:
        if store.read_log(run_id) is None and record.status is not RunStatus.RUNNING:
            raise UsageError(f"run {run_id} has no log (status {record.status.value})")
    elif record.log_path is None or (not Path(record.log_path).exists() and record.status is not RunStatus.RUNNING):
        raise UsageError(f"run {run_id} has no log (status {record.status.value})")
    import stat

    try:
        path_mode: int | None = Path(record.log_path or "").stat().st_mode if not from_store else None
    except OSError:
        path_mode = None
    if path_mode is not None and not stat.S_ISREG(path_mode):
        # logs are files jobctl writes; anything else (a device behind a
        # link: /dev/zero never ends) is not a log to copy
        raise UsageError(f"run {run_id}'s log {record.log_path} is not a regular file; "
                         "not reading it")
    from jobctl.cli.render import is_terminal

    out: Any = sys.stdout.buffer
    if not raw and is_terminal(sys.stdout):
        out = _EscapingWriter(out)
    path = Path(record.log_path or "")
    offset = 0
    final = False  # the stored log is the run's final one

    def copy() -> None:
        nonlocal offset, final
        if from_store:
            got = store.read_log(run_id, offset)
            if got is not None:
                out.write(got[0])
                offset += len(got[0])
                final = got[1]
            out.flush()
            return
        try:
            with path.open("rb") as f:
                size = f.seek(0, 2)
                if size < offset:
                    offset = min(offset, size)  # the log was cut to head + tail
                f.seek(offset)
                while chunk := f.read(65536):
                    out.write(chunk)
                    offset += len(chunk)
            out.flush()
        except FileNotFoundError:
            pass

    copy()
    while follow:
        current = store.get_run(run_id)
        if current is not None and current.status is RunStatus.RUNNING \
                and not owner_alive(current.owner):
            recover_orphans(store, svc.now())  # its runner died: stop waiting
            current = store.get_run(run_id)
        if current is None or current.status is not RunStatus.RUNNING:
            copy()
            # the final log follows the run's end (its node uploads it right
            # after); a node that died never does: what is stored stays
            deadline = time.monotonic() + FINAL_LOG_WAIT
            while from_store and not final and current is not None \
                    and current.status is not RunStatus.INTERRUPTED and time.monotonic() < deadline:
                time.sleep(0.2)
                copy()
            if current is not None and current.status is RunStatus.INTERRUPTED:
                err(f"run {run_id} was interrupted: {current.error or 'its owner stopped'}")
            break
        time.sleep(0.2)
        copy()
    if isinstance(out, _EscapingWriter):
        out.finish()
    store.close()


FINAL_LOG_WAIT = 10.0  # seconds `logs --follow` waits for a stored run's final log


class _EscapingWriter:
    """Writes a job's output to a terminal with its control characters
    escaped; a UTF-8 character split between reads is kept whole."""

    def __init__(self, out: Any) -> None:
        import codecs

        self.out = out
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="backslashreplace")

    def write(self, chunk: bytes) -> None:
        from jobctl.cli.render import escape_control

        self.out.write(escape_control(self.decoder.decode(chunk)).encode("utf-8"))

    def flush(self) -> None:
        self.out.flush()

    def finish(self) -> None:
        """Write what is left of a character cut off at the end of the log."""
        from jobctl.cli.render import escape_control

        self.out.write(escape_control(self.decoder.decode(b"", final=True)).encode("utf-8"))
        self.out.flush()


@command
def status(ctx: typer.Context, config: ConfigOption = None, state: StateOption = None,
           json: JsonOption = False) -> None:
    """Show whether a runner is up, what is running now, and the next fires.

    Example: jobctl status --json
    """
    from jobctl.cli.render import relative
    from jobctl.liveness import HEARTBEAT_LATE_AFTER, lease_alive

    view = load_view(ctx, config, state)
    store, now = view.store, view.now
    lease = store.lease() if store else None
    up = lease is not None and lease_alive(lease, now)
    # a shared state: every node that held a lease, judged by the database's clock
    nodes = store.nodes() if store else []
    running = store.running() if store else []
    from jobctl.errors import JobctlError

    try:
        # each task's latest hook, webhook or ping failure (of tasks in the config)
        hook_failures = sorted((f for f in (store.hook_failures() if store else {}).values()
                                if view.schedule_set.get(f.task_id) is not None),
                               key=lambda f: f.at, reverse=True)
    except JobctlError:
        hook_failures = []  # a state too old to have them, opened read-only
    enabled = [t for t in view.schedule_set.tasks if t.enabled]
    # a jittered task's next fire is when it really starts: its slot plus its offset
    upcoming, slots = view.next_starts(enabled)
    offsets = {task.id: (start - slots[task.id]).total_seconds()
               for task, start in zip(enabled, upcoming) if task.id in slots and start}
    fires = sorted(((f, t.id) for t, f in zip(enabled, upcoming) if f is not None),
                   key=lambda f: f[0])[:5]
    runner = None
    if up and lease is not None:
        runner = {
            "pid": lease.pid, "host": lease.host, "since": lease.started_at.isoformat(timespec="microseconds"),
            "heartbeat_age_s": round((now - lease.heartbeat_at).total_seconds(), 3),
        }
        runner["responding"] = runner["heartbeat_age_s"] < HEARTBEAT_LATE_AFTER
        if not runner["responding"]:
            err(f"warning: the runner's last heartbeat was {runner['heartbeat_age_s']:.0f}s ago "
                f"(it beats every 5s): it is stopped (SIGSTOP?) or hung, and fires nothing "
                f"until it resumes")
    if json:
        print_json({
            "runner": runner,
            "nodes": [
                {"name": n.name, "host": n.host, "pid": n.pid,
                 "started_at": n.started_at.isoformat(timespec="microseconds"),
                 "heartbeat_at": n.heartbeat_at.isoformat(timespec="microseconds"),
                 "heartbeat_age_s": round((n.db_now - n.heartbeat_at).total_seconds(), 3),
                 "alive": n.alive}
                for n in nodes
            ],
            "running": [
                {"id": r.id, "task_id": r.task_id, "trigger": r.trigger.value, "pid": r.pid,
                 "node": r.node,
                 "started_at": r.started_at.isoformat(timespec="microseconds"),
                 "running_for_s": round((now - r.started_at).total_seconds(), 3)}
                for r in running
            ],
            "next": [{"task_id": t, "at": f.isoformat(),
                      **({"jitter_s": offsets[t]} if t in offsets else {})} for f, t in fires],
            "hook_failures": [
                {"task_id": f.task_id, "run_id": f.run_id,
                 "at": f.at.isoformat(timespec="microseconds"), "message": f.message}
                for f in hook_failures
            ],
        })
        return
    from jobctl.cli.render import Column, cell, is_terminal, print_table, shown, time_cell, when

    tty = is_terminal(sys.stdout)
    if runner is not None:
        assert lease is not None
        state_word = "up" if runner["responding"] else "not responding"
        typer.echo(shown(f"runner: {state_word}, pid {runner['pid']} on {runner['host']}", sys.stdout))
        typer.echo(f"  since {when(lease.started_at.astimezone(), now)}, "
                   f"heartbeat {runner['heartbeat_age_s']:.1f}s ago")
    else:
        typer.echo("runner: not running")
    if nodes:
        typer.echo("nodes:")
        print_table(
            [Column("NODE", squeeze=True), Column("HOST", drop=2), Column("PID", drop=1),
             Column("SINCE", drop=3), Column("HEARTBEAT"), Column("ALIVE")],
            [[cell(n.name, terminal=tty), cell(n.host, terminal=tty), cell(f"pid {n.pid}", terminal=tty),
              cell("since " + relative(n.started_at, n.db_now), terminal=tty),
              cell(f"beat {(n.db_now - n.heartbeat_at).total_seconds():.1f}s ago", terminal=tty),
              cell("alive" if n.alive else "down", "green" if n.alive else "red",
                   terminal=tty)]
             for n in nodes], header=False, indent=2)
    if running:
        typer.echo("running:")
        print_table(
            [Column("RUN"), Column("TASK", squeeze=True), Column("TRIGGER", drop=2),
             Column("PID", drop=1), *([Column("NODE", drop=3)] if nodes else []), Column("FOR")],
            [[cell(f"#{r.id}", terminal=tty), cell(r.task_id, terminal=tty),
              cell(r.trigger.value, terminal=tty), cell(f"pid {r.pid}", terminal=tty),
              *([cell(f"on {r.node}", terminal=tty)] if nodes else []),
              cell("for " + relative(r.started_at, now).replace(" ago", ""), terminal=tty)]
             for r in running], header=False, indent=2)
    else:
        typer.echo("running: nothing")
    typer.echo("next:")
    if fires:
        print_table([Column("TASK", squeeze=True), Column("WHEN")],
                    [[cell(task_id, terminal=tty), _jittered(time_cell(fire, now, terminal=tty),
                                                             offsets.get(task_id))]
                     for fire, task_id in fires], header=False, indent=2)
    else:
        typer.echo("  nothing scheduled")
    if hook_failures:
        typer.echo("hook failures (latest per task):")
        print_table(
            [Column("TASK", squeeze=True), Column("RUN", drop=1), Column("WHEN", drop=2),
             Column("WHAT", squeeze=True)],
            [[cell(f.task_id, terminal=tty), cell(f"#{f.run_id}" if f.run_id else "", terminal=tty),
              cell(relative(f.at, now), terminal=tty), cell(f.message, "red", terminal=tty)]
             for f in hook_failures[:10]], header=False, indent=2)
