"""Commands that write the config: init, edit, add, remove, set.

Each validates the whole result before anything is written, writes
atomically, and leaves every line it did not mean to change as it was (see
`jobctl.editing`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from jobctl.cli._common import ConfigOption, Services, command, err, services

if TYPE_CHECKING:
    from jobctl.model import Problem


def _audited(action: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Record the command in the audit trail of the config's state, however
    it ends: `ok`, or `failed` with why. The edit stands whatever happens to
    the record; a trail that cannot be written is one warning line."""
    import functools

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            from jobctl.audit import FAILED, OK
            from jobctl.errors import ConfigError, JobctlError

            ctx: typer.Context = kwargs["ctx"]
            note: dict[str, Any] = ctx.meta.setdefault("audit", {})
            outcome, why = FAILED, "interrupted"
            try:
                result = fn(*args, **kwargs)
                outcome = OK
                return result
            except typer.Exit as e:
                if not e.exit_code:
                    outcome = OK
                why = note.get("failed", f"exit status {e.exit_code}")
                raise
            except ConfigError as e:
                first = next((p for p in e.problems if p.severity == "error"), None)
                why = f"{e}: {first}" if first else str(e)
                raise
            except JobctlError as e:
                why = str(e).splitlines()[0]
                raise
            finally:
                _audit(ctx, action, outcome, note.get("detail", "") if outcome == OK else why,
                       kwargs)

        return wrapper

    return wrap


def _audit(ctx: typer.Context, action: str, outcome: str, detail: str,
           kwargs: dict[str, Any]) -> None:
    from jobctl.audit import record_config_edit

    svc = services(ctx)
    path: Path | None = ctx.meta.get("audit", {}).get("path")
    if path is None:
        from jobctl.config import find_config
        from jobctl.errors import JobctlError

        try:
            path = find_config(kwargs.get("config"), svc.env, svc.cwd)
        except JobctlError:
            path = None
    try:
        now, zone = svc.now(), svc.zone()
    except Exception:  # noqa: BLE001 - the edit is done; the record is a bonus
        return
    warning = record_config_edit(path, action, now, env=svc.env, system_zone=zone,
                                 outcome=outcome, task_id=kwargs.get("task_id"), detail=detail)
    if warning:
        err(f"warning: {warning}")


def _note(ctx: typer.Context, **items: Any) -> None:
    """What the audit record of this edit says: `path` (the config), `detail`."""
    ctx.meta.setdefault("audit", {}).update(items)


def _existing_config(svc: Services, config: Path | None) -> Path:
    from jobctl.config import find_config
    from jobctl.errors import ConfigNotFoundError, UsageError

    try:
        return find_config(config, svc.env, svc.cwd)
    except ConfigNotFoundError as e:
        raise UsageError(f"{e}\n`jobctl init` writes a starter config.") from None


def _warn(warnings: list[Problem]) -> None:
    for warning in warnings:
        err(str(warning))


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


class _Snapshot:
    """The config's text as read, and the fingerprint it must still have when written."""

    def __init__(self, path: Path, text: str, digest: str) -> None:
        self.path = path
        self.text = text
        self.digest = digest

    def save(self, svc: Services, text: str) -> bool:
        """Validate and write `text` over the file, unless it is what was read."""
        from jobctl.editing import save_config
        from jobctl.errors import UsageError

        if text == self.text:
            return False
        try:
            warnings = save_config(self.path, text, expect=self.digest, system_zone=svc.zone(),
                                   now=svc.now())
        except OSError as e:
            raise UsageError(f"cannot write {self.path}: {e.strerror or e}") from None
        _warn(warnings)
        return True


def _not_a_plugin_job(task_id: str) -> None:
    if ":" in task_id:
        from jobctl.errors import UsageError

        plugin = task_id.split(":", 1)[0]
        raise UsageError(f"'{task_id}' is a job of plugin '{plugin}': change it in the "
                         "plugin's manifest (`jobctl plugins` shows where it is)")


def _read(svc: Services, config: Path | None) -> _Snapshot:
    from jobctl.editing import fingerprint_bytes
    from jobctl.errors import UsageError

    path = _existing_config(svc, config)
    try:
        raw = path.read_bytes()
        return _Snapshot(path, raw.decode("utf-8"), fingerprint_bytes(raw))
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise UsageError(f"{path} is not UTF-8 text (byte {e.start})") from None


