"""Run logs copied into a state that keeps them (PostgreSQL), so that
`jobctl logs RUN_ID [--follow]` works from every node.

The running node writes its local file as before (executor.LogSink bounds
it); `LogShipper` appends the file's new bytes to the store about once a
second while the run goes, never past the head the sink keeps
(`max_log_bytes // 2`), and at the run's end replaces them with the final
file (head, marker, tail). An upload the store refuses is reported once and
tried again; it never touches the run's record, and the local file stays.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from jobctl.clock import Clock
from jobctl.errors import JobctlError
from jobctl.events import Event, Reporter
from jobctl.store import Store

SHIP_EVERY = 1.0  # seconds between uploads of running runs' new output


class LogShipper:
    """Uploads runs' logs into `store` (one whose `stores_logs` is true)."""

    def __init__(self, store: Store, *, clock: Clock, report: Reporter) -> None:
        self.store = store
        self.clock = clock
        self.report = report
        self.shipped: dict[int, int] = {}  # run id -> bytes of its log uploaded
        self.finals: dict[int, Path] = {}  # ended runs whose final log waits for upload
        self.next_ship = 0.0
        self.failing = False  # an upload failed and was reported (until one succeeds)

    def due(self) -> bool:
        return self.clock.monotonic() >= self.next_ship

    def ship(self, running: Iterable[tuple[int, Path]], head: int, now: datetime) -> None:
        """Upload what running runs wrote since the last upload, up to `head`
        bytes of each; and the final logs still owed."""
        self.next_ship = self.clock.monotonic() + SHIP_EVERY
        for run_id, path in list(self.finals.items()):
            self.final(run_id, path, now)
        chunks = []
        for run_id, path in running:
            done = self.shipped.get(run_id, 0)
            if done >= head:
                continue
            try:
                with path.open("rb") as f:
                    f.seek(done)
                    data = f.read(head - done)
            except OSError:
                continue  # not created yet (no output)
            if data:
                chunks.append((run_id, done, data))
        if not chunks:
            return
        try:
            self.store.append_logs(chunks)
        except JobctlError as e:
            self._failed(e, now)
            return
        self.failing = False
        for run_id, done, data in chunks:
            self.shipped[run_id] = done + len(data)

    def final(self, run_id: int, path: Path, now: datetime) -> None:
        """Store an ended run's final log (kept to try again if refused)."""
        try:
            data = path.read_bytes()
        except OSError:
            data = b""  # no output at all
        try:
            self.store.put_log(run_id, data)
        except JobctlError as e:
            self.finals[run_id] = path
            self._failed(e, now)
            return
        self.failing = False
        self.finals.pop(run_id, None)
        self.shipped.pop(run_id, None)

    def _failed(self, error: JobctlError, now: datetime) -> None:
        if not self.failing:
            self.failing = True
            self.report(Event("error", now, message=(
                f"could not copy run logs to the database (will retry; the local files are "
                f"kept): {error}")))
