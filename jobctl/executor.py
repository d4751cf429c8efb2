"""Start task processes and carry their output to a bounded log file.

This is the only module in jobctl that imports subprocess. Each task runs in
its own session (so its process group id equals its pid, and signalling the
group reaches every grandchild), with stdin from /dev/null and stdout and
stderr interleaved into one non-blocking pipe. The runner waits on many
`RunningProcess` pipes with `selectors` and calls `pump()` on the ready ones;
`run-now` calls `wait()` on one.

Processes start with `os.posix_spawn` (glibc's vfork-style clone), which costs
about a tenth less per start than `subprocess.Popen` with the same options:
that matters when a thousand tasks are due at the same second. A task with a
`cwd` goes through Popen, because posix_spawn cannot change directory here.
"""

from __future__ import annotations

import errno
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from jobctl import procinfo
from jobctl.errors import JobctlError
from jobctl.model import RunAs

_CHUNK = 64 * 1024
# One pump() reads at most this much, so one noisy task cannot starve the
# others sharing the runner's selector loop.
_PUMP_LIMIT = 1024 * 1024
# close() reads at most this much: enough for anything already sitting in the
# pipe, but finite when a grandchild keeps writing.
_DRAIN_LIMIT = 4 * 1024 * 1024
# How long wait() blocks in one select(): the bound on how late it notices an
# exit while a grandchild still holds the pipe open.
_WAIT_STEP = 0.05
# After SIGKILL a process dies at once unless stuck in the kernel; don't hang
# on one that is.
_KILL_WAIT = 5.0
# How often a blocking stop of another process's group looks whether it is empty.
_GROUP_POLL = 0.02


