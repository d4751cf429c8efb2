"""Find and read the TOML config into plain task data, collecting every problem.

`read_config` parses the file once and converts each value with a small
converter; it never stops at the first problem, so a user sees them all.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobctl.errors import BadExpressionError, ConfigIsDirectoryError, ConfigNotFoundError
from jobctl.model import (
    WEBHOOK_EVENTS,
    Alerts,
    AtSchedule,
    is_database_url,
    CatchUp,
    Concurrency,
    Notify,
    Origin,
    PluginLimits,
    Problem,
    RebootSchedule,
    RunAs,
    Schedule,
    Scope,
    Settings,
    Task,
)
from jobctl.timing import load_zone, parse_at, parse_duration, parse_schedule

from tomllib import TOMLDecodeError

if TYPE_CHECKING:
    from jobctl.taskenv import EnvFile, LoadCache

try:
    import rtoml
except ImportError:  # pragma: no cover - rtoml is a dependency
    rtoml = None  # type: ignore[assignment]


def toml_loads(text: str) -> dict[str, Any]:
    """Parse TOML: rtoml (compiled) reads a 10,000-task file in 40 ms where the
    stdlib's tomllib takes 280 ms. Whatever rtoml refuses goes to tomllib,
    which decides (it takes `1e400` as inf, rtoml does not) and, for a real
    syntax error, raises TOMLDecodeError with the standard message, line and
    column. rtoml's offset datetimes carry its own tzinfo class:
    `timing.parse_at` turns them into the stdlib's."""
    if rtoml is not None:
        try:
            return rtoml.loads(text)
        except Exception:  # noqa: BLE001 - tomllib decides and explains
            pass
    import tomllib

    return tomllib.loads(text)


_CHUNK_TABLES = 2000


def _parse_in_chunks(text: str, starts: list[int]) -> dict[str, Any]:
    """Parse a big config a few thousand `[[tasks]]` tables at a time.

    rtoml builds its own tree before the Python one, which doubles the peak
    memory of a 100,000-task file (330 MiB instead of 160); chunks keep that
    tree small. `starts` are the offsets of the `[[tasks]]` headers. The
    result is the whole-file parse's, or the whole file is parsed instead:
    every chunk must hold only `tasks`, and the text before them no `tasks`.
    """
    if rtoml is None or len(starts) < 2 * _CHUNK_TABLES:
        return toml_loads(text)
    try:
        doc: dict[str, Any] = rtoml.loads(text[:starts[0]])
        if "tasks" in doc:
            return toml_loads(text)
        tasks: list[Any] = []
        for i in range(0, len(starts), _CHUNK_TABLES):
            end = starts[i + _CHUNK_TABLES] if i + _CHUNK_TABLES < len(starts) else len(text)
            part = rtoml.loads(text[starts[i]:end])
            if part.keys() != {"tasks"}:
                return toml_loads(text)
            tasks += part["tasks"]
    except Exception:  # noqa: BLE001 - the whole-file parse decides and explains
        return toml_loads(text)
    doc["tasks"] = tasks
    return doc

CONFIG_ENV = "JOBCTL_CONFIG"
STATE_ENV = "JOBCTL_STATE"
CONFIG_NAME = "jobctl.toml"
STATE_NAME = "state.db"

TASK_ID_RE = re.compile(r"[a-z0-9][a-z0-9_.-]*")
MAX_ID = 64
MAX_NAME = 128

SETTINGS_KEYS = (
    "timezone", "state", "shell", "plugins",
    "history_limit", "max_log_bytes", "kill_grace", "shutdown_grace", "plugin_limits",
    "node", "node_lease", "env", "env_file", "retries", "retry_delay", "retry_max_delay",
    "echo_output", "metrics",
    # alerts (hooks.py): the defaults of every task's
    "on_failure", "on_success", "on_recovery", "notify", "webhook", "webhook_events",
    "hook_timeout", "ping_url",
)
PLUGIN_LIMIT_KEYS = ("max_jobs", "min_interval", "max_display_name", "max_schedule_length",
                     "max_payload_bytes")
TASK_KEYS = (
    "id", "name", "group", "description", "schedule", "at", "timezone", "command",
    "argv", "cwd", "env", "timeout", "concurrency", "catch_up", "enabled", "priority",
    "scope", "env_file", "user", "retries", "retry_delay", "retry_max_delay", "jitter",
    "on_failure", "on_success", "on_recovery", "notify", "webhook", "webhook_events",
    "hook_timeout", "ping_url",
)
TOP_KEYS = ("jobctl", "tasks")


# -- which files ---------------------------------------------------------------


def user_config_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_config_dir("jobctl"))


def user_data_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("jobctl"))


def config_candidates(
    flag: Path | None, env: Mapping[str, str], cwd: Path
) -> list[Path]:
    """The paths jobctl looks at for its config, in order."""
    if flag is not None:
        return [flag]
    if env.get(CONFIG_ENV):
        return [Path(env[CONFIG_ENV])]
    return [cwd / CONFIG_NAME, user_config_dir() / CONFIG_NAME]


