#!/usr/bin/env python3
"""One APScheduler 4 process for bench/cluster_bench.py (the peer's exactly-once run).

Run by cluster_bench.py with the python of a separate venv holding APScheduler 4
(it is the same distribution name as the 3.x peer, so it cannot share jobctl's venv).
Standard library and APScheduler 4 only: it does not import jobctl or the bench helpers.

    aps4_peer.py --url postgresql://u@h:5432/db --out FILE [--jobs 50 --start-at EPOCH]

An AsyncScheduler (role both) on a SQLAlchemyDataStore (asyncpg engine) with an
AsyncpgEventBroker on the same engine (LISTEN/NOTIFY, so the schedulers hear each
other). With --jobs N it also adds N interval schedules `tick-NN` (1 s, first fire at
--start-at, ConflictPolicy.replace, CoalescePolicy.all, no misfire limit) of the task
`tick`, whose function appends [schedule id, scheduled fire time, pid] to --out for
every job it runs. Prints {"event": "ready"} once started and stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from datetime import datetime, timezone
from typing import Any

OUT: Any = None  # the process's record file, opened in main()


async def record() -> None:
    """The task's function: one line per job run (the job knows its schedule and slot)."""
    from apscheduler import current_job

    job = current_job.get()
    fire = job.scheduled_fire_time
    OUT.write(json.dumps([job.schedule_id, fire.timestamp() if fire else None, os.getpid()]) + "\n")


async def run(a: argparse.Namespace) -> None:
    from apscheduler import AsyncScheduler, CoalescePolicy, ConflictPolicy
    from apscheduler.datastores.sqlalchemy import SQLAlchemyDataStore
    from apscheduler.eventbrokers.asyncpg import AsyncpgEventBroker
    from apscheduler.triggers.interval import IntervalTrigger
    from sqlalchemy.ext.asyncio import create_async_engine

    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, done.set)
    engine = create_async_engine("postgresql+asyncpg://" + a.url.split("://", 1)[1])
    store = SQLAlchemyDataStore(engine)
    broker = AsyncpgEventBroker.from_async_sqla_engine(engine)
    try:
        async with AsyncScheduler(store, broker) as scheduler:
            if a.jobs:
                await scheduler.configure_task("tick", func=record, job_executor="async",
                                               max_running_jobs=None)
                first = datetime.fromtimestamp(a.start_at, timezone.utc)
                for i in range(a.jobs):
                    await scheduler.add_schedule(
                        "tick", IntervalTrigger(seconds=1, start_time=first), id=f"tick-{i:02d}",
                        coalesce=CoalescePolicy.all, misfire_grace_time=None,
                        conflict_policy=ConflictPolicy.replace)
            await scheduler.start_in_background()
            print(json.dumps({"event": "ready", "identity": scheduler.identity}), flush=True)
            await done.wait()
            await scheduler.stop()
            await scheduler.wait_until_stopped()
    finally:
        await engine.dispose()


def main() -> int:
    global OUT
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True, help="postgresql://... of the shared database")
    p.add_argument("--out", required=True)
    p.add_argument("--jobs", type=int, default=0, help="> 0: add this many schedules")
    p.add_argument("--start-at", type=float, default=0, help="first fire time (epoch seconds)")
    a = p.parse_args()
    OUT = open(a.out, "a", buffering=1)
    try:
        asyncio.run(run(a))
    finally:
        OUT.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
