"""The audit trail: each control action recorded in the state with when, who
(uid and user name, host, node), what, and how it ended.

Recording never fails the action it records: `record` and
`record_config_edit` return a warning line when the trail could not be
written, and the caller says it. Retention is the config's `history_limit`
events per task (events that name no task are counted apart).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from jobctl.errors import JobctlError
from jobctl.store.records import EventRecord

if TYPE_CHECKING:
    from jobctl.store import Store

OK = "ok"
"""The action was done."""
FAILED = "failed"
"""It was tried and failed (an invalid edit, an error)."""
REFUSED = "refused"
"""It was refused by a rule (`forbid`, an invalid config on reload, a plugin's rights)."""
DEFAULT_KEEP = 1000


def user_name(uid: int) -> str:
    """The account name of `uid`, else `$USER`/`$LOGNAME`, else the number."""
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (KeyError, ImportError):
        return os.environ.get("USER") or os.environ.get("LOGNAME") or str(uid)


def event(action: str, now: datetime, *, node: str | None = None, task_id: str | None = None,
          outcome: str = OK, detail: str = "") -> EventRecord:
    """An event done by this process's user on this host (`node`: the node
    name, default the host name)."""
    from jobctl.procinfo import host_name

    uid = os.getuid()
    host = host_name()
    return EventRecord(at=now, action=action, outcome=outcome, uid=uid, user=user_name(uid),
                       host=host, node=node or host, task_id=task_id, detail=detail)


def record(store: Store, events: list[EventRecord] | EventRecord, keep: int = DEFAULT_KEEP) -> str | None:
    """Append events to the trail; None, or why it could not (never raises
    for a store that refuses: a read-only file, a full disk, a lost database)."""
    try:
        for item in events if isinstance(events, list) else [events]:
            store.record_event(item, keep)
    except JobctlError as e:
        return f"the audit trail could not be written: {e}"
    return None


def record_config_edit(config: Path | None, action: str, now: datetime, *,
                       env: Mapping[str, str], system_zone: str, outcome: str = OK,
                       task_id: str | None = None, detail: str = "",
                       state: Path | str | None = None) -> str | None:
    """Record a config edit (`init`, `add`, `set`, `remove`, `edit`,
    `import`) in the state that config names (`state`, else $JOBCTL_STATE,
    else its `[jobctl] state`, else the default).

    An edit that was made may create the state to record it; a failed one is
    recorded only where a state already exists. Returns None, or a warning
    line saying why the trail could not be written: the edit stands either way.
    """
    from jobctl.config import read_config, state_path
    from jobctl.store import open_store
    from jobctl.store.url import shown_target

    settings = None
    if config is not None and config.is_file():
        try:
            settings = read_config(config, system_zone, now).settings
        except (JobctlError, OSError):
            settings = None  # (a refused file: the default state then)
    target = state_path(state, env, settings)
    keep = settings.history_limit if settings is not None else DEFAULT_KEEP
    try:
        store = open_store(target, create=outcome == OK)
    except JobctlError as e:
        return f"the audit trail could not be written to {shown_target(target)}: {e}"
    if store is None:
        return None
    try:
        return record(store, event(action, now, node=_node(env, settings), task_id=task_id,
                                   outcome=outcome, detail=detail), keep)
    finally:
        store.close()


def _node(env: Mapping[str, str], settings: object) -> str | None:
    from jobctl.config import NODE_ENV

    return env.get(NODE_ENV) or getattr(settings, "node", None) or None
