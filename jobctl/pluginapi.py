"""What plugin code sees: the context of one run, and the host services.

A plugin job's callable (`"module:function"`) is called as `function(ctx)`
in a worker process (`python -m jobctl.worker`), never in the runner's own
process. Returning ends the run `success`; raising ends it `failed` with the
traceback in the run's log; `sys.exit(n)` ends it with exit code n. What the
callable prints, and what it logs through `ctx.logger`, lands in the run's log.

`ctx.jobs` is the only door to jobctl's state a plugin gets, and it opens only
onto the plugin's own jobs (ids starting `PLUGIN_ID:`), only for the services
its manifest declared in `host_services`, and, for `jobs.run` and
`jobs.set_status`, only if the manifest says `trusted = true`. Anything else
raises `HostServiceError`. These checks are an API contract, not a sandbox:
the worker runs the plugin's code with the runner user's rights.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from jobctl.errors import JobctlError

BATCH_GET = "jobs.batch_get"
RUN = "jobs.run"
SET_STATUS = "jobs.set_status"
HOST_SERVICES = (BATCH_GET, RUN, SET_STATUS)
"""Every host service a manifest may list in `host_services`."""
TRUSTED_SERVICES = frozenset({RUN, SET_STATUS})
"""The services that also need `trusted = true`."""
ENTRY_POINT_PREFIX = "entry-point:"
"""A task whose `callable` starts with this runs its entry-point plugin's `run`."""
JOB_STATUSES = ("enabled", "disabled")
"""The values `jobs.set_status` accepts."""


class HostServiceError(JobctlError):
    """A host service call was refused: undeclared service, untrusted plugin,
    a job that is not the plugin's own, or a bad argument."""

    def __init__(self, plugin_id: str, service: str, reason: str) -> None:
        self.plugin_id = plugin_id
        self.service = service
        self.reason = reason
        super().__init__(f"plugin '{plugin_id}' {reason}")


@dataclass(frozen=True)
class JobView:
    """What `ctx.jobs.batch_get` tells a plugin about one of its own jobs."""

    id: str
    name: str
    group: str | None
    status: str | None
    """The latest run's status (`running`, `success`, `failed`, `timeout`,
    `skipped`, `interrupted`), or None if it never ran."""
    enabled: bool | None
    """Effective: the manifest's `enabled` with `jobctl enable/disable` (and
    `set_status`) applied. None if unknown (the config could not be read and
    the state file holds no override)."""
    next_run: str | None
    """The next scheduled fire, ISO 8601 with offset; None if disabled, if it
    has none (`@reboot`, an `at` in the past), or if the config could not be read."""
    last_run_status: str | None
    """The status of the latest run that has ended, or None."""


class JobsService(Protocol):
    """`ctx.jobs`: host services on the plugin's own jobs."""

    def batch_get(self, ids: Sequence[str]) -> list[JobView]:
        """Views of the given jobs, in the order asked (`jobs.batch_get`)."""
        ...

    def run(self, job_id: str) -> int:
        """Start a manual run of the job, as `jobctl run-now` would, without
        waiting for it; returns the pid of the process that runs and records
        it (`jobs.run`, trusted plugins only). Under `concurrency = "forbid"`
        that process records nothing if the job is already running."""
        ...

    def set_status(self, job_id: str, status: str) -> None:
        """Enable or disable the job (`"enabled"` or `"disabled"`), as `jobctl
        enable/disable` would (`jobs.set_status`, trusted plugins only)."""
        ...


@dataclass(frozen=True)
class JobContext:
    """The one argument a plugin callable gets."""

    task_id: str
    """`PLUGIN_ID:KEY`."""
    key: str
    """The job's `key` in its manifest."""
    plugin_id: str
    scheduled_for: datetime | None
    """The schedule slot this run is for (aware); None for a manual run."""
    trigger: str
    """`schedule`, `manual` or `catch-up`."""
    attempt: int
    payload: dict[str, Any]
    """The job's `payload` table (TOML dates and times arrive as ISO strings)."""
    logger: logging.Logger
    """Writes to the run's log."""
    jobs: JobsService
