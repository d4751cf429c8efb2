"""The `jobctl` command: a thin typer layer over the core.

Only modules under `jobctl.cli` import typer or rich; nothing imports them.
Commands import the core lazily so `jobctl --help` stays as fast as typer.
"""

from __future__ import annotations

import typer

from jobctl.cli import control, edit, inspect, run

app = typer.Typer(
    name="jobctl",
    help="A cron-like job scheduler: TOML tasks, a foreground runner, SQLite run history.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help: typer's rich help imports rich.markdown and pygments, which
    # more than doubles `jobctl --help` start-up (see README, design notes).
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

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
