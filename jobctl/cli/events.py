"""`jobctl events`: the audit trail of control actions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer

from jobctl.cli._common import ConfigOption, JsonOption, StateOption, command, open_state, print_json, services


def _since(text: str, now: datetime, zone: str) -> datetime:
    """`--since`: a duration back from now (`90m`, `2d`), or a time (RFC
    3339, or a local ISO time in the config's zone)."""
    from jobctl.errors import UsageError
    from jobctl.timing import load_zone, parse_at, parse_duration

    from datetime import timedelta

    try:
        return now - timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    try:
        return parse_at(text, load_zone(zone))
    except ValueError:
        raise UsageError(f"--since: '{text}' is neither a duration (90m, 2d) nor a time "
                         "(2026-06-15T12:00, or RFC 3339)") from None


def _row(event: Any) -> dict[str, Any]:
    return {"id": event.id, "at": event.at.isoformat(timespec="microseconds"),
            "action": event.action, "task_id": event.task_id, "outcome": event.outcome,
            "detail": event.detail, "uid": event.uid, "user": event.user, "host": event.host,
            "node": event.node}


@command
def events(
    ctx: typer.Context,
    task: Annotated[str | None, typer.Option("--task", metavar="ID",
                                             help="Only this task's events.")] = None,
    since: Annotated[str | None, typer.Option(
        "--since", metavar="DURATION|TIME",
        help="Only events at or after this: a duration back from now (90m, 2d) or a time.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many.")] = 50,
    config: ConfigOption = None,
    state: StateOption = None,
    json: JsonOption = False,
) -> None:
    """Show the audit trail, newest first: who did what, when, and how it ended.

    Records run-now, enable, disable, the config edits (init, add, set,
    remove, edit), a runner's start, stop, reload and refused reload, and a
    plugin's jobs.run and jobs.set_status.

    Example: jobctl events --task backup --since 2d
    """
    svc = services(ctx)
    schedule_set = svc.load(config)
    now = svc.now()
    after = _since(since, now, schedule_set.settings.timezone) if since is not None else None
    store = open_state(svc, schedule_set, state, create=False)
    try:
        found = store.events(task_id=task, since=after, limit=limit) if store else []
    finally:
        if store is not None:
            store.close()
    if json:
        print_json([_row(e) for e in found])
        return
    if not found:
        typer.echo("no events")
        return
    import sys

    from jobctl.cli.render import Column, cell, is_terminal, print_table, time_cell

    tty = is_terminal(sys.stdout)
    style = {"ok": "green", "failed": "red", "refused": "yellow"}
    table = [[time_cell(e.at.astimezone(), now, terminal=tty), cell(e.action, terminal=tty),
              cell(e.task_id or "-", terminal=tty),
              cell(e.outcome, style.get(e.outcome, ""), terminal=tty),
              cell(f"{e.user}@{e.host}" + (f" ({e.node})" if e.node != e.host else ""),
                   terminal=tty),
              cell(e.detail, terminal=tty)]
             for e in found]
    print_table([Column("WHEN"), Column("ACTION"), Column("TASK", squeeze=True),
                 Column("OUTCOME"), Column("WHO", flex=True, drop=2),
                 Column("DETAIL", flex=True, drop=1)], table)
