"""Alerts: what a task tells the outside world when its runs start and end.

Per task (defaults in `[jobctl]`, see `model.Alerts`): hook commands
(`on_failure`, `on_success`, `on_recovery`), a `webhook` (a JSON POST) and
health pings (`ping_url`, the healthchecks.io protocol). The `Notifier` is
told of a run's start (`run_started`) and, once its end is recorded, of the
end (`run_ended`, called from one place: `Recorder.finish`, and by
`run-now`). It decides which events the end is:

- a run that ends failed, timeout or interrupted is a failure; `failure`
  fires on each (`notify = "every"`) or only when the task's previous ended
  run was a success or there was none (`notify = "change"`);
- a success is `success`, and also `recovery` when the previous ended run
  was a failure. "Previous" is read from the state store, so it holds
  across restarts; on a shared state it is any node's run for a cluster
  task, this node's for a node task. Earlier attempts of the same slot
  (retries) are not "previous": only the last attempt of a slot counts,
  and the caller says which that is (`final`).

Nothing here blocks the caller: hook commands are spawned (own process
group, stopped at `hook_timeout`) and reaped by `tick`; webhook deliveries
and pings go to a few background threads (plain `urllib.request`: one POST
with a JSON body needs no HTTP library), which retry with backoff on
connection errors and 5xx for up to `hook_timeout`. Their outcomes come back
through a queue that `tick` drains on the caller's thread: each failure is a
`hook_failed` event and the task's latest hook failure in the store (shown
by `jobctl status`). A hook never fails or delays a run, and never loses a
run's record.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from jobctl.errors import JobctlError
from jobctl.events import Event, Reporter
from jobctl.executor import GroupStopper, HookProcess, SpawnError, build_argv, spawn_hook
from jobctl.model import Alerts, HookCommand, Notify, RunStatus, Scope, Settings, Task, Trigger
from jobctl.store import HookFailure, Store
from jobctl.taskenv import task_env

LOG_TAIL_MAX = 64 * 1024
"""How much of the end of a run's log a hook gets on stdin (and a webhook, a ping)."""
FAILURES = frozenset({RunStatus.FAILED, RunStatus.TIMEOUT, RunStatus.INTERRUPTED})
DELIVERY_THREADS = 4
HOLD_MAX = 2.0  # seconds a delivery waits at most for the runner's spawns to end
# backoff between delivery attempts: doubling from FIRST, at most MAX
RETRY_FIRST = 0.5
RETRY_MAX = 10.0
# ended runs looked at for "the previous run": enough to pass a slot's retries
PREVIOUS_LOOKBACK = 50
_HOOK_KEYS = {"failure": "on_failure", "success": "on_success", "recovery": "on_recovery"}


@dataclass(frozen=True)
class RunEnd:
    """A run's end, as recorded, for the alerts."""

    task: Task
    run_id: int
    status: RunStatus
    exit_code: int | None
    """As recorded: negative when a signal killed it; None when it never ran."""
    scheduled_for: datetime | None
    started: datetime
    finished: datetime
    trigger: Trigger = Trigger.SCHEDULE
    attempt: int = 1


@dataclass
class _Hook:
    task_id: str
    run_id: int
    key: str  # on_failure, on_success, on_recovery
    proc: HookProcess
    timeout: float
    deadline: float  # monotonic
    stopper: GroupStopper | None = None
    stopped_why: str = ""  # set when stopped before its own timeout (the runner stopping)


@dataclass(frozen=True)
class _Outcome:
    task_id: str
    run_id: int
    what: str  # "webhook", "ping"
    error: str | None


_Job = tuple[Callable[[], "str | None"], str, int, str, str]  # job, task, run, what, lane