class SpawnError(JobctlError):
    """The program could not be started; the message says what and why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def build_argv(command: str | None, argv: Sequence[str] | None, shell: str) -> list[str]:
    """The argv to exec: `[shell, "-c", command]` for a command string, else `argv`."""
    if command is not None:
        return [shell, "-c", command]
    if argv is not None:
        return list(argv)
    raise ValueError("a task needs a command or an argv")


def build_env(
    base: Mapping[str, str],
    task_env: Mapping[str, str],
    *,
    task_id: str,
    run_id: int,
    scheduled_for: str,
    trigger: str,
    attempt: int = 1,
    extra: Mapping[str, str] | None = None,
    state_id: str = "",
) -> dict[str, str]:
    """The environment of a run: `base`, then the task's env, then `extra`
    (what a plugin worker needs), then JOBCTL_TASK_ID, _RUN_ID,
    _SCHEDULED_FOR, _TRIGGER, _ATTEMPT and _STATE_ID (the state file's id;
    left out when empty, even if `base` has one).

    jobctl's own variables come last so a task's env cannot spoof which run it is.
    """
    env = dict(base)
    env.update(task_env)
    if extra:
        env.update(extra)
    env["JOBCTL_TASK_ID"] = task_id
    env["JOBCTL_RUN_ID"] = str(run_id)
    env["JOBCTL_SCHEDULED_FOR"] = scheduled_for
    env["JOBCTL_TRIGGER"] = trigger
    env["JOBCTL_ATTEMPT"] = str(attempt)
    if state_id:
        env["JOBCTL_STATE_ID"] = state_id
    else:
        env.pop("JOBCTL_STATE_ID", None)
    return env


class LogSink:
    """A log file that never grows past about `max_bytes`.

    Output goes straight to the file (flushed, so `logs --follow` sees it
    live) while it fits. Once it would not, the file keeps the first
    `max_bytes // 2` bytes and memory keeps only the latest
    `max_bytes - max_bytes // 2`; `close()` appends a marker line saying how
    many bytes were cut, then that tail. `cut` counts the bytes dropped so far.
    Memory stays bounded by the tail size whatever is written.
    """

    def __init__(self, path: Path, max_bytes: int, *, lazy: bool = False) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, not {max_bytes}")
        self.path = path
        self.cut = 0
        self._max = max_bytes
        self._head = max_bytes // 2
        self._tail_max = max_bytes - self._head
        self._size = 0  # bytes in the file
        self._tail: bytearray | None = None  # None until the limit is passed
        self._closed = False
        self._file: BinaryIO | None = None
        if not lazy:
            self.open()

    def open(self) -> None:
        """Create the file now (a lazy sink creates it on first output, which
        keeps a file-system round trip off the path between a fire and its
        process start)."""
        if self._file is None:
            from jobctl.perms import make_private_dirs, open_private

            make_private_dirs(self.path.parent)
            # w+b: on overflow the bytes past the head are read back into memory.
            # 0600: a run's output is its owner's business
            fd = open_private(self.path, os.O_RDWR | os.O_TRUNC)
            self._file = open(fd, "w+b")

    def write(self, data: bytes) -> None:
        if self._closed:
            raise ValueError("write to a closed LogSink")
        if not data:
            return
        if self._file is None:
            self.open()
        assert self._file is not None
        if self._tail is None:
            if self._size + len(data) <= self._max:
                self._file.write(data)
                self._file.flush()
                self._size += len(data)
                return
            self._start_tail()
            if self._size < self._head:
                # Top the head up from this write.
                room = self._head - self._size
                self._file.write(data[:room])
                self._file.flush()
                self._size += room
                data = data[room:]
        self._append_tail(data)

    def close(self) -> None:
        if self._closed:
            return
        try:
            self.open()
        except OSError:
            self._closed = True
            return
        self._closed = True
        assert self._file is not None
        try:
            if self._tail is not None:
                marker = f"\n[jobctl: {self.cut} bytes cut from the middle of this log]\n"
                self._file.write(marker.encode())
                self._file.write(self._tail)
                self._tail = bytearray()
        finally:
            self._file.close()

    def _start_tail(self) -> None:
        assert self._file is not None
        self._tail = bytearray()
        if self._size > self._head:
            self._file.seek(self._head)
            beyond = self._file.read()
            self._file.seek(self._head)
            self._file.truncate()
            self._size = self._head
            self._append_tail(beyond)
        self._file.flush()

    def _append_tail(self, data: bytes) -> None:
        tail = self._tail
        assert tail is not None
        if len(data) >= self._tail_max:
            # Replace rather than append, so one huge write never sits in
            # the buffer whole.
            self.cut += len(tail) + len(data) - self._tail_max
            tail[:] = data[len(data) - self._tail_max:]
            return
        tail += data
        excess = len(tail) - self._tail_max
        if excess > 0:
            self.cut += excess
            del tail[:excess]


class OutputEcho(Protocol):
    """Where a run's output is copied as it is read: a binary stream
    (`sys.stdout.buffer` for run-now), or a `jobctl.echo.LineEcho` (the
    runner), whose `end()` is called when the pipe is closed."""

    def write(self, data: bytes, /) -> object: ...

    def flush(self) -> object: ...


@dataclass(frozen=True)
class Launch:
    """Everything needed to start one run's process."""

    argv: list[str]
    env: dict[str, str]
    cwd: str | None
    log_path: Path
    max_log_bytes: int
    echo: OutputEcho | None = None
    """If set, output is also written here (e.g. `sys.stdout.buffer` for run-now)."""
    lazy_log: bool = False
    """Create the log file on first output (or at close) instead of before the spawn."""
    user: RunAs | None = None
    """Run as this user (its uid, primary gid and groups); None: as the runner's."""


