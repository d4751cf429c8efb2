"""`jobctl run`: the foreground runner, and how its events are shown."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from jobctl.cli._common import ConfigOption, StateOption, command, services

if TYPE_CHECKING:
    from jobctl.events import Event
    from jobctl.runner import Runner


def _fields(event: Event) -> dict[str, Any]:
    out: dict[str, Any] = {"event": event.kind, "at": event.at.isoformat()}
    for key in ("task_id", "run_id", "exit_code", "duration_s"):
        value = getattr(event, key)
        if value is not None:
            out[key] = round(value, 3) if key == "duration_s" else value
    if event.exit_code is not None and event.exit_code < 0:
        from jobctl.cli.render import exit_fields

        out.update(exit_fields(event.exit_code))  # a null exit code, and the signal's name
    if event.trigger is not None:
        out["trigger"] = event.trigger.value
    if event.scheduled_for is not None:
        out["scheduled_for"] = event.scheduled_for.isoformat()
    if event.status is not None:
        out["status"] = event.status.value
    if event.message:
        out["message"] = event.message
    problems = event.data.get("problems")
    if problems:
        out["problems"] = list(problems)  # type: ignore[call-overload]
    return out


class EventOutput:
    """Where event lines go: stdout; once stdout fails (its reader went away:
    `jobctl run | head`, a log shipper restarting), stderr, after one line
    saying so; once that fails too, nowhere. The runner must keep running
    whatever happens to its output."""

    def __init__(self, *streams: Any) -> None:
        self.streams = [s for s in (streams or (sys.stdout, sys.stderr)) if s is not None]

    def write(self, text: str) -> None:
        while self.streams:
            stream = self.streams[0]
            try:
                stream.write(text)
                stream.flush()
                return
            except (OSError, ValueError) as e:
                self.streams.pop(0)
                _silence(stream)
                if self.streams:
                    text = (f"jobctl: cannot write events to {_name(stream)} ({e}); "
                            f"writing them here\n{text}")


def _name(stream: Any) -> str:
    return {sys.__stdout__: "stdout", sys.__stderr__: "stderr"}.get(stream, "the output")


def _silence(stream: Any) -> None:
    """Point a failed stream's descriptor at /dev/null, so the interpreter's
    own flush at exit does not print a BrokenPipeError."""
    import os

    try:
        fd = stream.fileno()
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, fd)
        finally:
            os.close(null)
    except (OSError, ValueError, AttributeError):
        pass


class PlainReporter:
    """One line per event, for logs and pipes."""

    def __init__(self, stream: Any = None) -> None:
        self.out = EventOutput(stream) if stream is not None else EventOutput()

    def __call__(self, event: Event) -> None:
        f = _fields(event)
        at = event.at.astimezone().isoformat(timespec="milliseconds")
        from jobctl.cli.render import escape_control

        # one line per event, that cannot drive a terminal: a newline or
        # another control character in a message (from a program name, a
        # task's error) is shown escaped, in a pipe too
        def one_line(text: object) -> str:
            return escape_control(str(text).replace("\n", "\\n"))

        message = one_line(event.message)
        task = f" {event.task_id}" if event.task_id else ""
        run = f" run={event.run_id}" if event.run_id is not None else ""
        if event.kind == "ready":
            line = f"ready: {message}, state {one_line(event.data.get('state'))}"
            upcoming: Any = event.data.get("upcoming", [])
            for fire, task_id in upcoming[:5]:
                line += f"\n{at}   next {task_id} at {fire.astimezone().isoformat()}"
        elif event.kind == "start":
            line = f"start{task}{run} trigger={f['trigger']}"
            if "scheduled_for" in f:
                line += f" scheduled={f['scheduled_for']}"
            line += f" pid={event.data.get('pid')}"
        elif event.kind == "finish":
            line = f"finish{task}{run} status={f['status']} duration={f.get('duration_s', 0):.3f}s"
            if "signal" in f:
                line += f" signal={f['signal']}"
            elif event.exit_code is not None:
                line += f" exit={event.exit_code}"
            if event.message:
                line += f" ({message})"
        elif event.kind == "skip":
            line = f"skip{task}{run} scheduled={f.get('scheduled_for')} ({message})"
        else:
            line = f"{event.kind}{task}" + (f": {message}" if message else "")
            for problem in event.data.get("problems", []):  # type: ignore[attr-defined]
                line += f"\n  {one_line(problem)}"
        self.out.write(f"{at} {line}\n")


class JsonReporter:
    """One JSON object per line."""

    def __init__(self) -> None:
        self.out = EventOutput()

    def __call__(self, event: Event) -> None:
        import json

        self.out.write(json.dumps(_fields(event)) + "\n")


class LiveReporter:
    """A live rich view of upcoming and running tasks and recent results."""

    PROBLEMS_SHOWN = 5

    def __init__(self) -> None:
        from collections import deque

        from rich.console import Console

        self.console = Console()
        self.recent: deque[Event] = deque(maxlen=8)
        self.messages: deque[str] = deque(maxlen=4)
        self.runner: Runner | None = None
        self.live: Any = None

    def attach(self, runner: Runner) -> None:
        from rich.live import Live

        self.runner = runner
        self.live = Live(get_renderable=self.render, console=self.console,
                         refresh_per_second=2, transient=False)
        self.live.start()

    def close(self) -> None:
        if self.live is not None:
            try:
                self.live.stop()
            except (OSError, ValueError):
                pass  # the terminal is gone

    def __call__(self, event: Event) -> None:
        if event.kind in ("finish", "skip"):
            self.recent.appendleft(event)
        elif event.kind in ("reload", "error", "missed", "stopping", "stopped", "ready", "control",
                            "interrupted", "hook_failed"):
            lines = [
                f"{event.at.astimezone():%H:%M:%S} {event.kind}"
                + (f" {event.task_id}" if event.task_id else "")
                + (f": {event.message}" if event.message else "")
            ]
            # why a reload was refused: each problem's file:line and message,
            # as the text log shows them
            problems = [str(p) for p in event.data.get("problems", [])]  # type: ignore[attr-defined]
            lines += [f"  {p}" for p in problems[:self.PROBLEMS_SHOWN]]
            if len(problems) > self.PROBLEMS_SHOWN:
                lines.append(f"  ... and {len(problems) - self.PROBLEMS_SHOWN} more "
                             "(`jobctl validate` lists them all)")
            self.messages.appendleft("\n".join(lines))

    def render(self) -> Any:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        from jobctl.cli.render import STATUS_STYLE, escape_control, relative

        def shown(text: object) -> str:
            return escape_control(str(text))

        runner = self.runner
        now = datetime.now().astimezone()
        parts: list[Any] = []
        if runner is None:
            return Text("starting...")
        n = len(runner.tasks)
        head = Text(shown(f"jobctl run: {n} task{'' if n == 1 else 's'}, state {runner.store.path}"),
                    style="bold")
        if runner.stopping:
            head.append("  (stopping)", style="yellow")
        parts.append(head)
        running = Table(title="running", title_justify="left", box=None, expand=False)
        for col in ("RUN", "TASK", "TRIGGER", "FOR"):
            running.add_column(col)
        for active in list(runner.active.values()):
            running.add_row(str(active.run_id), Text(shown(active.task.id)), active.trigger.value,
                            relative(active.started, now).replace(" ago", ""))
        parts.append(running if runner.active else Text("running: nothing", style="dim"))
        upcoming = Table(title="upcoming", title_justify="left", box=None)
        for col in ("TASK", "WHEN", "AT"):
            upcoming.add_column(col)
        for fire, task_id in ([] if runner.stopping else runner.upcoming(8)):
            upcoming.add_row(Text(shown(task_id)), relative(fire, now), fire.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z"))
        parts.append(upcoming)
        recent = Table(title="recent", title_justify="left", box=None)
        for col in ("RUN", "TASK", "STATUS", "DURATION", "NOTE"):
            recent.add_column(col)
        for event in list(self.recent):
            status = event.status.value if event.status else ""
            recent.add_row(str(event.run_id or ""), Text(shown(event.task_id or "")),
                           Text(status, style=STATUS_STYLE.get(status, "")),
                           f"{event.duration_s:.1f}s" if event.duration_s is not None else "",
                           Text(shown(event.message)))
        parts.append(recent)
        for message in list(self.messages):
            parts.append(Text(shown(message), style="dim"))
        return Group(*parts)


@command
def run(
    ctx: typer.Context,
    config: ConfigOption = None,
    state: StateOption = None,
    log_format: Annotated[
        str,
        typer.Option("--log-format", help="auto (live view on a terminal, else text), text, or json."),
    ] = "auto",
    node: Annotated[
        str | None,
        typer.Option("--node", help="This runner's node name (default: $JOBCTL_NODE, [jobctl] node, "
                                    "the host name). One live runner per name on a state."),
    ] = None,
) -> None:
    """Run the schedule in the foreground until SIGTERM or Ctrl-C.

    Validates the config (exit 2 if invalid), takes the runner lease on the
    state file (exit 75 if another runner holds it; on a PostgreSQL state,
    the lease of this node name), then fires tasks on time.
    SIGHUP or a saved change to the config file reloads it.

    Example: jobctl run -c jobctl.toml --log-format json
    """
    from jobctl.clock import SystemClock
    from jobctl.config import find_config, state_path
    from jobctl.errors import UsageError
    from jobctl.resolve import resolve
    from jobctl.loop import ConfigWatcher, run_forever
    from jobctl.runner import Runner

    if log_format not in ("auto", "text", "json"):
        raise UsageError(f"--log-format must be auto, text or json, not '{log_format}'")
    svc = services(ctx)
    schedule_set = svc.load(config)
    path = find_config(config, svc.env, svc.cwd)
    from jobctl.cli._common import open_state

    from dataclasses import replace

    from jobctl.config import node_name
    from jobctl.liveness import self_owner

    owner = self_owner()
    owner = replace(owner, node=node_name(node, svc.env, schedule_set.settings, owner.host))
    store = open_state(svc, schedule_set, state, create=True)
    assert store is not None
    from jobctl.cli.render import is_terminal

    live = log_format == "auto" and sys.stdout is not None and is_terminal(sys.stdout)
    reporter: Any
    if live:
        reporter = LiveReporter()
    elif log_format == "json":
        reporter = JsonReporter()
    else:
        reporter = PlainReporter()
    clock = svc.clock or SystemClock()

    def load() -> Any:
        from jobctl.events import Event

        reloaded = resolve(path, system_zone=svc.zone(), now=clock.now())
        from jobctl.store.url import same_target, shown_target

        moved = state_path(state, svc.env, reloaded.settings)
        if not same_target(moved, store.path):
            reporter(Event("error", clock.now(), message=(
                f"the config now names the state file {shown_target(moved)}: restart the runner to use it; "
                f"until then it keeps recording in {store.path}")))
        for report in reloaded.plugins:
            if not report.loaded:
                reporter(Event("error", clock.now(), message=(
                    f"plugin '{report.id}' ({report.source}) left out"),
                    data={"problems": [str(p) for p in report.problems]}))
        return reloaded

    runner = Runner(schedule_set, store, clock=clock, report=reporter, env=svc.env,
                    reload_config=load, owner=owner)
    watcher = ConfigWatcher(path, load, clock, reporter)
    if live:
        reporter.attach(runner)
    try:
        code = run_forever(runner, watch=watcher)
    finally:
        if live:
            reporter.close()
        store.close()
    raise typer.Exit(code)