@dataclass
class _Deliveries:
    """A few daemon threads that send HTTP requests, and the outcomes they
    hand back. Requests of one lane (a task's pings; a task's webhooks) go
    one after another, in order: a run's `/start` ping before its end's, a
    failure's webhook before the recovery's. Daemon threads: a runner that
    exits does not wait for a server that never answers (what is left is
    reported abandoned)."""

    threads: int = DELIVERY_THREADS
    jobs: queue.SimpleQueue[_Job] = field(default_factory=queue.SimpleQueue)
    outcomes: queue.SimpleQueue[_Outcome] = field(default_factory=queue.SimpleQueue)
    pending: int = 0  # submitted, outcome not yet taken (the owner's thread only)
    started: list[threading.Thread] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    lanes: dict[str, deque[_Job]] = field(default_factory=dict)  # busy lanes, their queues
    # cleared while the runner spawns a batch: a delivery waits for it (at
    # most HOLD_MAX), so HTTP work never takes the interpreter from spawns
    go: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.go.set()

    def submit(self, job: Callable[[], str | None], task_id: str, run_id: int, what: str,
               lane: str) -> None:
        if not self.started:
            for i in range(self.threads):
                thread = threading.Thread(target=self._work, name=f"jobctl-delivery-{i}",
                                          daemon=True)
                thread.start()
                self.started.append(thread)
        self.pending += 1
        item = (job, task_id, run_id, what, lane)
        with self.lock:
            waiting = self.lanes.get(lane)
            if waiting is not None:
                waiting.append(item)  # its lane's thread takes it next
                return
            self.lanes[lane] = deque()
        self.jobs.put(item)

    def _work(self) -> None:
        while True:
            item: _Job | None = self.jobs.get()
            while item is not None:
                job, task_id, run_id, what, lane = item
                self.go.wait(HOLD_MAX)
                try:
                    error = job()
                except Exception as e:  # noqa: BLE001 - a delivery never kills its thread
                    error = f"{type(e).__name__}: {e}"
                self.outcomes.put(_Outcome(task_id, run_id, what, error))
                with self.lock:
                    waiting = self.lanes[lane]
                    if waiting:
                        item = waiting.popleft()
                    else:
                        del self.lanes[lane]
                        item = None

    def take(self) -> list[_Outcome]:
        out = []
        while True:
            try:
                out.append(self.outcomes.get_nowait())
            except queue.Empty:
                break
        self.pending -= len(out)
        return out