def find_config(flag: Path | None, env: Mapping[str, str], cwd: Path) -> Path:
    """The config file to read; ConfigNotFoundError naming every path tried
    (ConfigIsDirectoryError when none is a file and one is a directory)."""
    tried = config_candidates(flag, env, cwd)
    for path in tried:
        if path.is_file():
            return path
    for path in tried:
        if path.is_dir():
            raise ConfigIsDirectoryError(path)
    raise ConfigNotFoundError(tried)


NODE_ENV = "JOBCTL_NODE"


def node_name(flag: str | None, env: Mapping[str, str], settings: Settings | None,
              host: str) -> str:
    """--node, else $JOBCTL_NODE, else [jobctl] node, else the host name.
    UsageError for a bad name from the flag or the environment (the config's
    is checked with the rest of the config)."""
    from jobctl.errors import UsageError

    for where, value in (("--node", flag), (NODE_ENV, env.get(NODE_ENV) or None)):
        if value is not None:
            problem = node_name_problem(value)
            if problem:
                raise UsageError(f"{where}: {problem}")
            return value
    if settings is not None and settings.node:
        return settings.node
    return host


def state_path(flag: Path | str | None, env: Mapping[str, str],
               settings: Settings | None) -> Path | str:
    """--state, else $JOBCTL_STATE, else [jobctl] state, else the user data dir.
    A PostgreSQL URL stays text (a Path would fold its `//`); anything else is a path."""
    if flag is not None:
        return flag if is_database_url(flag) else Path(flag)
    if env.get(STATE_ENV):
        text = env[STATE_ENV]
        return text if is_database_url(text) else Path(text)
    if settings is not None and settings.state is not None:
        return settings.state
    return user_data_dir() / STATE_NAME


# -- reading -------------------------------------------------------------------


@dataclass
class ConfigData:
    """What one config file says, converted; `problems` holds what is wrong."""

    path: Path
    settings: Settings
    tasks: list[Task] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    declared_ids: set[str] = field(default_factory=set)
    """Every id the file declares, including those of invalid tasks."""


def _name_re(name: str) -> str:
    """A table or key name, bare or quoted, with the blanks around it."""
    name = re.escape(name)
    return rf"""[ \t]*(?:{name}|"{name}"|'{name}')[ \t]*"""


def _header_re(name: str, array: bool) -> str:
    return rf"\[\[{_name_re(name)}\]\]" if array else rf"\[{_name_re(name)}\]"


# no ^ anchor: a pattern that starts with a literal lets the regex engine
# skip ahead with a fast scan; the line start is checked by hand
_ANY_HEADER_RE = re.compile(f"{_header_re('tasks', True)}|{_header_re('jobctl', False)}")
_TOML_LINE_RE = re.compile(r"\(at line (\d+), column (\d+)\)")
# TOML strings and comments, matched whole so that a header or key they
# hold is never taken for one: multi-line strings may end in up to five
# quotes; a `'''` inside a "basic string" opens nothing
_SKIP = (r'"""(?:[^"\\]|\\[\s\S]|""?(?!"))*+"{3,5}'
         r"|'''(?:[^']|''?(?!'))*+'{3,5}"
         r'|"(?:[^"\\\n]|\\.)*+"'
         r"|'[^'\n]*'"
         r"|#[^\n]*")


def _line_starts(hit: str, in_table: bool = False) -> re.Pattern[str]:
    """Matches `hit` at a line start outside strings and comments (group
    `hit`); with `in_table`, also the next header (group `end`)."""
    end = r"|(?P<end>\[)" if in_table else ""
    return re.compile(rf"(?m)^[ \t]*(?:(?P<hit>{hit}){end})|{_SKIP}")


@functools.cache
def _key_re(key: str) -> re.Pattern[str]:
    return _line_starts(f"{_name_re(key)}[=.]", in_table=True)


def find_headers(text: str, array: str, table: str) -> tuple[list[int], int]:
    """1-based lines of each `[[array]]` header and of the first `[table]`
    (0 if none), skipping strings and comments."""
    pattern = _line_starts(f"(?P<array>{_header_re(array, True)})|{_header_re(table, False)}")
    arrays: list[int] = []
    first = 0
    number, pos = 1, 0
    for m in pattern.finditer(text):
        if m.lastgroup is None:
            continue  # a string or a comment
        number += text.count("\n", pos, m.start())
        pos = m.start()
        if m.group("array") is not None:
            arrays.append(number)
        elif not first:
            first = number
    return arrays, first


def _header_lines(text: str, offsets: list[int] | None = None) -> tuple[list[int], int]:
    """1-based lines of each `[[tasks]]` header and of `[jobctl]` (0 if none).

    Skips strings and comments, so a header written inside one is not
    counted. If `offsets` is given and the file has no multi-line strings, it
    receives the headers' character offsets.
    """
    if '"""' in text or "\'\'\'" in text:
        return find_headers(text, "tasks", "jobctl")
    # fast path: no multi-line strings, so every header match is real
    tasks: list[int] = []
    settings = 0
    number, pos = 1, 0
    for m in _ANY_HEADER_RE.finditer(text):
        start = m.start()
        line_start = text.rfind("\n", 0, start) + 1
        if line_start != start and text[line_start:start].strip(" \t"):
            continue  # not at the start of a line
        number += text.count("\n", pos, start)
        pos = start
        if text.startswith("[[", start):
            tasks.append(number)
            if offsets is not None:
                offsets.append(start)
        elif not settings:
            settings = number
    return tasks, settings


