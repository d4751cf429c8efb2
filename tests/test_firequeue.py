"""The fire queue on its own: tasks and literal instants in, due fires out.
No clock, no store, no processes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from jobctl.errors import ScheduleSearchError
from jobctl.firequeue import FireQueue
from jobctl.model import Task
from jobctl.timing import next_fire, parse_schedule

UTC = timezone.utc
NOW = datetime(2026, 6, 15, 12, 0, 30, tzinfo=UTC)


def task(task_id: str, schedule: str, **fields: Any) -> Task:
    fields.setdefault("timezone", "UTC")
    return Task(id=task_id, name=task_id, schedule=parse_schedule(schedule), argv=("true",),
                **fields)


def ids(due: list[tuple[datetime, Task]]) -> list[tuple[datetime, str]]:
    return [(fire, t.id) for fire, t in due]


def test_due_fires_come_out_by_instant_then_priority_then_file_order() -> None:
    queue = FireQueue()
    tasks = [task("c", "* * * * *"), task("a", "* * * * *", priority=5),
             task("b", "* * * * *"), task("hourly", "0 * * * *")]
    changed = queue.load(tasks, NOW, startup=True)
    assert [t.id for t in changed] == ["c", "a", "b", "hourly"]
    minute = datetime(2026, 6, 15, 12, 1, tzinfo=UTC)
    assert queue.next_instant() == minute
    assert queue.time_to_next_fire(NOW) == 30.0
    assert queue.first_batch_size(100) == 3 and queue.first_batch_size(2) == 2
    assert queue.pop_due(minute - timedelta(microseconds=1)) == []
    assert ids(queue.pop_due(minute)) == [(minute, "a"), (minute, "c"), (minute, "b")]
    # popped tasks wait for their next fire: only the hourly one is left
    assert queue.next_instant() == datetime(2026, 6, 15, 13, 0, tzinfo=UTC)


def test_push_queues_the_next_fire_and_none_queues_nothing() -> None:
    queue = FireQueue()
    every = task("every", "* * * * *")
    queue.load([every], NOW, startup=True)
    [(fire, popped)] = queue.pop_due(datetime(2026, 6, 15, 12, 1, tzinfo=UTC))
    queue.push(popped, None)
    assert queue.next_instant() is None and queue.time_to_next_fire(NOW) is None
    queue.push(popped, queue.next_fire(popped, fire))
    assert queue.upcoming(3) == [(datetime(2026, 6, 15, 12, 2, tzinfo=UTC), "every")]


def test_reload_keeps_unchanged_entries_and_drops_changed_and_removed_ones() -> None:
    queue = FireQueue()
    keep, change, remove = (task("keep", "*/5 * * * *"), task("change", "0 * * * *"),
                            task("remove", "* * * * *"))
    queue.load([keep, change, remove], NOW, startup=True)
    changed_to = task("change", "30 12 * * *")
    added = task("added", "45 12 * * *")
    changed = queue.load([keep, changed_to, added], NOW, startup=False)
    assert [t.id for t in changed] == ["change", "added"]
    assert ids(queue.pop_due(datetime(2026, 6, 15, 14, 0, tzinfo=UTC))) == [
        (datetime(2026, 6, 15, 12, 5, tzinfo=UTC), "keep"),
        (datetime(2026, 6, 15, 12, 30, tzinfo=UTC), "change"),  # not 13:00: the old entry
        (datetime(2026, 6, 15, 12, 45, tzinfo=UTC), "added"),
    ]  # and nothing of "remove"


def test_reboot_tasks_are_reported_but_never_queued() -> None:
    queue = FireQueue()
    reboot = task("boot", "@reboot")
    assert queue.load([reboot], NOW, startup=True) == [reboot]
    assert len(queue) == 0 and queue.upcoming(5) == []


def test_upcoming_filters_and_keeps_the_queue() -> None:
    queue = FireQueue()
    queue.load([task("on", "0 13 * * *"), task("off", "0 12 * * *", enabled=False)], NOW,
               startup=True)
    assert queue.upcoming(5) == [(datetime(2026, 6, 15, 13, 0, tzinfo=UTC), "on"),
                                 (datetime(2026, 6, 16, 12, 0, tzinfo=UTC), "off")]
    assert queue.upcoming(5, lambda t: t.enabled) == [
        (datetime(2026, 6, 15, 13, 0, tzinfo=UTC), "on")]
    assert len(queue) == 2


def test_intervals_count_from_the_anchor() -> None:
    anchor = datetime(2026, 6, 15, 12, 0, 0, tzinfo=UTC)
    queue = FireQueue(anchor)
    queue.load([task("every", "every 90s")], NOW, startup=True)
    assert queue.next_instant() == datetime(2026, 6, 15, 12, 1, 30, tzinfo=UTC)
    unanchored = FireQueue()
    unanchored.load([task("every", "every 90s")], NOW, startup=True)
    assert unanchored.next_instant() == datetime(2026, 6, 15, 12, 2, 0, tzinfo=UTC)


def test_a_fire_in_the_spring_forward_gap_comes_at_the_jump() -> None:
    # Europe/Berlin skips 02:00-03:00 on 2026-03-29: 02:30 runs at 03:00 CEST
    queue = FireQueue()
    nightly = task("nightly", "30 2 * * *", timezone="Europe/Berlin")
    queue.load([nightly], datetime(2026, 3, 28, 12, 0, tzinfo=UTC), startup=True)
    jump = datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
    assert queue.next_instant() == jump
    [(fire, popped)] = queue.pop_due(jump)
    queue.push(popped, queue.next_fire(popped, fire))
    assert queue.next_instant() == datetime(2026, 3, 30, 0, 30, tzinfo=UTC)  # 02:30 CEST


def test_tasks_sharing_an_expression_share_one_search() -> None:
    calls: list[str] = []

    def counting(*args: Any) -> datetime | None:
        calls.append(args[0].text)
        return next_fire(*args)

    queue = FireQueue(find_next=counting)
    queue.load([task(f"t{i}", "*/5 * * * *") for i in range(50)], NOW, startup=True)
    assert calls == ["*/5 * * * *"]
    assert queue.first_batch_size(1000) == 50


def test_a_search_error_stops_that_task_only() -> None:
    def stuck(schedule: Any, tz: Any, after: datetime, anchor: datetime | None) -> datetime | None:
        if schedule.text == "0 0 31 12 *":
            raise ScheduleSearchError(schedule.text, tz.key, after)
        return next_fire(schedule, tz, after, anchor)

    errors: list[str] = []
    queue = FireQueue(on_error=lambda t, e: errors.append(t.id), find_next=stuck)
    queue.load([task("stuck", "0 0 31 12 *"), task("fine", "* * * * *")], NOW, startup=True)
    assert errors == ["stuck"]
    assert queue.upcoming(5) == [(datetime(2026, 6, 15, 12, 1, tzinfo=UTC), "fine")]
    with pytest.raises(ScheduleSearchError):
        FireQueue(find_next=stuck).load([task("stuck", "0 0 31 12 *")], NOW, startup=True)


def test_cluster_intervals_count_from_the_cluster_anchor_node_intervals_from_the_runners() -> None:
    from jobctl.model import Scope

    queue = FireQueue(datetime(2026, 6, 15, 12, 0, 0, tzinfo=UTC))
    # the cluster's grid was fixed long before this runner started, on odd seconds
    queue.cluster_anchor = datetime(2020, 1, 1, 0, 0, 1, tzinfo=UTC)
    tasks = [task("n", "every 2s"), task("c", "every 2s", scope=Scope.CLUSTER)]
    queue.load(tasks, NOW, startup=True)
    due = ids(queue.pop_due(NOW + timedelta(seconds=2)))
    assert due == [(NOW + timedelta(seconds=1), "c"), (NOW + timedelta(seconds=2), "n")]
    # without a cluster anchor (a SQLite state) both count from the runner's start
    plain = FireQueue(datetime(2026, 6, 15, 12, 0, 0, tzinfo=UTC))
    plain.load(tasks, NOW, startup=True)
    assert ids(plain.pop_due(NOW + timedelta(seconds=2))) == [
        (NOW + timedelta(seconds=2), "n"), (NOW + timedelta(seconds=2), "c")]