class Notifier:
    """Runs the hooks, webhook deliveries and pings of one runner (or one
    `run-now`); see the module docstring.

    Invariants: `run_started` and `run_ended` return at once (no network, no
    wait on a process); every hook process is reaped by `tick` or killed by
    `kill_all`; every failure is reported once, as a `hook_failed` event on
    the thread that calls `tick`.
    """

    def __init__(self, store: Store, *, report: Reporter, settings: Settings,
                 now: Callable[[], datetime], monotonic: Callable[[], float],
                 env: Mapping[str, str], node: str = "") -> None:
        self.store = store
        self.report = report
        self.settings = settings  # the runner sets it again on a reload
        self.now = now
        self.monotonic = monotonic
        self.env = dict(env)
        self.node = node
        self.hooks: list[_Hook] = []
        self.group_stops: list[GroupStopper] = []  # hooks that exited, groups owed a SIGKILL
        self.deliveries = _Deliveries()
        self.rids: dict[int, str] = {}  # run id -> its ping's rid
        # a slot's attempt that a queued retry follows, held in case that
        # retry is dropped (the runner stops, the task is disabled): then it
        # is the slot's last attempt after all, and alerts
        self.held: dict[tuple[str, datetime | None], tuple[RunEnd, str | None]] = {}
        self.abandoned = False

    # -- what the runner tells -------------------------------------------------------

    def run_started(self, task: Task, run_id: int) -> None:
        """A run's process started: ping `/start` (in the background)."""
        alerts = task.alerts
        if alerts is None or not alerts.ping_url:
            return
        import uuid  # only for a task with a ping URL

        rid = self.rids[run_id] = str(uuid.uuid4())
        url = ping_url(alerts.ping_url, "start", rid)
        self._send(task.id, run_id, "ping /start", url, None, alerts.hook_timeout, lane="ping")

    def run_ended(self, end: RunEnd, *, final: bool = True) -> None:
        """A run's end was recorded: run its hooks, send its webhook and
        ping. `final`: False for an attempt that another attempt of the same
        slot will follow (a retry): it alerts nobody."""
        alerts = end.task.alerts
        if alerts is None:
            return
        rid = self.rids.pop(end.run_id, None)
        key = (end.task.id, end.scheduled_for)
        self.held.pop(key, None)  # the attempt it held for ran: it alerts in its place
        if not final:
            if end.trigger is not Trigger.MANUAL:
                self.held[key] = (end, rid)
            return
        self._alert(end, alerts, rid)

    def retry_dropped(self, task_id: str, slot: datetime | None) -> None:
        """The queued retry of `slot` will not run: the attempt before it
        is the slot's last after all, and alerts now."""
        held = self.held.pop((task_id, slot), None)
        if held is not None and held[0].task.alerts is not None:
            self._alert(held[0], held[0].task.alerts, held[1])

    def _alert(self, end: RunEnd, alerts: Alerts, rid: str | None) -> None:
        if end.status not in FAILURES and end.status is not RunStatus.SUCCESS:
            return
        events = self._events(end, alerts)
        hooks = [(event, command) for event in events
                 if (command := getattr(alerts, _HOOK_KEYS[event])) is not None]
        webhook = [e for e in events if alerts.webhook and e in alerts.webhook_events]
        if not (hooks or webhook or alerts.ping_url):
            return
        tail = self._log_tail(end.run_id)
        for event, command in hooks:
            self._spawn(end, event, command, tail, alerts.hook_timeout)
        if alerts.webhook:
            for event in webhook:
                body = json.dumps(webhook_body(end, event, self.node, tail)).encode()
                self._send(end.task.id, end.run_id, f"webhook ({event})", alerts.webhook, body,
                           alerts.hook_timeout, {"Content-Type": "application/json"},
                           lane="webhook")
        if alerts.ping_url:
            import uuid

            failed = end.status in FAILURES
            url = ping_url(alerts.ping_url, "fail" if failed else "", rid or str(uuid.uuid4()))
            self._send(end.task.id, end.run_id, "ping /fail" if failed else "ping", url, tail,
                       alerts.hook_timeout, {"Content-Type": "text/plain; charset=utf-8"},
                       lane="ping")

    def _events(self, end: RunEnd, alerts: Alerts) -> list[str]:
        """Which of failure, recovery, success this end is (see the module docstring)."""
        if end.status in FAILURES:
            if alerts.notify is Notify.EVERY:
                return ["failure"]
            previous = self._previous(end)
            return ["failure"] if previous is None or previous is RunStatus.SUCCESS else []
        needs_previous = alerts.on_recovery is not None or (
            alerts.webhook is not None and "recovery" in alerts.webhook_events)
        if needs_previous and self._previous(end) in FAILURES:
            return ["recovery", "success"]
        return ["success"]

    def _previous(self, end: RunEnd) -> RunStatus | None:
        """The status of the task's previous counted run (None: it has none).
        A store that cannot tell counts as none: a failure then alerts
        rather than stays silent."""
        node = self.node if self.store.clustered and end.task.scope is Scope.NODE else None
        try:
            runs = self.store.ended_before(end.task.id, end.run_id, node=node,
                                           limit=PREVIOUS_LOOKBACK)
        except JobctlError as e:
            self.report(Event("error", self.now(), task_id=end.task.id, run_id=end.run_id,
                              message=f"alerts: could not read the previous run: {e}"))
            return None
        earlier = end.attempt  # attempts still to pass over, newest first
        for run in runs:
            # an earlier attempt of this same slot is not a previous run
            if end.scheduled_for is not None and run.scheduled_for == end.scheduled_for:
                continue
            # nor of this same `run-now` (no slot): its attempts 1..k-1 ended just before
            if (end.scheduled_for is None and run.scheduled_for is None
                    and 1 < earlier and run.attempt == earlier - 1):
                earlier -= 1
                continue
            return run.status
        return None

    def _log_tail(self, run_id: int) -> bytes:
        path = self.store.log_dir / f"{run_id}.log"
        try:
            with open(path, "rb") as f:
                f.seek(0, 2)
                size = f.tell()
                f.seek(max(0, size - LOG_TAIL_MAX))
                return f.read(LOG_TAIL_MAX)
        except OSError:
            return b""

    # -- hook commands ---------------------------------------------------------------

    def _spawn(self, end: RunEnd, event: str, command: HookCommand, tail: bytes,
               timeout: float) -> None:
        key = _HOOK_KEYS[event]
        argv = build_argv(command if isinstance(command, str) else None,
                          command if isinstance(command, tuple) else None, self.settings.shell)
        env = hook_env(self.env, end, event, task_env(end.task, self.settings))
        log = self.store.log_dir / f"{end.run_id}.log"
        header = f"\n[jobctl: {key} hook, {self.now().isoformat(timespec='seconds')}]\n"
        try:
            proc = spawn_hook(argv, env, cwd=end.task.cwd, stdin=tail,
                              output=log if log.parent.is_dir() else None, header=header)
        except SpawnError as e:
            self._failed(end.task.id, end.run_id, f"{key} hook: {e}")
            return
        mono = self.monotonic()
        self.hooks.append(_Hook(end.task.id, end.run_id, key, proc, timeout, mono + timeout))

    def hold(self) -> None:
        """The runner is about to spawn a batch: deliveries not yet begun wait."""
        self.deliveries.go.clear()

    def release(self) -> None:
        """The batch is spawned: deliveries go on."""
        self.deliveries.go.set()

    def tick(self) -> None:
        """Reap hooks that exited, stop those past their timeout, and report
        the outcomes of deliveries that finished."""
        if not self.hooks and not self.group_stops and not self.deliveries.pending:
            return  # the common case, on every step of the runner's loop
        mono = self.monotonic()
        grace = self.settings.kill_grace
        keep = []
        for hook in self.hooks:
            code = hook.proc.poll()
            if code is None:
                if hook.stopper is None and mono >= hook.deadline:
                    hook.stopper = GroupStopper(hook.proc.pgid, grace, mono, proc=hook.proc)
                elif hook.stopper is not None:
                    hook.stopper.step(mono)
                keep.append(hook)
                continue
            if hook.stopper is not None:
                if not hook.stopper.done:
                    self.group_stops.append(hook.stopper)
                self._failed(hook.task_id, hook.run_id, f"{hook.key} hook " + (
                    hook.stopped_why or f"timed out after {hook.timeout:g}s and was stopped"))
            elif code != 0:
                self._failed(hook.task_id, hook.run_id, f"{hook.key} hook {describe_code(code)}")
        self.hooks = keep
        self.group_stops = [s for s in self.group_stops if not s.step(mono)]
        for outcome in self.deliveries.take():
            if outcome.error is not None and not self.abandoned:
                self._failed(outcome.task_id, outcome.run_id, f"{outcome.what}: {outcome.error}")

    def next_wake(self, mono: float) -> float | None:
        """Seconds until a hook's timeout or SIGKILL is due, or the next
        look at hooks and deliveries while some are going; None when idle."""
        if self.idle():
            return None
        wakes = [0.1]  # reap soon: a hook has no pipe whose EOF would wake the loop
        for hook in self.hooks:
            wakes.append(hook.deadline - mono if hook.stopper is None
                         else (hook.stopper.kill_at or mono) - mono)
        return max(0.0, min(wakes))

    def idle(self) -> bool:
        """No hook is running (nor a group owed its SIGKILL), and no delivery pending."""
        return not self.hooks and not self.group_stops and (
            self.deliveries.pending == 0 or self.abandoned)

    def stop_all(self, why: str = "the runner stopped (shutdown_grace)") -> None:
        """Stop every hook still running (a runner's shutdown deadline passed)."""
        mono = self.monotonic()
        for hook in self.hooks:
            if hook.stopper is None:
                hook.stopper = GroupStopper(hook.proc.pgid, self.settings.kill_grace, mono,
                                            proc=hook.proc)
                hook.deadline = mono
                hook.stopped_why = f"stopped: {why} before it ended"

    def kill_all(self) -> None:
        """SIGKILL every hook left, report what is left undelivered, and give
        up on it (the process is ending)."""
        self.tick()
        for hook in self.hooks:
            hook.proc.kill()
            hook.proc.poll()
            self._failed(hook.task_id, hook.run_id,
                         f"{hook.key} hook killed: jobctl stopped before it ended")
        self.hooks = []
        for stopper in self.group_stops:
            stopper.kill()
        self.group_stops = []
        if self.deliveries.pending and not self.abandoned:
            self.report(Event("hook_failed", self.now(), message=(
                f"{self.deliveries.pending} webhook/ping deliveries abandoned: jobctl stopped")))
        self.abandoned = True

    def wait(self, timeout: float, sleep: Callable[[float], None] = time.sleep,
             stop: Callable[[], bool] = lambda: False) -> None:
        """Block until idle (`run-now`, before it exits); past `timeout`
        seconds, or once `stop()` (a signal to run-now), stop what is left."""
        end = self.monotonic() + timeout
        stopping = False
        while True:
            self.tick()
            if self.idle():
                return
            if not stopping and stop():
                # Ctrl-C must not wait out a hook's timeout: stop the hooks
                # now (their grace, as a task's), give up on the deliveries
                stopping = True
                self.stop_all("jobctl run-now was stopped by a signal")
                end = min(end, self.monotonic() + self.settings.kill_grace + 0.5)
                if not self.hooks:
                    end = self.monotonic()
            if self.monotonic() >= end:
                self.kill_all()
                return
            sleep(0.05)

    def child_pids(self) -> set[int]:
        """The pids of hook processes not reaped yet."""
        return {hook.proc.pid for hook in self.hooks}

    # -- deliveries ------------------------------------------------------------------

    def _send(self, task_id: str, run_id: int, what: str, url: str, body: bytes | None,
              timeout: float, headers: Mapping[str, str] | None = None, *, lane: str) -> None:
        if self.abandoned:
            return

        def job() -> str | None:
            return deliver(url, body, timeout, headers or {})

        self.deliveries.submit(job, task_id, run_id, what, f"{task_id} {lane}")

    def _failed(self, task_id: str, run_id: int, message: str) -> None:
        now = self.now()
        self.report(Event("hook_failed", now, task_id=task_id, run_id=run_id, message=message))
        try:
            self.store.record_hook_failure(HookFailure(task_id, run_id, now, message))
        except JobctlError as e:
            self.report(Event("error", now, task_id=task_id, run_id=run_id,
                              message=f"could not record a hook failure: {e}"))


