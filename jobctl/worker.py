"""The worker process that runs one plugin callable: `python -m jobctl.worker`.

The executor starts it like any command (its own process group, stdout and
stderr into the run's log, the task's cwd, timeout and concurrency as usual),
so a crash, hang or `sys.exit` of plugin code ends only this process. What to
run comes from the environment, written by `worker_env` in the launching
process and read by `main` here:

- JOBCTL_CALLABLE: `"module:function"` (or `entry-point:NAME`, an installed
  plugin's `run`)
- JOBCTL_PLUGIN_ID, JOBCTL_PLUGIN_DIR (put first on `sys.path`), JOBCTL_PAYLOAD
  (a JSON object), JOBCTL_PLUGIN_TRUSTED (`1`/`0`), JOBCTL_HOST_SERVICES
  (comma-separated), JOBCTL_STATE, JOBCTL_CONFIG (empty when not known)
- JOBCTL_TASK_ID, JOBCTL_RUN_ID, JOBCTL_SCHEDULED_FOR, JOBCTL_TRIGGER,
  JOBCTL_ATTEMPT, as every run gets.

The worker takes the variables of the first two lines out of its own
environment before plugin code runs: the plugin gets `ctx` (see
`jobctl.pluginapi`), and what it starts does not inherit them.

Exit status: 0 the callable returned; 1 it raised (traceback in the log);
2 it could not be imported, or the environment is unusable; n its `sys.exit(n)`.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime, time, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobctl.errors import JobctlError
from jobctl.model import is_database_url
from jobctl.pluginapi import (
    BATCH_GET,
    ENTRY_POINT_PREFIX,
    JOB_STATUSES,
    RUN,
    SET_STATUS,
    TRUSTED_SERVICES,
    HostServiceError,
    JobContext,
    JobView,
)

if TYPE_CHECKING:
    from jobctl.model import ScheduleSet, Task
    from jobctl.store import Store

EXIT_RAISED = 1
EXIT_SETUP = 2
# as jobctl.plugins writes it (not imported from there: that would load the
# config reader into every worker)

# Read by the worker, then removed from its environment.
_WORKER_VARS = (
    "JOBCTL_CALLABLE", "JOBCTL_PLUGIN_ID", "JOBCTL_PLUGIN_DIR", "JOBCTL_PAYLOAD",
    "JOBCTL_PLUGIN_TRUSTED", "JOBCTL_HOST_SERVICES", "JOBCTL_STATE", "JOBCTL_CONFIG",
)
_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class CallableImportError(JobctlError):
    """A plugin callable could not be imported."""

    def __init__(self, spec: str, reason: str) -> None:
        self.spec = spec
        self.reason = reason
        super().__init__(f"cannot import '{spec}': {reason}")


# -- the launching side (runs in the runner or run-now) ---------------------------


def worker_argv() -> list[str]:
    """How a plugin callable's run starts: this Python, with `-P` so the
    task's cwd (often the plugin's folder) cannot shadow jobctl's modules."""
    return [sys.executable, "-P", "-m", "jobctl.worker"]


def plugin_id_of(task: Task) -> str:
    """The plugin a task belongs to: from its owner (`plugin:ID`), else its id prefix."""
    if task.owner.startswith("plugin:"):
        return task.owner[len("plugin:"):]
    return task.id.partition(":")[0]


def worker_env(task: Task, *, state_path: Path | str | None,
               config_path: Path | None) -> dict[str, str]:
    """The variables that tell a worker what to run (see the module docstring).

    Paths are made absolute here: the worker runs in the task's cwd.
    """
    if task.callable is None:
        raise ValueError(f"task '{task.id}' has no callable")
    payload = json.dumps(dict(task.payload or {}), default=_json_default, separators=(",", ":"))
    return {
        "JOBCTL_CALLABLE": task.callable,
        "JOBCTL_PLUGIN_ID": plugin_id_of(task),
        "JOBCTL_PLUGIN_DIR": _absolute(task.plugin_dir),
        "JOBCTL_PAYLOAD": payload,
        "JOBCTL_PLUGIN_TRUSTED": "1" if task.plugin_trusted else "0",
        "JOBCTL_HOST_SERVICES": ",".join(task.host_services),
        # a database URL as the store shows it: without its password
        "JOBCTL_STATE": state_path if is_database_url(state_path) else _absolute(state_path),  # type: ignore[dict-item]
        "JOBCTL_CONFIG": _absolute(config_path),
    }


