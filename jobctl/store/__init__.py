"""The state store: a contract (`Store`), its records and errors, and one
implementation per backend. `open_store(target)` chooses by the target.

Nothing outside this package writes SQL; only `jobctl.store.sqlite` imports
sqlite3, and only `jobctl.store.postgres` imports the PostgreSQL driver (loaded
only for a `postgresql://` state).
"""

from __future__ import annotations

from pathlib import Path

from jobctl.store.base import Store
from jobctl.store.records import (
    Claim,
    ClaimRequest,
    EventRecord,
    HookFailure,
    Lease,
    LeaseHeldError,
    LeaseLostError,
    NodeHeldError,
    NodeRecord,
    Owner,
    RunRecord,
    StoreBusyError,
    StoreError,
    from_text,
    to_text,
)
from jobctl.store.sqlite import MIGRATIONS, SCHEMA_VERSION, SqliteStore, open_sqlite
from jobctl.store.url import is_database_url, same_target, shown_target, without_password

__all__ = [
    "MIGRATIONS", "SCHEMA_VERSION", "Claim", "ClaimRequest", "EventRecord", "HookFailure", "Lease",
    "LeaseHeldError", "LeaseLostError",
    "NodeHeldError", "NodeRecord", "Owner",
    "RunRecord", "SqliteStore", "Store", "StoreBusyError", "StoreError", "from_text",
    "is_database_url", "open_store", "same_target", "shown_target", "to_text",
    "without_password",
]


def open_store(target: Path | str, *, create: bool) -> Store | None:
    """Open the state at `target`: a `postgresql://` (or `postgres://`) URL
    opens a `PostgresStore`, anything else names a SQLite file. None if it
    does not exist (no file; no jobctl schema in the database) and `create`
    is False: read-only commands pass create=False so they never create one."""
    if is_database_url(target):
        from jobctl.store.postgres import open_postgres

        return open_postgres(str(target), create=create)
    return open_sqlite(Path(target), create=create)
