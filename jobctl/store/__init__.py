"""The state store: a contract (`Store`), its records and errors, and one
implementation per backend. `open_store(target)` chooses by the target.

Nothing outside this package writes SQL; only `jobctl.store.sqlite` imports
sqlite3.
"""

from __future__ import annotations

from pathlib import Path

from jobctl.store.base import Store
from jobctl.store.records import (
    Claim,
    ClaimRequest,
    Lease,
    LeaseHeldError,
    Owner,
    RunRecord,
    StoreBusyError,
    StoreError,
    from_text,
    to_text,
)
from jobctl.store.sqlite import MIGRATIONS, SCHEMA_VERSION, SqliteStore, open_sqlite

__all__ = [
    "MIGRATIONS", "SCHEMA_VERSION", "Claim", "ClaimRequest", "Lease", "LeaseHeldError", "Owner",
    "RunRecord", "SqliteStore", "Store", "StoreBusyError", "StoreError", "from_text",
    "open_store", "to_text",
]


def open_store(target: Path, *, create: bool) -> SqliteStore | None:
    """Open the state at `target` (a SQLite file path); None if it does not
    exist and `create` is False. Read-only commands pass create=False so
    they never create one."""
    return open_sqlite(target, create=create)
