"""The `jobctl` command: a thin typer layer over the core.

Only modules under `jobctl.cli` import typer or rich; nothing imports them.
Commands import the core lazily so `jobctl --help` stays as fast as typer.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from jobctl.cli import control, edit, events, importing, inspect, run

_SETTINGS: dict[str, Any] = dict(
    name="jobctl",
    help="A cron-like job scheduler: TOML tasks, a foreground runner, SQLite run history.",
    no_args_is_help=True,
    # --install-completion/--show-completion: typer builds them from a
    # placeholder function when the app is called (about 0.3 ms, no imports)
    add_completion=True,
    pretty_exceptions_enable=False,
    # Plain help: typer's rich help imports rich.markdown and pygments, which
    # more than doubles `jobctl --help` start-up (see README, design notes).
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app = typer.Typer(**_SETTINGS)



def _show_version(value: bool) -> None:
    if value:
        from jobctl import __version__

        sys.stdout.write(f"jobctl {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option(
        "--version", is_eager=True, callback=_show_version,
        help="Print jobctl's version and exit.")] = False,
) -> None:
    """A cron-like job scheduler: TOML tasks, a foreground runner, SQLite run history."""


app.command("validate")(inspect.validate)
app.command("list")(inspect.list_tasks)
app.command("show")(inspect.show)
app.command("next")(inspect.next_fires)
app.command("plugins")(inspect.plugins)
app.command("run")(run.run)
app.command("run-now")(control.run_now)
app.command("enable")(control.enable)
app.command("disable")(control.disable)
app.command("history")(control.history)
app.command("logs")(control.logs)
app.command("status")(control.status)
app.command("events")(events.events)
app.command("init")(edit.init)
app.command("edit")(edit.edit)
app.command("add")(edit.add)
app.command("remove")(edit.remove)
app.command("set")(edit.set_keys)
app.add_typer(importing.import_app, name="import")


def main() -> None:
    _app_for(sys.argv[1:])(prog_name="jobctl")


# no annotations to evaluate: typer reads them for each command it builds
_outline = lambda: None  # noqa: E731


def _app_for(args: list[str]) -> typer.Typer:
    """`app`, trimmed to what this invocation needs.

    typer builds every registered command's options from its signature
    (typing.get_type_hints, inspect.signature) each time it runs: about 2 ms
    a command. So `jobctl CMD ...` gets an app with CMD alone, and anything
    else (`--help`, no arguments, `--version`, a mistyped command) one whose
    commands are outlines: the same names and help, no options. Shell
    completion gets the whole app."""
    import os

    if "_JOBCTL_COMPLETE" in os.environ:
        return app
    chosen = [info for info in app.registered_commands if args and info.name == args[0]]
    groups = [info for info in app.registered_groups if args and info.name == args[0]]
    if not chosen and not groups:
        import copy
        import inspect as pyinspect

        for info in app.registered_commands:
            outline = copy.copy(info)
            outline.help = info.help if info.help is not None else pyinspect.getdoc(info.callback)
            outline.callback = _outline
            chosen.append(outline)
        for group in app.registered_groups:  # a group is listed as a command
            sub = group.typer_instance
            outline = typer.models.CommandInfo(name=group.name, callback=_outline,
                                               help=sub.info.help if sub is not None else None)
            chosen.append(outline)
    trimmed = typer.Typer(**_SETTINGS)
    trimmed.registered_callback = app.registered_callback
    trimmed.registered_commands = chosen
    trimmed.registered_groups = groups
    return trimmed