class RunningProcess:
    """A started task process, its own process group, and its output pipe.

    Identity for a later runner: (`boot`, `pid`, `start_token`), see
    `procinfo.is_same_process`. `fileno()` is the pipe's read end, so many of
    these can share one selector; call `pump()` when it is readable, `poll()`
    for the exit, and `close()` once after the exit.
    """

    def __init__(
        self,
        pid: int,
        pipe_fd: int,
        sink: LogSink,
        echo: OutputEcho | None,
        *,
        started_monotonic: float,
        popen: subprocess.Popen[bytes] | None = None,
    ) -> None:
        self.pid = pid
        # A new session makes the child a session and group leader.
        self.pgid = pid
        # Read by identify(), before the child is reaped (while its pid cannot
        # be reused), but off the path from a fire to the next spawn.
        self.start_token: str | None = None
        self._identified = False
        self.boot = procinfo.boot_id()
        self.started_monotonic = started_monotonic
        # Set when Popen started it (a task with a cwd): it then owns the reaping.
        self._popen = popen
        self._returncode: int | None = None
        self._fd = pipe_fd
        os.set_blocking(self._fd, False)
        self._sink: LogSink | None = sink
        self.log_error: str | None = None
        """Why the log is incomplete (a full disk, say), or None."""
        self._echo = echo
        self._eof = False
        self._closed = False

    def identify(self) -> str | None:
        """Read (once) and return the child's start-time token."""
        if not self._identified:
            self._identified = True
            self.start_token = procinfo.process_start(self.pid)
        return self.start_token

    def fileno(self) -> int:
        """The read end of the output pipe; ValueError once closed, like a file."""
        if self._closed:
            raise ValueError("fileno of a closed RunningProcess")
        return self._fd

    def pump(self) -> bool:
        """Move what output is available now to the log; False once at EOF."""
        if self._closed or self._eof:
            return False
        self._read(_PUMP_LIMIT)
        return not self._eof

    def poll(self) -> int | None:
        """The exit code (negative: killed by that signal), or None if running."""
        if self._popen is not None:
            return self._popen.poll()
        if self._returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                # Reaped elsewhere (SIGCHLD set to SIG_IGN by an embedder):
                # the status is lost; Popen reports 0 in this case too.
                self._returncode = 0
            else:
                if pid == self.pid:
                    self._returncode = os.waitstatus_to_exitcode(status)
        return self._returncode

    def signal_group(self, sig: int) -> None:
        """Send `sig` to the whole process group (the child and its children)."""
        try:
            os.killpg(self.pgid, sig)
        except ProcessLookupError:
            pass

    def wait(self, timeout: float | None = None) -> int | None:
        """Block until the child exits, logging its output meanwhile.

        Returns the exit code, or None if `timeout` seconds pass first.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            if not (self._closed or self._eof):
                selector.register(self._fd, selectors.EVENT_READ)
            while True:
                code = self.poll()
                if code is not None:
                    # What the child wrote before exiting is in the pipe now.
                    self.pump()
                    return code
                step = _WAIT_STEP
                if deadline is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return None
                    step = min(step, remaining)
                if selector.get_map():
                    # Short steps: a grandchild may hold the pipe open after
                    # the child exits, so EOF is no sign of exit.
                    selector.select(step)
                    if not self.pump():
                        selector.unregister(self._fd)
                else:
                    self._sleep_until_exit(step)

    def close(self) -> None:
        """Log what output is left without blocking, then close pipe and log."""
        if self._closed:
            return
        try:
            if not self._eof:
                # A grandchild may keep the pipe open (and even keep writing)
                # long after the child exits: take what is there, then stop.
                self._read(_DRAIN_LIMIT)
        finally:
            self._closed = True
            # a line echo hands on a last line that had no newline
            end = getattr(self._echo, "end", None)
            if end is not None:
                try:
                    end()
                except (OSError, ValueError):
                    pass
            try:
                os.close(self._fd)
            finally:
                if self._sink is not None:
                    try:
                        self._sink.close()
                    except OSError as e:
                        self._log_failed(e)

    def _sleep_until_exit(self, step: float) -> None:
        if self._popen is not None:
            try:
                self._popen.wait(step)
            except subprocess.TimeoutExpired:
                pass
            return
        # No pipe left to wait on: poll with a short, growing delay, as Popen does.
        end = time.monotonic() + step
        delay = 0.0005
        while self.poll() is None:
            remaining = end - time.monotonic()
            if remaining <= 0:
                return
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, _WAIT_STEP)

    def _read(self, limit: int) -> None:
        taken = 0
        while taken < limit:
            try:
                chunk = os.read(self._fd, min(_CHUNK, limit - taken))
            except BlockingIOError:
                return
            if not chunk:
                self._eof = True
                return
            taken += len(chunk)
            if self._sink is not None:
                try:
                    self._sink.write(chunk)
                except OSError as e:
                    # keep reading (a task blocked on a full pipe would hang),
                    # but stop logging; the run's record says why
                    self._log_failed(e)
            self._write_echo(chunk)

    def _log_failed(self, error: OSError) -> None:
        sink, self._sink = self._sink, None
        if self.log_error is None and sink is not None:
            self.log_error = f"log {sink.path} incomplete: {_reason(error)}"
        if sink is not None:
            try:
                sink.close()
            except OSError:
                pass

    def _write_echo(self, chunk: bytes) -> None:
        if self._echo is None:
            return
        try:
            self._echo.write(chunk)
            self._echo.flush()
        except (OSError, ValueError):
            # The terminal went away (e.g. `run-now | head`); the log must
            # still get everything, so stop echoing rather than fail the run.
            self._echo = None


def spawn(launch: Launch) -> RunningProcess:
    """Start `launch.argv` in a new session, output going to its log.

    Raises SpawnError, with a plain reason, if it cannot start.
    """
    if not launch.argv:
        raise SpawnError("cannot start an empty command")
    program = launch.argv[0]
    if launch.cwd is not None and not os.path.isdir(launch.cwd):
        if os.path.exists(launch.cwd):
            raise SpawnError(f"cwd '{launch.cwd}' is not a directory")
        raise SpawnError(f"cwd '{launch.cwd}' does not exist")
    if launch.user is not None and launch.cwd is not None:
        _check_enterable(launch.cwd, launch.user)
    try:
        sink = LogSink(launch.log_path, launch.max_log_bytes, lazy=launch.lazy_log)
    except OSError as exc:
        raise SpawnError(f"cannot open log '{launch.log_path}': {_reason(exc)}") from exc
    try:
        # posix_spawn cannot change the user either
        if launch.cwd is None and launch.user is None and _posix_spawn_usable():
            try:
                pid, read_fd = _posix_spawn(launch)
            except NotImplementedError:
                _use_popen_from_now_on()  # a C library without POSIX_SPAWN_SETSID
            else:
                return RunningProcess(pid, read_fd, sink, launch.echo,
                                      started_monotonic=time.monotonic())
        popen = _popen(launch)
    except OSError as exc:
        sink.close()
        if launch.cwd is not None and exc.filename == launch.cwd:
            raise SpawnError(f"cannot use cwd '{launch.cwd}': {_reason(exc)}") from exc
        as_user = f" as user '{launch.user.name}'" if launch.user is not None else ""
        raise SpawnError(f"cannot start '{program}'{as_user}: {_reason(exc)}") from exc
    except ValueError as exc:
        # e.g. a NUL byte in an argument or env value.
        sink.close()
        raise SpawnError(f"cannot start '{program}': {exc}") from exc
    except BaseException:
        sink.close()
        raise
    assert popen.stdout is not None
    # The RunningProcess owns the pipe's fd from here; the file object must
    # not close it when collected.
    read_fd = os.dup(popen.stdout.fileno())
    popen.stdout.close()
    return RunningProcess(popen.pid, read_fd, sink, launch.echo,
                          started_monotonic=time.monotonic(), popen=popen)


def _check_enterable(cwd: str, user: RunAs) -> None:
    """SpawnError unless `user` may enter `cwd`: Popen changes directory
    while still root, before it switches user, so a task would otherwise
    start in a folder it cannot even read. Judged by the mode bits of each
    folder on the way (ACLs are not consulted)."""
    if user.uid == 0:
        return
    path = os.path.realpath(cwd)
    parts = path.split(os.sep)
    for i in range(1, len(parts) + 1):
        folder = os.sep.join(parts[:i]) or os.sep
        try:
            st = os.stat(folder)
        except OSError as exc:
            raise SpawnError(f"cannot use cwd '{cwd}': {_reason(exc)}") from exc
        if st.st_uid == user.uid:
            bit = 0o100
        elif st.st_gid in user.groups or st.st_gid == user.gid:
            bit = 0o010
        else:
            bit = 0o001
        if not st.st_mode & bit:
            raise SpawnError(f"cwd '{cwd}' is not accessible to user '{user.name}': "
                             f"'{folder}' (mode {st.st_mode & 0o7777:04o}) does not let it in")


def _popen(launch: Launch) -> subprocess.Popen[bytes]:
    # No preexec_fn: it would turn off the vfork fast path, and a big
    # runner must not fork() its whole address space per job. (A task with
    # a `user` forks anyway: CPython uses vfork only without a user switch.)
    user = launch.user
    return subprocess.Popen(
        launch.argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=launch.cwd,
        env=launch.env,
        start_new_session=True,
        close_fds=True,
        bufsize=0,
        user=user.uid if user is not None else None,
        group=user.gid if user is not None else None,
        extra_groups=list(user.groups) if user is not None else None,
    )


# Lazily set up for posix_spawn: /dev/null for every child's stdin, and
# whether the standard descriptors are all open (else a new pipe could land
# on 0-2 and dup2 onto itself would keep its close-on-exec flag).
_devnull_fd: int | None = None
_spawn_ok: bool | None = None
# Popen restores these in the child; Python ignores SIGPIPE (and SIGXFSZ),
# and a task must see the defaults, as it would under cron.
_DEFAULT_SIGNALS = tuple(getattr(signal, name) for name in ("SIGPIPE", "SIGXFSZ")
                         if hasattr(signal, name))


def _use_popen_from_now_on() -> None:
    global _spawn_ok
    _spawn_ok = False


def _posix_spawn_usable() -> bool:
    global _spawn_ok, _devnull_fd
    if _spawn_ok is None:
        # setsid needs glibc's POSIX_SPAWN_SETSID; elsewhere Popen does it all.
        _spawn_ok = sys.platform == "linux" and hasattr(os, "POSIX_SPAWN_DUP2")
        for fd in (0, 1, 2):
            try:
                os.fstat(fd)
            except OSError:
                _spawn_ok = False
        if _spawn_ok:
            _devnull_fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            _close_inherited_fds()
    return _spawn_ok


def _close_inherited_fds() -> None:
    """Mark every descriptor above 2 close-on-exec, as Popen's close_fds
    would close them: whatever started jobctl may have left some inheritable,
    and tasks must not get them. Descriptors Python opens later are
    close-on-exec already (PEP 446)."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(3, 256))
    for fd in fds:
        if fd > 2:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass


def _executable(program: str, env: Mapping[str, str]) -> str:
    """The file Popen would run for `program`: searched in the task's own
    PATH (not jobctl's), afresh each time, since a program may be installed
    while the runner runs (a few stat calls)."""
    if "/" in program:
        return program
    denied = None
    path = env.get("PATH")
    for directory in os.get_exec_path({} if path is None else {"PATH": path}):
        candidate = os.path.join(directory, program)
        if os.access(candidate, os.X_OK):
            if os.path.isfile(candidate):
                return candidate
        elif os.path.isfile(candidate):
            denied = candidate
    if denied is not None:
        # as execvp: a file found but not executable is "permission denied"
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), denied)
    raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)


def _posix_spawn(launch: Launch) -> tuple[int, int]:
    """Start the process; return its pid and the read end of its output pipe."""
    assert _devnull_fd is not None
    path = _executable(launch.argv[0], launch.env)
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    try:
        pid = os.posix_spawn(
            path, launch.argv, launch.env,
            file_actions=[(os.POSIX_SPAWN_DUP2, _devnull_fd, 0),
                          (os.POSIX_SPAWN_DUP2, write_fd, 1),
                          (os.POSIX_SPAWN_DUP2, write_fd, 2)],
            setsid=True, setsigdef=_DEFAULT_SIGNALS, setsigmask=(),
        )
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    return pid, read_fd