@command
@_audited("init")
def init(
    ctx: typer.Context,
    path: Annotated[str | None, typer.Argument(
        metavar="[PATH]",
        help="Where to write it. Default: --config, $JOBCTL_CONFIG, then jobctl.toml in the "
             "user config dir.", show_default=False)] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    config: ConfigOption = None,
) -> None:
    """Write a commented starter config, with one example task.

    Creates missing folders. A folder (an existing one, or PATH ending in
    `/`) gets a jobctl.toml in it. An existing file is left alone (exit 2)
    unless --force is given.

    Example: jobctl init ~/jobs/jobctl.toml
    """
    import os

    from jobctl.config import CONFIG_ENV, CONFIG_NAME, user_config_dir
    from jobctl.editing import ABSENT, STARTER, atomic_write
    from jobctl.errors import UsageError

    svc = services(ctx)
    given = path or (str(config) if config is not None else svc.env.get(CONFIG_ENV))
    default = not given
    target = (user_config_dir() / CONFIG_NAME) if not given else Path(given).expanduser()
    if not target.is_absolute():
        target = svc.cwd / target
    # Path drops a trailing slash: read it from the string
    if target.is_dir() or (given and given.endswith(("/", os.sep))):
        target = target / CONFIG_NAME
    _note(ctx, path=target)
    if target.exists() and not force:
        raise UsageError(f"{target} already exists; pass --force to overwrite it")
    try:
        folder = next(p for p in target.parents if p.exists())
        if not folder.is_dir():
            raise UsageError(f"cannot write {target}: {folder} is not a directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, STARTER, expect=None if force else ABSENT)
    except OSError as e:
        raise UsageError(f"cannot write {target}: {e.strerror or e}") from None
    _note(ctx, detail=f"wrote a starter config to {target}")
    typer.echo(f"wrote a starter config to {target}")
    shadow = svc.cwd / CONFIG_NAME
    if default and shadow.is_file():
        err(f"note: {shadow} is read before it (see `jobctl validate`); pass --config to pick one")


@command
@_audited("edit")
def edit(ctx: typer.Context, config: ConfigOption = None) -> None:
    """Edit the config in your editor; it is saved only if it is valid.

    The editor is $VISUAL, else $EDITOR, else vi, on a copy beside the file. On saving and quitting: unchanged, it
    says so; invalid, the errors are listed and, on a terminal, it offers to
    edit again (otherwise the file is left as it was, exit 2, and your copy
    is kept); valid, the file is replaced at once, keeping its permissions.
    If the file was changed by something else meanwhile, it is not
    overwritten (exit 2; your copy is kept). A read-only file is refused
    before the editor starts (exit 2). A running `jobctl run` picks up the
    saved file by itself.

    Example: EDITOR=nano jobctl edit
    """
    import os
    import tempfile

    from jobctl.editing import (
        ConcurrentChangeError,
        EditError,
        FolderNotWritableError,
        atomic_write,
        editor_command,
        fingerprint_bytes,
        moved,
        refuse_new_plugin_problems,
        refuse_read_only,
    )
    from jobctl.errors import ConfigError, UsageError
    from jobctl.resolve import resolve

    svc = services(ctx)
    shown = _existing_config(svc, config)
    _note(ctx, path=shown)
    path = Path(os.path.realpath(shown))
    try:
        original = path.read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read {shown}: {e.strerror or e}") from None
    digest = fingerprint_bytes(original)
    from jobctl.perms import check_trusted

    check_trusted(path, "config")  # before any editing is done in vain
    refuse_read_only(shown)
    # the copy lives beside the file: relative paths in it mean the same, and
    # it is on the same file system as the file it replaces
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.edit-", suffix=".toml")
        with os.fdopen(fd, "wb") as f:
            f.write(original)
    except PermissionError:
        raise UsageError(f"cannot write a copy of {shown} beside it: "
                         f"{FolderNotWritableError(path.parent).strerror}") from None
    except OSError as e:
        raise UsageError(f"cannot write a copy of {shown} beside it: {e.strerror or e}") from None
    copy = Path(name)
    from jobctl.executor import run_editor

    editor = editor_command(svc.env)
    keep = False
    try:
        while True:
            status = run_editor(editor, copy, svc.env)
            killed = _killed_by(status)
            if killed:
                raise EditError(f"the editor ({editor}) was killed by {killed}; "
                                f"nothing was changed ({shown} is as it was)")
            if status != 0:
                raise EditError(f"the editor ({editor}) exited with status {status}; "
                                f"{shown} was not changed")
            try:
                edited = copy.read_bytes()
            except OSError:
                raise EditError(f"the edited copy {copy} is gone; {shown} was not changed") from None
            if edited == original:
                _note(ctx, detail=f"no changes to {shown}")
                typer.echo(f"no changes to {shown}")
                return
            try:
                schedule_set = resolve(copy, system_zone=svc.zone(), now=svc.now())
                refuse_new_plugin_problems(path, schedule_set, system_zone=svc.zone(),
                                           now=svc.now())
            except ConfigError as e:
                for problem in e.problems:
                    err(str(problem))
                err(str(e))
                if _interactive() and _confirm("Edit again?"):
                    continue
                keep = True
                raise EditError(f"{shown} was not changed; your edited copy is kept in {copy}") from None
            try:
                atomic_write(path, edited, expect=digest)
            except ConcurrentChangeError:
                keep = True
                raise ConcurrentChangeError(shown, kept=copy) from None
            except OSError as e:
                keep = True
                raise UsageError(f"cannot write {shown}: {e.strerror or e}; your edited copy "
                                 f"is kept in {copy}") from None
            _warn([moved(w, copy, shown) for w in schedule_set.warnings])
            n = len(schedule_set.tasks)
            _note(ctx, detail=f"saved {shown} ({n} task{'s' if n != 1 else ''})")
            typer.echo(f"saved {shown} ({n} task{'s' if n != 1 else ''})")
            return
    finally:
        if not keep:
            copy.unlink(missing_ok=True)


def _killed_by(status: int) -> str | None:
    """The signal that ended the editor: its own (a negative status), or as
    the shell that started it reports one (128 + its number)."""
    from jobctl.cli.render import signal_name

    if status > 128:
        import signal

        try:
            signal.Signals(status - 128)
        except ValueError:
            return None
        status = 128 - status
    return signal_name(status)


def _confirm(question: str) -> bool:
    try:
        return typer.confirm(question, default=True)
    except typer.Abort:
        return False


@command
@_audited("add")
def add(
    ctx: typer.Context,
    task_id: Annotated[str, typer.Argument(metavar="ID", help="The new task's id.")],
    argv: Annotated[list[str] | None, typer.Argument(
        metavar="[-- PROGRAM [ARG]...]",
        help="Run this program with these arguments, without a shell (the task's argv). "
             "Put them after `--` so their options are not read as jobctl's.",
        show_default=False)] = None,
    schedule: Annotated[str | None, typer.Option(
        "--schedule", help="Cron expression, @daily & co, @reboot, or an interval like 'every 5m'.",
        show_default=False)] = None,
    at: Annotated[str | None, typer.Option(
        "--at", help="One-shot instead of --schedule: RFC 3339, or a local ISO time.",
        show_default=False)] = None,
    command_: Annotated[str | None, typer.Option(
        "--command", help="A shell command (instead of a program after `--`).",
        show_default=False)] = None,
    name: Annotated[str | None, typer.Option("--name", help="Display name.", show_default=False)] = None,
    group: Annotated[str | None, typer.Option("--group", help="A label to group tasks by.",
                                              show_default=False)] = None,
    timezone: Annotated[str | None, typer.Option("--timezone", help="IANA zone of the schedule.",
                                                 show_default=False)] = None,
    timeout: Annotated[str | None, typer.Option(
        "--timeout", help="Stop a run after this long: '90s', '5m', '1h30m', or seconds.",
        show_default=False)] = None,
    concurrency: Annotated[str | None, typer.Option(
        "--concurrency", help="forbid, allow or replace.", show_default=False)] = None,
    cwd: Annotated[str | None, typer.Option(
        "--cwd", help="Working directory, relative to the config file.", show_default=False)] = None,
    env: Annotated[list[str] | None, typer.Option(
        "--env", metavar="KEY=VALUE", help="An environment variable; repeatable.",
        show_default=False)] = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Add it with enabled = false.")] = False,
    config: ConfigOption = None,
) -> None:
    """Add a task: append a [[tasks]] table to the config.

    Give it exactly one of --schedule and --at, and either --command (a shell
    string) or a program and its arguments after `--`. The new config is
    validated first; nothing is written if it would be invalid (exit 2).

    Example: jobctl add backup --schedule '30 2 * * *' -- pg_dump -Fc app
    """
    from jobctl.editing import add_task
    from jobctl.errors import ConfigError, UsageError

    if (schedule is None) == (at is None):
        raise UsageError("give exactly one of --schedule and --at")
    if command_ is None and not argv:
        raise UsageError("no command: give --command, or a program and its arguments after `--` "
                         "(e.g. `-- pg_dump app`)")
    if command_ is not None and argv:
        raise UsageError("give either --command, or a program and its arguments after `--` "
                         "(e.g. `-- pg_dump app`), not both")
    table: dict[str, object] = {"id": task_id}
    for key, value in (("name", name), ("group", group), ("schedule", schedule), ("at", at),
                       ("timezone", timezone), ("command", command_)):
        if value is not None:
            table[key] = value
    if argv:
        table["argv"] = list(argv)
    if cwd is not None:
        table["cwd"] = cwd
    if env:
        variables: dict[str, str] = {}
        for item in env:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise UsageError(f"--env {item!r}: expected KEY=VALUE")
            if key in variables:
                raise UsageError(f"--env: '{key}' is given twice; give each variable once")
            variables[key] = value
        table["env"] = variables
    if timeout is not None:
        table["timeout"] = int(timeout) if timeout.isdigit() else timeout
    if concurrency is not None:
        table["concurrency"] = concurrency
    if disabled:
        table["enabled"] = False
    snapshot = _read(services(ctx), config)
    _note(ctx, path=snapshot.path)
    try:
        snapshot.save(services(ctx), add_task(snapshot.text, table))
    except ConfigError as e:
        raise ConfigError([_as_option(p, snapshot.text) for p in e.problems]) from None
    _note(ctx, detail=f"added {task_id} to {snapshot.path}")
    typer.echo(f"added {task_id} to {snapshot.path}")


_ADD_OPTIONS = {"id": "ID", "argv": "-- PROGRAM", "enabled": "--disabled"}


def _as_option(problem: Problem, text: str) -> Problem:
    """A problem of the table `add` appended, told by the option that made it:
    its line exists only in the text that was not written."""
    if problem.origin.line <= text.count("\n") + (not text.endswith("\n")):
        return problem  # a line of the file as it is
    from jobctl.model import Origin, Problem

    key = problem.where.rpartition(").")[2] if ")." in problem.where else ""
    option = _ADD_OPTIONS.get(key, f"--{key}") if key else "add"
    return Problem(Origin(problem.origin.path), problem.message, option, problem.severity)


@command
@_audited("remove")
def remove(
    ctx: typer.Context,
    task_id: Annotated[str, typer.Argument(metavar="ID", help="Task id.")],
    config: ConfigOption = None,
) -> None:
    """Remove a task's [[tasks]] table from the config.

    Its comment lines directly above go with it; the rest of the file stays as
    it is. Refused (exit 2) if the config would then be invalid. Run history
    of the task stays in the state file.

    Example: jobctl remove backup
    """
    from jobctl.editing import remove_task

    _not_a_plugin_job(task_id)
    snapshot = _read(services(ctx), config)
    _note(ctx, path=snapshot.path)
    snapshot.save(services(ctx), remove_task(snapshot.text, task_id))
    _note(ctx, detail=f"removed {task_id} from {snapshot.path}")
    typer.echo(f"removed {task_id} from {snapshot.path}")


@command
@_audited("set")
def set_keys(
    ctx: typer.Context,
    task_id: Annotated[str, typer.Argument(metavar="ID", help="Task id.")],
    pairs: Annotated[list[str] | None, typer.Argument(
        metavar="KEY=VALUE...",
        help="VALUE is read as TOML when it is a TOML value (5, false, [\"a\", \"b\"], \"quoted\"), "
             "else as a string.", show_default=False)] = None,
    unset: Annotated[list[str] | None, typer.Option(
        "--unset", metavar="KEY", help="Remove this key from the task; repeatable.",
        show_default=False)] = None,
    config: ConfigOption = None,
) -> None:
    """Change keys of one task; only their lines change.

    VALUE is a TOML value when it parses as one, else a plain string: so
    `priority=5` is a number, `schedule=*/5 * * * *` a string. Quote the
    argument for your shell, and quote a string that looks like TOML:
    name='"true"'. Refused (exit 2) if the config would then be invalid.

    Example: jobctl set backup 'schedule=0 3 * * *' timeout=2h --unset cwd
    """
    from jobctl.editing import parse_value
    from jobctl.editing import set_keys as set_in_text
    from jobctl.errors import UsageError

    if not pairs and not unset:
        raise UsageError("nothing to change: give KEY=VALUE pairs or --unset KEY")
    changes: list[tuple[str, object]] = []
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"{pair!r}: expected KEY=VALUE")
        changes.append((key, parse_value(raw)))
    _not_a_plugin_job(task_id)
    snapshot = _read(services(ctx), config)
    _note(ctx, path=snapshot.path)
    if snapshot.save(services(ctx), set_in_text(snapshot.text, task_id, changes, unset or [])):
        keys = [k for k, _ in changes] + list(unset or [])
        _note(ctx, detail=f"updated {task_id} in {snapshot.path}: {', '.join(dict.fromkeys(keys))}")
        typer.echo(f"updated {task_id} in {snapshot.path}: {', '.join(dict.fromkeys(keys))}")
    else:
        _note(ctx, detail=f"no change to {task_id} in {snapshot.path}")
        typer.echo(f"no change to {task_id} in {snapshot.path}")
