"""Who we are and whether the owner of a run or of the runner lease is
still alive. Used by the runner, the run lifecycle, the plugin worker and
the CLI's control commands; it depends only on `procinfo` and the store's
records, so any of them can import it.
"""

from __future__ import annotations

import os
from datetime import datetime

from jobctl import procinfo
from jobctl.store import Lease, Owner

# A lease whose holder we cannot check (another host) counts as alive while
# its heartbeat is younger than this.
LEASE_STALE_AFTER = 30.0
# The runner beats every 5 s (runner.HEARTBEAT_EVERY); a heartbeat older than
# this says the runner is stopped (SIGSTOP, a debugger) or hung: `status`
# warns, as it fires nothing meanwhile.
HEARTBEAT_LATE_AFTER = 15.0


def self_owner() -> Owner:
    pid = os.getpid()
    return Owner(pid, procinfo.host_name(), procinfo.boot_id(), procinfo.process_start(pid))


def owner_alive(owner: Owner) -> bool:
    """True if the process that owns a run or lease still exists (this host only:
    runs of other hosts count as alive)."""
    if owner.host != procinfo.host_name():
        return True
    return procinfo.is_same_process(owner.pid, owner.start, owner.boot_id or None)


def lease_alive(lease: Lease, now: datetime) -> bool:
    if lease.host != procinfo.host_name():
        return (now - lease.heartbeat_at).total_seconds() < LEASE_STALE_AFTER
    return owner_alive(lease.owner)
