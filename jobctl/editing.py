"""Change the config file in place, keeping everything else the user wrote.

The text functions (`add_task`, `remove_task`, `set_keys`) take the file's
text and return the new text; they touch only the lines of the task they
edit, so comments, order, blank lines and quoting elsewhere stay byte for
byte. Each checks its own result: the new text must parse to exactly the
old data with the one intended change, or it raises EditError and nothing
is written. Whether the result is a *valid* config is for `resolve`:
`save_config` resolves the new text as a temporary file beside the config
and only then moves it into place (`atomic_write`).

How a task's lines are found: a small scanner classifies each line (blank,
comment, table header, key/value content, multi-line strings and arrays
included); a task's table runs from its `[[tasks]]` header through its last
key/value line, sub-tables such as `[tasks.env]` included. Comment lines
directly above a header (with a blank line above them) belong to that task;
a comment block touching two tables is left alone.

Values are changed with tomlkit, a style-preserving TOML library, applied to
that one table's text only; new keys are written as one line each after the
table's last key (tomlkit would add a blank line before a sub-table).

`run_editor` starts the user's editor for `jobctl edit`: an interactive
foreground child, unlike the job runs `executor` spawns.
"""

from __future__ import annotations

import errno
import hashlib
import math
import os
import re
import stat
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import Item, Table

from jobctl.config import toml_loads
from jobctl.errors import ConfigError, JobctlError, UnknownTaskError
from jobctl.model import Origin, Problem, ScheduleSet
from jobctl.perms import check_trusted

ABSENT = "absent"
"""The fingerprint of a file that does not exist."""


class EditError(JobctlError):
    """An edit jobctl will not make in place; the file is left as it was."""


class ConcurrentChangeError(JobctlError):
    """The config changed on disk since jobctl read it; nothing was overwritten."""

    def __init__(self, path: Path, kept: Path | None = None) -> None:
        self.path = path
        self.kept = kept
        message = f"{path} was changed by someone else meanwhile; it was not overwritten"
        if kept is not None:
            message += f". Your edited version is kept in {kept}"
        else:
            message += "; try again"
        super().__init__(message)


class FolderNotWritableError(PermissionError):
    """The folder of a file to replace is not writable: `atomic_write` needs it."""

    def __init__(self, folder: Path) -> None:
        super().__init__(errno.EACCES, f"its folder {folder} is not writable (jobctl writes the "
                         "file atomically: a new version in that folder, renamed into place)")


# -- the starter config ----------------------------------------------------------

STARTER = """\
# jobctl config: each [[tasks]] table below is one scheduled task.
# Every key is described in jobctl's README ("Config reference").
#
#   jobctl validate    check this file
#   jobctl list        every task and its next run
#   jobctl run         the scheduler, in the foreground (Ctrl-C stops it)
#   jobctl edit        edit this file; it is checked before it is saved

[jobctl]
# Default zone for tasks that set none (an IANA name). Default: the system's.
# timezone = "Europe/Berlin"
# Run history and logs; a relative path is relative to this file.
# Default: state.db in the user data dir.
# state = "jobctl-state/state.db"

# An example: every hour, on the hour. Change it or remove it.
[[tasks]]
id = "hello"                      # required: a-z, 0-9, '_', '.', '-'
name = "Say hello"                # default: the id
schedule = "0 * * * *"            # cron (5 fields), @daily & co, @reboot, "every 5m"
command = "echo hello from jobctl"
# timezone = "UTC"                # default: [jobctl] timezone
# timeout = "5m"                  # stop the run after this long
# concurrency = "forbid"          # forbid | allow | replace
# enabled = false

# Another shape: a program and its arguments (no shell), at 02:30 every night.
# [[tasks]]
# id = "backup"
# schedule = "30 2 * * *"
# argv = ["/usr/local/bin/backup", "--all"]
# env = { BACKUP_DEST = "/srv/backups" }
"""


# -- finding a task's lines ----------------------------------------------------------

_BLANK, _COMMENT, _HEADER, _CONTENT = "blank", "comment", "header", "content"
_LINE_RE = re.compile(r"[^\n]*\n|[^\n]+\Z")
_STRING_RE = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'[^\'\n]*\'')
_TASKS_HEADER_RE = re.compile(r"[ \t]*\[\[[ \t]*tasks[ \t]*\]\][ \t]*(?:#.*)?\r?\n?")


