"""Retries of failed runs: which ends are retried, after how long, and the
runner's queue of retries waiting for their instant.

Pure: ends and instants go in, retries come out. The runner decides when a
retry would reach the task's next slot (it is then dropped and recorded) and
starts the due ones as runs of the same slot with the next `attempt`.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from datetime import datetime

from jobctl.model import RunStatus, Task, Trigger

RETRIED = frozenset({RunStatus.FAILED, RunStatus.TIMEOUT})
"""The ends that are retried: a non-zero exit, a signal, a failed start, a
timeout. `interrupted` (the runner stopped, or a replace) and `skipped` are not."""


def retried(task: Task, status: RunStatus, attempt: int) -> bool:
    """True if a run that ended `status` as `attempt` gets another attempt."""
    return status in RETRIED and attempt <= task.retries


def retry_delay(task: Task, attempt: int) -> float:
    """Seconds from the end of `attempt` to the start of the next one:
    `retry_delay`, doubled after each attempt, at most `retry_max_delay`."""
    # 2 ** 100 retries would overflow nothing: the cap is reached long before
    return min(task.retry_delay * 2.0 ** min(attempt - 1, 64), task.retry_max_delay)


@dataclass(frozen=True, order=True)
class PendingRetry:
    """A retry waiting for its instant: attempt `attempt` of `slot`."""

    due: datetime
    task_id: str = field(compare=False)
    trigger: Trigger = field(compare=False)
    slot: datetime | None = field(compare=False)
    attempt: int = field(compare=False)
    order: int = 0  # ties at one instant: first queued, first started


class RetryQueue:
    """Retries waiting for their instant, soonest first."""

    def __init__(self) -> None:
        self._heap: list[PendingRetry] = []
        self._count = 0

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, due: datetime, task_id: str, trigger: Trigger, slot: datetime | None,
             attempt: int) -> PendingRetry:
        self._count += 1
        retry = PendingRetry(due, task_id, trigger, slot, attempt, self._count)
        heapq.heappush(self._heap, retry)
        return retry

    def pop_due(self, now: datetime) -> list[PendingRetry]:
        """Take out every retry due at or before `now`, soonest first."""
        due = []
        while self._heap and self._heap[0].due <= now:
            due.append(heapq.heappop(self._heap))
        return due

    def time_to_next(self, now: datetime) -> float | None:
        """Seconds from `now` to the first retry's instant (None: none waits)."""
        return (self._heap[0].due - now).total_seconds() if self._heap else None

    def pending(self) -> list[PendingRetry]:
        """The waiting retries, soonest first (left in the queue)."""
        return sorted(self._heap)

    def drain(self) -> list[PendingRetry]:
        """Take out every waiting retry, soonest first."""
        out = sorted(self._heap)
        self._heap = []
        return out
