"""`jobctl import crontab|systemd`: read another scheduler's jobs as tasks.

The translation is `jobctl.importers` (pure); this prints its TOML, or adds
the tasks with the same validated, atomic edit as `jobctl add` (`--write`).
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from jobctl.cli._common import ConfigOption, Services, command, err, services

if TYPE_CHECKING:
    from jobctl.importers import ImportResult

import_app = typer.Typer(
    name="import", no_args_is_help=True, rich_markup_mode=None,
    help="Import tasks from a crontab or a systemd timer: prints TOML, or adds them with --write.",
)

WriteOption = Annotated[bool, typer.Option(
    "--write", help="Add the tasks to the config (validated, atomic, comments kept) instead of "
                    "printing them.")]
SkipOption = Annotated[bool, typer.Option(
    "--skip-unsupported", help="Import what can be imported exactly and list the refused lines, "
                               "instead of importing nothing.")]


def _read_text(name: str) -> tuple[str, Path]:
    from jobctl.errors import UsageError

    if name == "-":
        return sys.stdin.read(), Path("<stdin>")
    path = Path(name)
    try:
        return path.read_text(encoding="utf-8"), path
    except OSError as e:
        raise UsageError(f"cannot read {name}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise UsageError(f"{name} is not UTF-8 text (byte {e.start})") from None


def _target(svc: Services, config: Path | None,
            write: bool) -> tuple[object, list[str], str, list[dict[str, object]]]:
    """The config snapshot `--write` edits (None without it), its task ids, its
    shell, and its task tables."""
    if not write:
        return None, [], "/bin/sh", []
    from jobctl.cli.edit import _read
    from jobctl.config import toml_loads

    snapshot = _read(svc, config)
    try:
        data = toml_loads(snapshot.text)
    except ValueError:
        data = {}  # the edit itself says what is wrong with the file
    tasks = data.get("tasks", [])
    ids = [t["id"] for t in tasks if isinstance(t, dict) and isinstance(t.get("id"), str)] \
        if isinstance(tasks, list) else []
    settings = data.get("jobctl", {})
    shell = settings.get("shell") if isinstance(settings, dict) else None
    tables = [t for t in tasks if isinstance(t, dict)] if isinstance(tasks, list) else []
    return snapshot, ids, shell if isinstance(shell, str) else "/bin/sh", tables


def _finish(svc: Services, snapshot: object, result: ImportResult, skip: bool,
            existing: list[dict[str, object]] | None = None) -> None:
    from jobctl.errors import UsageError
    from jobctl.importers import comment_lines, render_toml

    if result.refused:
        for problem in result.refused:
            err(f"{'skipped' if skip else 'refused'}: {problem}")
        if not skip:
            n = len(result.refused)
            refused = UsageError(f"{n} line{'s' if n != 1 else ''} of {result.source} cannot be "
                                 "imported exactly; nothing was imported (--skip-unsupported "
                                 "imports the rest)")
            _audit(svc, snapshot, "failed", str(refused))
            raise refused
    if not result.tasks:
        _audit(svc, snapshot, "failed", f"no jobs to import in {result.source}")
        raise UsageError(f"no jobs to import in {result.source}")
    if snapshot is None:
        sys.stdout.write(render_toml(result))
        return
    from jobctl.cli.edit import _Snapshot
    from jobctl.editing import add_task

    assert isinstance(snapshot, _Snapshot)
    for note in result.settings_comments:
        err(f"note: {note}")
    # importing the same file again must not double its jobs: a task that is
    # already in the config (every key but the id equal) is not added again
    new = []
    for task in result.tasks:
        same = _same_task(task.table, existing or [])
        if same is None:
            new.append(task)
        else:
            origin = task.comments[0] if task.comments else task.table["id"]
            err(f"already in the config as {same}, not imported again: {origin}")
    if not new:
        nothing = f"nothing imported: every task of {result.source} is already in {snapshot.path}"
        _audit(svc, snapshot, "ok", nothing)
        typer.echo(nothing)
        return
    result = replace(result, tasks=tuple(new))
    text = snapshot.text
    for task in result.tasks:
        text = add_task(text, task.table, [c.rstrip("\n") for c in comment_lines(task.comments)])
    try:
        snapshot.save(svc, text)
    except Exception as e:
        _audit(svc, snapshot, "failed", str(e).splitlines()[0] if str(e) else type(e).__name__)
        raise
    ids = [str(t.table["id"]) for t in result.tasks]
    n = len(ids)
    _audit(svc, snapshot, "ok", f"imported {', '.join(ids)} from {result.source} "
                                f"into {snapshot.path}")
    typer.echo(f"imported {n} task{'s' if n != 1 else ''} into {snapshot.path}: {', '.join(ids)}")


def _same_task(table: dict[str, object], existing: list[dict[str, object]]) -> str | None:
    """The id of a task in `existing` equal to `table` but for the id, or None."""
    mine = {k: v for k, v in table.items() if k != "id"}
    for other in existing:
        if {k: v for k, v in other.items() if k != "id"} == mine:
            return str(other.get("id"))
    return None


def _audit(svc: Services, snapshot: object, outcome: str, detail: str) -> None:
    """`import --write` in the audit trail of the config's state (a plain
    import, which only prints, is not a control action)."""
    if snapshot is None:
        return
    from jobctl.audit import record_config_edit
    from jobctl.cli.edit import _Snapshot

    assert isinstance(snapshot, _Snapshot)
    warning = record_config_edit(snapshot.path, "import", svc.now(), env=svc.env,
                                 system_zone=svc.zone(), outcome=outcome, detail=detail)
    if warning:
        err(f"warning: {warning}")


@import_app.command("crontab")
@command
def crontab(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(
        metavar="[FILE|-]", help="The crontab to read; - (the default) reads stdin.")] = "-",
    system: Annotated[bool, typer.Option(
        "--system", help="The system format, with a user field after the times (the default for "
                         "/etc/crontab and /etc/cron.d/*).")] = False,
    write: WriteOption = False,
    skip_unsupported: SkipOption = False,
    config: ConfigOption = None,
) -> None:
    """Turn a crontab's jobs into tasks, exactly as cron would run them.

    Env lines apply to the jobs below them (those above the first job become
    [jobctl] env), CRON_TZ/TZ the zone, SHELL the shell, MAILTO an
    on_failure hook running `mail` (a comment where there is none); cron's %
    rule is kept. Each task gets an id from its command and a comment with
    the original line and file:line. A line with no exact equivalent (such
    as cronie's ~ ranges) is refused with file:line, and then nothing is
    imported (exit 2) unless --skip-unsupported.

    Example: crontab -l | jobctl import crontab --write
    """
    import shutil

    from jobctl.importers.crontab import is_system_crontab, import_crontab

    svc = services(ctx)
    text, path = _read_text(file)
    snapshot, taken, shell, existing = _target(svc, config, write)
    result = import_crontab(
        text, path, system=system or is_system_crontab(Path(os.path.abspath(path))),
        mail=shutil.which("mail", path=svc.env.get("PATH")), shell=shell,
        env_in_settings=not write, taken=taken)
    _finish(svc, snapshot, result, skip_unsupported, existing)


@import_app.command("systemd")
@command
def systemd(
    ctx: typer.Context,
    timer: Annotated[str, typer.Argument(metavar="UNIT.timer", help="The timer unit file.")],
    service: Annotated[str | None, typer.Argument(
        metavar="[UNIT.service]", help="Its service unit file. Default: the timer's Unit=, or "
                                       "the .service of the same name, beside the timer.",
        show_default=False)] = None,
    write: WriteOption = False,
    skip_unsupported: SkipOption = False,
    config: ConfigOption = None,
) -> None:
    """Turn a systemd timer and its service into tasks.

    OnCalendar= lines with an exact 5-field cron equivalent become
    schedules (several lines: one task each, ids sharing the timer's name),
    a zone suffix the timezone; OnUnitActiveSec= an interval, OnBootSec=0
    @reboot; Persistent=true catch_up = "once"; RandomizedDelaySec= jitter.
    From the service: ExecStart= (one) the argv, WorkingDirectory= cwd,
    Environment=/EnvironmentFile= env/env_file, User= user,
    RuntimeMaxSec=/TimeoutStartSec= timeout. What has no exact equivalent is
    refused with file:line (exit 2) unless --skip-unsupported.

    Example: jobctl import systemd /lib/systemd/system/apt-daily.timer
    """
    from jobctl.errors import UsageError
    from jobctl.importers.systemd import import_systemd, service_for

    svc = services(ctx)
    timer_text, timer_path = _read_text(timer)
    if service is None:
        found = service_for(timer_text, timer_path)
        if not found.is_file():
            raise UsageError(f"no service unit {found} beside {timer}; name it after the timer")
        service = str(found)
    service_text, service_path = _read_text(service)
    snapshot, taken, _, existing = _target(svc, config, write)
    result = import_systemd(timer_text, timer_path, service_text, service_path,
                            system_zone=svc.zone(), now=svc.now(), taken=taken,
                            exists=lambda name: (svc.cwd / name).exists())
    _finish(svc, snapshot, result, skip_unsupported, existing)