def _split_lines(text: str) -> list[str]:
    # not str.splitlines: it also splits on \x0c, \u2028 and others, which
    # TOML allows inside strings
    return _LINE_RE.findall(text)


def _scan_value(line: str, ml: str | None, depth: int) -> tuple[str | None, int]:
    """Follow strings and brackets through one line of a key/value.

    `ml` is the delimiter of a multi-line string open at the line start,
    `depth` the nesting of arrays and inline tables; both are returned for
    the next line.
    """
    if ml is None and '"""' not in line and "'''" not in line:
        # no multi-line string starts here: drop the one-line strings, then the comment
        if not any(c in line for c in "[]{}"):
            return None, depth
        code = _STRING_RE.sub("", line).split("#", 1)[0]
        opened = code.count("[") + code.count("{") - code.count("]") - code.count("}")
        return None, max(depth + opened, 0)
    i, n = 0, len(line)
    while i < n:
        if ml == '"""':
            while i < n:
                if line[i] == "\\":
                    i += 2
                elif line.startswith('"""', i):
                    while i < n and line[i] == '"':  # up to two quotes may end the content
                        i += 1
                    ml = None
                    break
                else:
                    i += 1
            continue
        if ml == "'''":
            end = line.find("'''", i)
            if end < 0:
                return ml, depth
            i = end
            while i < n and line[i] == "'":
                i += 1
            ml = None
            continue
        c = line[i]
        if c == "#":
            break
        if c == '"':
            if line.startswith('"""', i):
                ml, i = '"""', i + 3
                continue
            i += 1
            while i < n and line[i] != '"':
                i += 2 if line[i] == "\\" else 1
            i += 1
            continue
        if c == "'":
            if line.startswith("'''", i):
                ml, i = "'''", i + 3
                continue
            end = line.find("'", i + 1)
            i = n if end < 0 else end + 1
            continue
        if c in "[{":
            depth += 1
        elif c in "]}":
            depth = max(depth - 1, 0)
        i += 1
    return ml, depth


def _line_kinds(lines: Sequence[str]) -> list[str]:
    kinds: list[str] = []
    ml: str | None = None
    depth = 0
    for line in lines:
        if ml is None and depth == 0:
            stripped = line.strip(" \t\r\n")
            if not stripped:
                kinds.append(_BLANK)
                continue
            if stripped.startswith("#"):
                kinds.append(_COMMENT)
                continue
            if stripped.startswith("["):  # a key never starts with '['
                kinds.append(_HEADER)
                continue
        kinds.append(_CONTENT)
        ml, depth = _scan_value(line, ml, depth)
    return kinds


def _header_path(line: str) -> tuple[tuple[str, ...], bool]:
    """The key path of a table header line, and whether it is `[[...]]`."""
    if _TASKS_HEADER_RE.fullmatch(line):
        return ("tasks",), True
    import tomllib

    try:
        node: Any = tomllib.loads(line if line.endswith("\n") else line + "\n")
    except tomllib.TOMLDecodeError:
        return (), False
    path: list[str] = []
    while isinstance(node, dict) and len(node) == 1:
        key = next(iter(node))
        path.append(key)
        node = node[key]
        if isinstance(node, list):
            return tuple(path), True
    return tuple(path), False


@dataclass
class _Span:
    header: int
    """Line index of the `[[tasks]]` header."""
    last: int
    """Line index of the table's last header or key/value line."""
    first_sub: int | None = None
    """Line index of its first sub-table header, if any."""


@dataclass
class _Layout:
    lines: list[str]
    kinds: list[str]
    spans: list[_Span]
    data: dict[str, Any]
    tasks: list[Any]


def _task_spans(lines: Sequence[str], kinds: Sequence[str]) -> list[_Span]:
    spans: list[_Span] = []
    current: _Span | None = None
    for index, kind in enumerate(kinds):
        if kind == _HEADER:
            path, is_array = _header_path(lines[index])
            if is_array and path == ("tasks",):
                current = _Span(index, index)
                spans.append(current)
            elif current is not None and len(path) > 1 and path[0] == "tasks":
                current.last = index
                if current.first_sub is None:
                    current.first_sub = index
            else:
                current = None
        elif kind == _CONTENT and current is not None:
            current.last = index
    return spans