class KeyLines:
    """Finds the line a key is written on, for a problem's origin.

    Only problems ask, so a valid config pays nothing; without `text` the
    file is read again at the first question (read_config drops its copy
    once parsed, to lower the peak). `aliases` maps a key as the problem
    names it to the key as written.
    """

    def __init__(self, path: Path, text: str | None = None,
                 aliases: Mapping[str, str] | None = None) -> None:
        self.path = path
        self.text = text
        self.aliases = aliases or {}
        # the last table asked about, (line, offset): they are asked in file order
        self.mark = (1, 0)

    def _text(self) -> str:
        if self.text is None:
            try:
                self.text = self.path.read_bytes().decode("utf-8-sig")
            except (OSError, UnicodeDecodeError):
                self.text = ""
        return self.text

    def _offset(self, line: int) -> int:
        """Where 1-based `line` starts; -1 past the end."""
        text = self._text()
        number, pos = self.mark if self.mark[0] <= line else (1, 0)
        while number < line and pos >= 0:
            pos = text.find("\n", pos)
            pos = pos + 1 if pos >= 0 else -1
            number += 1
        if pos >= 0:
            self.mark = (line, pos)
        return pos

    def _hit(self, pattern: re.Pattern[str], pos: int) -> int:
        """Offset of the first hit of `pattern` from `pos`; -1 if none
        (before its table ends, for a pattern made `in_table`)."""
        for m in pattern.finditer(self._text(), pos):
            if m.lastgroup == "hit":
                return m.start()
            if m.lastgroup == "end":
                break
        return -1

    def origin(self, table: Origin, key: str, within: str = "") -> Origin:
        """Where `key` is written in the table whose header is at `table`:
        the line starting with the key, bare or quoted, then `=` or `.`; else
        the table's own line (the key is in an inline table, or not written
        at all). With `within` (a dotted sub-table name such as
        `jobctl.plugin_limits`), the key is looked for under that sub-table's
        header, else the line of the sub-table's own key in `table`."""
        text = self._text()
        if within:
            header = r"\.".join(_name_re(part) for part in within.split("."))
            at = self._hit(_line_starts(rf"\[{header}\]"), 0)
            if at < 0:
                return self.origin(table, within.rpartition(".")[2])
            table = Origin(table.path, text.count("\n", 0, at) + 1)
        start = self._offset(table.line) if table.line else -1
        body = text.find("\n", start) + 1 if start >= 0 else 0
        at = self._hit(_key_re(self.aliases.get(key, key)), body) if body else -1
        return Origin(table.path, table.line + text.count("\n", start, at)) if at >= 0 else table


    def top_level(self, key: str) -> Origin:
        """Where top-level `key` is first written: a `[key]`, `[key.sub]` or
        `[[key]]` header, or `key = ...`/`key.sub = ...` before the first
        header; the file without a line if neither is found."""
        name = _name_re(key)
        pattern = _line_starts(rf"\[\[?{name}[\].]|{name}[=.]", in_table=True)
        text = self._text()
        header = _line_starts(rf"\[\[?{name}[\].]")
        for candidate in (pattern, header):  # a key before any header, else a header
            at = self._hit(candidate, 0)
            if at >= 0:
                return Origin(self.path, text.count("\n", 0, at) + 1)
        return Origin(self.path)


def _describe(value: object) -> str:
    kinds = {bool: "a boolean", int: "an integer", float: "a float", str: "a string",
             list: "an array", dict: "a table"}
    for kind, label in kinds.items():
        if type(value) is kind:
            return label
    if isinstance(value, datetime):
        return "a datetime"
    return type(value).__name__


def _unknown_key(key: str, allowed: tuple[str, ...]) -> str:
    import difflib

    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else f"; allowed: {', '.join(allowed)}"
    return f"unknown key '{key}'{hint}"


class _Invalid(Exception):
    pass


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"expected a string, got {_describe(value)}")
    return value


def _nonempty(value: object) -> str:
    if type(value) is not str:
        raise _Invalid(f"expected a string, got {_describe(value)}")
    if not value or value.isspace():
        raise _Invalid("must not be empty")
    return value


_NUL = "contains a NUL character (\\u0000), which no command line, path or environment can hold"


def _os_string(value: object) -> str:
    text = _nonempty(value)
    if "\0" in text:
        raise _Invalid(_NUL)
    return text


def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"expected true or false, got {_describe(value)}")
    return value


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(f"expected an integer, got {_describe(value)}")
    return value


def _positive_int(value: object) -> int:
    number = _int(value)
    if number < 1:
        raise _Invalid(f"must be at least 1, got {number}")
    return number


def _duration(value: object) -> float:
    try:
        return parse_duration(value)
    except ValueError as e:
        raise _Invalid(str(e)) from None


def _grace(value: object) -> float:
    if value == 0 and not isinstance(value, bool):
        return 0.0
    return _duration(value)