class HookProcess:
    """A hook command's process (see `spawn_hook`): its own session and
    process group, like a run's, but no pipe to pump: its output goes
    straight to a file."""

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen
        self.pid = popen.pid
        self.pgid = popen.pid

    def poll(self) -> int | None:
        """The exit code (negative: killed by that signal), or None if running."""
        return self._popen.poll()

    def kill(self) -> None:
        """SIGKILL the whole group now."""
        try:
            os.killpg(self.pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def spawn_hook(argv: Sequence[str], env: Mapping[str, str], *, cwd: str | None,
               stdin: bytes, output: Path | None, header: str = "") -> HookProcess:
    """Start a hook command in a new session, without waiting for it: `stdin`
    (a run's log tail) is its standard input, read from an unlinked
    temporary file so that writing it never blocks, and its output is
    appended (after `header`) to `output` (a 0600 file), or dropped.

    Raises SpawnError, with a plain reason, if it cannot start.
    """
    import tempfile

    if not argv:
        raise SpawnError("cannot start an empty command")
    if cwd is not None and not os.path.isdir(cwd):
        raise SpawnError(f"cwd '{cwd}' does not exist or is not a directory")
    out_fd: int | None = None
    with tempfile.TemporaryFile() as source:
        source.write(stdin)
        source.seek(0)
        try:
            if output is not None:
                from jobctl.perms import open_private

                try:
                    out_fd = open_private(output, os.O_WRONLY | os.O_APPEND)
                    if header:
                        os.write(out_fd, header.encode("utf-8", "replace"))
                except OSError:
                    out_fd = None  # the hook still runs; its output is lost
            popen = subprocess.Popen(
                list(argv), stdin=source,
                stdout=subprocess.DEVNULL if out_fd is None else out_fd,
                stderr=subprocess.STDOUT, cwd=cwd, env=dict(env),
                start_new_session=True, close_fds=True,
            )
        except OSError as exc:
            raise SpawnError(f"cannot start '{argv[0]}': {_reason(exc)}") from exc
        except ValueError as exc:
            raise SpawnError(f"cannot start '{argv[0]}': {exc}") from exc
        finally:
            if out_fd is not None:
                os.close(out_fd)
    return HookProcess(popen)


# Detached children not yet reaped: polled on the next spawn_detached, so
# they neither linger as zombies nor warn when their Popen is collected.
_detached: list[subprocess.Popen[bytes]] = []


def spawn_detached(argv: Sequence[str], env: Mapping[str, str]) -> int:
    """Start `argv` in a new session with no stdin or output, without waiting
    for it; return its pid.

    It is out of reach of signals to the caller's process group, so it
    outlives a caller that is stopped (a timed-out plugin worker, say).
    Raises SpawnError if it cannot start.
    """
    if not argv:
        raise SpawnError("cannot start an empty command")
    _detached[:] = [p for p in _detached if p.poll() is None]
    try:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=dict(env),
            start_new_session=True,
            close_fds=True,
        )
    except OSError as exc:
        raise SpawnError(f"cannot start '{argv[0]}': {_reason(exc)}") from exc
    except ValueError as exc:
        raise SpawnError(f"cannot start '{argv[0]}': {exc}") from exc
    _detached.append(popen)
    return popen.pid


