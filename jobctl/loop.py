"""The runner's outer loop, where the outside world comes in: signals, the
pipes of running tasks (one selector), the wall clock's fine sleep before an
instant, and the config file changing on disk. `Runner` (runner.py) does the
scheduling; this drives it.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

from jobctl.clock import Clock
from jobctl.errors import JobctlError
from jobctl.executor import reap_orphans
from jobctl.model import ScheduleSet
from jobctl.events import Reporter
from jobctl.runner import CONTROL_POLL, ConfigLoader, Runner, reload_error_event


_CONTROL = "control"  # the selector's mark for the control listener's socket


def run_forever(runner: Runner, watch: Callable[[], ScheduleSet | None] | None = None,
                on_step: Callable[[Runner], None] | None = None) -> int:
    """Run `runner` until SIGTERM/SIGINT; return the exit status (0; 75 if it
    stopped because it lost its lease).

    `watch` is polled between steps and returns a new schedule set when the
    config changed (and is valid) or None. `on_step` is called after each
    step (the metrics' liveness and next-fire snapshot).
    """
    flags = {"stop": 0, "hup": False}
    selector = selectors.DefaultSelector()
    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    selector.register(wake_r, selectors.EVENT_READ, None)
    old_fd = signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)

    # handlers only set flags; the loop acts on them
    def on_stop(_signum: int, _frame: object) -> None:
        flags["stop"] += 1

    def on_hup(_signum: int, _frame: object) -> None:
        flags["hup"] = True

    previous = {
        sig: signal.signal(sig, handler)
        for sig, handler in ((signal.SIGTERM, on_stop), (signal.SIGINT, on_stop),
                             (signal.SIGHUP, on_hup), (signal.SIGCHLD, lambda *_: None))
    }
    registered: dict[int, int] = {}
    # the control listener's socket (a shared state): (fd, identity) registered
    control: tuple[int, int] | None = None
    # As PID 1 (a container without an init) the runner inherits every
    # process a task leaves behind: it reaps those, never its own runs.
    init = os.getpid() == 1
    # a signal during a big batch stops it between two spawns
    runner.watch_stop(lambda: flags["stop"] > 0)
    try:
        runner.start()
        stops_seen = 0
        while True:
            if flags["stop"] > stops_seen:
                runner.request_stop(fast=flags["stop"] >= 2)
                stops_seen = flags["stop"]
            now = runner.clock.now()
            if flags["hup"] or watch is not None:
                new_set = watch() if watch is not None else None
                if flags["hup"] and runner.reload_config is not None:
                    try:
                        new_set = runner.reload_config()
                    except JobctlError as e:
                        runner.report_reload_error(e, now)
                flags["hup"] = False
                if new_set is not None:
                    runner.reload(new_set, now)
            runner.tick(now)
            if on_step is not None:
                on_step(runner)
            if init:
                reap_orphans(runner.child_pids())
            if runner.stopping:
                runner.shutdown_step(runner.clock.monotonic())
                if runner.drained():
                    break
            pipes = runner.pipes()
            for run_id in [r for r in registered if r not in pipes]:
                try:
                    selector.unregister(registered.pop(run_id))
                except (KeyError, ValueError):
                    pass
            for run_id, proc in pipes.items():
                if run_id not in registered:
                    try:
                        fd = proc.fileno()
                        selector.register(fd, selectors.EVENT_READ, run_id)
                        registered[run_id] = fd
                    except (KeyError, ValueError, OSError):
                        pass
            wanted = runner.control_fd()
            if wanted != control:
                if control is not None:
                    try:
                        selector.unregister(control[0])
                    except (KeyError, ValueError):
                        pass
                control = None
                if wanted is not None:
                    try:
                        selector.register(wanted[0], selectors.EVENT_READ, _CONTROL)
                        control = wanted
                    except (KeyError, ValueError, OSError):
                        pass
            wait = runner.sleep_for(runner.clock.now())
            fire_in = runner.time_to_next_fire(runner.clock.now())
            lead = runner.prepare_lead()
            precise = fire_in is not None and fire_in - lead <= wait
            if precise:
                # wake early: claim what is due, then finish with a fine
                # sleep (epoll rounds up to whole milliseconds)
                assert fire_in is not None
                wait = max(0.0, min(wait, fire_in - lead))
            for key, _ in selector.select(wait):
                if key.data is None:
                    try:
                        while wake_r.recv(4096):
                            pass
                    except OSError:
                        pass
                elif key.data is _CONTROL:
                    runner.control_woken()
                elif not runner.pump(key.data):
                    try:
                        selector.unregister(registered.pop(key.data))
                    except (KeyError, ValueError):
                        pass
            if precise and not runner.stopping:
                fire_in = runner.time_to_next_fire(runner.clock.now())
                if fire_in is not None and 0 < fire_in <= lead:
                    instant = runner.next_instant()
                    assert instant is not None
                    runner.prepare_timed(instant)
                    left = (instant - runner.clock.now()).total_seconds()
                    if left > 0:
                        try:
                            time.sleep(left)
                        except OSError:
                            # clock_nanosleep refused (EINVAL under libfaketime,
                            # as on a machine whose clock is being faked):
                            # epoll's relative timeout waits as well (again if
                            # a pipe woke it early: a fire is never early)
                            while left > 0:
                                selector.select(left)
                                left = (instant - runner.clock.now()).total_seconds()
                    if flags["stop"]:
                        continue  # stopping: start nothing new (finish() records them)
                    runner.spawn_prepared()
        return runner.exit_status()
    finally:
        try:
            if runner.anchor is not None:
                runner.finish()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(old_fd)
            selector.close()
            wake_r.close()
            wake_w.close()



class ConfigWatcher:
    """Notices a changed config file and loads it once it has stopped changing.

    An editor's non-atomic save passes through a truncated or half-written
    file; requiring the same (size, mtime, inode) on two looks at least
    CONTROL_POLL apart, and never taking an empty file, keeps those out.
    """

    def __init__(self, path: Path, load: ConfigLoader, clock: Clock, report: Reporter) -> None:
        self.path = path
        self.load = load
        self.clock = clock
        self.report = report
        self.loaded = self._signature()
        self.pending: tuple[int, int, int] | None = None
        self.next_look = 0.0

    def _signature(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_size, st.st_mtime_ns, st.st_ino)

    def __call__(self) -> ScheduleSet | None:
        mono = self.clock.monotonic()
        if mono < self.next_look:
            return None
        self.next_look = mono + CONTROL_POLL
        current = self._signature()
        if current is None or current == self.loaded or current[0] == 0:
            self.pending = None
            return None
        if current != self.pending:
            self.pending = current  # changed since the last look: wait for it to settle
            return None
        self.loaded, self.pending = current, None
        try:
            return self.load()
        except JobctlError as e:
            self.report(reload_error_event(e, self.clock.now()))
            return None
