"""Plugin discovery: manifests declare jobs that join the schedule set.

A manifest is a TOML file (`[plugin]` and `[[jobs]]`) found through the
`[jobctl] plugins` globs. Each job becomes a Task with id `PLUGIN_ID:KEY` and
owner `plugin:PLUGIN_ID`. A plugin with any problem is left out whole; its
problems are reported, and the rest of the set is unaffected.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from datetime import datetime
from tomllib import TOMLDecodeError
from pathlib import Path
from typing import Any

from jobctl.config import (
    MAX_ID,
    TASK_ID_RE,
    KeyLines,
    _NUL,
    _describe,
    _not_utf8,
    _unknown_key,
    find_headers,
    read_task,
    toml_loads,
)
from jobctl.pluginapi import ENTRY_POINT_PREFIX, HOST_SERVICES
from jobctl.model import Origin, PluginLimits, PluginReport, Problem, Settings, Task
from jobctl.timing import format_duration, min_gap_seconds

PLUGIN_ID_RE = re.compile(r"[a-z0-9][a-z0-9_-]*")
CALLABLE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*")
MANIFEST_KEYS = ("plugin", "jobs")
PLUGIN_KEYS = ("id", "name", "version", "description", "priority", "trusted", "host_services")
JOB_KEYS = (
    "key", "display_name", "description", "schedule", "at", "timezone", "command", "argv",
    "callable", "payload", "timeout", "concurrency", "catch_up", "scope", "enabled", "cwd",
)


def find_manifests(settings: Settings, base_dir: Path) -> list[Path]:
    """The manifests the `[jobctl] plugins` globs match, in glob order."""
    found: list[Path] = []
    for pattern in settings.plugins:
        if Path(pattern).is_absolute():
            matches = sorted(Path(pattern).parent.glob(Path(pattern).name))
        else:
            matches = sorted(base_dir.glob(pattern))
        for path in matches:
            if path.is_file() and path not in found:
                found.append(path)
    return found


def _inside(folder: Path, relative: str) -> Path | None:
    """`folder / relative`, resolved, if it stays inside `folder` (no `..`
    escape, no symlink out); else None."""
    if Path(relative).is_absolute():
        return None
    target = (folder / relative).resolve()
    root = folder.resolve()
    return target if target == root or root in target.parents else None


def _module_file(folder: Path, module: str) -> Path | None:
    """Where `module` would be imported from with `folder` first on the path."""
    base = folder.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def load_manifest(path: Path, settings: Settings, now: datetime) -> tuple[PluginReport, list[Task]]:
    """Read one manifest; its report, and its tasks (none if it has problems)."""
    problems: list[Problem] = []
    origin = Origin(path)
    try:
        text = path.read_text(encoding="utf-8")
        doc = toml_loads(text)
    except OSError as e:
        problems.append(Problem(origin, f"cannot read: {e}"))
        return PluginReport(id="?", source=str(path), problems=tuple(problems)), []
    except UnicodeDecodeError as e:
        problems.append(_not_utf8(path, e))
        return PluginReport(id="?", source=str(path), problems=tuple(problems)), []
    except TOMLDecodeError as e:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(e))
        line = int(m.group(1)) if m else 0
        problems.append(Problem(Origin(path, line), f"TOML syntax error: {e}"))
        return PluginReport(id="?", source=str(path), problems=tuple(problems)), []
    for key in doc:
        if key not in MANIFEST_KEYS:
            problems.append(Problem(origin, _unknown_key(key, MANIFEST_KEYS)))
    job_lines, plugin_line = find_headers(text, "jobs", "plugin")
    plugin_origin = Origin(path, plugin_line)
    lines = KeyLines(path, text)
    meta = doc.get("plugin")
    if not isinstance(meta, dict):
        problems.append(Problem(plugin_origin, "needs a [plugin] table with at least an id", "plugin"))
        return PluginReport(id="?", source=str(path), problems=tuple(problems)), []

    def bad(key: str, message: str) -> None:
        problems.append(Problem(lines.origin(plugin_origin, key) if key else plugin_origin,
                                message, f"plugin.{key}" if key else "plugin"))

    for key in meta:
        if key not in PLUGIN_KEYS:
            bad(key, _unknown_key(key, PLUGIN_KEYS))
    plugin_id = meta.get("id")
    if not isinstance(plugin_id, str) or not PLUGIN_ID_RE.fullmatch(plugin_id):
        bad("id", f"'{plugin_id}' is not a valid plugin id: use lowercase letters, digits, "
                  "'_' and '-', starting with a letter or digit" if plugin_id is not None
            else "missing required key 'id'")
        plugin_id = "?"
    strings = {k: meta.get(k, "") for k in ("name", "version", "description")}
    for key, value in strings.items():
        if not isinstance(value, str):
            bad(key, f"expected a string, got {_describe(value)}")
    priority = meta.get("priority", 1000)
    if isinstance(priority, bool) or not isinstance(priority, int):
        bad("priority", f"expected an integer, got {_describe(priority)}")
        priority = 1000
    trusted = meta.get("trusted", False)
    if not isinstance(trusted, bool):
        bad("trusted", f"expected true or false, got {_describe(trusted)}")
        trusted = False
    services = meta.get("host_services", [])
    if not isinstance(services, list) or not all(isinstance(s, str) for s in services):
        bad("host_services", "expected an array of strings")
        services = []
    for service in services:
        if service not in HOST_SERVICES:
            bad("host_services", f"unknown host service '{service}'; known: {', '.join(HOST_SERVICES)}")

    limits = settings.plugin_limits
    jobs = doc.get("jobs", [])
    if not isinstance(jobs, list):
        problems.append(Problem(origin, "write each job as a [[jobs]] table (double brackets)", "jobs"))
        jobs = []
    if len(jobs) > limits.max_jobs:
        problems.append(Problem(plugin_origin, f"declares {len(jobs)} jobs; the limit is "
                                f"{limits.max_jobs} (max_jobs)", "jobs"))
    tasks: list[Task] = []
    seen: dict[str, int] = {}
    folder = path.parent
    for index, table in enumerate(jobs):
        job_origin = Origin(path, job_lines[index] if index < len(job_lines) else 0)
        task = _read_job(table, index, job_origin, plugin_id, folder, settings, limits,
                         problems, now, priority=priority, trusted=trusted,
                         services=tuple(services), lines=lines)
        if task is not None:
            key = task.id.split(":", 1)[1]
            if key in seen:
                problems.append(Problem(job_origin, f"duplicate key '{key}' (first declared at "
                                        f"{path}:{seen[key]})", f"jobs[{index}] ({key}).key"))
                continue
            seen[key] = job_origin.line
            tasks.append(task)
    report = PluginReport(
        id=plugin_id, source=str(path), name=strings["name"] if isinstance(strings["name"], str) else "",
        version=strings["version"] if isinstance(strings["version"], str) else "",
        description=strings["description"] if isinstance(strings["description"], str) else "",
        loaded=not problems, jobs=len(tasks) if not problems else 0, problems=tuple(problems),
    )
    return report, (tasks if not problems else [])


def _read_job(table: object, index: int, origin: Origin, plugin_id: str, folder: Path,
              settings: Settings, limits: PluginLimits, problems: list[Problem],
              now: datetime, *, priority: int, trusted: bool,
              services: tuple[str, ...], check_module: bool = True,
              lines: KeyLines | None = None) -> Task | None:
    where = f"jobs[{index}]"
    if not isinstance(table, dict):
        problems.append(Problem(origin, f"expected a table, got {_describe(table)}", where))
        return None
    before = len(problems)
    key = table.get("key")
    if isinstance(key, str) and TASK_ID_RE.fullmatch(key) and len(key) <= MAX_ID:
        where = f"{where} ({key})"

    def bad(field: str, message: str) -> None:
        problems.append(Problem(lines.origin(origin, field) if lines and field else origin,
                                message, f"{where}.{field}" if field else where))

    for name in table:
        if name not in JOB_KEYS:
            bad(name, _unknown_key(name, JOB_KEYS))
    kinds = [k for k in ("command", "argv", "callable") if k in table]
    if len(kinds) != 1:
        bad("", "needs exactly one of 'command', 'argv' or 'callable'"
            + (f", not {' and '.join(kinds)}" if kinds else ""))
    display = table.get("display_name")
    if isinstance(display, str) and len(display) > limits.max_display_name:
        bad("display_name", f"is {len(display)} characters; the limit is "
                            f"{limits.max_display_name} (max_display_name)")
    schedule_text = table.get("schedule")
    if isinstance(schedule_text, str) and len(schedule_text) > limits.max_schedule_length:
        bad("schedule", f"is {len(schedule_text)} characters; the limit is "
                        f"{limits.max_schedule_length} (max_schedule_length)")
    callable_spec = table.get("callable")
    if callable_spec is not None and check_module:
        if not isinstance(callable_spec, str) or not CALLABLE_RE.fullmatch(callable_spec):
            bad("callable", f"'{callable_spec}' is not 'module:function'")
        elif _module_file(folder, callable_spec.split(":")[0]) is None:
            bad("callable", f"no module '{callable_spec.split(':')[0]}' in {folder}")
        else:
            module = _module_file(folder, callable_spec.split(":")[0])
            assert module is not None
            if _inside(folder, str(module.relative_to(folder))) is None:
                bad("callable", f"module '{callable_spec}' resolves outside the plugin's folder")
    payload = table.get("payload")
    if payload is not None:
        if not isinstance(payload, dict):
            bad("payload", f"expected a table, got {_describe(payload)}")
        else:
            size = len(json.dumps(payload, default=str).encode())
            if size > limits.max_payload_bytes:
                bad("payload", f"is {size} bytes encoded; the limit is "
                               f"{limits.max_payload_bytes} (max_payload_bytes)")
    cwd = table.get("cwd")
    cwd_path: Path | None = None
    if cwd is not None:
        if not isinstance(cwd, str):
            bad("cwd", f"expected a string, got {_describe(cwd)}")
        elif "\0" in cwd:
            bad("cwd", _NUL)
        else:
            cwd_path = _inside(folder, cwd)
            if cwd_path is None:
                bad("cwd", f"'{cwd}' is outside the plugin's folder {folder} (a plugin's "
                           "paths are relative to its manifest and stay inside its folder)")
    # the rest reads as a config task, with the key as its id
    translated = {k: v for k, v in table.items()
                  if k in JOB_KEYS and k not in ("key", "display_name", "callable", "payload", "cwd")}
    if "key" in table:
        translated["id"] = table["key"]
    if "display_name" in table:
        translated["name"] = table["display_name"]
    # read_task names the job's key and display_name as a task's id and name
    task_lines = (KeyLines(lines.path, lines.text, {"id": "key", "name": "display_name"})
                  if lines else None)
    task = read_task(translated, origin, f"jobs[{index}]", settings, problems, now, folder,
                     owner=f"plugin:{plugin_id}", needs_command=False, lines=task_lines)
    if task is None or len(problems) > before:
        return None
    gap = min_gap_seconds(task.schedule)
    if gap is not None and gap < limits.min_interval:
        bad("schedule", f"fires as often as every {format_duration(gap)}; the limit is every "
                        f"{format_duration(limits.min_interval)} (min_interval)")
        return None
    extra: dict[str, Any] = {}
    fields = {f.name for f in dataclasses.fields(Task)}
    if "plugin_trusted" in fields:
        extra["plugin_trusted"] = trusted
    if "host_services" in fields:
        extra["host_services"] = services
    return dataclasses.replace(
        task,
        id=f"{plugin_id}:{task.id}",
        name=task.name if "display_name" in table else f"{plugin_id}:{task.id}",
        group=plugin_id,
        priority=priority,
        callable=callable_spec,
        payload=payload,
        plugin_dir=str(folder),
        cwd=str(cwd_path) if cwd_path is not None else None,
        **extra,
    )


def discover(settings: Settings, base_dir: Path, now: datetime) -> tuple[list[Task], list[PluginReport]]:
    """Every plugin: the manifests the config names and the installed entry
    points. Their tasks (loaded plugins only, in priority order) and a
    report for each."""
    reports: list[PluginReport] = []
    loaded: list[tuple[int, int, list[Task]]] = []
    owners: dict[str, str] = {}
    from jobctl.perms import check_trusted

    for order, path in enumerate(find_manifests(settings, base_dir)):
        # a manifest names commands to run and a folder to import from: one
        # that another user could change (or replace) refuses the whole config
        check_trusted(path, "plugin manifest", folder=True)
        report, tasks = load_manifest(path, settings, now)
        if report.id != "?" and report.id in owners:
            problem = Problem(Origin(path), f"plugin id '{report.id}' is already declared by "
                              f"{owners[report.id]}", "plugin.id")
            report = dataclasses.replace(report, loaded=False, jobs=0,
                                         problems=(*report.problems, problem))
            tasks = []
        elif report.id != "?":
            owners[report.id] = str(path)
        reports.append(report)
        if report.loaded:
            loaded.append((tasks[0].priority if tasks else 1000, order, tasks))
    ep_tasks, ep_reports = discover_entry_points(settings, now, set(owners))
    reports += ep_reports
    if ep_tasks:
        loaded.append((ep_tasks[0].priority, len(loaded) + 10**6, ep_tasks))
    loaded.sort(key=lambda item: (item[0], item[1]))
    return [t for _p, _o, tasks in loaded for t in tasks], reports



ENTRY_POINT_GROUP = "jobctl.plugins"


def entry_point_plugins_installed() -> bool:
    """A quick look for any installed distribution declaring our entry-point
    group: importlib.metadata costs 40 ms a command just to import and scan,
    so it is used only when there is something to find."""
    import sys

    for base in sys.path:
        try:
            entries = list(os.scandir(base or "."))
        except OSError:
            continue
        for entry in entries:
            if entry.name.endswith((".dist-info", ".egg-info")):
                try:
                    with open(os.path.join(entry.path, "entry_points.txt"), encoding="utf-8") as f:
                        if ENTRY_POINT_GROUP in f.read():
                            return True
                except OSError:
                    continue
    return False


def load_entry_point_plugin(name: str) -> Any:
    """The plugin object an installed entry point names (a class is instantiated)."""
    from importlib.metadata import entry_points

    matches = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not matches:
        raise LookupError(f"no installed plugin entry point '{name}' in group {ENTRY_POINT_GROUP}")
    obj = matches[0].load()
    return obj() if isinstance(obj, type) else obj


def discover_entry_points(settings: Settings, now: datetime,
                          taken: set[str]) -> tuple[list[Task], list[PluginReport]]:
    """Plugins installed as packages (entry-point group `jobctl.plugins`).

    Each object's `schedules()` is called once, here; a plugin whose import,
    `schedules()` or declarations fail is left out whole.
    """
    if not entry_point_plugins_installed():
        return [], []
    from importlib.metadata import entry_points

    tasks: list[Task] = []
    reports: list[PluginReport] = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        source = f"entry point {ep.name} ({ep.value})"
        origin = Origin(Path(f"<entry point {ep.name}>"))
        problems: list[Problem] = []
        plugin_id = "?"
        try:
            obj = ep.load()
            obj = obj() if isinstance(obj, type) else obj
            name = getattr(obj, "name", None)
            if not isinstance(name, str) or not PLUGIN_ID_RE.fullmatch(name):
                raise ValueError(f"name {name!r} is not a valid plugin id "
                                 "([a-z0-9][a-z0-9_-]*)")
            plugin_id = name
            declared = list(obj.schedules())
        except Exception as e:  # noqa: BLE001 - plugin code: anything can go wrong
            problems.append(Problem(origin, f"cannot load: {type(e).__name__}: {e}"))
            reports.append(PluginReport(id=str(plugin_id), source=source, problems=tuple(problems)))
            continue
        if plugin_id in taken:
            problems.append(Problem(origin, f"plugin id '{plugin_id}' is already declared by "
                                    "a manifest or another entry point", "plugin.id"))
        priority = getattr(obj, "priority", 1000)
        trusted = bool(getattr(obj, "trusted", False))
        services = tuple(getattr(obj, "host_services", ()) or ())
        for service in services:
            if service not in HOST_SERVICES:
                problems.append(Problem(origin, f"unknown host service '{service}'; known: "
                                        f"{', '.join(HOST_SERVICES)}", "plugin.host_services"))
        if len(declared) > settings.plugin_limits.max_jobs:
            problems.append(Problem(origin, f"declares {len(declared)} jobs; the limit is "
                                    f"{settings.plugin_limits.max_jobs} (max_jobs)", "jobs"))
        plugin_tasks: list[Task] = []
        for index, decl in enumerate(declared):
            if dataclasses.is_dataclass(decl) and not isinstance(decl, type):
                decl = {k: v for k, v in dataclasses.asdict(decl).items() if v is not None}
            if isinstance(decl, dict):
                for forbidden in ("command", "argv", "callable"):
                    if forbidden in decl:
                        problems.append(Problem(origin, f"'{forbidden}' is not for entry-point "
                                                "plugins: their own run(ctx) executes the job",
                                                f"jobs[{index}].{forbidden}"))
                decl = {**{k: v for k, v in decl.items() if k not in ("command", "argv")},
                        "callable": "placeholder:run"}
            task = _read_job(decl, index, origin, plugin_id, Path("."), settings,
                             settings.plugin_limits, problems, now,
                             priority=priority if isinstance(priority, int) else 1000,
                             trusted=trusted, services=services, check_module=False)
            if task is not None:
                plugin_tasks.append(dataclasses.replace(
                    task, callable=f"{ENTRY_POINT_PREFIX}{ep.name}", plugin_dir=None))
        keys = [t.id for t in plugin_tasks]
        if len(set(keys)) != len(keys):
            problems.append(Problem(origin, "two jobs share one key", "jobs"))
        ok = not problems
        reports.append(PluginReport(id=plugin_id, source=source,
                                    version=str(getattr(obj, "version", "") or ""),
                                    name=str(getattr(obj, "display_name", "") or plugin_id),
                                    loaded=ok, jobs=len(plugin_tasks) if ok else 0,
                                    problems=tuple(problems)))
        if ok:
            taken.add(plugin_id)
            tasks += plugin_tasks
            previous = _LOADED.get(plugin_id)
            if previous is not None and previous is not obj:
                _call_cleanup(plugin_id, previous)
            _LOADED[plugin_id] = obj
    return tasks, reports


# Entry-point plugin objects loaded in this process, by plugin id, so that
# `cleanup()` runs once when the runner stops or reloads them.
_LOADED: dict[str, Any] = {}


def _call_cleanup(plugin_id: str, obj: Any) -> str | None:
    cleanup = getattr(obj, "cleanup", None)
    if cleanup is None:
        return None
    try:
        cleanup()
    except Exception as e:  # noqa: BLE001 - plugin code
        return f"plugin '{plugin_id}' cleanup failed: {type(e).__name__}: {e}"
    return None


def cleanup_plugins() -> list[str]:
    """Call `cleanup()` once on every loaded entry-point plugin; the errors."""
    errors = []
    for plugin_id, obj in list(_LOADED.items()):
        del _LOADED[plugin_id]
        error = _call_cleanup(plugin_id, obj)
        if error:
            errors.append(error)
    return errors