def _parse(text: str, what: str) -> dict[str, Any]:
    from tomllib import TOMLDecodeError

    try:
        return toml_loads(text)
    except TOMLDecodeError as e:
        raise EditError(f"{what} is not valid TOML ({e}); fix it with `jobctl edit`") from None


def _layout(text: str) -> _Layout:
    data = _parse(text, "the config")
    tasks = data.get("tasks", [])
    lines = _split_lines(text)
    kinds = _line_kinds(lines)
    spans = _task_spans(lines, kinds)
    if not isinstance(tasks, list) or len(spans) != len(tasks):
        raise EditError(
            "cannot tell this file's [[tasks]] tables apart (is `tasks` written as an "
            "inline array?); change it with `jobctl edit`"
        )
    return _Layout(lines, kinds, spans, data, tasks)


def _find(layout: _Layout, task_id: str) -> int:
    ids = [t.get("id") if isinstance(t, dict) else None for t in layout.tasks]
    found = [i for i, value in enumerate(ids) if value == task_id]
    if not found:
        raise UnknownTaskError(task_id, [i for i in ids if isinstance(i, str)])
    if len(found) > 1:
        where = ", ".join(str(layout.spans[i].header + 1) for i in found)
        raise EditError(f"task '{task_id}' is declared {len(found)} times (lines {where}); "
                        "fix it with `jobctl edit`")
    return found[0]


# -- checking a result ----------------------------------------------------------


def _same(a: object, b: object) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if type(a) is not type(b) and not (isinstance(a, datetime) and isinstance(b, datetime)):
        return False
    return a == b


def _expect(new_text: str, expected: Mapping[str, Any], what: str, index: int | None = None) -> str:
    """`new_text` if it parses to `expected`, else EditError: never write a
    file whose meaning is not exactly the edit asked for.

    `index` is the task whose table was written anew: compared strictly
    (`true` is not `1`); the rest, cut and pasted text, by `==`.
    """
    from tomllib import TOMLDecodeError

    try:
        actual = toml_loads(new_text)
    except TOMLDecodeError as e:
        raise EditError(f"cannot {what} in this file: the result would not be valid TOML ({e}); "
                        "change it with `jobctl edit`") from None
    same = actual == expected or _same(actual, dict(expected))  # == is C-fast; _same takes NaN
    if same and index is not None:
        same = _same(actual["tasks"][index], expected["tasks"][index])
    if not same:
        raise EditError(f"cannot {what} in this file's layout without changing other lines; "
                        "change it with `jobctl edit`")
    return new_text


def _with_tasks(data: Mapping[str, Any], tasks: list[Any]) -> dict[str, Any]:
    out = dict(data)
    if tasks:
        out["tasks"] = tasks
    else:
        out.pop("tasks", None)
    return out


# -- values ----------------------------------------------------------------------------


def parse_value(raw: str) -> object:
    """The VALUE of `KEY=VALUE`: a TOML value when it is exactly one (`5`,
    `false`, `["a", "b"]`, `"quoted"`, `{ A = "1" }`), else the plain string."""
    import tomllib

    try:
        doc = tomllib.loads(f"value = {raw}\n")
    except tomllib.TOMLDecodeError:
        return raw
    if list(doc) != ["value"] or ("#" in raw and _has_comment(raw)):
        return raw
    return doc["value"]


def _has_comment(raw: str) -> bool:
    # `5 # five` parses as 5: take such a VALUE as the string it was typed as
    try:
        item = tomlkit.parse(f"value = {raw}\n")["value"]
    except Exception:  # noqa: BLE001 - tomllib accepted it; its reading stands
        return False
    return isinstance(item, Item) and bool(item.trivia.comment)


def _item(value: object) -> Item:
    # mappings become inline tables, as a task's `env` usually is written
    if isinstance(value, Mapping):
        table = tomlkit.inline_table()
        for key, item in value.items():
            table.append(key, _item(item))
        return table
    if isinstance(value, (list, tuple)):
        array = tomlkit.array()
        for item in value:
            array.append(_item(item))
        return array
    return tomlkit.item(value)


def key_line(key: str, value: object) -> str:
    """`key = value` as one TOML line (tables inline), ending in a newline."""
    return _key_line(key, value, "", "\n")


def _key_line(key: str, value: object, indent: str, newline: str) -> str:
    doc = tomlkit.document()
    doc.add(key, _item(value))
    return indent + doc.as_string().removesuffix("\n") + newline


