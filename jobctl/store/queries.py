"""Run-history reads that both backends write the same way but for the
placeholder (`?` or `%s`) and where the tables live (`runs` or
`jobctl.runs`): one text of each query, for `SqliteStore` and
`PostgresStore`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jobctl.model import RunStatus
from jobctl.store.records import RunRecord

RUN_COLUMNS = (
    "id, task_id, trigger, status, attempt, scheduled_for, started_at, finished_at, "
    "exit_code, error, pid, proc_start, boot_id, host, owner_pid, owner_start, log_path, node"
)
# the same, qualified by the alias `r`, for joins
RUN_COLUMNS_R = ", ".join("r." + c.strip() for c in RUN_COLUMNS.split(","))


class RunQueries:
    """Mixin: `running`, `get_run`, `history`, `last_runs` over a backend's
    `_query` and `_to_run` (a row of RUN_COLUMNS to a RunRecord)."""

    _P = "?"  # the driver's placeholder
    _SCHEMA = ""  # prefix of the tables ("jobctl.")

    def _query(self, sql: str, args: Sequence[object] = ()) -> list[Any]:
        raise NotImplementedError

    @staticmethod
    def _to_run(row: Any) -> RunRecord:
        raise NotImplementedError

    def running(self, task_id: str | None = None) -> list[RunRecord]:
        sql = f"select {RUN_COLUMNS} from {self._SCHEMA}runs where status = 'running'"
        if task_id is None:
            rows = self._query(sql + " order by id")
        else:
            rows = self._query(sql + f" and task_id = {self._P} order by id", (task_id,))
        return [self._to_run(r) for r in rows]

    def get_run(self, run_id: int) -> RunRecord | None:
        rows = self._query(f"select {RUN_COLUMNS} from {self._SCHEMA}runs where id = {self._P}",
                           (run_id,))
        return self._to_run(rows[0]) if rows else None

    def history(self, task_id: str | None = None, *, limit: int = 20,
                status: RunStatus | None = None) -> list[RunRecord]:
        where: list[str] = []
        args: list[object] = []
        if task_id is not None:
            where.append(f"task_id = {self._P}")
            args.append(task_id)
        if status is not None:
            where.append(f"status = {self._P}")
            args.append(status.value)
        sql = f"select {RUN_COLUMNS} from {self._SCHEMA}runs"
        if where:
            sql += " where " + " and ".join(where)
        sql += f" order by id desc limit {self._P}"
        args.append(limit)
        return [self._to_run(r) for r in self._query(sql, args)]

    def ended_before(self, task_id: str, run_id: int, *, node: str | None = None,
                     limit: int = 20) -> list[RunRecord]:
        sql = (f"select {RUN_COLUMNS} from {self._SCHEMA}runs where task_id = {self._P}"
               f" and id < {self._P}"
               " and status in ('success', 'failed', 'timeout', 'interrupted')")
        args: list[object] = [task_id, run_id]
        if node is not None:
            sql += f" and node = {self._P}"
            args.append(node)
        sql += f" order by id desc limit {self._P}"
        args.append(limit)
        return [self._to_run(r) for r in self._query(sql, args)]

    def last_runs(self) -> dict[str, RunRecord]:
        rows = self._query(f"select {RUN_COLUMNS_R} from {self._SCHEMA}task_state t"
                           f" join {self._SCHEMA}runs r on r.id = t.last_run_id")
        return {r[1]: self._to_run(r) for r in rows}

    def ended(self, run_ids: Sequence[int]) -> list[RunRecord]:
        ids = list(run_ids)
        if not ids:
            return []
        marks = ", ".join([self._P] * len(ids))
        rows = self._query(f"select {RUN_COLUMNS} from {self._SCHEMA}runs where id in ({marks})"
                           " and status != 'running' order by id", ids)
        return [self._to_run(r) for r in rows]
