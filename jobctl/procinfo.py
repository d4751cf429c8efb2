"""Process identity, read from /proc: the only place that knows what makes a
pid "the same process" across a runner restart.

A pid alone is not an identity: the kernel reuses pids, and a pid recorded
before a reboot means nothing after it. A process is identified here by
(boot id, pid, start time in clock ticks since boot); two processes can only
share all three if they are the same process.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
_PROC = Path("/proc")

# Fields of /proc/PID/stat after the ")" that closes comm: field 3 (state) is
# index 0 there, so field N is index N - 3.
_STATE = 0
_STARTTIME = 22 - 3


def host_name() -> str:
    """The name of this host, as recorded with each run."""
    return socket.gethostname()


@lru_cache(maxsize=1)
def boot_id() -> str:
    """The kernel's id for the current boot, or "" if it cannot be read."""
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:
        return ""


def process_start(pid: int) -> str | None:
    """The start time of process `pid` as an opaque token, or None if there is
    no such live process (zombies count as gone).

    The token is field 22 of /proc/PID/stat (start time in clock ticks since
    boot). Without /proc, liveness comes from kill(pid, 0) and a live process
    gets the token "" (known alive, identity unknown).
    """
    if pid <= 0:
        # kill(0, ...) and kill(-n, ...) address groups, not one process.
        return None
    try:
        stat = (_PROC / str(pid) / "stat").read_bytes()
    except FileNotFoundError:
        if _proc_mounted():
            return None
        return "" if _alive(pid) else None
    except OSError:
        return None
    # comm (field 2) is in parentheses and may itself hold spaces and ")",
    # but nothing after it can hold ")", so the last one closes it.
    _, sep, rest = stat.rpartition(b")")
    fields = rest.split()
    if not sep or len(fields) <= _STARTTIME:
        return None
    if fields[_STATE] in (b"Z", b"X"):
        return None
    return fields[_STARTTIME].decode("ascii")


def is_same_process(pid: int, start: str | None, boot: str | None) -> bool:
    """True only if `pid` is alive now and provably the process recorded with
    `start` and `boot`: same boot, same start time.

    An empty or missing `start`/`boot` is not checked; a recorded one that
    cannot be confirmed (e.g. this boot's id is unreadable) counts as a
    mismatch, since killing a stranger is worse than leaving a process be.
    """
    now_start = process_start(pid)
    if now_start is None:
        return False
    if boot and boot != boot_id():
        return False
    if start and start != now_start:
        return False
    return True


def group_alive(pgid: int) -> bool:
    """True if any process is left in process group `pgid`."""
    if pgid <= 0:
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        # It exists; it just belongs to someone else.
        return True
    if not _proc_mounted():
        return True
    # killpg(0) also succeeds while only zombies are left, which can last a
    # while in a container whose init reaps slowly: look for a live member.
    pgrp_field = _STATE + 2  # fields after comm: state, ppid, pgrp
    want = str(pgid).encode()
    return any(len(fields) > pgrp_field and fields[pgrp_field] == want
               and fields[_STATE] not in (b"Z", b"X")
               for _pid, fields in _proc_stats())


def _proc_stats() -> Iterator[tuple[int, list[bytes]]]:
    """(pid, the fields of /proc/PID/stat after the command name) for each
    process that can be read."""
    for entry in os.scandir(_PROC):
        if not entry.name.isdigit():
            continue
        try:
            stat = (_PROC / entry.name / "stat").read_bytes()
        except OSError:
            continue
        yield int(entry.name), stat.rpartition(b")")[2].split()


def _proc_mounted() -> bool:
    return (_PROC / "self" / "stat").exists()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def zombie_children(parent: int) -> list[int]:
    """Pids of `parent`'s children that have exited and wait to be reaped
    (state Z in /proc); [] without /proc."""
    if not _proc_mounted():
        return []
    ppid_field = _STATE + 1
    want = str(parent).encode()
    return [pid for pid, fields in _proc_stats()
            if len(fields) > ppid_field and fields[_STATE] == b"Z" and fields[ppid_field] == want]


def find_run_leaders(task_id: str, run_id: int, state_id: str) -> list[int]:
    """Live group leaders whose environment names this run of this state
    file (JOBCTL_TASK_ID, JOBCTL_RUN_ID and JOBCTL_STATE_ID, set by jobctl
    for every run). Run ids start at 1 in every state file: without the
    state id, recovering one file's runs could stop another jobctl's. An
    empty `state_id` (a state file from before ids) matches only processes
    that have none.

    How a dead runner's run is found when its pid was never recorded: a
    runner killed while it started a batch has spawned processes whose pids
    it had not yet written. Only this user's processes can be read.
    """
    if not _proc_mounted():
        return []
    wanted = [f"\0JOBCTL_TASK_ID={task_id}\0".encode(), f"\0JOBCTL_RUN_ID={run_id}\0".encode()]
    if state_id:
        wanted.append(f"\0JOBCTL_STATE_ID={state_id}\0".encode())
    pgrp_field = _STATE + 2
    found = []
    for entry in os.scandir(_PROC):
        if not entry.name.isdigit():
            continue
        try:
            environ = b"\0" + (_PROC / entry.name / "environ").read_bytes() + b"\0"
            if not all(w in environ for w in wanted):
                continue
            if not state_id and b"\0JOBCTL_STATE_ID=" in environ:
                continue
            fields = (_PROC / entry.name / "stat").read_bytes().rpartition(b")")[2].split()
        except OSError:
            continue
        if len(fields) > pgrp_field and fields[pgrp_field] == entry.name.encode() \
                and fields[_STATE] not in (b"Z", b"X"):
            found.append(int(entry.name))
    return found