# -- pure helpers ---------------------------------------------------------------------


def hook_env(base: Mapping[str, str], end: RunEnd, event: str,
             configured: Mapping[str, str] | None = None) -> dict[str, str]:
    """A hook's environment: `base`, the variables the config gives the task
    (`configured`: env files and env tables, as `taskenv.task_env` layers
    them; else the task's `env`), then what the run was (jobctl's variables
    last, so neither can spoof them)."""
    env = dict(base)
    env.update(end.task.env if configured is None else configured)
    code = end.exit_code
    env.update({
        "JOBCTL_TASK_ID": end.task.id,
        "JOBCTL_RUN_ID": str(end.run_id),
        "JOBCTL_RUN_STATUS": end.status.value,
        "JOBCTL_EXIT_CODE": "" if code is None or code < 0 else str(code),
        "JOBCTL_SCHEDULED_FOR": end.scheduled_for.isoformat() if end.scheduled_for else "",
        "JOBCTL_STARTED_AT": end.started.isoformat(),
        "JOBCTL_FINISHED_AT": end.finished.isoformat(),
        "JOBCTL_DURATION_S": f"{(end.finished - end.started).total_seconds():.3f}",
        "JOBCTL_EVENT": event,
    })
    return env


def webhook_body(end: RunEnd, event: str, node: str, tail: bytes) -> dict[str, object]:
    """The JSON object a webhook receives."""
    code = end.exit_code
    signal_name = None
    if code is not None and code < 0:
        import signal

        try:
            signal_name = signal.Signals(-code).name
        except ValueError:
            signal_name = f"signal {-code}"
    return {
        "event": event,
        "task_id": end.task.id,
        "run_id": end.run_id,
        "status": end.status.value,
        "exit_code": code if code is not None and code >= 0 else None,
        "signal": signal_name,
        "scheduled_for": end.scheduled_for.isoformat() if end.scheduled_for else None,
        "started_at": end.started.isoformat(),
        "finished_at": end.finished.isoformat(),
        "duration_s": round((end.finished - end.started).total_seconds(), 3),
        "node": node,
        "trigger": end.trigger.value,
        "log_tail": tail.decode("utf-8", "replace"),
    }


