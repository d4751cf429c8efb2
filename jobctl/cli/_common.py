"""Shared plumbing of the CLI: services, options, and error translation."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from jobctl.clock import Clock
    from jobctl.model import ScheduleSet


class Services:
    """The outside world as commands see it; tests pass their own via `obj=`.

    (A plain class: importing dataclasses costs `jobctl --help` 5 ms.)
    """

    def __init__(self, clock: Clock | None = None, env: dict[str, str] | None = None,
                 cwd: Path | None = None, system_zone: str | None = None,
                 tty: bool | None = None) -> None:
        self.clock = clock
        # None: ask each stream; True/False: treat every stream as a
        # terminal or not (see render.is_terminal)
        self.tty = tty
        self.env = dict(os.environ) if env is None else env
        self.cwd = Path.cwd() if cwd is None else cwd
        self.system_zone = system_zone

    def now(self) -> datetime:
        if self.clock is None:
            from jobctl.clock import SystemClock

            self.clock = SystemClock()
        return self.clock.now()

    def zone(self) -> str:
        if self.system_zone is None:
            from jobctl.clock import system_zone

            self.system_zone, note = system_zone()
            if note:
                err(note)
        return self.system_zone

    def load(self, config: Path | None) -> ScheduleSet:
        import gc

        from jobctl.resolve import load_schedule_set

        # Loading allocates a few objects per task and frees almost none; the
        # cyclic collector would rescan them all many times over (about 1 s
        # of 3 at 100,000 tasks), so it waits until the set is built.
        gc.disable()
        try:
            schedule_set = load_schedule_set(
                config, self.env, self.cwd, system_zone=self.zone(), now=self.now()
            )
        finally:
            gc.enable()
        for warning in schedule_set.warnings:
            err(str(warning))
        report_plugin_problems(schedule_set)
        return schedule_set


def report_plugin_problems(schedule_set: ScheduleSet) -> None:
    """Every command says which plugins were left out, and why."""
    for report in schedule_set.plugins:
        if report.loaded:
            continue
        err(f"plugin '{report.id}' ({report.source}) left out:")
        for problem in report.problems:
            err(f"  {problem}")


def services(ctx: typer.Context) -> Services:
    from jobctl.cli.render import force_terminal

    obj = ctx.find_root().obj
    if not isinstance(obj, Services):
        obj = Services()
        ctx.find_root().obj = obj
    force_terminal(obj.tty)
    return obj


ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c",
        help="Config file. Default: $JOBCTL_CONFIG, ./jobctl.toml, then the user config dir.",
        show_default=False,
    ),
]
StateOption = Annotated[
    # text, not a Path: a postgresql:// URL must keep its "//"
    str | None,
    typer.Option(
        "--state",
        help="SQLite state file, or a postgresql:// URL. Default: $JOBCTL_STATE, [jobctl] state, "
             "then the user data dir.",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def err(message: str) -> None:
    """Print one line to stderr, without rich markup surprises; on a
    terminal, control characters in it are shown escaped."""
    from jobctl.cli.render import shown

    sys.stderr.write(shown(message.rstrip("\n"), sys.stderr) + "\n")
    sys.stderr.flush()


def print_json(value: Any) -> None:
    import json

    from jobctl.cli.render import is_terminal

    # indented for people; compact (about 3x faster to encode) for pipes
    terminal = is_terminal(sys.stdout)
    text = json.dumps(value, indent=2 if terminal else None, ensure_ascii=False)
    if terminal:
        # json escapes C0 controls but not C1 (U+009B is a CSI to some terminals)
        import re

        text = re.sub("[\x7f-\x9f]", lambda m: f"\\u{ord(m.group()):04x}", text)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


# commands that change nothing, so an invalid config's summary does not
# reassure that "nothing was changed"
READ_ONLY = frozenset({"validate", "list_tasks", "show", "next_fires", "plugins", "history",
                       "logs", "status", "events"})


@contextmanager
def translate_errors(read_only: bool = False) -> Iterator[None]:
    """Turn a JobctlError into its message on stderr and its exit status."""
    from jobctl.errors import ConfigError, JobctlError

    try:
        yield
    except ConfigError as e:
        for problem in e.problems:
            err(str(problem))
        err(str(e) if read_only else f"{e} (nothing was changed)")
        raise typer.Exit(e.exit_code) from None
    except JobctlError as e:
        err(f"error: {e}")
        raise typer.Exit(e.exit_code) from None


def command(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a command body so domain errors become exit statuses."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with translate_errors(read_only=fn.__name__ in READ_ONLY):
            return fn(*args, **kwargs)

    return wrapper


def open_state(svc: Services, schedule_set: ScheduleSet, state: Path | str | None, *, create: bool):  # type: ignore[no-untyped-def]
    """Open the state (None if absent and not `create`), after marking
    runs of a dead runner or run-now `interrupted`."""
    from jobctl.config import state_path

    path = state_path(state, svc.env, schedule_set.settings)
    if not create and isinstance(path, Path) and not path.expanduser().exists():
        return None  # (and spare a read-only command the store's imports)
    from jobctl.lifecycle import recover_orphans
    from jobctl.store import open_store

    store = open_store(path, create=create)
    if store is not None:
        from jobctl.errors import JobctlError

        try:
            recover_orphans(store, svc.now())
        except JobctlError as e:
            if create:
                store.close()
                raise
            # a read-only command still shows what is there (a full disk, a
            # read-only mount)
            err(f"warning: could not mark a dead runner's runs interrupted: {e}")
    return store


def live_anchor(store: object, now: datetime) -> datetime | None:
    """The interval anchor of a live runner on this state file, if any."""
    if store is None:
        return None
    from jobctl.liveness import lease_alive

    lease_of = getattr(store, "lease", None)
    if lease_of is None:
        return None
    lease = lease_of()
    if lease is not None and lease_alive(lease, now):
        anchor: datetime = lease.anchor
        return anchor
    return None


class StateView:
    """What read-only commands look at: the schedule set with enable/disable
    overrides applied, the state file if it exists, and the interval anchor."""

    def __init__(self, svc: Services, schedule_set: ScheduleSet, store: Any, now: datetime,
                 anchor: datetime | None, cluster_anchor: datetime | None = None) -> None:
        self.svc = svc
        self.schedule_set = schedule_set
        self.store = store
        self.now = now
        self.anchor = anchor
        self.cluster_anchor = cluster_anchor

    def anchor_for(self, task: Any) -> datetime | None:
        """The instant the task's interval counts from: the cluster's anchor
        for a cluster task on a shared state (the one every node uses), else
        a live runner's start."""
        from jobctl.model import Scope

        if self.cluster_anchor is not None and task.scope is Scope.CLUSTER:
            return self.cluster_anchor
        return self.anchor

    def next_fires(self, tasks: Sequence[Any]) -> list[datetime | None]:
        """Each task's next fire after `now` (its slot; see `anchor_for`)."""
        from jobctl.model import IntervalSchedule
        from jobctl.timing import load_zone, next_fire, next_fires

        fires = next_fires(((t.schedule, t.timezone) for t in tasks), self.now, self.anchor)
        if self.cluster_anchor is not None:
            for i, task in enumerate(tasks):
                anchor = self.anchor_for(task)
                if anchor is not self.anchor and isinstance(task.schedule, IntervalSchedule):
                    fires[i] = next_fire(task.schedule, load_zone(task.timezone), self.now, anchor)
        return fires

    def next_starts(self, tasks: Sequence[Any]) -> tuple[list[datetime | None],
                                                          dict[str, datetime]]:
        """Each task's next real start after `now` (a jittered task starts
        its offset after its slot), and the slots of the jittered ones."""
        fires = self.next_fires(tasks)
        slots: dict[str, datetime] = {}
        if any(t.jitter for t in tasks):
            from jobctl.timing import next_starts

            node = view_node(self.svc, self.schedule_set)
            for i, task in enumerate(tasks):
                if task.jitter:
                    starts = next_starts(task, self.now, 1, self.anchor_for(task), node)
                    fires[i] = starts[0][1] if starts else None
                    if starts:
                        slots[task.id] = starts[0][0]
        return fires, slots


def view_node(svc: Services, schedule_set: ScheduleSet) -> str:
    """The node name a runner started here would have (for jitter offsets)."""
    from jobctl.config import node_name
    from jobctl.procinfo import host_name

    return node_name(None, svc.env, schedule_set.settings, host_name())


def load_view(ctx: typer.Context, config: Path | None, state: Path | str | None) -> StateView:
    from jobctl.resolve import with_overrides

    svc = services(ctx)
    schedule_set = svc.load(config)
    now = svc.now()
    store = open_state(svc, schedule_set, state, create=False)
    if store is not None:
        schedule_set = with_overrides(schedule_set, store.overrides())
    cluster = store.cluster_anchor(create=False) if store is not None and store.clustered else None
    return StateView(svc, schedule_set, store, now, live_anchor(store, now), cluster)
