"""`jobctl run`: the foreground runner, and how its events are shown."""

from __future__ import annotations

import sys
from collections.abc import Mapping
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
    for key in ("attempt", "final"):  # retries (see Retries and jitter)
        if key in event.data:
            out[key] = event.data[key]
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
    label = getattr(stream, "label", None)
    if isinstance(label, str):
        return label
    return {sys.__stdout__: "stdout", sys.__stderr__: "stderr"}.get(stream, "the output")


class _FdStream:
    """A text stream straight onto a descriptor. The output thread writes
    the real stdout through this, not through `sys.stdout`: a thread blocked
    in `sys.stdout`'s buffer (a reader that stopped reading) would hold its
    lock, and the interpreter's own flush at exit would then abort."""

    def __init__(self, fd: int, label: str, encoding: str) -> None:
        self.fd = fd
        self.label = label
        self.encoding = encoding

    def fileno(self) -> int:
        return self.fd

    def write(self, text: str) -> None:
        import os

        data = memoryview(text.encode(self.encoding, errors="replace"))
        while data:
            data = data[os.write(self.fd, data):]

    def flush(self) -> None:
        pass


def _raw(stream: Any, label: str) -> Any:
    """`stream`, or an `_FdStream` on its descriptor if it has a real one."""
    try:
        fd = stream.fileno()
        stream.flush()
    except (AttributeError, OSError, ValueError):
        return stream
    return _FdStream(fd, label, getattr(stream, "encoding", None) or "utf-8")


# Echoed lines waiting for stdout, in characters; past this, lines are dropped
# (and counted) until the reader catches up: a job printing faster than the
# reader reads must not make the runner wait, nor fill its memory.
ECHO_BACKLOG = 1024 * 1024
# Event text waiting for stdout; past this the runner waits for the reader,
# as a blocking write would: events are never dropped.
EVENT_BACKLOG = 8 * 1024 * 1024
# How long the runner, once stopped, waits for its output to be written.
CLOSE_WAIT = 5.0


class RunnerOutput:
    """The runner's stdout, written by one daemon thread, in order: event
    lines (rendered by the reporter) and the echo of job output (rendered
    here, in the thread). A reader slower than the jobs' output never blocks
    the loop: echoed lines beyond `ECHO_BACKLOG` are dropped, and one
    `output_dropped` line says how many, where they would have been. Falls
    back to stderr as `EventOutput` does."""

    def __init__(self, clock: Any, *, json_lines: bool, streams: tuple[Any, ...] = ()) -> None:
        import threading
        from collections import deque

        if not streams:
            streams = tuple(_raw(s, label) for s, label in ((sys.stdout, "stdout"), (sys.stderr, "stderr"))
                            if s is not None)
        self.out = EventOutput(*streams)
        self.clock = clock
        self.json_lines = json_lines
        self.items: deque[tuple[Any, ...]] = deque()
        self.cond = threading.Condition()
        self.event_chars = 0
        self.echo_chars = 0
        self.dropped = 0
        self.dropped_total = 0
        self.closing = False
        self.thread = threading.Thread(target=self._drain, name="jobctl-output", daemon=True)
        self.thread.start()

    def write(self, text: str) -> None:
        with self.cond:
            while self.event_chars > EVENT_BACKLOG and self.thread.is_alive():
                self.cond.wait(0.5)
            self.items.append(("text", text))
            self.event_chars += len(text)
            self.cond.notify_all()

    def lines(self, task_id: str, run_id: int, texts: list[str]) -> None:
        if not texts:
            return
        size = sum(map(len, texts)) + len(texts)
        with self.cond:
            # an empty backlog takes any batch: one batch is one read (64 KiB)
            if self.echo_chars and self.echo_chars + size > ECHO_BACKLOG:
                self.dropped += len(texts)
                self.dropped_total += len(texts)
                return
            at = self.clock.now()
            if self.dropped:
                self.items.append(("dropped", at, self.dropped))
                self.dropped = 0
            self.items.append(("lines", at, task_id, run_id, texts, size))
            self.echo_chars += size
            self.cond.notify_all()

    def close(self, wait: float = CLOSE_WAIT) -> None:
        """Write what is queued (a last count of dropped lines too), giving
        up after `wait` seconds (a reader that never reads)."""
        with self.cond:
            if self.dropped:
                self.items.append(("dropped", self.clock.now(), self.dropped))
                self.dropped = 0
            self.closing = True
            self.cond.notify_all()
        self.thread.join(wait)

    def _drain(self) -> None:
        while True:
            with self.cond:
                while not self.items and not self.closing:
                    self.cond.wait()
                if not self.items:
                    return
                batch = list(self.items)
                self.items.clear()
            text, chars, echo = self._render(batch)
            self.out.write(text)
            with self.cond:
                self.event_chars -= chars
                self.echo_chars -= echo
                if self.dropped and not self.items and self.echo_chars <= 0:
                    # the backlog is written: say now how many lines were
                    # dropped, not only when the next line comes (it may not)
                    self.items.append(("dropped", self.clock.now(), self.dropped))
                    self.dropped = 0
                self.cond.notify_all()

    def _render(self, batch: list[tuple[Any, ...]]) -> tuple[str, int, int]:
        import json

        parts: list[str] = []
        chars = echo = 0
        for item in batch:
            kind = item[0]
            if kind == "text":
                parts.append(item[1])
                chars += len(item[1])
            elif kind == "lines":
                _k, at, task_id, run_id, texts, size = item
                echo += size
                if self.json_lines:
                    stamp = at.isoformat()
                    parts += [json.dumps({"event": "output", "at": stamp, "task_id": task_id,
                                          "run_id": run_id, "line": t}) + "\n" for t in texts]
                else:
                    head = f"{at.astimezone().isoformat(timespec='milliseconds')} output {task_id} run={run_id}: "
                    parts += [f"{head}{t}\n" for t in texts]
            else:
                _k, at, count = item
                if self.json_lines:
                    parts.append(json.dumps({"event": "output_dropped", "at": at.isoformat(),
                                             "lines": count}) + "\n")
                else:
                    parts.append(f"{at.astimezone().isoformat(timespec='milliseconds')} output_dropped: "
                                 f"{count} line(s) of job output not echoed: stdout did not keep up "
                                 "(the runs' logs have them)\n")
        return "".join(parts), chars, echo


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

    def __init__(self, stream: Any = None, out: Any = None) -> None:
        self.out = out or (EventOutput(stream) if stream is not None else EventOutput())

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
            if f.get("attempt", 1) != 1:
                line += f" attempt={f['attempt']}"
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

    def __init__(self, out: Any = None) -> None:
        self.out = out or EventOutput()

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
                            "interrupted", "retry", "reconnected", "metrics", "hook_failed"):
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


