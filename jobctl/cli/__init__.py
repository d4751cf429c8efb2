"""The `jobctl` command: a thin typer layer over the core.

Only modules under `jobctl.cli` import typer or rich; nothing imports them.
Commands import the core lazily so `jobctl --help` stays as fast as typer.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from jobctl.cli import control, edit, inspect, run

app = typer.Typer(
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
app.command("init")(edit.init)
app.command("edit")(edit.edit)
app.command("add")(edit.add)
app.command("remove")(edit.remove)
app.command("set")(edit.set_keys)


def main() -> None:
    app(prog_name="jobctl")
