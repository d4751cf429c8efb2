"""Plain data: the resolved schedule set and the vocabulary around it.

Everything here is immutable. After `resolve()` has built a `ScheduleSet`, the
rest of jobctl trusts it: every task has a valid id, schedule, zone and command.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any


class Concurrency(enum.Enum):
    """What happens when a task fires while its previous run is still going."""

    FORBID = "forbid"
    """Record the new fire as `skipped`; the running one carries on."""
    ALLOW = "allow"
    """Start the new run beside the old one."""
    REPLACE = "replace"
    """Stop the running one (recorded `interrupted`) and start the new one."""


class CatchUp(enum.Enum):
    """What happens to fires missed while no runner was up."""

    SKIP = "skip"
    """Run none of them."""
    ONCE = "once"
    """Run one, for the most recent missed fire."""
    ALL = "all"
    """Run each missed fire, oldest first (at most 100)."""


class Scope(enum.Enum):
    """Where a task runs when several nodes share one database."""

    NODE = "node"
    """On every node that runs the config."""
    CLUSTER = "cluster"
    """On one node of the cluster per fire."""


class Trigger(enum.Enum):
    """Why a run started."""

    SCHEDULE = "schedule"
    """Its schedule came due while a runner was up."""
    MANUAL = "manual"
    """A user asked for it with `jobctl run-now`."""
    CATCH_UP = "catch-up"
    """It was missed while no runner was up and its `catch_up` policy ran it."""


class RunStatus(enum.Enum):
    """The state of one run; every status but RUNNING is final."""

    RUNNING = "running"
    """Its process is going."""
    SUCCESS = "success"
    """It exited 0."""
    FAILED = "failed"
    """It exited non-zero, was killed by a signal, or could not start."""
    TIMEOUT = "timeout"
    """It outlived its `timeout` and was stopped."""
    SKIPPED = "skipped"
    """The fire was dropped by the concurrency policy (see the error text)."""
    INTERRUPTED = "interrupted"
    """The runner stopped, died, or replaced it while it ran."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where something was declared: a file and a 1-based line (0 = unknown)."""

    path: Path
    line: int = 0

    def __str__(self) -> str:
        return f"{self.path}:{self.line}" if self.line else str(self.path)


@dataclass(frozen=True)
class Problem:
    """One validation finding, with everything needed to find and fix it."""

    origin: Origin
    message: str
    where: str = ""  # e.g. "tasks[2] (backup).schedule"
    severity: str = "error"  # "error" or "warning"

    def __str__(self) -> str:
        where = f" {self.where}:" if self.where else ""
        label = "warning: " if self.severity == "warning" else ""
        return f"{self.origin}:{where} {label}{self.message}"


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A 5-field cron expression (shortcuts already expanded into `expr`)."""

    text: str
    expr: str
    fixed_time: bool
    """True when neither minute nor hour has a wildcard or step: DST-sensitive."""


@dataclass(frozen=True, slots=True)
class IntervalSchedule:
    """Every `seconds`, counted from the runner's start instant."""

    text: str
    seconds: float


@dataclass(frozen=True, slots=True)
class AtSchedule:
    """Once, at one instant."""

    text: str
    at: datetime


@dataclass(frozen=True, slots=True)
class RebootSchedule:
    """Once each time the runner starts."""

    text: str = "@reboot"


Schedule = CronSchedule | IntervalSchedule | AtSchedule | RebootSchedule


class Notify(enum.Enum):
    """When `on_failure` (and a webhook's failure event) fires."""

    CHANGE = "change"
    """On a failure that follows a success, or the task's first run: once per outage."""
    EVERY = "every"
    """On each failed run."""


HookCommand = str | tuple[str, ...]
"""A hook: a shell command string, or an argv (run without a shell)."""

WEBHOOK_EVENTS = ("failure", "recovery", "success")


@dataclass(frozen=True)
class Alerts:
    """What a task tells the outside world when its runs end (and start):
    hook commands, a webhook and health pings. `[jobctl]` holds the defaults
    every task starts from; a task's own keys replace them one by one."""

    on_failure: HookCommand | None = None
    on_success: HookCommand | None = None
    on_recovery: HookCommand | None = None
    notify: Notify = Notify.CHANGE
    webhook: str | None = None
    webhook_events: frozenset[str] = frozenset({"failure", "recovery"})
    hook_timeout: float = 30.0
    """Seconds a hook command may run (then its group is stopped), and a
    webhook delivery or ping may keep retrying."""
    ping_url: str | None = None
    """A healthchecks.io-style check URL: /start, success, /fail."""

    @property
    def active(self) -> bool:
        """Anything to do at all (else the runner skips the work)."""
        return bool(self.on_failure or self.on_success or self.on_recovery
                    or self.webhook or self.ping_url)