def _absolute(path: str | Path | None) -> str:
    return "" if path is None else os.path.abspath(os.path.expanduser(path))


def _json_default(value: object) -> object:
    # TOML payloads may hold dates and times; plugins get them as ISO text.
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, Mapping):
        return dict(value)
    # never fail here: this runs in the runner, on the way to a spawn
    return str(value)


# -- host services (run in the worker) ---------------------------------------------


def _resolve_config(path: Path, now: datetime) -> ScheduleSet:
    from jobctl.clock import system_zone_name
    from jobctl.resolve import resolve

    return resolve(path, system_zone=system_zone_name(), now=now)


class HostJobs:
    """`ctx.jobs` in the worker: each call is checked against what the
    plugin's manifest declared, then served from the state file and the
    resolved config.

    The plugin's jobs are the tasks of the resolved config owned by
    `plugin:ID` (the config is read once, on first need). If it cannot be
    read, or this run was given no config path, they are the ids with the
    plugin's prefix that the state file has seen; the running job itself is
    always one of them.
    """

    def __init__(
        self,
        *,
        plugin_id: str,
        task_id: str,
        trusted: bool,
        services: Iterable[str],
        state_path: Path | str | None,
        config_path: Path | None,
        logger: logging.Logger,
        now: Callable[[], datetime],
        load: Callable[[Path, datetime], ScheduleSet] = _resolve_config,
        spawner: Callable[[Sequence[str], Mapping[str, str]], int] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.plugin_id = plugin_id
        self.task_id = task_id
        self.trusted = trusted
        self.services = frozenset(services)
        self.state_path = state_path
        self.config_path = config_path
        self.logger = logger
        self._now = now
        self._load = load
        self._spawner = spawner
        self._env = env
        self._prefix = f"{plugin_id}:"
        self._jobs: dict[str, Task | None] | None = None
        self._store: Store | None = None

    # -- the services

    def batch_get(self, ids: Sequence[str]) -> list[JobView]:
        self._allow(BATCH_GET)
        if isinstance(ids, str):
            raise TypeError("batch_get takes a list of job ids, not one string")
        wanted = list(ids)
        tasks = [self._own(BATCH_GET, job_id) for job_id in wanted]
        now = self._now()
        store = self._open_store()
        overrides: dict[str, bool] = {}
        latest: dict[str, Any] = {}
        ended: dict[str, Any] = {}
        anchor: datetime | None = None
        if store is not None and wanted:
            from jobctl.liveness import lease_alive

            overrides = store.overrides()
            latest = store.latest_runs(wanted)
            ended = store.latest_runs(wanted, ended=True)
            lease = store.lease()
            if lease is not None and lease_alive(lease, now):
                anchor = lease.anchor  # intervals count from the live runner's start
        views = []
        for job_id, task in zip(wanted, tasks):
            enabled = overrides.get(job_id, task.enabled if task is not None else None)
            next_run: str | None = None
            if task is not None and enabled:
                from jobctl.timing import load_zone, next_fire

                fire = next_fire(task.schedule, load_zone(task.timezone), now, anchor)
                next_run = None if fire is None else fire.isoformat()
            last, done = latest.get(job_id), ended.get(job_id)
            views.append(JobView(
                id=job_id,
                name=task.name if task is not None else job_id,
                group=task.group if task is not None else None,
                status=last.status.value if last is not None else None,
                enabled=enabled,
                next_run=next_run,
                last_run_status=done.status.value if done is not None else None,
            ))
        return views

    def run(self, job_id: str) -> int:
        try:
            pid = self._run(job_id)
        except HostServiceError as e:
            self._audit(RUN, job_id, "refused", e.reason)
            raise
        self._audit(RUN, job_id, "ok", f"started jobctl run-now (pid {pid})")
        return pid

    def set_status(self, job_id: str, status: str) -> None:
        try:
            self._set_status(job_id, status)
        except HostServiceError as e:
            self._audit(SET_STATUS, job_id, "refused", e.reason)
            raise
        self._audit(SET_STATUS, job_id, "ok", f"{status} by plugin '{self.plugin_id}'")

    def _audit(self, service: str, job_id: object, outcome: str, detail: str) -> None:
        """Record a call of jobs.run or jobs.set_status in the audit trail;
        one that cannot be written is a warning in the run's log."""
        from jobctl import audit

        warning: str | None = None
        try:
            store = self._open_store()
        except JobctlError as e:
            store, warning = None, f"the audit trail could not be written: {e}"
        if store is not None:
            node = (self._env if self._env is not None else os.environ).get("JOBCTL_NODE")
            warning = audit.record(store, audit.event(
                service, self._now(), node=node,
                task_id=job_id if isinstance(job_id, str) else None, outcome=outcome,
                detail=f"plugin '{self.plugin_id}' (run of {self.task_id}): {detail}"))
        if warning:
            self.logger.warning("jobctl: %s", warning)

    def _run(self, job_id: str) -> int:
        self._allow(RUN)
        task = self._own(RUN, job_id)
        if self.config_path is None or self.state_path is None:
            raise HostServiceError(
                self.plugin_id, RUN,
                f"cannot run '{job_id}': this run was started without a config path "
                "(jobctl run-now does not pass one yet), and jobs.run needs it")
        if task is None:
            # run-now resolves the config again, and would not find it either
            raise HostServiceError(
                self.plugin_id, RUN,
                f"cannot run '{job_id}': the config {self.config_path} could not be read "
                "or does not declare it")
        argv = [sys.executable, "-P", "-m", "jobctl", "run-now", job_id,
                "--config", str(self.config_path), "--state", str(self.state_path)]
        # run-now records the run itself, owning it; this worker's own
        # variables must not reach it.
        base = os.environ if self._env is None else self._env
        env = {k: v for k, v in base.items() if not k.startswith("JOBCTL_")}
        if self._spawner is None:
            from jobctl.executor import spawn_detached

            self._spawner = spawn_detached
        pid = self._spawner(argv, env)
        self.logger.info("jobs.run: started jobctl run-now %s (pid %d)", job_id, pid)
        return pid

    def _set_status(self, job_id: str, status: str) -> None:
        self._allow(SET_STATUS)
        if status not in JOB_STATUSES:
            allowed = " or ".join(f"'{s}'" for s in JOB_STATUSES)
            raise HostServiceError(self.plugin_id, SET_STATUS,
                                   f"cannot set status {status!r} on '{job_id}': "
                                   f"expected {allowed}")
        self._own(SET_STATUS, job_id)
        store = self._open_store()
        if store is None:
            raise HostServiceError(self.plugin_id, SET_STATUS,
                                   f"cannot change '{job_id}': this run has no state file")
        store.set_enabled([job_id], status == "enabled", now=datetime.now(timezone.utc))
        self.logger.info("jobs.set_status: %s is now %s", job_id, status)

    # -- checks and sources

    def _allow(self, service: str) -> None:
        if service not in self.services:
            raise HostServiceError(self.plugin_id, service,
                                   f"did not declare host service '{service}' "
                                   "(list it in host_services in its manifest)")
        if service in TRUSTED_SERVICES and not self.trusted:
            raise HostServiceError(self.plugin_id, service,
                                   f"is not trusted: host service '{service}' needs "
                                   "trusted = true in its manifest")

    def _own(self, service: str, job_id: object) -> Task | None:
        if not isinstance(job_id, str):
            raise TypeError(f"a job id is a string, not {type(job_id).__name__}")
        if not job_id.startswith(self._prefix):
            raise HostServiceError(self.plugin_id, service,
                                   f"may only use its own jobs (ids starting '{self._prefix}'); "
                                   f"'{job_id}' is not one of them")
        jobs = self._known()
        if job_id not in jobs:
            raise HostServiceError(self.plugin_id, service, f"has no job '{job_id}'")
        return jobs[job_id]

    def _known(self) -> dict[str, Task | None]:
        if self._jobs is not None:
            return self._jobs
        jobs: dict[str, Task | None] | None = None
        if self.config_path is not None:
            owner = f"plugin:{self.plugin_id}"
            try:
                schedule_set = self._load(self.config_path, self._now())
            except (JobctlError, OSError) as e:
                self.logger.warning("jobctl: cannot read the config %s (%s); job details come "
                                    "from the state file only", self.config_path, e)
            else:
                jobs = {t.id: t for t in schedule_set.tasks
                        if t.owner == owner and t.id.startswith(self._prefix)}
        if jobs is None:
            store = self._open_store()
            jobs = dict.fromkeys(store.known_task_ids(self._prefix) if store else [])
        jobs.setdefault(self.task_id, None)
        self._jobs = jobs
        return jobs

    def _open_store(self) -> Store | None:
        if self._store is None and self.state_path is not None:
            from jobctl.store import open_store

            self._store = open_store(self.state_path, create=False)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


# -- the worker ----------------------------------------------------------------------


def load_callable(spec: str) -> Callable[[JobContext], object]:
    """The function `"module:function"` names (`function` may be dotted:
    `Class.method`), or an installed entry-point plugin's `run`.

    Raises CallableImportError with a one-line reason.
    """
    if spec.startswith(ENTRY_POINT_PREFIX):
        name = spec[len(ENTRY_POINT_PREFIX):]
        try:
            from jobctl.plugins import load_entry_point_plugin

            plugin = load_entry_point_plugin(name)
            run = plugin.run
        except Exception as e:  # plugin code: anything can go wrong
            raise CallableImportError(spec, f"{type(e).__name__}: {e}") from e
        if not callable(run):
            raise CallableImportError(spec, "the plugin's 'run' is not callable")
        return run  # type: ignore[no-any-return]
    module_name, colon, attr = spec.partition(":")
    if not colon or not module_name or not attr:
        raise CallableImportError(spec, "expected 'module:function'")
    import importlib

    try:
        obj: Any = importlib.import_module(module_name)
    except SyntaxError as e:
        raise CallableImportError(
            spec, f"syntax error in {e.filename}, line {e.lineno}: {e.msg}") from e
    except ImportError as e:
        raise CallableImportError(spec, str(e)) from e
    except Exception as e:  # the module's own code failed
        raise CallableImportError(spec, f"{type(e).__name__}: {e}") from e
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise CallableImportError(
                spec, f"module '{module_name}' has no attribute '{attr}'") from None
    if not callable(obj):
        raise CallableImportError(spec, f"'{attr}' is a {type(obj).__name__}, not a function")
    return obj  # type: ignore[no-any-return]


def _plugin_logger(task_id: str) -> logging.Logger:
    # The root handler writes to stderr, the run's log; the root stays at
    # WARNING so libraries' chatter stays out, while ctx.logger says INFO.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_LOG_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logger = logging.getLogger(task_id)
    logger.setLevel(logging.INFO)
    return logger


def _context(env: Mapping[str, str], jobs: HostJobs, logger: logging.Logger) -> JobContext:
    task_id = env.get("JOBCTL_TASK_ID", "")
    plugin_id = jobs.plugin_id
    trigger = env.get("JOBCTL_TRIGGER", "")
    slot = env.get("JOBCTL_SCHEDULED_FOR", "")
    try:
        # a manual run has no slot (the variable then holds its start)
        scheduled_for = datetime.fromisoformat(slot) if slot and trigger != "manual" else None
    except ValueError:
        raise ValueError(f"JOBCTL_SCHEDULED_FOR is not an ISO 8601 time: {slot!r}") from None
    attempt_text = env.get("JOBCTL_ATTEMPT", "1")
    try:
        attempt = int(attempt_text)
    except ValueError:
        raise ValueError(f"JOBCTL_ATTEMPT is not a number: {attempt_text!r}") from None
    try:
        payload = json.loads(env.get("JOBCTL_PAYLOAD") or "{}")
    except ValueError as e:
        raise ValueError(f"JOBCTL_PAYLOAD is not JSON: {e}") from None
    if not isinstance(payload, dict):
        raise ValueError("JOBCTL_PAYLOAD is not a JSON object")
    prefix = f"{plugin_id}:"
    return JobContext(
        task_id=task_id,
        key=task_id.removeprefix(prefix),
        plugin_id=plugin_id,
        scheduled_for=scheduled_for,
        trigger=trigger,
        attempt=attempt,
        payload=payload,
        logger=logger,
        jobs=jobs,
    )


def _path_or_none(text: str) -> Path | None:
    return Path(text) if text else None


def _state_or_none(text: str) -> Path | str | None:
    return text if is_database_url(text) else _path_or_none(text)


def main(environ: Mapping[str, str] | None = None) -> int:
    """Run the callable the environment names; the process's exit status."""
    env = dict(os.environ if environ is None else environ)
    for name in _WORKER_VARS:
        os.environ.pop(name, None)
    import io

    if isinstance(sys.stdout, io.TextIOWrapper):
        # a pipe would otherwise buffer prints until exit, out of order with
        # stderr, and lose them to a timeout's SIGTERM
        sys.stdout.reconfigure(line_buffering=True)
    spec = env.get("JOBCTL_CALLABLE", "")
    if not spec:
        sys.stderr.write("jobctl worker: JOBCTL_CALLABLE is not set\n")
        return EXIT_SETUP
    task_id = env.get("JOBCTL_TASK_ID", "")
    plugin_id = env.get("JOBCTL_PLUGIN_ID") or task_id.partition(":")[0]
    logger = _plugin_logger(task_id or spec)
    from jobctl.clock import SystemClock

    jobs = HostJobs(
        plugin_id=plugin_id,
        task_id=task_id,
        trusted=env.get("JOBCTL_PLUGIN_TRUSTED") == "1",
        services=[s.strip() for s in env.get("JOBCTL_HOST_SERVICES", "").split(",") if s.strip()],
        state_path=_state_or_none(env.get("JOBCTL_STATE", "")),
        config_path=_path_or_none(env.get("JOBCTL_CONFIG", "")),
        logger=logger,
        now=SystemClock().now,
    )
    try:
        ctx = _context(env, jobs, logger)
    except ValueError as e:
        sys.stderr.write(f"jobctl worker: {e}\n")
        return EXIT_SETUP
    plugin_dir = env.get("JOBCTL_PLUGIN_DIR", "")
    if plugin_dir:
        sys.path.insert(0, plugin_dir)
    try:
        function = load_callable(spec)
    except CallableImportError as e:
        sys.stderr.write(f"{e}\n")
        return EXIT_SETUP
    try:
        result = function(ctx)
        import inspect

        if inspect.iscoroutine(result):
            import asyncio

            asyncio.run(result)
    except Exception as e:  # noqa: BLE001 - a failed job is data: exit 1, traceback in the log
        import traceback

        sys.stdout.flush()
        # leave out this frame: the traceback starts in the plugin's code
        tb = e.__traceback__.tb_next if e.__traceback__ is not None else None
        traceback.print_exception(type(e), e, tb, file=sys.stderr)
        return EXIT_RAISED
    finally:
        sys.stdout.flush()
        jobs.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