class AuditReporter:
    """Passes each runner event on to `inner`, and records the runner's
    start (`ready`), stop (`stopped`), reloads and refused reloads in the
    audit trail, from the events the runner reports (so the runner itself
    knows nothing of the trail). A record that cannot be written is
    reported as an `error` event; the runner goes on."""

    def __init__(self, inner: Any, store: Any, node: str, keep: int) -> None:
        self.inner = inner
        self.store = store
        self.node = node
        self.keep = keep

    def __call__(self, event: Event) -> None:
        import os

        from jobctl import audit

        self.inner(event)
        message = event.message or ""
        if event.kind == "ready":
            action, outcome, detail = "runner.start", audit.OK, f"pid {os.getpid()}: {message}"
        elif event.kind == "stopped":
            action, outcome, detail = "runner.stop", audit.OK, f"pid {os.getpid()}"
        elif event.kind == "reload":
            action, outcome, detail = "runner.reload", audit.OK, message
        elif event.kind == "error" and message.startswith("config not reloaded"):
            problems = [str(p) for p in event.data.get("problems", [])]  # type: ignore[attr-defined]
            action, outcome = "runner.reload", audit.REFUSED
            detail = message + (f"; {problems[0]}" if problems else "")
        else:
            return
        warning = audit.record(self.store, audit.event(action, event.at, node=self.node,
                                                       outcome=outcome, detail=detail), self.keep)
        if warning:
            from jobctl.runner import Event as RunnerEvent

            self.inner(RunnerEvent("error", event.at, message=warning))


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
    metrics: Annotated[
        str | None,
        typer.Option("--metrics", metavar="HOST:PORT",
                     help="Serve Prometheus /metrics and /healthz here (':9100' binds 127.0.0.1; "
                          "default: [jobctl] metrics)."),
    ] = None,
    echo: Annotated[
        bool | None,
        typer.Option("--echo/--no-echo", help="Copy each line a job prints to stdout, prefixed with "
                                              "its task and run (default: [jobctl] echo_output, on "
                                              "when stdout is not a terminal)."),
    ] = None,
) -> None:
    """Run the schedule in the foreground until SIGTERM or Ctrl-C.

    Validates the config (exit 2 if invalid), takes the runner lease on the
    state file (exit 75 if another runner holds it; on a PostgreSQL state,
    the lease of this node name), then fires tasks on time.
    SIGHUP or a saved change to the config file reloads it.

    Example: jobctl run -c jobctl.toml --log-format json
    """
    from jobctl.clock import OffsetClock, SystemClock
    from jobctl.config import find_config, state_path
    from jobctl.errors import UsageError
    from jobctl.events import Event
    from jobctl.resolve import resolve
    from jobctl.loop import ConfigWatcher, run_forever
    from jobctl.runner import Runner

    if log_format not in ("auto", "text", "json"):
        raise UsageError(f"--log-format must be auto, text or json, not '{log_format}'")
    import os

    from jobctl.config import require_user_switch

    svc = services(ctx)
    schedule_set = svc.load(config)
    require_user_switch(schedule_set.tasks, os.geteuid())
    path = find_config(config, svc.env, svc.cwd)
    from jobctl.cli._common import open_state

    from dataclasses import replace

    from jobctl.config import node_name
    from jobctl.liveness import self_owner

    address = schedule_set.settings.metrics
    if metrics is not None:
        from jobctl.config import parse_listen_address

        try:
            address = parse_listen_address(metrics)
        except ValueError as e:
            raise UsageError(f"--metrics: {e}") from None
    owner = self_owner()
    owner = replace(owner, node=node_name(node, svc.env, schedule_set.settings, owner.host))
    clock = svc.clock or SystemClock()
    watched = server = None
    if address is not None:
        # bound before the state is opened and the lease taken: a port in
        # use is exit 2 with nothing written
        from jobctl.metrics import Health, MetricsServer, RunnerMetrics

        watched = RunnerMetrics(Health(clock.monotonic))
        server = MetricsServer(address[0], address[1], watched)
    try:
        store = open_state(svc, schedule_set, state, create=True)
    except BaseException:
        if server is not None:
            server.close()
        raise
    assert store is not None
    if store.clustered and isinstance(clock, SystemClock):
        # on a shared state the database's clock decides when a slot is due
        # (an injected clock, a test's, is taken as it is)
        clock = OffsetClock(clock)
    from jobctl.cli.render import is_terminal

    terminal = sys.stdout is not None and is_terminal(sys.stdout)
    live = log_format == "auto" and terminal
    reporter: Any
    output: RunnerOutput | None = None
    view: LiveReporter | None = None
    if live:
        reporter = view = LiveReporter()
    else:
        output = RunnerOutput(clock, json_lines=log_format == "json")
        reporter = JsonReporter(output) if log_format == "json" else PlainReporter(out=output)
    if echo is None:
        echo = schedule_set.settings.echo_output and not terminal
    spawner = _echo_spawner(output) if echo and output is not None else None
    reporter = AuditReporter(reporter, store, owner.node_name, schedule_set.settings.history_limit)

    def load() -> Any:
        reloaded = resolve(path, system_zone=svc.zone(), now=clock.now())
        # a `user` added while running is refused like any config error
        require_user_switch(reloaded.tasks, os.geteuid())
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

    extra: dict[str, Any] = {"spawner": spawner} if spawner is not None else {}
    on_step = None
    runner_store: Any = store
    try:
        if watched is not None:
            from jobctl.metrics import WatchedStore

            reporter = watched.reporter(reporter)
            runner_store = WatchedStore(store, watched.health)
            on_step = watched.step
        runner = Runner(schedule_set, runner_store, clock=clock, report=reporter, env=svc.env,
                        reload_config=load, owner=owner, control_poll=_control_poll(svc.env),
                        **extra)
        watcher = ConfigWatcher(path, load, clock, reporter)
        if server is not None:
            server.start()
            reporter(Event("metrics", clock.now(),
                           message=f"serving {server.url}/metrics and {server.url}/healthz"))
        if view is not None:
            view.attach(runner)  # (reporter may be the metrics' wrapper around it)
        try:
            code = run_forever(runner, watch=watcher, on_step=on_step)
        finally:
            if view is not None:
                view.close()
    finally:
        if server is not None:
            server.close()
        store.close()
        if output is not None:
            output.close()
    raise typer.Exit(code)


def _control_poll(env: Mapping[str, str]) -> float:
    """Seconds between reads of the control version: CONTROL_POLL, or (a
    knob for tests and measurements) $JOBCTL_TEST_CONTROL_POLL."""
    from jobctl.runner import CONTROL_POLL

    try:
        given = float(env.get("JOBCTL_TEST_CONTROL_POLL", ""))
    except ValueError:
        return CONTROL_POLL
    return given if 0 < given <= 3600 else CONTROL_POLL


def _echo_spawner(output: RunnerOutput) -> Any:
    """`spawn`, with each run's output also echoed, line by line, to `output`."""
    from dataclasses import replace

    from jobctl.echo import LineEcho
    from jobctl.executor import Launch, RunningProcess, spawn

    def spawner(launch: Launch) -> RunningProcess:
        # jobctl sets these last in every run's environment (a task cannot spoof them)
        echo = LineEcho(launch.env["JOBCTL_TASK_ID"], int(launch.env["JOBCTL_RUN_ID"]), output)
        return spawn(replace(launch, echo=echo))

    return spawner