def _newline(lines: Sequence[str]) -> str:
    # new lines end as the file's first line does
    return "\r\n" if lines and lines[0].endswith("\r\n") else "\n"


# -- the edits --------------------------------------------------------------------------


def add_task(text: str, table: Mapping[str, Any], comments: Sequence[str] = ()) -> str:
    """`text` with a `[[tasks]]` table for `table` appended at the end,
    `comments` (whole `# ...` lines) above its header.

    EditError if a task with the same id is already declared.
    """
    layout = _layout(text)
    task_id = table.get("id")
    for i, existing in enumerate(layout.tasks):
        if isinstance(existing, dict) and existing.get("id") == task_id:
            line = layout.spans[i].header + 1
            raise EditError(f"a task with id '{task_id}' already exists (line {line})")
    newline = _newline(layout.lines)
    lines = [c.rstrip("\r\n") + newline for c in comments if c.lstrip().startswith("#")]
    lines += ["[[tasks]]" + newline] + [_key_line(k, v, "", newline) for k, v in table.items()]
    prefix = text
    if prefix and not prefix.endswith("\n"):
        prefix += newline
    if prefix and layout.kinds and layout.kinds[-1] != _BLANK:
        prefix += newline
    new_text = prefix + "".join(lines)
    expected = _with_tasks(layout.data, [*layout.tasks, _plain(table)])
    return _expect(new_text, expected, f"add task '{task_id}'", len(layout.tasks))


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def remove_task(text: str, task_id: str) -> str:
    """`text` without the table of task `task_id`.

    Its header, keys and sub-tables go, with the comment lines directly above
    the header (when a blank line separates them from what is above) and
    those directly below its last key (when a blank line follows), and one
    blank separator. Everything else stays as it was.
    UnknownTaskError (with a did-you-mean) if there is no such task.
    """
    layout = _layout(text)
    index = _find(layout, task_id)
    lines, kinds = layout.lines, layout.kinds
    span = layout.spans[index]
    start, end = span.header, span.last  # inclusive
    k = start
    while k > 0 and kinds[k - 1] == _COMMENT:
        k -= 1
    if k < start and k > 0 and kinds[k - 1] == _BLANK:
        start = k
    k = end
    while k + 1 < len(lines) and kinds[k + 1] == _COMMENT:
        k += 1
    if k > end and k + 1 < len(lines) and kinds[k + 1] == _BLANK:
        end = k
    # blank runs on either side: keep one separator, none at the file's ends
    before = start
    while before > 0 and kinds[before - 1] == _BLANK:
        before -= 1
    after = end + 1
    while after < len(lines) and kinds[after] == _BLANK:
        after += 1
    if before == 0 or after == len(lines):
        cut_from, cut_to = before, after
    elif before < start:
        cut_from, cut_to = start, after
    else:
        cut_from, cut_to = start, end + 1
    kept = lines[:cut_from] + lines[cut_to:]
    if kept and cut_to == len(lines) and not lines[-1].endswith("\n"):
        kept[-1] = kept[-1].rstrip("\r\n")  # the file had no final newline: keep it so
    new_text = "".join(kept)
    tasks = [t for i, t in enumerate(layout.tasks) if i != index]
    return _expect(new_text, _with_tasks(layout.data, tasks), f"remove task '{task_id}'")