def reap_orphans(own: Collection[int]) -> list[int]:
    """Reap this process's exited children that are not in `own`; return
    their pids.

    For a runner that is PID 1 (a container without an init): processes
    that a task left behind are reparented to it when their parent exits,
    and nobody else will reap them. `own` holds the pids of the runner's own
    run processes, which are never touched here: their exit statuses belong
    to `RunningProcess.poll`. A cheap peek (waitid with WNOWAIT) comes
    first, so /proc is only scanned while some child has exited.
    """
    try:
        peek = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return []  # no children at all
    if peek is None:
        return []
    reaped = []
    for pid in procinfo.zombie_children(os.getpid()):
        if pid in own:
            continue
        # a zombie keeps its pid until its parent (us) reaps it: this pid
        # cannot have become someone else meanwhile
        try:
            got, _status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            continue
        if got == pid:
            reaped.append(pid)
    return reaped


class GroupStopper:
    """Stops one process group, the one way jobctl does it: SIGTERM to the
    whole group at once, then SIGKILL to what is left of it once `grace`
    seconds have passed.

    It does not block: whoever drives it calls `step(now)` (monotonic
    seconds) when it wakes, and wakes no later than `kill_at`. The runner
    keeps one per run it stops (a timeout, a replace, a shutdown) and per
    group it still owes a SIGKILL; `stop_group` and `stop_process_group` are
    the blocking forms.

    With `proc` (our own child, the group's leader), the group counts as
    alive while the child runs, without reading /proc; once the child has
    exited, or for another process's group, while `procinfo.group_alive`
    finds a live member. A group that is gone, or that we may not signal,
    needs nothing more: the stopper is done.
    """

    def __init__(self, pgid: int, grace: float, now: float, *,
                 proc: RunningProcess | HookProcess | None = None) -> None:
        self.pgid = pgid
        self.proc = proc
        self.kill_at: float | None = now + grace
        """When SIGKILL follows (monotonic); None once nothing is left to do."""
        if not self._signal(signal.SIGTERM):
            self.kill_at = None

    @property
    def done(self) -> bool:
        return self.kill_at is None

    def step(self, now: float) -> bool:
        """SIGKILL the group if it outlived its grace; True once done."""
        if self.kill_at is None:
            return True
        if self._empty():
            self.kill_at = None
        elif now >= self.kill_at:
            self.kill()
        return self.kill_at is None

    def kill(self) -> None:
        """SIGKILL what is left of the group now, grace or not."""
        self._signal(signal.SIGKILL)
        self.kill_at = None

    def _empty(self) -> bool:
        if self.proc is not None and self.proc.poll() is None:
            return False
        return not procinfo.group_alive(self.pgid)

    def _signal(self, sig: int) -> bool:
        try:
            os.killpg(self.pgid, sig)
        except (ProcessLookupError, PermissionError):
            return False
        return True