@dataclass(frozen=True, slots=True)
class RunAs:
    """The user a task runs as (its `user` key), from the passwd and group
    databases when the config was loaded, as cron and systemd's `User=` use them."""

    name: str
    uid: int
    gid: int
    """The primary group."""
    groups: tuple[int, ...]
    """Every group it is in (`os.getgrouplist`), the primary one included."""
    home: str
    shell: str
    origin: Origin | None = None
    """The table of the task that names it (its `user` line is found when a problem needs it)."""
    where: str = ""
    """The key as a problem names it, e.g. "tasks[2] (backup).user"."""

    def identity_env(self) -> dict[str, str]:
        """HOME, USER, LOGNAME and SHELL from its passwd entry."""
        return {"HOME": self.home, "USER": self.name, "LOGNAME": self.name,
                "SHELL": self.shell}


@dataclass(frozen=True, slots=True)
class Task:
    """One resolved, valid task."""

    id: str
    name: str
    schedule: Schedule
    timezone: str
    command: str | None = None
    argv: tuple[str, ...] | None = None
    group: str | None = None
    description: str | None = None
    cwd: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    env_file: str | None = None
    """The task's `env_file`, made absolute; its variables are in `file_env`."""
    file_env: Mapping[str, str] = field(default_factory=dict)
    """What `env_file` held when the config was loaded (under `env`)."""
    user: RunAs | None = None
    """Run as this user instead of the runner's (a root runner only)."""
    timeout: float | None = None
    concurrency: Concurrency = Concurrency.FORBID
    catch_up: CatchUp = CatchUp.SKIP
    enabled: bool = True
    priority: int = 1000
    scope: Scope = Scope.NODE
    owner: str = "config"
    origin: Origin | None = None
    callable: str | None = None
    """"module:function" run in a worker process (plugin jobs only)."""
    payload: Mapping[str, Any] | None = None
    """Data handed to a plugin job (plugin jobs only)."""
    plugin_dir: str | None = None
    """The plugin's folder: on the import path of its callables (plugin jobs only)."""
    plugin_trusted: bool = False
    """The manifest's `trusted`: may its callables use `jobs.run` and `jobs.set_status`."""
    host_services: tuple[str, ...] = ()
    """The manifest's `host_services`: which of `ctx.jobs`'s services its callables may call."""
    retries: int = 0
    """How many times a failed (or timed-out) run of a slot is tried again."""
    retry_delay: float = 10.0
    """Seconds before the first retry; doubled before each further one."""
    retry_max_delay: float = 600.0
    """The longest wait before a retry."""
    jitter: float = 0.0
    """Each fire starts this task's fixed offset in [0, jitter) seconds after its slot."""
    alerts: Alerts | None = None
    """Hooks, webhook and pings (None: none, from the task nor `[jobctl]`)."""

    @classmethod
    def build(cls, **fields: Any) -> Task:
        """Task(**fields), about 3x faster: the frozen __init__ sets each field
        through object.__setattr__ by name, which dominates resolving 100,000
        tasks; this calls each slot's setter directly (see `_make_builder`).
        The result is an ordinary frozen Task; unknown or missing fields are
        a TypeError, as for Task()."""
        return _build_task(cls, **fields)


_TASK_DEFAULTS: dict[str, Any] = {
    # the default_factory fields (env, file_env) get a shared, read-only empty mapping
    f.name: f.default if f.default is not MISSING else MappingProxyType({})
    for f in fields(Task)
    if f.default is not MISSING or f.default_factory is not MISSING
}