def ping_url(base: str, suffix: str, rid: str) -> str:
    """`base` + `/suffix` (start, fail; "" for success) with `rid` added to its query."""
    from urllib.parse import quote, urlsplit, urlunsplit

    parts = urlsplit(base)
    path = parts.path.rstrip("/") + (f"/{suffix}" if suffix else "")
    query = "&".join(q for q in (parts.query, f"rid={quote(rid)}") if q)
    return urlunsplit((parts.scheme, parts.netloc, path or "/", query, ""))


def describe_code(code: int) -> str:
    if code < 0:
        import signal

        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited {code}"


def deliver(url: str, body: bytes | None, within: float, headers: Mapping[str, str], *,
            sleep: Callable[[float], None] = time.sleep,
            clock: Callable[[], float] = time.monotonic) -> str | None:
    """Send one request (POST `body`, or GET when None), retrying with
    backoff on connection errors, timeouts and 5xx answers for up to
    `within` seconds; None once a 2xx/3xx answer came, else why not (a 4xx
    is final: trying again would not help)."""
    import http.client
    import urllib.error
    import urllib.request

    from jobctl import __version__

    end = clock() + within
    delay = RETRY_FIRST
    attempts = 0
    last = ""
    all_headers = {"User-Agent": f"jobctl/{__version__}", **headers}
    while True:
        left = end - clock()
        if left <= 0:
            break
        attempts += 1
        request = urllib.request.Request(url, data=body, headers=all_headers,
                                         method="GET" if body is None else "POST")
        try:
            with urllib.request.urlopen(request, timeout=left) as answer:
                answer.read(64 * 1024)
            return None
        except urllib.error.HTTPError as e:
            if e.code < 500:
                return f"{url} answered HTTP {e.code} {e.reason}"
            last = f"HTTP {e.code} {e.reason}"
        except urllib.error.URLError as e:
            last = str(e.reason)
        except (OSError, http.client.HTTPException) as e:
            last = str(e) or type(e).__name__
        wait = min(delay, end - clock())
        if wait <= 0:
            break
        sleep(wait)
        delay = min(delay * 2, RETRY_MAX)
    return (f"{url} not delivered after {attempts} attempt{'' if attempts == 1 else 's'} "
            f"in {within:g}s: {last or 'timed out'}")
