"""Read-only commands: validate, list, show, next."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer

from jobctl.cli._common import (
    ConfigOption,
    JsonOption,
    StateOption,
    command,
    err,
    live_anchor,
    load_view,
    view_node,
    open_state,
    print_json,
    services,
)


def _next_runs(task: object, now: datetime, count: int, anchor: datetime | None,
               node: str | None = None) -> list[tuple[datetime, datetime]]:
    """(slot, real start) of the task's next `count` fires: a jittered
    task starts its offset after each slot."""
    from jobctl.model import Task
    from jobctl.timing import next_starts

    assert isinstance(task, Task)
    return next_starts(task, now, count, anchor, node)


def _last_run_json(record: Any) -> dict[str, object] | None:
    if record is None:
        return None
    from jobctl.cli.render import exit_fields

    return {"id": record.id, "status": record.status.value,
            "started_at": record.started_at.isoformat(timespec="microseconds"),
            **exit_fields(record.exit_code)}


StrictOption = Annotated[bool, typer.Option(
    "--strict", help="Warnings fail too: exit 2 if there is any warning.")]


@command
def validate(ctx: typer.Context, config: ConfigOption = None, strict: StrictOption = False,
             json: Annotated[bool, typer.Option(
                 "--json", help="Print one JSON object with every problem.")] = False) -> None:
    """Check the config and report every problem, and warn about schedule foot-guns.

    Prints "N tasks OK" and exits 0, or lists each error (file:line, task, key,
    what is wrong) on stderr and exits 2. Warnings (a time DST skips or
    repeats, a step that does not divide its range, cron's day OR rule, a
    forbid task without timeout, a day some months lack) go to stderr too and
    keep exit 0, unless --strict. --json prints one object: ok, tasks, problems.

    Example: jobctl validate --strict -c jobctl.toml
    """
    svc = services(ctx)
    if json:
        _validate_json(svc, config, strict)
        return
    from jobctl.lint import lint, source_locator

    schedule_set = svc.load(config)
    found = lint(schedule_set, svc.now(), source_locator()) + _user_switch_warnings(schedule_set)
    for problem in found:
        err(str(problem))
    n = len(schedule_set.tasks)
    tasks = f"{n} task{'s' if n != 1 else ''} OK"
    left_out = [r for r in schedule_set.plugins if not r.loaded]
    if left_out:
        names = ", ".join(f"'{r.id}'" for r in left_out)
        err(f"{tasks}, but plugin{'s' if len(left_out) > 1 else ''} "
            f"{names} left out (see above)")
        raise typer.Exit(2)
    warnings = len(found) + len(schedule_set.warnings)
    if strict and warnings:
        err(f"{tasks}, but {warnings} warning{'s' if warnings != 1 else ''} (--strict)")
        raise typer.Exit(2)
    typer.echo(tasks)


def _user_switch_warnings(schedule_set: Any) -> list[Any]:
    """Tasks with `user` checked by someone who is not root: the config may
    be meant for a root runner, so this is said, but is not an error here."""
    import os

    from jobctl.config import user_switch_problems

    return user_switch_problems(schedule_set.tasks, os.geteuid(), "warning")


def _validate_json(svc: Any, config: Any, strict: bool) -> None:
    """`validate --json`: every problem located, the exit status as without --json."""
    from jobctl.errors import ConfigError, JobctlError
    from jobctl.lint import lint, problem_fields, source_locator
    from jobctl.resolve import load_schedule_set

    problems: list[dict[str, object]] = []
    n = 0
    try:
        schedule_set = load_schedule_set(config, svc.env, svc.cwd, system_zone=svc.zone(),
                                         now=svc.now())
    except ConfigError as e:
        problems = [problem_fields(p) for p in e.problems]
        code = e.exit_code
    except JobctlError as e:
        # no config found, or one refused for its permissions: the whole file
        tried = getattr(e, "tried", None)
        path = getattr(e, "path", None) or (tried[0] if tried else None)
        problems = [{"severity": "error", "file": str(path) if path else None, "line": None,
                     "task": None, "key": None, "message": str(e)}]
        code = e.exit_code
    else:
        n = len(schedule_set.tasks)
        problems = [problem_fields(p) for p in schedule_set.warnings]
        problems += [problem_fields(p, plugin=r.id) for r in schedule_set.plugins for p in r.problems]
        manifests = {r.source: r.id for r in schedule_set.plugins}
        problems += [problem_fields(p, plugin=manifests.get(str(p.origin.path)))
                     for p in lint(schedule_set, svc.now(), source_locator())
                     + _user_switch_warnings(schedule_set)]
        errors = any(p["severity"] == "error" for p in problems)
        code = 2 if errors or (strict and problems) else 0
    print_json({"ok": code == 0, "tasks": n, "problems": problems})
    if code:
        raise typer.Exit(code)


@command
def plugins(ctx: typer.Context, config: ConfigOption = None, json: JsonOption = False) -> None:
    """List the plugins the config's `plugins` globs found, and whether each loaded.

    Example: jobctl plugins --json
    """
    schedule_set = services(ctx).load(config)
    rows: list[dict[str, Any]] = [
        {"id": r.id, "name": r.name, "version": r.version, "source": r.source,
         "loaded": r.loaded, "jobs": r.jobs, "problems": [str(p) for p in r.problems]}
        for r in schedule_set.plugins
    ]
    if json:
        print_json(rows)
        return
    if not rows:
        typer.echo("no plugins (set [jobctl] plugins = [\"plugins/*/plugin.toml\"])")
        return
    import sys

    from jobctl.cli.render import Column, cell, is_terminal, print_table

    tty = is_terminal(sys.stdout)
    table = []
    for row in rows:
        state = f"loaded, {row['jobs']} job{'s' if row['jobs'] != 1 else ''}" if row["loaded"] \
            else f"left out ({len(row['problems'])} problem{'s' if len(row['problems']) != 1 else ''})"
        table.append([cell(row["id"], terminal=tty), cell(row["version"] or "-", terminal=tty),
                      cell(state, "" if row["loaded"] else "red", terminal=tty),
                      cell(row["source"], terminal=tty)])
    print_table([Column("ID"), Column("VERSION", drop=2), Column("STATUS"),
                 Column("SOURCE", flex=True, drop=1, keep_end=True)], table)


@command
def list_tasks(ctx: typer.Context, config: ConfigOption = None, state: StateOption = None,
               json: JsonOption = False) -> None:
    """List every task with its schedule, next run and last run.

    Example: jobctl list --json
    """
    from jobctl.cli.render import jitter_note, schedule_text, task_summary

    view = load_view(ctx, config, state)
    now = view.now
    last_runs = view.store.last_runs() if view.store else {}
    tasks = view.schedule_set.tasks
    # a jittered task's next run is when it really starts: its slot plus its offset
    fires, slots = view.next_starts(tasks)
    rows = [(task, fire if task.enabled else None, last_runs.get(task.id))
            for task, fire in zip(tasks, fires)]
    if json:
        out = []
        for task, upcoming, last in rows:
            item = task_summary(task, upcoming)
            if task.jitter:
                item["jitter_s"] = ((upcoming - slots[task.id]).total_seconds()
                                    if upcoming is not None and task.id in slots else None)
            item["last_run"] = _last_run_json(last)
            out.append(item)
        print_json(out)
        return
    import sys

    from jobctl.cli.render import Column, cell, is_terminal, print_table, time_cell

    if not rows:
        typer.echo("no tasks")
        return
    tty = is_terminal(sys.stdout)
    columns = [Column("ID", squeeze=True), Column("NAME", flex=True, drop=2), Column("GROUP", flex=True, drop=6),
               Column("SCHEDULE", drop=4), Column("TIMEZONE", drop=7),
               Column("ENABLED", drop=5), Column("NEXT RUN"), Column("LAST RUN", drop=3)]
    table = []
    for task, upcoming, last in rows:
        next_cell: Any
        if not task.enabled:
            next_cell = cell("disabled", terminal=tty)
        elif upcoming is None:
            next_cell = cell("at runner start" if schedule_text(task) == "@reboot" else "never",
                             terminal=tty)
        else:
            next_cell = time_cell(upcoming, now, terminal=tty)
            if task.id in slots:
                note = jitter_note(task, upcoming, slots[task.id])
                for part in next_cell:
                    part.append(note)
        table.append([
            *(cell(v, terminal=tty) for v in (task.id, task.name, task.group or "",
                                               schedule_text(task), task.timezone)),
            cell("yes", terminal=tty) if task.enabled else cell("no", "yellow", terminal=tty),
            next_cell, _last_text(last, now),
        ])
    print_table(columns, table)


def _last_text(record: object, now: datetime) -> Any:
    from rich.text import Text

    from jobctl.cli.render import STATUS_STYLE, relative
    from jobctl.store import RunRecord

    if not isinstance(record, RunRecord):
        return Text("-")
    text = Text(record.status.value, style=STATUS_STYLE.get(record.status.value, ""))
    text.append(f" {relative(record.started_at, now)}")
    return text


@command
def show(
    ctx: typer.Context,
    task_id: Annotated[str, typer.Argument(metavar="ID", help="Task id.")],
    config: ConfigOption = None,
    state: StateOption = None,
    json: JsonOption = False,
) -> None:
    """Show every resolved field of one task and its next 5 fire times.

    Example: jobctl show backup
    """
    from jobctl.cli.render import relative, task_detail
    from jobctl.errors import UnknownTaskError

    view = load_view(ctx, config, state)
    store, now = view.store, view.now
    task = view.schedule_set.get(task_id)
    if task is None:
        raise UnknownTaskError(task_id, view.schedule_set.ids)
    node = view_node(view.svc, view.schedule_set) if task.jitter else None
    pairs = _next_runs(task, now, 5, view.anchor_for(task), node) if task.enabled else []
    upcoming = [start for _slot, start in pairs]
    from jobctl.lint import explain

    detail: dict[str, Any] = {}
    for key, value in task_detail(task, upcoming).items():
        detail[key] = value
        if key == "schedule":
            # in words, as cron-descriptor says it ("At 02:30, Monday through Friday")
            detail["explanation"] = explain(task.schedule)
    if task.jitter:
        from jobctl.timing import task_jitter

        detail["jitter_s"] = task_jitter(task, node).total_seconds()
        detail["next_slots"] = [slot.isoformat() for slot, _start in pairs]
    last = store.last_runs().get(task.id) if store else None
    detail["last_run"] = _last_run_json(last)
    if json:
        print_json(detail)
        return
    import sys

    from rich.table import Table

    from jobctl.cli.render import cell, exit_text, is_terminal, print_rich

    tty = is_terminal(sys.stdout)
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in detail.items():
        if key in ("next_runs", "next_run", "last_run", "next_slots", "jitter_s"):
            continue
        if value is None or value == {}:
            text = "-"
        elif isinstance(value, bool):
            text = "yes" if value else "no"
        elif key in ("timeout", "retry_delay", "retry_max_delay", "jitter", "hook_timeout"):
            from jobctl.timing import format_duration

            text = format_duration(value)  # as the config writes it: 30s, 1h30m
        elif isinstance(value, dict):
            text = " ".join(f"{k}={v}" for k, v in value.items())
        elif isinstance(value, list):
            import shlex

            text = shlex.join(value)
        else:
            text = str(value)
        table.add_row(key, cell(text, terminal=tty))
    last_text = _last_text(last, now)
    if last is not None:
        notes = [f"run #{last.id}"]
        if last.exit_code is not None and last.exit_code != 0:
            notes.append(exit_text(last.exit_code))
        last_text.append(f" ({', '.join(notes)})")
    table.add_row("last run", last_text)
    if not task.enabled:
        table.add_row("next runs", "none: the task is disabled")
    elif not upcoming:
        table.add_row("next runs", "none")
    from jobctl.cli.render import jitter_note

    for i, (slot, fire) in enumerate(pairs):
        text = cell(f"{fire.isoformat()}  ({relative(fire, now)}){jitter_note(task, fire, slot)}",
                    terminal=tty)
        text.no_wrap = True
        table.add_row("next runs" if i == 0 else "", text)
    print_rich(table)


@command
def next_fires(
    ctx: typer.Context,
    target: Annotated[
        str,
        typer.Argument(metavar="ID_OR_EXPRESSION", help="A task id, or an expression like '*/15 * * * *'."),
    ],
    count: Annotated[int, typer.Option("-n", "--count", min=1, max=10000, help="How many fire times.")] = 5,
    after: Annotated[
        str | None,
        typer.Option("--after", help="Count from this instant (RFC 3339, or local ISO in the zone) instead of now."),
    ] = None,
    tz: Annotated[str | None, typer.Option("--tz", help="Zone for a bare expression; for a task, the zone its times are shown in.")] = None,
    config: ConfigOption = None,
    json: JsonOption = False,
) -> None:
    """Print the next fire times of a task or of a bare expression.

    A bare expression needs no config file. Like `systemd-analyze calendar
    --iterations`.

    Example: jobctl next '0 9 * * mon-fri' -n 3 --tz Europe/Berlin
    """
    from jobctl.cli.render import relative
    from jobctl.config import TASK_ID_RE, find_config, read_config
    from jobctl.errors import (
        BadExpressionError,
        ConfigNotFoundError,
        UnknownTaskError,
        UsageError,
    )
    from jobctl.resolve import resolve
    from jobctl.timing import load_zone, parse_at, parse_schedule

    svc = services(ctx)
    now = svc.now()
    anchor = None
    config_path = None
    try:
        config_path = find_config(config, svc.env, svc.cwd)
    except ConfigNotFoundError:
        if config is not None:
            raise
    schedule = None
    zone_name = tz
    show_zone = None  # for a task, --tz is the zone its times are shown in
    # a config task's id, or a plugin job's PLUGIN:KEY
    looks_like_id = all(TASK_ID_RE.fullmatch(part) for part in target.split(":", 1))
    known: list[str] = []
    jittered: tuple[Any, str] | None = None  # a task with jitter, and this node's name
    if config_path is not None and looks_like_id:
        data = read_config(config_path, svc.zone(), now)
        if target in data.declared_ids or ":" in target:
            schedule_set = resolve(config_path, system_zone=svc.zone(), now=now)
            known = list(schedule_set.ids)
            task = schedule_set.get(target)
            if task is not None:
                schedule, zone_name = task.schedule, task.timezone
                show_zone = tz
                if task.jitter:
                    jittered = (task, view_node(svc, schedule_set))
                if after is None:
                    # intervals count from a live runner's start, as in `list`
                    store = open_state(svc, schedule_set, None, create=False)
                    anchor = live_anchor(store, now)
                    from jobctl.model import Scope

                    if store is not None and store.clustered and task.scope is Scope.CLUSTER:
                        # a cluster task's slots: the cluster's anchor, as every node counts
                        anchor = store.cluster_anchor(create=False) or anchor
        else:
            known = [t.id for t in data.tasks]
    if schedule is None:
        try:
            schedule = parse_schedule(target)
        except BadExpressionError as e:
            # an id with a typo, or in the wrong case ("BACKUP")
            if " " not in target and all(TASK_ID_RE.fullmatch(part)
                                         for part in target.lower().split(":", 1)):
                if not known and config_path is not None:
                    known = [t.id for t in read_config(config_path, svc.zone(), now).tasks]
                raise UnknownTaskError(target, known) from None
            raise e
        if zone_name is None:
            if config_path is not None:
                zone_name = read_config(config_path, svc.zone(), now).settings.timezone
            else:
                zone_name = svc.zone()
    try:
        zone = load_zone(zone_name)
        shown = zone if show_zone is None else load_zone(show_zone)
    except ValueError as e:
        raise UsageError(f"--tz: {e}") from None
    start = now
    if after is not None:
        try:
            start = parse_at(after, shown)
        except ValueError as e:
            raise UsageError(f"--after: {e}") from None
    from jobctl.timing import fire_times

    notes: list[str] = []
    if jittered is not None:
        # when the task really starts: each slot plus its jitter offset
        from jobctl.cli.render import jitter_note
        from jobctl.timing import next_starts

        pairs = next_starts(jittered[0], start, count, anchor, jittered[1])
        fires = [s.astimezone(shown) for _slot, s in pairs]
        notes = [jitter_note(jittered[0], s, slot) for slot, s in pairs]
    else:
        fires = [f.astimezone(shown) for f in fire_times(schedule, zone, start, count, anchor)]
    if json:
        print_json([f.isoformat() for f in fires])
        return
    if not fires:
        from jobctl.model import AtSchedule, RebootSchedule

        if isinstance(schedule, RebootSchedule):
            err("@reboot has no calendar times: it fires once each time the runner starts")
        elif isinstance(schedule, AtSchedule):
            err(f"no fire times: a one-shot at {schedule.at.isoformat()}, "
                f"which is not after {start.isoformat()}")
        else:
            err("no fire times: the schedule never fires after " + start.isoformat())
        return
    from jobctl.lint import explain

    words = explain(schedule)
    if words:
        from jobctl.model import CronSchedule

        typer.echo(f"{words} ({zone.key})" if isinstance(schedule, CronSchedule) else words)
    width = len(str(len(fires)))
    for i, fire in enumerate(fires, start=1):
        note = notes[i - 1] if notes else ""
        typer.echo(f"{i:>{width}}  {fire.isoformat()}  ({relative(fire, now)}){note}")

