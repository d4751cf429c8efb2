"""Run lifecycle steps shared by the runner and the CLI's control commands:
recovering a dead owner's runs (who is alive: `jobctl.liveness`),
starting one run, and describing how a run ended.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from jobctl import procinfo
from jobctl.errors import EXIT_BUSY, JobctlError
from jobctl.events import Event
from jobctl.executor import (
    Launch,
    RunningProcess,
    SpawnError,
    build_argv,
    build_env,
    spawn,
    stop_process_group,
)
from jobctl.liveness import owner_alive, self_owner
from jobctl.model import RunStatus, Settings, Task, Trigger
from jobctl.store import Owner, RunRecord, Store
from jobctl.supervisor import ActiveRun, RunExit, Supervisor
from jobctl.taskenv import task_env

if TYPE_CHECKING:
    from jobctl.hooks import Notifier


def kill_orphan_group(run: RunRecord, grace: float = 2.0, *, state_id: str = "") -> None:
    """Stop a dead owner's child group, but only if it is provably the same
    process (same boot, same start time): a recycled pid is left alone. A run
    whose pid was never recorded is found by its environment, which must
    name this run of this state file (`state_id`, see `Store.state_id`)."""
    if run.host != procinfo.host_name():
        return
    if run.pid is None:
        # started but not yet recorded when its runner died (the pids of a
        # batch are written after the batch): find it by its environment
        if run.owner.boot_id and run.owner.boot_id != procinfo.boot_id():
            return
        for leader in procinfo.find_run_leaders(run.task_id, run.id, state_id):
            stop_process_group(leader, grace)
        return
    if not procinfo.is_same_process(run.pid, run.proc_start, run.boot_id or None):
        return
    stop_process_group(run.pid, grace)


def recover_orphans(store: Store, now: datetime) -> list[int]:
    """Mark `interrupted` every run left `running` by an owner that is gone,
    after stopping its process group. Returns the run ids changed."""
    changed: list[int] = []
    # on a shared state, the runs of nodes whose lease expired (by the
    # database's clock), whatever host they ran on
    for run in store.interrupt_dead_nodes():
        kill_orphan_group(run, state_id=store.state_id)
        changed.append(run.id)
    for run in store.running():
        if owner_alive(run.owner):
            continue
        kill_orphan_group(run, state_id=store.state_id)
        what = "runner" if run.trigger is not Trigger.MANUAL else "jobctl run-now"
        node = f" of node '{run.node}'" if store.clustered else ""
        changed += store.mark_interrupted(
            [run.id], now, f"{what} (pid {run.owner.pid}{node}) stopped or died while it ran"
        )
    return changed


def launch_for(task: Task, settings: Settings, *, run_id: int, log_path: Path,
               scheduled_for: datetime | None, trigger: Trigger, base_env: Mapping[str, str],
               started: datetime, echo: object = None, lazy_log: bool = False,
               state_path: Path | str | None = None, config_path: Path | None = None,
               state_id: str = "", attempt: int = 1) -> Launch:
    """How to start one run. A task with a `callable` runs in a plugin worker
    (`python -m jobctl.worker`), told what to run, and where the state file
    and config are, through its environment."""
    slot = (scheduled_for or started).isoformat()
    extra: dict[str, str] | None = None
    if task.callable is not None:
        from jobctl import worker

        argv = worker.worker_argv()
        extra = worker.worker_env(task, state_path=state_path, config_path=config_path)
    else:
        argv = build_argv(task.command, task.argv, settings.shell)
    if task.user is not None:
        # under everything the config says, as cron's env lines may set HOME
        base_env = {**base_env, **task.user.identity_env()}
    return Launch(
        argv=argv,
        env=build_env(base_env, task_env(task, settings), task_id=task.id, run_id=run_id,
                      scheduled_for=slot, trigger=trigger.value, attempt=attempt, extra=extra,
                      state_id=state_id),
        cwd=task.cwd,
        log_path=log_path,
        max_log_bytes=settings.max_log_bytes,
        echo=echo,  # type: ignore[arg-type]
        lazy_log=lazy_log,
        user=task.user,
    )


def record_spawn_failure(store: Store, launch: Launch, run_id: int, error: SpawnError,
                         now: datetime) -> None:
    """A claimed run whose process could not start: say why in its log, and
    record it `failed`."""
    try:
        from jobctl.perms import make_private_dirs, open_private

        make_private_dirs(launch.log_path.parent)
        with open(open_private(launch.log_path, os.O_WRONLY | os.O_TRUNC), "w") as f:
            f.write(f"[jobctl: {error}]\n")
    except OSError:
        pass
    store.finish(run_id, RunStatus.FAILED, now, error=str(error))


def start_process(store: Store, launch: Launch, run_id: int, now: Callable[[], datetime],
                  spawner: Callable[[Launch], RunningProcess] = spawn) -> RunningProcess | None:
    """Spawn a claimed run and record its pid; on failure record it `failed`."""
    try:
        proc = spawner(launch)
    except SpawnError as e:
        record_spawn_failure(store, launch, run_id, e, now())
        return None
    if not store.set_process(run_id, proc.pid, proc.identify(), proc.boot):
        # replaced between the claim and the spawn: it must not run on
        proc.signal_group(signal.SIGKILL)
        proc.wait(5)
        proc.close()
        return None
    return proc


class RunBusyError(JobctlError):
    """run-now under `forbid` while another run of the task is going."""

    exit_code = EXIT_BUSY

    def __init__(self, task_id: str, running: Sequence[RunRecord]) -> None:
        where = ", ".join(
            f"#{r.id} ({'runner' if r.trigger is not Trigger.MANUAL else 'run-now'} pid {r.owner.pid}"
            f" on {r.host}, since {r.started_at.isoformat()})"
            for r in running
        )
        super().__init__(
            f"task '{task_id}' is already running: run {where}; its concurrency is 'forbid'. "
            "Use --force to start another anyway."
        )


def run_now(
    store: Store,
    task: Task,
    settings: Settings,
    *,
    now: Callable[[], datetime],
    env: Mapping[str, str],
    echo: BinaryIO | None,
    force: bool,
    stop_requested: Callable[[], bool],
    owner: Owner | None = None,
    monotonic: Callable[[], float] = time.monotonic,
    config_path: Path | None = None,
    retry: bool = True,
    sleep: Callable[[float], None] = time.sleep,
    on_attempt: Callable[[RunRecord, float | None], None] | None = None,
    report: Callable[[Event], None] | None = None,
) -> RunRecord:
    """Run one task in this process (trigger `manual`) and return the record
    of its last attempt.

    Follows the task's concurrency policy wherever the other run lives:
    `forbid` raises RunBusyError unless `force`; `replace` stops the running
    one first. `stop_requested` is polled: when it turns true the run is
    stopped and recorded `interrupted`, and no retry follows. With `retry`,
    a failed or timed-out attempt is run again as the task's `retries` say,
    after its delay (waited here); `on_attempt(record, delay)` is told of
    each attempt's end, with the delay before the next one (None: it is the
    last, `final`). `config_path` reaches a plugin callable's worker, for
    the host services that need the config.

    The task's hooks, webhook and ping run as in the runner, for the last
    attempt only; this waits for them (each bounded by its `hook_timeout`)
    before it returns, reporting their failures to `report` as `hook_failed`
    events.
    """
    from jobctl.retries import retried, retry_delay

    owner = owner or self_owner()
    notifier = None
    if task.alerts is not None:
        from jobctl.hooks import Notifier

        notifier = Notifier(store, report=report or (lambda _event: None), settings=settings,
                            now=now, monotonic=monotonic, env=env, node=owner.node_name)
    attempt = 1
    while True:
        record = _run_once(store, task, settings, now=now, env=env, echo=echo, force=force,
                           stop_requested=stop_requested, owner=owner, monotonic=monotonic,
                           config_path=config_path, attempt=attempt, notifier=notifier)
        # a signal by now stopped this attempt (or comes as it ended): its
        # failure hooks still run; one that comes later stops them
        signalled = stop_requested()
        delay = None
        if retry and retried(task, record.status, attempt) and not stop_requested():
            delay = retry_delay(task, attempt)
        end = None
        if notifier is not None:
            from jobctl.hooks import RunEnd

            # only a slot's last attempt alerts (and pings its end)
            end = RunEnd(task, record.id, record.status, record.exit_code, None,
                         record.started_at or record.finished_at or now(),
                         record.finished_at or now(), Trigger.MANUAL, attempt)
            notifier.run_ended(end, final=delay is None)
        if on_attempt is not None:
            on_attempt(record, delay)
        if delay is None:
            break
        deadline = monotonic() + delay
        while (left := deadline - monotonic()) > 0 and not stop_requested():
            sleep(min(left, 0.05))
        if stop_requested():
            if notifier is not None and end is not None:
                # the retries stop here: this attempt is the last after all
                notifier.run_ended(end)
                signalled = True
            break
        attempt += 1
    if notifier is not None:
        alerts = task.alerts
        assert alerts is not None
        # a hook gets its timeout, then its stop's grace; deliveries their timeout
        notifier.wait(alerts.hook_timeout + settings.kill_grace + 1.0,
                      stop=lambda: not signalled and stop_requested())
    return record


def _run_once(store: Store, task: Task, settings: Settings, *, now: Callable[[], datetime],
              env: Mapping[str, str], echo: BinaryIO | None, force: bool,
              stop_requested: Callable[[], bool], owner: Owner,
              monotonic: Callable[[], float], config_path: Path | None,
              attempt: int, notifier: Notifier | None = None) -> RunRecord:
    from jobctl.store import ClaimRequest

    recover_orphans(store, now())
    [claim] = store.claim_many([ClaimRequest(task.id, Trigger.MANUAL, None, task.concurrency,
                                             force, task.scope, attempt)],
                               owner=owner, now=now())
    if claim.outcome == "refused":
        raise RunBusyError(task.id, claim.blocking)
    assert claim.run_id is not None
    run_id = claim.run_id
    for old in claim.replaced:
        kill_orphan_group(old, settings.kill_grace, state_id=store.state_id)  # the same stop, for another process's run
    launch = launch_for(task, settings, run_id=run_id, log_path=store.log_dir / f"{run_id}.log",
                        scheduled_for=None, trigger=Trigger.MANUAL, base_env=env,
                        started=now(), echo=echo, state_path=store.path,
                        config_path=config_path, state_id=store.state_id, attempt=attempt)
    proc = start_process(store, launch, run_id, now)
    if proc is not None and notifier is not None:
        notifier.run_started(task, run_id)
    if proc is not None:
        supervisor = Supervisor()
        deadline = monotonic() + task.timeout if task.timeout else None
        supervisor.add(ActiveRun(run_id, task, proc, Trigger.MANUAL, None, now(), deadline,
                                 attempt=attempt))
        grace = settings.kill_grace
        exits: list[RunExit] = []
        while not exits:
            if proc.wait(0.05) is None:  # logging (and echoing) its output meanwhile
                mono = monotonic()
                if stop_requested():
                    supervisor.stop_all("stopped by a signal to jobctl run-now", grace, mono)
                supervisor.enforce_deadlines(grace, mono)
            exits = supervisor.reap()
        # this process is about to end: a stopped run's group does not get
        # the rest of its grace, and a pipe still held open is closed
        supervisor.kill_all("jobctl run-now ended")
        [ended] = exits
        store.finish(run_id, ended.status, now(), exit_code=ended.code, error=ended.error)
        if store.stores_logs:
            # readable from every node; the end is recorded whatever this does
            try:
                store.put_log(run_id, launch.log_path.read_bytes())
            except (OSError, JobctlError):
                pass
    for log in store.prune(task.id, settings.history_limit):
        try:
            Path(log).unlink()
        except OSError:
            pass
    record = store.get_run(run_id)
    assert record is not None
    return record
