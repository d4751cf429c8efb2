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
        "exit_code": record.exit_code,
        "error": record.error,
    }


@command
def run_now(
    ctx: typer.Context,
    task_id: Annotated[str, typer.Argument(metavar="ID", help="Task id.")],
    force: Annotated[bool, typer.Option("--force", help="Start even if a run is going and concurrency is 'forbid'.")] = False,
    config: ConfigOption = None,
    state: StateOption = None,
) -> None:
    """Run a task now, in this terminal, and record it (trigger: manual).

    Streams the task's output; exits 0 on success, 1 on failure or timeout,
    75 if the task is already running and its concurrency is 'forbid'.
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
    store = open_state(svc, schedule_set, state, create=True)
    assert store is not None
    stops = {"n": 0}

    def on_signal(_signum: int, _frame: Any) -> None:
        stops["n"] += 1

    # SIGHUP too: a closed terminal or a dropped ssh session must stop the
    # task and record it, not leave it running unsupervised
    previous = {sig: signal.signal(sig, on_signal)
                for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        echo = getattr(sys.stdout, "buffer", None)
        if echo is not None:
            try:
                sys.stdout.flush()
            except OSError:
                echo = None
        record = run_task(
            store, task, schedule_set.settings, now=svc.now, env=svc.env,
            echo=echo,
            force=force, stop_requested=lambda: stops["n"] > 0,
            config_path=schedule_set.path,
        )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        store.close()
    duration = f"{record.duration_s:.2f}s" if record.duration_s is not None else ""
    summary = f"run #{record.id} {task.id}: {record.status.value} in {duration}"
    if record.error:
        summary += f" ({record.error})"
    err(summary)
    raise typer.Exit(0 if record.status is RunStatus.SUCCESS else 1)


def _set_enabled(ctx: typer.Context, ids: list[str], config: Any, state: Any, enabled: bool) -> None:
    from jobctl.errors import UnknownTaskError

    svc = services(ctx)
    schedule_set = svc.load(config)
    for task_id in ids:
        if schedule_set.get(task_id) is None:
            raise UnknownTaskError(task_id, schedule_set.ids)
    store = open_state(svc, schedule_set, state, create=True)
    assert store is not None
    try:
        store.set_enabled(ids, enabled, now=svc.now())
    finally:
        store.close()
    word = "enabled" if enabled else "disabled"
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
    from jobctl.cli.render import STATUS_STYLE, short_iso
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
    from jobctl.cli.render import console
    from rich.table import Table
    from rich.text import Text

    if not records:
        typer.echo("no runs yet" if wanted is None else f"no {wanted.value} runs")
        if store is None:
            from jobctl.config import state_path

            path = state_path(state, svc.env, schedule_set.settings)
            err(f"(no state file at {path} yet)")
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("RUN", "TASK", "STATUS", "TRIGGER", "SCHEDULED", "STARTED", "DURATION", "EXIT", "ERROR"):
        table.add_column(col, overflow="fold")
    for r in records:
        table.add_row(
            str(r.id), Text(r.task_id), Text(r.status.value, style=STATUS_STYLE.get(r.status.value, "")),
            r.trigger.value, short_iso(r.scheduled_for.astimezone()) if r.scheduled_for else "-",
            short_iso(r.started_at.astimezone()),
            f"{r.duration_s:.2f}s" if r.duration_s is not None else "-",
            "-" if r.exit_code is None else str(r.exit_code), Text(r.error or ""),
        )
    console().print(table)


@command
def logs(
    ctx: typer.Context,
    run_id: Annotated[int, typer.Argument(metavar="RUN_ID", help="Run id (see `jobctl history`).")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing a running run's output until it ends.")] = False,
    config: ConfigOption = None,
    state: StateOption = None,
) -> None:
    """Print the captured output (stdout and stderr) of one run.

    Example: jobctl logs 42 --follow
    """
    import time
    from pathlib import Path

    from jobctl.errors import UsageError
    from jobctl.lifecycle import owner_alive, recover_orphans
    from jobctl.model import RunStatus

    svc = services(ctx)
    schedule_set = svc.load(config)
    store = open_state(svc, schedule_set, state, create=False)
    in_range = 0 < run_id < 2**63  # what SQLite can hold
    record = store.get_run(run_id) if store and in_range else None
    if record is None or store is None:
        raise UsageError(f"no run with id {run_id}")
    if record.log_path is None or (not Path(record.log_path).exists() and record.status is not RunStatus.RUNNING):
        raise UsageError(f"run {run_id} has no log (status {record.status.value})")
    out = sys.stdout.buffer
    path = Path(record.log_path)
    offset = 0

    def copy() -> None:
        nonlocal offset
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
            if current is not None and current.status is RunStatus.INTERRUPTED:
                err(f"run {run_id} was interrupted: {current.error or 'its owner stopped'}")
            break
        time.sleep(0.2)
        copy()
    store.close()


@command
def status(ctx: typer.Context, config: ConfigOption = None, state: StateOption = None,
           json: JsonOption = False) -> None:
    """Show whether a runner is up, what is running now, and the next fires.

    Example: jobctl status --json
    """
    from jobctl.cli.render import relative, short_iso
    from jobctl.lifecycle import HEARTBEAT_LATE_AFTER, lease_alive
    from jobctl.timing import next_fires

    view = load_view(ctx, config, state)
    store, now = view.store, view.now
    lease = store.lease() if store else None
    up = lease is not None and lease_alive(lease, now)
    running = store.running() if store else []
    enabled = [t for t in view.schedule_set.tasks if t.enabled]
    upcoming = next_fires(((t.schedule, t.timezone) for t in enabled), now, view.anchor)
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
            "running": [
                {"id": r.id, "task_id": r.task_id, "trigger": r.trigger.value, "pid": r.pid,
                 "started_at": r.started_at.isoformat(timespec="microseconds"),
                 "running_for_s": round((now - r.started_at).total_seconds(), 3)}
                for r in running
            ],
            "next": [{"task_id": t, "at": f.isoformat()} for f, t in fires],
        })
        return
    if runner is not None:
        state_word = "up" if runner["responding"] else "not responding"
        typer.echo(f"runner: {state_word}, pid {runner['pid']} on {runner['host']}, since "
                   f"{short_iso(lease.started_at.astimezone())}, heartbeat {runner['heartbeat_age_s']:.1f}s ago")  # type: ignore[union-attr]
    else:
        typer.echo("runner: not running")
    if running:
        typer.echo("running:")
        for r in running:
            typer.echo(f"  #{r.id} {r.task_id} ({r.trigger.value}, pid {r.pid}) for "
                       f"{relative(r.started_at, now).replace(' ago', '')}")
    else:
        typer.echo("running: nothing")
    typer.echo("next:")
    for fire, task_id in fires:
        typer.echo(f"  {task_id}  {short_iso(fire)}  ({relative(fire, now)})")
    if not fires:
        typer.echo("  nothing scheduled")
