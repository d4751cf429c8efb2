"""Config (and, later, plugins) into one validated ScheduleSet."""

from __future__ import annotations

import gc
from datetime import datetime
from pathlib import Path

from jobctl.config import read_config
from jobctl.errors import ConfigError
from jobctl.model import PluginReport, ScheduleSet


def resolve(path: Path, *, system_zone: str, now: datetime) -> ScheduleSet:
    """Read `path` and return its validated schedule set.

    Raises ConfigError listing every problem (warnings included) if any
    error was found; warnings alone ride along in `ScheduleSet.warnings`.
    """
    # a big config is a burst of long-lived, acyclic objects: the cyclic
    # collector would rescan them over and over while they are built, and
    # after (they live as long as the command or the runner's schedule), so
    # they are moved out of its sight; refcounting still frees them
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _resolve(path, system_zone, now)
    finally:
        gc.freeze()
        if collecting:
            gc.enable()


def _resolve(path: Path, system_zone: str, now: datetime) -> ScheduleSet:
    data = read_config(path, system_zone, now)
    problems = sorted(data.problems, key=lambda p: p.origin.line)
    if any(p.severity == "error" for p in problems):
        raise ConfigError(problems)
    tasks = tuple(data.tasks)
    reports: tuple[PluginReport, ...] = ()
    from jobctl.plugins import discover, entry_point_plugins_installed

    if data.settings.plugins or entry_point_plugins_installed():
        plugin_tasks, plugin_reports = discover(data.settings, path.parent, now)
        tasks += tuple(plugin_tasks)
        reports = tuple(plugin_reports)
    return ScheduleSet(
        path=path,
        settings=data.settings,
        tasks=tasks,
        warnings=tuple(problems),
        plugins=reports,
    )


def load_schedule_set(
    flag: Path | None,
    env: dict[str, str] | None,
    cwd: Path,
    *,
    system_zone: str,
    now: datetime,
) -> ScheduleSet:
    """Find the config as `find_config` does and resolve it."""
    from jobctl.config import find_config

    path = find_config(flag, env or {}, cwd)
    return resolve(path, system_zone=system_zone, now=now)


def with_overrides(schedule_set: ScheduleSet, overrides: dict[str, bool]) -> ScheduleSet:
    """The set with `enable`/`disable` overrides from the state file applied."""
    import dataclasses

    if not overrides:
        return schedule_set
    tasks = tuple(
        dataclasses.replace(t, enabled=overrides[t.id]) if t.id in overrides else t
        for t in schedule_set.tasks
    )
    return dataclasses.replace(schedule_set, tasks=tasks)