def stop_group(
    proc: RunningProcess,
    grace: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> int | None:
    """Stop our own child's group (a `GroupStopper`, blocking) and return
    the child's exit code: SIGTERM, `grace` seconds for the child to exit
    (its output is logged meanwhile), then SIGKILL to the group, grandchildren
    included, whether or not the child is gone.

    None means the child survived even SIGKILL for a few seconds (stuck in the
    kernel).
    """
    stopper = GroupStopper(proc.pgid, grace, clock(), proc=proc)
    while proc.poll() is None and not stopper.step(clock()):
        proc.pump()
        assert stopper.kill_at is not None
        sleep(max(0.0, min(_WAIT_STEP, stopper.kill_at - clock())))
    # Even after the child exits, a grandchild may have ignored SIGTERM.
    stopper.kill()
    return proc.wait(_KILL_WAIT)


def stop_process_group(
    pgid: int,
    grace: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Stop a group that is not our child's (a `GroupStopper`, blocking):
    SIGTERM, then SIGKILL if a member is still alive after `grace` seconds.
    Returns once the group is empty or has been sent SIGKILL."""
    stopper = GroupStopper(pgid, grace, clock())
    while not stopper.step(clock()):
        assert stopper.kill_at is not None
        sleep(max(0.0, min(_GROUP_POLL, stopper.kill_at - clock())))


def _reason(exc: OSError) -> str:
    # "No such file or directory" -> "no such file or directory", mid-sentence.
    text = exc.strerror or str(exc)
    return text[:1].lower() + text[1:]


def run_editor(editor: str, path: Path, env: Mapping[str, str]) -> int:
    """Run `editor` on `path` in this terminal; its exit status.

    Through the shell, as git does, so `EDITOR="code --wait"` works. Ctrl-C
    belongs to the editor meanwhile: jobctl waits (with a handler, not
    SIG_IGN, which the editor would inherit).
    """

    def wait_for_editor(_signum: int, _frame: object) -> None:
        pass

    previous: dict[int, Any] = {}
    try:
        for sig in (signal.SIGINT, signal.SIGQUIT):
            previous[sig] = signal.signal(sig, wait_for_editor)
    except ValueError:
        pass  # not the main thread: leave signals alone
    try:
        argv = ["/bin/sh", "-c", f'{editor} "$@"', editor, str(path)]
        return subprocess.run(argv, env=dict(env), check=False).returncode
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
