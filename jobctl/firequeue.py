"""The runner's fire queue: the scheduled fires of a schedule set, soonest first.

Pure: tasks, the anchor interval schedules count from, and the instants asked
about go in; fires come out. It reads no clock and no state store, starts
nothing, and knows nothing of enable/disable, catch-up or concurrency: the
runner decides what a due fire becomes.

Jitter lives here: a task with `jitter` is queued at its slot plus its fixed
offset (`timing.jitter_offset`), the instant it really starts; `slot_of`
gives back the slot, which is what the runner records and counts from.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from jobctl.errors import ScheduleSearchError
from jobctl.model import RebootSchedule, Schedule, Scope, Task
from jobctl.timing import load_zone, next_fire, task_jitter

UTC = timezone.utc

# timing.next_fire's signature: (schedule, zone, after, anchor) -> first fire after
NextFire = Callable[[Schedule, ZoneInfo, datetime, datetime | None], datetime | None]

# (instant in UTC, priority, file order, generation, task id)
_Entry = tuple[datetime, int, int, int, str]
_ZERO = timedelta(0)


class FireQueue:
    """The next fire of each task, in a heap ordered by (instant, priority,
    file order).

    Invariants: each task has at most one live entry; an entry is live while
    its generation is the task's current one (a changed or removed task's
    generation moves on, so its old entry is dropped when it surfaces,
    without a search of the heap). `pop_due` returns live entries only, and a
    popped task has no entry until `push` gives it its next fire. Tasks that
    share an expression and zone share one next-fire computation on `load`.
    """

    def __init__(
        self,
        anchor: datetime | None = None,
        *,
        on_error: Callable[[Task, ScheduleSearchError], None] | None = None,
        find_next: NextFire = next_fire,
        node: str = "",
    ) -> None:
        self.anchor = anchor
        """The instant interval schedules count from (the runner's start)."""
        self.cluster_anchor: datetime | None = None
        """The instant interval schedules of cluster tasks count from on a
        shared state: one for the whole cluster (None: `anchor`)."""
        self.tasks: dict[str, Task] = {}
        self.order: dict[str, int] = {}
        self._gen: dict[str, int] = {}
        self._heap: list[_Entry] = []
        self._on_error = on_error
        self._find_next = find_next
        self.node = node
        """This runner's node name: part of the jitter offset of a task with scope = "node"."""

    def offset(self, task: Task) -> timedelta:
        """How long after each of its slots the task really starts (its jitter offset)."""
        if not task.jitter:
            return _ZERO
        return task_jitter(task, self.node)

    def fire_instant(self, task: Task, slot: datetime) -> datetime:
        """When the task's fire for `slot` starts: the slot plus its offset (UTC)."""
        return slot.astimezone(UTC) + self.offset(task)

    def slot_of(self, task: Task, instant: datetime) -> datetime:
        """The slot of a fire queued at `instant` (see `pop_due`)."""
        return instant - self.offset(task) if task.jitter else instant

    def __len__(self) -> int:
        return len(self._heap)

    def next_fire(self, task: Task, after: datetime) -> datetime | None:
        """The task's first fire strictly after `after`, or None. A search
        error goes to `on_error` (the task then has no next fire) or, without
        one, is raised."""
        try:
            return self._find_next(task.schedule, load_zone(task.timezone), after,
                                   self.anchor_of(task))
        except ScheduleSearchError as e:
            if self._on_error is None:
                raise
            # never reached by a correct engine; the task stops, the rest go on
            self._on_error(task, e)
            return None

    def anchor_of(self, task: Task) -> datetime | None:
        """The anchor the task's interval counts from: the cluster's for a
        cluster task on a shared state, else this runner's."""
        if task.scope is Scope.CLUSTER and self.cluster_anchor is not None:
            return self.cluster_anchor
        return self.anchor

    def load(self, tasks: Sequence[Task], now: datetime, *, startup: bool) -> list[Task]:
        """Take a (new) task list and return the tasks that are new or changed
        (all of them when `startup`), in file order. Each of those, unless
        `@reboot`, gets its first fire after `now`; an unchanged task keeps its
        entry (not `startup`), and a removed one loses its entry."""
        old = self.tasks
        self.tasks = {t.id: t for t in tasks}
        self.order = {t.id: i for i, t in enumerate(tasks)}
        changed: list[Task] = []
        entries: list[_Entry] = []
        # parse_schedule is cached, so equal expressions are one object
        upcoming: dict[tuple[int, str, bool], datetime | None] = {}
        gen = self._gen
        for order, task in enumerate(tasks):
            task_id = task.id
            if not startup and old.get(task_id) == task:
                continue  # unchanged: its heap entry stays valid
            gen[task_id] = gen.get(task_id, 0) + 1
            changed.append(task)
            if isinstance(task.schedule, RebootSchedule):
                continue
            if task.jitter:
                # the first slot whose jittered instant is after now: a slot
                # just passed whose fire is still to come is not lost
                offset = self.offset(task)
                fire = self.next_fire(task, now - offset)
                fire = None if fire is None else fire.astimezone(UTC) + offset
                if fire is not None:
                    entries.append((fire, task.priority, order, gen[task_id], task_id))
                continue
            key = (id(task.schedule), task.timezone, task.scope is Scope.CLUSTER)
            if key in upcoming:
                fire = upcoming[key]
            else:
                fire = self.next_fire(task, now)
                fire = upcoming[key] = None if fire is None else fire.astimezone(UTC)
            if fire is not None:
                entries.append((fire, task.priority, order, gen[task_id], task_id))
        for removed in set(old) - set(self.tasks):
            gen[removed] = gen.get(removed, 0) + 1
        if startup:
            self._heap = entries
            heapq.heapify(self._heap)
        else:
            for entry in entries:
                heapq.heappush(self._heap, entry)
        return changed

    def push(self, task: Task, fire: datetime | None) -> None:
        """Queue the task's next fire, given by its slot (None: it has none),
        at the slot's instant (`fire_instant`)."""
        if fire is None:
            return
        heapq.heappush(self._heap, (self.fire_instant(task, fire), task.priority,
                                    self.order[task.id], self._gen[task.id], task.id))

    def pop_due(self, horizon: datetime) -> list[tuple[datetime, Task]]:
        """Take out every live fire at or before `horizon`, in queue order,
        as (instant in UTC, task); `slot_of` gives a jittered fire's slot."""
        horizon = horizon.astimezone(UTC)
        heap, gen, tasks = self._heap, self._gen, self.tasks
        due = []
        while heap and heap[0][0] <= horizon:
            entry = heapq.heappop(heap)
            task = tasks.get(entry[4])
            if task is not None and gen.get(entry[4]) == entry[3]:
                due.append((entry[0], task))
        return due

    def next_instant(self) -> datetime | None:
        """The first queued instant (UTC), or None when nothing is queued."""
        return self._heap[0][0] if self._heap else None

    def time_to_next_fire(self, now: datetime) -> float | None:
        """Seconds from `now` to the first queued instant (negative if past)."""
        if not self._heap:
            return None
        return (self._heap[0][0] - now.astimezone(UTC)).total_seconds()

    def upcoming(self, count: int,
                 enabled: Callable[[Task], bool] | None = None) -> list[tuple[datetime, str]]:
        """The next `count` fires (instant in UTC, task id) of the tasks
        `enabled` accepts (all by default), soonest first: when they really
        start (a jittered slot plus its offset)."""
        out = []
        for fire, _p, _o, gen, task_id in heapq.nsmallest(count * 2 + 16, self._heap):
            task = self.tasks.get(task_id)
            if (task is not None and self._gen.get(task_id) == gen
                    and (enabled is None or enabled(task))):
                out.append((fire, task_id))
        return out[:count]

    def first_batch_size(self, limit: int) -> int:
        """How many entries share the first queued instant, counting up to `limit`."""
        if not self._heap:
            return 0
        # The entries due at the heap's first instant form a subtree at its
        # root (a parent is never later than its children).
        heap, first, count, stack = self._heap, self._heap[0][0], 0, [0]
        while stack and count < limit:
            i = stack.pop()
            if i < len(heap) and heap[i][0] == first:
                count += 1
                stack += (2 * i + 1, 2 * i + 2)
        return count