def _zone(value: object) -> str:
    name = _string(value)
    try:
        load_zone(name)
    except ValueError as e:
        raise _Invalid(str(e)) from None
    return name


def _string_list(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise _Invalid(f"expected an array of strings, got {_describe(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise _Invalid(f"item {i} should be a string, got {_describe(item)}")
    return tuple(value)


def _argv(value: object) -> tuple[str, ...]:
    items = _string_list(value)
    if not items or not items[0]:
        raise _Invalid("must name a program: a non-empty array like [\"/usr/bin/backup\", \"--all\"]")
    for i, item in enumerate(items):
        if "\0" in item:
            raise _Invalid(f"item {i} {_NUL}")
    return items


def _env(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _Invalid(f"expected a table of strings, got {_describe(value)}")
    out: dict[str, str] = {}
    for key, item in value.items():
        if "\0" in key:
            shown = key.replace("\0", "\\u0000")
            raise _Invalid(f"name '{shown}' {_NUL}")
        if not key or "=" in key:
            raise _Invalid(f"'{key}' is not a valid environment variable name")
        if not isinstance(item, str):
            raise _Invalid(f"{key} should be a string, got {_describe(item)} (quote it)")
        if "\0" in item:
            raise _Invalid(f"{key} {_NUL}")
        out[key] = item
    return out


def _make_enum(kind: type[Concurrency] | type[CatchUp] | type[Scope] | type[Notify]
               ) -> Callable[[object], Any]:
    allowed = [m.value for m in kind]

    def convert(value: object) -> Any:
        text = _string(value)
        try:
            return kind(text)
        except ValueError:
            import difflib

            close = difflib.get_close_matches(text, allowed, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise _Invalid(
                f"unknown value '{text}'{hint}; expected one of: {', '.join(allowed)}"
            ) from None

    return convert


_CONVERT_ENUM = {kind: _make_enum(kind) for kind in (Concurrency, CatchUp, Scope, Notify)}


def _enum(kind: type[Concurrency] | type[CatchUp] | type[Scope]) -> Callable[[object], Any]:
    return _CONVERT_ENUM[kind]


def _hook(value: object) -> str | tuple[str, ...]:
    if isinstance(value, list):
        return _argv(value)
    if not isinstance(value, str):
        raise _Invalid(f"expected a shell command string or an argv array, got {_describe(value)}")
    return _os_string(value)


def _url(value: object) -> str:
    from urllib.parse import urlsplit

    text = _nonempty(value).strip()
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as e:
        raise _Invalid(f"'{text}' is not a valid URL: {e}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _Invalid(f"'{text}' is not an http:// or https:// URL with a host")
    if any(c.isspace() or ord(c) < 32 for c in text):
        raise _Invalid(f"'{text}' contains a space or control character")
    return text


def _webhook_events(value: object) -> frozenset[str]:
    items = _string_list(value)
    for item in items:
        if item not in WEBHOOK_EVENTS:
            raise _Invalid(f"unknown event '{item}'; expected some of: {', '.join(WEBHOOK_EVENTS)}")
    return frozenset(items)


def _hook_timeout(value: object) -> float:
    seconds = _duration(value)
    if seconds <= 0:
        raise _Invalid(f"must be more than 0s, got {seconds:g}s")
    return seconds


_ALERT_CONVERTERS: dict[str, Callable[[object], Any]] = {
    "on_failure": _hook,
    "on_success": _hook,
    "on_recovery": _hook,
    "notify": _CONVERT_ENUM[Notify],
    "webhook": _url,
    "webhook_events": _webhook_events,
    "hook_timeout": _hook_timeout,
    "ping_url": _url,
}


def _task_id(value: object) -> str:
    text = _string(value)
    if len(text) > MAX_ID:
        raise _Invalid(f"'{text[:20]}...' is {len(text)} characters; the limit is {MAX_ID}")
    if not TASK_ID_RE.fullmatch(text):
        raise _Invalid(
            f"'{text}' is not a valid id: use lowercase letters, digits, '_', '.', '-', "
            "starting with a letter or digit"
        )
    return text


_COMMENT_RE = re.compile(r"(?:^|\s)#")


def _schedule(value: object) -> Schedule:
    text = _nonempty(value)
    try:
        return parse_schedule(text)
    except BadExpressionError as e:
        m = _COMMENT_RE.search(text)
        if m is None:
            raise _Invalid(e.reason) from None
        before, comment = text[:m.start()].strip(), text[m.end():].strip()
        raise _Invalid(
            f"'#' inside the quotes is part of the schedule, not a comment: write the "
            f'comment after the closing quote, as in schedule = "{before}"  # {comment}'
        ) from None


def _name(value: object) -> str:
    text = _nonempty(value)
    if len(text) > MAX_NAME:
        raise _Invalid(f"is {len(text)} characters; the limit is {MAX_NAME}")
    return text


class _Reader:
    """Converts one table's values, recording a Problem per bad value."""

    def __init__(self, table: Mapping[str, Any], origin: Origin, where: str,
                 problems: list[Problem], lines: KeyLines | None = None,
                 within: str = "") -> None:
        self.table = table
        self.origin = origin
        self.where = where
        self.problems = problems
        self.lines = lines
        self.within = within

    def error(self, key: str, message: str, severity: str = "error") -> None:
        where = f"{self.where}.{key}" if key else self.where
        origin = self.lines.origin(self.origin, key, self.within) if self.lines and key else self.origin
        self.problems.append(Problem(origin, message, where, severity))

    def get(self, key: str, convert: Callable[[object], Any], default: Any = None) -> Any:
        if key not in self.table:
            return default
        try:
            return convert(self.table[key])
        except _Invalid as e:
            self.error(key, str(e))
            return default

    def check_keys(self, allowed: tuple[str, ...]) -> None:
        for key in self.table:
            if key not in allowed:
                self.error(key, _unknown_key(key, allowed))


def read_settings(table: object, path: Path, line: int, system_zone: str,
                  problems: list[Problem], lines: KeyLines | None = None,
                  cache: LoadCache | None = None) -> Settings:
    origin = Origin(path, line)
    if not isinstance(table, dict):
        problems.append(Problem(origin, f"[jobctl] must be a table, got {_describe(table)}", "jobctl"))
        return Settings(timezone=system_zone)
    r = _Reader(table, origin, "jobctl", problems, lines)
    r.check_keys(SETTINGS_KEYS)
    state = r.get("state", _nonempty)
    base = path.parent
    env_file = r.get("env_file", _os_string)
    env_path = (base / Path(env_file).expanduser()).absolute() if env_file else None
    file_env: Mapping[str, str] = {}
    if env_path is not None:
        read = _env_file(str(env_path), cache)
        if read.error:
            r.error("env_file", read.error)
        elif read.warning:
            r.error("env_file", read.warning, severity="warning")
        file_env = read.values
    return Settings(
        timezone=r.get("timezone", _zone, system_zone),
        # a URL is kept as written, never resolved against the config's folder
        state=(state if is_database_url(state) else base / Path(state).expanduser())
        if state else None,
        shell=_shell(r),
        plugins=r.get("plugins", _string_list, ()),
        history_limit=r.get("history_limit", _positive_int, 1000),
        max_log_bytes=r.get("max_log_bytes", _positive_int, 1024 * 1024),
        kill_grace=r.get("kill_grace", _grace, 10.0),
        shutdown_grace=r.get("shutdown_grace", _grace, 30.0),
        plugin_limits=_plugin_limits(table.get("plugin_limits", {}), origin, problems, lines),
        node=r.get("node", _node_name),
        node_lease=r.get("node_lease", _node_lease, 30.0),
        env=r.get("env", _env, {}),
        env_file=env_path,
        file_env=file_env,
        **_retry_settings(r),
        echo_output=r.get("echo_output", _bool, True),
        metrics=r.get("metrics", _metrics_address),
        alerts=Alerts(**{key: value for key in _ALERT_CONVERTERS if key in table
                         and (value := r.get(key, _ALERT_CONVERTERS[key])) is not None}),
    )


def _env_file(path: str, cache: LoadCache | None) -> EnvFile:
    from jobctl.taskenv import read_env_file

    return cache.env_file(path) if cache is not None else read_env_file(Path(path))


MAX_RETRIES = 100


def _retries(value: object) -> int:
    number = _int(value)
    if not 0 <= number <= MAX_RETRIES:
        raise _Invalid(f"must be from 0 to {MAX_RETRIES}, got {number}")
    return number


def _retry_settings(r: _Reader) -> dict[str, Any]:
    """`retries`, `retry_delay`, `retry_max_delay` of one table (defaults
    for the keys it leaves out); a delay above its cap is a problem."""
    out = {"retries": r.get("retries", _retries, 0),
           "retry_delay": r.get("retry_delay", _duration, 10.0),
           "retry_max_delay": r.get("retry_max_delay", _duration, 600.0)}
    problem = _retry_delay_problem(out["retry_delay"], out["retry_max_delay"])
    if problem:
        r.error("retry_delay", problem)
    return out


def _retry_delay_problem(delay: float, cap: float) -> str | None:
    if delay <= cap:
        return None
    from jobctl.timing import format_duration

    return (f"{format_duration(delay)} is longer than retry_max_delay "
            f"({format_duration(cap)}), which caps every retry's delay; raise retry_max_delay")


def parse_listen_address(text: str) -> tuple[str, int]:
    """`HOST:PORT` (an IPv6 host in brackets) as (host, port); a bare
    `:PORT` means loopback, 127.0.0.1. Port 0 asks the system for a free one.
    ValueError says what is wrong."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        raise ValueError(f"'{text}' is not HOST:PORT (e.g. ':9100' or '0.0.0.0:9100')")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host:
        host = "127.0.0.1"
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"'{text}': the port must be a number from 0 to 65535")
    if any(c.isspace() or c in "/[]" for c in host):
        raise ValueError(f"'{text}': '{host}' is not a host name or address")
    return host, int(port_text)


def _metrics_address(value: object) -> tuple[str, int]:
    try:
        return parse_listen_address(_nonempty(value))
    except ValueError as e:
        raise _Invalid(str(e)) from None


NODE_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
MAX_NODE = 64
MIN_NODE_LEASE = 1.0


def node_name_problem(text: str) -> str | None:
    """What is wrong with a node name (None: nothing): like a task id, upper
    case allowed (host names)."""
    if len(text) > MAX_NODE:
        return f"'{text[:20]}...' is {len(text)} characters; the limit is {MAX_NODE}"
    if not NODE_NAME_RE.fullmatch(text):
        return (f"'{text}' is not a valid node name: use letters, digits, '_', '.', '-', "
                "starting with a letter or digit")
    return None


def _node_name(value: object) -> str:
    text = _string(value)
    problem = node_name_problem(text)
    if problem:
        raise _Invalid(problem)
    return text


def _node_lease(value: object) -> float:
    seconds = _duration(value)
    if seconds < MIN_NODE_LEASE:
        raise _Invalid(f"must be at least {MIN_NODE_LEASE:g}s, got {seconds:g}s")
    return seconds


def _shell(r: _Reader) -> str:
    """`shell`: one program, run as SHELL -c COMMAND. A shell that is not on
    this machine is a warning (the config may be meant for another one)."""
    shell: str = r.get("shell", _os_string, "/bin/sh")
    if "shell" not in r.table or shell == "/bin/sh":
        return shell
    if any(c.isspace() for c in shell):
        r.error("shell", f"'{shell}' has arguments; the shell is one program, run as "
                         "SHELL -c COMMAND (put options in a wrapper script)")
        return "/bin/sh"
    import shutil

    if shutil.which(shell) is None:
        r.error("shell", f"'{shell}' is not an executable program here: every task with a "
                         "`command` would fail to start", severity="warning")
    return shell


def _plugin_limits(table: object, origin: Origin, problems: list[Problem],
                   lines: KeyLines | None) -> PluginLimits:
    if not isinstance(table, dict):
        problems.append(Problem(lines.origin(origin, "plugin_limits") if lines else origin,
                                f"expected a table, got {_describe(table)}", "jobctl.plugin_limits"))
        return PluginLimits()
    r = _Reader(table, origin, "jobctl.plugin_limits", problems, lines, within="jobctl.plugin_limits")
    r.check_keys(PLUGIN_LIMIT_KEYS)
    default = PluginLimits()
    return PluginLimits(
        max_jobs=r.get("max_jobs", _positive_int, default.max_jobs),
        min_interval=r.get("min_interval", _grace, default.min_interval),
        max_display_name=r.get("max_display_name", _positive_int, default.max_display_name),
        max_schedule_length=r.get("max_schedule_length", _positive_int, default.max_schedule_length),
        max_payload_bytes=r.get("max_payload_bytes", _positive_int, default.max_payload_bytes),
    )


_TASK_CONVERTERS: dict[str, Callable[[object], Any]] = {
    "name": _name,
    "group": _nonempty,
    "description": _string,
    "command": _os_string,
    "argv": _argv,
    "cwd": _os_string,
    "env": _env,
    "timeout": _duration,
    "concurrency": _CONVERT_ENUM[Concurrency],
    "catch_up": _CONVERT_ENUM[CatchUp],
    "enabled": _bool,
    "priority": _int,
    "scope": _CONVERT_ENUM[Scope],
    "env_file": _os_string,
    "user": _os_string,
    "retries": _retries,
    "retry_delay": _duration,
    "retry_max_delay": _duration,
    "jitter": _grace,
}


def read_task(
    table: Mapping[str, Any],
    origin: Origin,
    where: str,
    settings: Settings,
    problems: list[Problem],
    now: datetime,
    base_dir: Path,
    owner: str = "config",
    needs_command: bool = True,
    lines: KeyLines | None = None,
    cache: LoadCache | None = None,
) -> Task | None:
    """Convert one task table; None (with problems recorded) if it is invalid.

    Written for speed (100,000 tasks resolve in well under a second): one pass
    over the keys the table has, with defaults for the rest. A problem with a
    key is placed on the key's line when `lines` is given.
    """
    errors = 0

    def error(key: str, message: str, severity: str = "error") -> None:
        nonlocal errors
        if severity == "error":
            errors += 1
        problems.append(Problem(lines.origin(origin, key) if lines and key else origin,
                                message, f"{where}.{key}" if key else where, severity))

    task_id = None
    if "id" not in table:
        error("id", "missing required key 'id'")
    else:
        try:
            task_id = _task_id(table["id"])
            where = f"{where} ({task_id})"
        except _Invalid as e:
            error("id", str(e))
    values: dict[str, Any] = {}
    alerts: dict[str, Any] = {}
    zone_name = settings.timezone
    for key, raw in table.items():
        convert = _TASK_CONVERTERS.get(key)
        if convert is not None:
            try:
                values[key] = convert(raw)
            except _Invalid as e:
                if key == "command" and isinstance(raw, list):
                    error(key, f"{e}; a program and its arguments as a list go in "
                               "'argv' (argv = [...], run without a shell)")
                else:
                    error(key, str(e))
        elif key == "timezone":
            try:
                zone_name = _zone(raw)
            except _Invalid as e:
                error(key, str(e))
        elif key in _ALERT_CONVERTERS:
            try:
                alerts[key] = _ALERT_CONVERTERS[key](raw)
            except _Invalid as e:
                error(key, str(e))
        elif key not in ("id", "schedule", "at"):
            error(key, _unknown_key(key, TASK_KEYS))

    schedule: Schedule | None = None
    has_schedule, has_at = "schedule" in table, "at" in table
    if has_schedule == has_at:
        error("", "needs exactly one of 'schedule' (recurring) or 'at' (one-shot)"
              + (", not both" if has_schedule else ""))
    elif has_schedule:
        try:
            schedule = _schedule(table["schedule"])
        except _Invalid as e:
            error("schedule", str(e))
    else:
        raw = table["at"]
        try:
            at = parse_at(raw, load_zone(zone_name))
            schedule = AtSchedule(text=raw.isoformat() if isinstance(raw, datetime) else str(raw), at=at)
            if at <= now:
                error("at", f"{at.isoformat()} is in the past; the task will never run",
                      severity="warning")
        except ValueError as e:
            error("at", str(e))

    if needs_command and ("command" in table) == ("argv" in table):
        error("", "needs exactly one of 'command' (a shell string) or 'argv' (a list, no shell)"
              + (", not both" if "command" in table else ""))
    if isinstance(schedule, RebootSchedule) and values.get("scope") is Scope.CLUSTER:
        error("scope", "'cluster' cannot go with @reboot: @reboot means one node's start, so "
                       "its scope is 'node'")
    env_file = values.get("env_file")
    if env_file is not None:
        from jobctl.taskenv import absolute_path

        values["env_file"] = (cache.path(base_dir, env_file) if cache is not None
                              else absolute_path(base_dir, env_file))
        read = _env_file(values["env_file"], cache)
        if read.error:
            error("env_file", read.error)
        elif read.warning:
            error("env_file", read.warning, severity="warning")
        values["file_env"] = read.values
    user = values.get("user")
    if user is not None:
        from jobctl.taskenv import UnknownUserError, lookup_user

        try:
            run_as = cache.user(user) if cache is not None else lookup_user(user)
        except UnknownUserError as e:
            error("user", str(e))
        else:
            # the task's own line: the key's is found only if a problem needs it
            # (user_switch_problems), so a valid config pays nothing for it
            values["user"] = RunAs(run_as.name, run_as.uid, run_as.gid, run_as.groups,
                                   run_as.home, run_as.shell, origin, f"{where}.user")
    for key in ("retries", "retry_delay", "retry_max_delay"):
        if key not in values and key not in table:
            values[key] = getattr(settings, key)  # the [jobctl] default
    if "retry_delay" in table or "retry_max_delay" in table:
        problem = _retry_delay_problem(values.get("retry_delay", settings.retry_delay),
                                       values.get("retry_max_delay", settings.retry_max_delay))
        if problem:
            error("retry_delay", problem)
    jitter = values.get("jitter")
    if jitter and schedule is not None:
        problem = _jitter_problem(jitter, schedule)
        if problem:
            error("jitter", problem)
    if errors or schedule is None or task_id is None:
        return None
    cwd = values.get("cwd")
    if cwd is not None:
        values["cwd"] = str(base_dir / Path(cwd).expanduser())
    if "name" not in values:
        values["name"] = task_id
    # the task's own alert keys replace [jobctl]'s defaults one by one
    merged = replace(settings.alerts, **alerts) if alerts else settings.alerts
    if merged.active:
        values["alerts"] = merged
    return Task.build(id=task_id, schedule=schedule, timezone=zone_name, owner=owner,
                      origin=origin, **values)


def user_switch_problems(tasks: Iterable[Task], euid: int, severity: str = "error") -> list[Problem]:
    """One problem per task with a `user`, on its `user` line, when `euid`
    is not root's: only a root runner can start a process as another user."""
    if euid == 0:
        return []
    problems = []
    lines: dict[Path, KeyLines] = {}
    for task in tasks:
        run_as = task.user
        if run_as is None or run_as.origin is None:
            continue
        path = run_as.origin.path
        key_lines = lines.setdefault(path, KeyLines(path))
        problems.append(Problem(
            key_lines.origin(run_as.origin, "user"),
            f"runs as user '{run_as.name}', which only a runner running as root can do "
            f"(this is uid {euid}); a runner that is not root refuses this config",
            run_as.where, severity))
    return problems


def require_user_switch(tasks: Iterable[Task], euid: int) -> None:
    """ConfigError naming each task with a `user` unless `euid` is root's:
    a runner, or run-now, that would have to start one refuses up front."""
    from jobctl.errors import ConfigError

    problems = user_switch_problems(tasks, euid)
    if problems:
        raise ConfigError(problems)


def _jitter_problem(jitter: float, schedule: Schedule) -> str | None:
    """Jitter must leave each fire before the next slot: it is refused (not
    clamped) when it reaches the shortest gap between two fires."""
    from jobctl.timing import format_duration, min_gap_seconds

    if isinstance(schedule, RebootSchedule):
        return "@reboot has no slot to delay; remove jitter"
    gap = min_gap_seconds(schedule)
    if gap is not None and jitter >= gap:
        return (f"{format_duration(jitter)} is not shorter than the shortest gap between two "
                f"fires of '{schedule.text}' ({format_duration(gap)}): a jittered fire would "
                "reach the next slot")
    return None


# tomllib's words for a string that never closes: at the end of the file
# (multi-line strings), or at the end of its line (one-line strings)
_UNTERMINATED = ("Unterminated string", """Expected "'''\"""", "Illegal character '\\n'")


def _unterminated_string(text: str) -> tuple[int, int] | None:
    """(line, column) of the first quote outside comments and whole strings."""
    for m in re.finditer(rf"{_SKIP}|(?P<open>[\"'])", text):
        if m.lastgroup == "open":
            start = m.start()
            line_start = text.rfind("\n", 0, start) + 1
            # an unterminated triple quote's first two quotes match as ""
            while start > line_start and text[start - 1] == m.group():
                start -= 1
            return text.count("\n", 0, start) + 1, start - line_start + 1
    return None


def _not_utf8(path: Path, e: UnicodeDecodeError) -> Problem:
    """The problem for a file that is not UTF-8, at the bad byte's line and column."""
    data = e.object
    line_start = data.rfind(b"\n", 0, e.start) + 1
    column = len(data[line_start:e.start].decode("utf-8", "replace")) + 1
    return Problem(Origin(path, data.count(b"\n", 0, e.start) + 1),
                   f"not UTF-8 text: byte 0x{data[e.start]:02x} (column {column})")


def read_config(path: Path, system_zone: str, now: datetime) -> ConfigData:
    """Read and convert a config file; never raises for what the file says.

    UntrustedFileError if someone other than this user (or root) could
    change the file: whoever can write it runs commands as us.
    """
    from jobctl.perms import check_trusted

    check_trusted(path, "config")
    problems: list[Problem] = []
    origin = Origin(path)
    try:
        # utf-8-sig: an editor's byte-order mark is not a TOML syntax error
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as e:
        problems.append(Problem(origin, f"cannot read: {e.strerror or e}"))
        return ConfigData(path, Settings(timezone=system_zone), problems=problems)
    except UnicodeDecodeError as e:
        problems.append(_not_utf8(path, e))
        return ConfigData(path, Settings(timezone=system_zone), problems=problems)
    offsets: list[int] = []
    task_lines, settings_line = _header_lines(text, offsets)
    try:
        doc = _parse_in_chunks(text, offsets) if offsets else toml_loads(text)
    except TOMLDecodeError as e:
        message = str(e)
        m = _TOML_LINE_RE.search(message)
        line = int(m.group(1)) if m else 0
        message = _TOML_LINE_RE.sub("", message).strip()
        col = f" (column {m.group(2)})" if m else ""
        if message.startswith(_UNTERMINATED):
            # tomllib says where the file or the line ended; the user needs
            # where the string opened
            opened = _unterminated_string(text)
            if opened is not None and (not m or opened[0] == line):
                line, column = opened
                message, col = "Unterminated string", f" (it opens at column {column})"
        problems.append(Problem(Origin(path, line), f"TOML syntax error: {message}{col}"))
        return ConfigData(path, Settings(timezone=system_zone), problems=problems)

    del text, offsets  # a big config's text is not needed past here: lower the peak
    lines = KeyLines(path)  # reads it again if there are problems
    for key in doc:
        if key not in TOP_KEYS:
            problems.append(Problem(lines.top_level(key), _unknown_key(key, TOP_KEYS)))
    from jobctl.taskenv import LoadCache

    cache = LoadCache()
    settings = (
        read_settings(doc["jobctl"], path, settings_line, system_zone, problems, lines, cache)
        if "jobctl" in doc else Settings(timezone=system_zone)
    )
    data = ConfigData(path, settings, problems=problems)
    tables = doc.get("tasks", [])
    if not isinstance(tables, list):
        problems.append(Problem(origin, "write each task as a [[tasks]] table (double brackets)", "tasks"))
        return data
    seen: dict[str, Origin] = {}
    base_dir = path.parent
    for index, table in enumerate(tables):
        line = task_lines[index] if index < len(task_lines) else 0
        task_origin = Origin(path, line)
        where = f"tasks[{index}]"
        if not isinstance(table, dict):
            problems.append(Problem(task_origin, f"expected a table, got {_describe(table)}", where))
            continue
        task = read_task(table, task_origin, where, settings, problems, now, base_dir,
                         lines=lines, cache=cache)
        tables[index] = None  # free each table once read: lower the peak
        task_id = table.get("id") if isinstance(table.get("id"), str) else None
        if task_id is not None:
            data.declared_ids.add(task_id)
        if task_id is not None and (task is not None or TASK_ID_RE.fullmatch(task_id)):
            if task_id in seen:
                problems.append(Problem(
                    task_origin,
                    f"duplicate id '{task_id}' (first declared at {seen[task_id]})",
                    f"{where} ({task_id}).id",
                ))
                continue
            seen[task_id] = task_origin
        if task is not None:
            data.tasks.append(task)
    return data