def _make_builder() -> Callable[..., Task]:
    """Generate `build(cls, *, id, name, ..., env=<default>, ...)` with one
    direct slot-setter call per field, unrolled, as dataclasses generates
    __init__: a loop over the fields costs twice as much. Slots, not a
    __dict__, keep a Task at 216 bytes instead of about 900 (65 MiB of a
    runner holding 100,000 tasks)."""
    names = [f.name for f in fields(Task)]
    scope: dict[str, Any] = {"_new": object.__new__, "_defaults": _TASK_DEFAULTS}
    params, body = [], []
    for i, name in enumerate(names):
        scope[f"_set{i}"] = getattr(Task, name).__set__
        params.append(f"{name}=_defaults[{name!r}]" if name in _TASK_DEFAULTS else name)
        body.append(f"    _set{i}(task, {name})\n")
    source = (f"def build(cls, *, {', '.join(params)}):\n    task = _new(cls)\n"
              + "".join(body) + "    return task\n")
    exec(source, scope)  # noqa: S102 - our own field names only
    builder: Callable[..., Task] = scope["build"]
    return builder


_build_task = _make_builder()


@dataclass(frozen=True)
class PluginLimits:
    """What one plugin may declare (`[jobctl.plugin_limits]`)."""

    max_jobs: int = 50
    min_interval: float = 300.0
    """Shortest allowed gap between consecutive fires, in seconds."""
    max_display_name: int = 128
    max_schedule_length: int = 128
    max_payload_bytes: int = 100 * 1024


@dataclass(frozen=True)
class PluginReport:
    """One discovered plugin: loaded with its jobs, or left out with problems."""

    id: str
    source: str
    """The manifest's path, or "entry point NAME"."""
    name: str = ""
    version: str = ""
    description: str = ""
    loaded: bool = False
    jobs: int = 0
    problems: tuple[Problem, ...] = ()


@dataclass(frozen=True)
class Settings:
    """The `[jobctl]` table, with defaults filled in and paths made absolute."""

    timezone: str
    state: Path | str | None = None
    """A SQLite file, or a PostgreSQL URL (kept as text, see `is_database_url`)."""
    shell: str = "/bin/sh"
    plugins: tuple[str, ...] = ()
    history_limit: int = 1000
    max_log_bytes: int = 1024 * 1024
    kill_grace: float = 10.0
    shutdown_grace: float = 30.0
    plugin_limits: PluginLimits = field(default_factory=PluginLimits)
    node: str | None = None
    """This runner's node name on a shared state (None: the host name)."""
    node_lease: float = 30.0
    """Seconds a node's lease lasts without a heartbeat (a shared state)."""
    env: Mapping[str, str] = field(default_factory=dict)
    """`[jobctl] env`: for every task, under the task's own env and env_file."""
    env_file: Path | None = None
    """`[jobctl] env_file`, made absolute; its variables are in `file_env`."""
    file_env: Mapping[str, str] = field(default_factory=dict)
    """What `[jobctl] env_file` held when the config was loaded (under `env`)."""
    retries: int = 0
    """Every task's `retries` unless it sets its own."""
    retry_delay: float = 10.0
    """Every task's `retry_delay` unless it sets its own."""
    retry_max_delay: float = 600.0
    """Every task's `retry_max_delay` unless it sets its own."""
    echo_output: bool = True
    """Copy each line a job prints to the runner's stdout (when not a terminal)."""
    metrics: tuple[str, int] | None = None
    """(host, port) where `jobctl run` serves /metrics and /healthz; None: off."""
    alerts: Alerts = field(default_factory=Alerts)
    """The defaults of every task's hooks, webhook and pings."""


@dataclass(frozen=True)
class ScheduleSet:
    """The validated tasks of one config, in file order, plus its settings."""

    path: Path
    settings: Settings
    tasks: tuple[Task, ...]
    warnings: tuple[Problem, ...] = ()
    plugins: tuple[PluginReport, ...] = ()

    @property
    def plugin_problems(self) -> list[Problem]:
        """Problems of plugins left out (the rest of the set is valid)."""
        return [p for report in self.plugins for p in report.problems]

    def get(self, task_id: str) -> Task | None:
        for task in self.tasks:
            if task.id == task_id:
                return task
        return None

    @property
    def ids(self) -> list[str]:
        return [t.id for t in self.tasks]


DATABASE_URL_SCHEMES = ("postgresql://", "postgres://")


def is_database_url(target: object) -> bool:
    """True for a state target that names a PostgreSQL database, not a file."""
    return isinstance(target, str) and target.lower().startswith(DATABASE_URL_SCHEMES)