def set_keys(text: str, task_id: str, pairs: Iterable[tuple[str, object]],
             unset: Iterable[str] = ()) -> str:
    """`text` with keys of task `task_id` set to new values, and `unset` keys removed.

    A key the task has keeps its line (and its comment); only the value
    changes, and a key given the value it has keeps its lines as written. A
    sub-table (`[tasks.env]`) keeps its header and the lines of the keys that
    stay; dotted keys (`env.A = "1"`) become one line where the first was. A
    new key gets a line after the table's last key. Values are Python values
    as `tomllib` returns them (see `parse_value`).
    UnknownTaskError if there is no such task; EditError if a key is given
    twice, or an `unset` key is not set on the task.
    """
    layout = _layout(text)
    index = _find(layout, task_id)
    span = layout.spans[index]
    lines = layout.lines
    newline = _newline(lines)
    segment = "".join(lines[span.header:span.last + 1])
    no_final_newline = not segment.endswith("\n")
    if no_final_newline:
        segment += newline
    doc = tomlkit.parse(segment)
    table = doc["tasks"][0]
    old = layout.tasks[index]
    if not isinstance(old, dict) or not _same(table.unwrap(), old):
        raise EditError(f"cannot find the lines of task '{task_id}' in this file's layout; "
                        "change it with `jobctl edit`")
    expected = dict(old)
    changes: dict[str, object] = {}
    for key, value in pairs:
        if key in changes:
            raise EditError(f"'{key}' is given twice; give each key once")
        changes[key] = value
    for key in dict.fromkeys(unset):
        if key in changes:
            raise EditError(f"'{key}' is both set and unset")
        if key not in table:
            import difflib

            close = difflib.get_close_matches(key, list(table), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise EditError(f"task '{task_id}' has no key '{key}' to unset{hint}")
        del table[key]
        del expected[key]
    new_keys: list[tuple[str, object]] = []
    for key, value in changes.items():
        if key in old and _same(old[key], _plain(value)):
            continue  # the same value: its lines stay as they are written
        expected[key] = _plain(value)
        if key not in table:
            new_keys.append((key, value))
            continue
        old_item = table.value.item(key)
        if isinstance(old_item, Table) and not old_item.is_super_table() and isinstance(value, dict):
            _refill(old_item, value)  # a [tasks.env] sub-table stays one
        elif not isinstance(old_item, Item) or isinstance(old_item, Table):
            doc = _replace_with_line(doc, key, value, newline)
            table = doc["tasks"][0]
        else:
            old_width = len(old_item.as_string()) + len(old_item.trivia.comment_ws)
            table[key] = _item(value)
            new_item = table.value.item(key)
            if new_item.trivia.comment and "\n" not in old_item.as_string() + new_item.as_string():
                # keep a trailing comment in its column, as aligned comments are
                pad = max(old_width - len(new_item.as_string()), 1)
                new_item.trivia.comment_ws = " " * pad
    new_segment = doc.as_string()
    if new_keys:
        seg_lines = _split_lines(new_segment)
        seg_kinds = _line_kinds(seg_lines)
        first_sub = next((i for i, kind in enumerate(seg_kinds) if kind == _HEADER and i > 0),
                         len(seg_lines))
        at = max((i for i in range(first_sub) if seg_kinds[i] == _CONTENT), default=0)
        first_key = next((seg_lines[i] for i in range(1, first_sub) if seg_kinds[i] == _CONTENT), "")
        indent = first_key[:len(first_key) - len(first_key.lstrip(" \t"))]
        added = [_key_line(k, v, indent, newline) for k, v in new_keys]
        new_segment = "".join(seg_lines[:at + 1] + added + seg_lines[at + 1:])
    if no_final_newline:
        new_segment = new_segment[:-len(newline)]
    new_text = "".join(lines[:span.header]) + new_segment + "".join(lines[span.last + 1:])
    tasks = list(layout.tasks)
    tasks[index] = expected
    return _expect(new_text, _with_tasks(layout.data, tasks), f"change task '{task_id}'", index)


def _refill(sub_table: Table, value: Mapping[str, object]) -> None:
    # keys that stay keep their lines; new ones take the sub-table's indentation
    for key in [k for k in sub_table if k not in value]:
        del sub_table[key]
    for key, item in value.items():
        if key not in sub_table or not _same(sub_table[key].unwrap(), _plain(item)):
            sub_table[key] = _item(item)


def _replace_with_line(doc: tomlkit.TOMLDocument, key: str, value: object,
                       newline: str) -> tomlkit.TOMLDocument:
    # dotted keys (`env.A = "1"`), or a sub-table given a value that is no
    # table: tomlkit would put the new value after the table's last key,
    # unindented; it goes in one line where the first of the old ones was
    before = _split_lines(doc.as_string())
    del doc["tasks"][0][key]
    after = _split_lines(doc.as_string())
    at = next(i for i, line in enumerate(after + [""]) if line != before[i])
    indent = before[at][:len(before[at]) - len(before[at].lstrip(" \t"))]
    after.insert(at, _key_line(key, value, indent, newline))
    return tomlkit.parse("".join(after))


# -- writing ----------------------------------------------------------------------------


def fingerprint(path: Path) -> str:
    """A digest of the file's bytes, ABSENT if it does not exist."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ABSENT
    return hashlib.sha256(data).hexdigest()


def fingerprint_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, data: str | bytes, *, expect: str | None = None,
                 check: Callable[[Path], None] | None = None) -> None:
    """Replace `path` with `data` all at once: readers see the old file or the
    new one, never a part.

    The data goes to a temporary file in the same folder, is fsynced, takes
    the old file's permission bits (and owner, where allowed), and is renamed
    over `path`. A symlink is written through, so it stays a symlink.
    `check(temporary_path)` may raise to refuse the new content; `expect` is
    the `fingerprint` the file must still have (ConcurrentChangeError if not).
    On any failure the temporary file is removed and `path` is untouched;
    FolderNotWritableError if the temporary file cannot be made.
    """
    path = Path(os.path.realpath(path))
    raw = data.encode("utf-8") if isinstance(data, str) else data
    try:
        old: os.stat_result | None = path.stat()
    except FileNotFoundError:
        old = None
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except PermissionError:
        raise FolderNotWritableError(path.parent) from None
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            if old is not None:
                try:
                    os.fchown(f.fileno(), old.st_uid, old.st_gid)
                except OSError:
                    pass  # not ours to give away: keep our own
            # a new file is never group- or world-writable, whatever the
            # umask: jobctl would refuse to load it (see jobctl.perms)
            os.fchmod(f.fileno(), stat.S_IMODE(old.st_mode) if old else 0o644 & ~_umask())
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        if check is not None:
            check(tmp)
        if expect is not None and fingerprint(path) != expect:
            raise ConcurrentChangeError(path)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass  # the rename is done; a folder that cannot be fsynced is no reason to fail


def refuse_read_only(path: Path) -> None:
    """EditError if the file at `path` is read-only.

    `atomic_write` renames a new file over the old one, which the folder's
    permissions allow even when the file's forbid writing it; like vi
    without `:w!`, jobctl does not. For root, which may write anything, the
    file is read-only when no write bit is set.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    writable = bool(mode & 0o222) if os.geteuid() == 0 else os.access(path, os.W_OK)
    if not writable:
        raise EditError(f"{path} is read-only; make it writable (chmod u+w) to change it")


def moved(problem: Problem, old: Path, new: Path) -> Problem:
    """`problem` as if reported for `new`: read from a temporary copy `old`."""
    origin = problem.origin
    if origin.path == old:
        origin = Origin(new, origin.line)
    return replace(problem, origin=origin, message=problem.message.replace(str(old), str(new)))


def refuse_new_plugin_problems(original: Path, edited: ScheduleSet, *, system_zone: str,
                               now: datetime) -> None:
    """ConfigError if the edit leaves out a plugin that the original config
    loaded (say, a changed `plugins` glob or limit). A plugin that was
    already broken does not block editing the rest."""
    from jobctl.resolve import resolve

    if not any(not r.loaded for r in edited.plugins):
        return
    try:
        before = {r.source for r in resolve(original, system_zone=system_zone, now=now).plugins
                  if not r.loaded}
    except (ConfigError, OSError):
        before = set()
    new = [p for r in edited.plugins if not r.loaded and r.source not in before
           for p in r.problems]
    if new:
        raise ConfigError(new)


def save_config(path: Path, text: str, *, expect: str | None, system_zone: str,
                now: datetime) -> list[Problem]:
    """Write `text` as the config at `path` only if it resolves; return its warnings.

    The text is resolved as the very temporary file that then replaces the
    config, in the config's own folder (relative paths mean the same).
    ConfigError, with the problems reported against `path`, if it does not;
    EditError if the file is read-only (`refuse_read_only`).
    """
    from jobctl.resolve import resolve

    target = Path(os.path.realpath(path))
    warnings: list[Problem] = []

    def check(tmp: Path) -> None:
        try:
            schedule_set = resolve(tmp, system_zone=system_zone, now=now)
        except ConfigError as e:
            raise ConfigError([moved(p, tmp, path) for p in e.problems]) from None
        refuse_new_plugin_problems(target, schedule_set, system_zone=system_zone, now=now)
        warnings.extend(moved(p, tmp, path) for p in schedule_set.warnings)

    check_trusted(target, "config")
    refuse_read_only(path)
    atomic_write(target, text, expect=expect, check=check)
    return warnings


# -- the editor -----------------------------------------------------------------------


def editor_command(env: Mapping[str, str]) -> str:
    """$VISUAL, else $EDITOR, else vi."""
    return env.get("VISUAL") or env.get("EDITOR") or "vi"
