"""What a task's process gets besides its command: variables from env files,
and the user it runs as.

Both are read when the config is loaded (so `validate` checks them, and a
reload reads them again), never at each run. Env files are parsed with
python-dotenv, imported only when a config names one.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from jobctl.model import RunAs, Settings, Task


@dataclass(frozen=True)
class EnvFile:
    """One env file as read: its variables, or what stops it being used
    (`error`), and a `warning` that does not (it is readable by others)."""

    values: Mapping[str, str]
    error: str | None = None
    warning: str | None = None


def read_env_file(path: Path) -> EnvFile:
    """Read a dotenv file: `NAME=VALUE` lines, `#` comments, optional
    `export `, quoted values (escapes in double quotes). Values are taken
    literally: `${VAR}` is not expanded, since the environment of whoever
    loads the config (`validate`, a runner) is not the task's.

    An error for a file that is missing or unreadable, that another user
    could change (its variables run as the task, PATH and LD_PRELOAD
    included), that is not UTF-8, or has a line that does not parse or a
    name without `=`; a warning if others than its owner may read it.
    """
    from jobctl.perms import UntrustedFileError, check_trusted

    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            return EnvFile({}, error=f"env file {path} is not a regular file")
        check_trusted(path, "env file")
        data = path.read_bytes()
    except FileNotFoundError:
        return EnvFile({}, error=f"env file {path} does not exist")
    except UntrustedFileError as e:
        return EnvFile({}, error=str(e))
    except OSError as e:
        reason = e.strerror or str(e)
        return EnvFile({}, error=f"cannot read env file {path}: {reason[:1].lower()}{reason[1:]}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        return EnvFile({}, error=f"env file {path}:{line}: not UTF-8 text "
                                 f"(byte 0x{data[e.start]:02x})")
    problem = _syntax_problem(path, text)
    if problem:
        return EnvFile({}, error=problem)
    import io

    from dotenv import dotenv_values

    values = {k: v for k, v in dotenv_values(stream=io.StringIO(text), interpolate=False).items()
              if v is not None}
    for key, value in values.items():
        if "\0" in value:
            return EnvFile({}, error=f"env file {path}: {key} holds a NUL character, which no "
                                     "environment can")
    mode = stat.S_IMODE(st.st_mode)
    warning = None
    if mode & 0o044:
        who = "its group and others" if mode & 0o044 == 0o044 else (
            "its group" if mode & 0o040 else "others")
        warning = (f"env file {path} is readable by {who} (mode {mode:04o}), and env files "
                   f"usually hold secrets; fix: chmod go-r {path}")
    return EnvFile(values, warning=warning)


def _syntax_problem(path: Path, text: str) -> str | None:
    """The first line python-dotenv cannot parse, or a name without `=`
    (which dotenv_values would keep as None, and only log about a bad line)."""
    import io

    from dotenv.parser import parse_stream

    for binding in parse_stream(io.StringIO(text)):
        # a binding's text starts with the blank lines before it
        source = binding.original.string
        line = binding.original.line + source[:len(source) - len(source.lstrip())].count("\n")
        if binding.error:
            shown = binding.original.string.strip().splitlines()[0][:40] if \
                binding.original.string.strip() else ""
            return (f"env file {path}:{line}: cannot parse '{shown}': write NAME=VALUE, "
                    "quoting a value with spaces or '#'")
        if binding.key is not None and binding.value is None:
            return (f"env file {path}:{line}: '{binding.key}' has no '=' "
                    f"(write {binding.key}= for an empty value)")
    return None


class LoadCache:
    """What one config load has read already: each env file and each user
    once, however many tasks name it (a passwd and group lookup costs about
    0.2 ms; 100,000 tasks would wait 20 s). A reload starts a new one."""

    def __init__(self) -> None:
        self.env_files: dict[str, EnvFile] = {}
        self.users: dict[str, RunAs | UnknownUserError] = {}
        self.paths: dict[tuple[Path, str], str] = {}

    def path(self, base: Path, written: str) -> str:
        """`written` made absolute against `base`, once (pathlib is slow)."""
        found = self.paths.get((base, written))
        if found is None:
            found = self.paths[(base, written)] = absolute_path(base, written)
        return found

    def env_file(self, path: str) -> EnvFile:
        """The file as read; its warning (readable by others) comes with the
        first reader only."""
        seen = self.env_files.get(path)
        if seen is None:
            seen = self.env_files[path] = read_env_file(Path(path))
            return seen
        return EnvFile(seen.values, seen.error) if seen.warning else seen

    def user(self, name: str) -> RunAs:
        """`lookup_user(name)`, once."""
        seen = self.users.get(name)
        if seen is None:
            try:
                seen = lookup_user(name)
            except UnknownUserError as e:
                seen = e
            self.users[name] = seen
        if isinstance(seen, UnknownUserError):
            raise seen
        return seen


def absolute_path(base: Path, written: str) -> str:
    """A path as written in a config (`~` expanded), against its folder."""
    return str((base / Path(written).expanduser()).absolute())


class UnknownUserError(Exception):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"unknown user '{name}': no such user on this machine (passwd)")


def lookup_user(name: str) -> RunAs:
    """The user `name` from the passwd and group databases, as
    /etc/crontab and systemd's `User=` would run it; UnknownUserError if
    there is none."""
    import pwd

    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise UnknownUserError(name) from None
    try:
        groups = tuple(os.getgrouplist(entry.pw_name, entry.pw_gid))
    except OSError:
        groups = (entry.pw_gid,)
    return RunAs(name=entry.pw_name, uid=entry.pw_uid, gid=entry.pw_gid, groups=groups,
                 home=entry.pw_dir, shell=entry.pw_shell or "/bin/sh")


def task_env(task: Task, settings: Settings) -> Mapping[str, str]:
    """The variables a task adds to the runner's environment, lowest first:
    `[jobctl] env_file`, `[jobctl] env`, the task's `env_file`, then its own
    `env` (jobctl's JOBCTL_* variables go on top of all, in build_env)."""
    if not settings.file_env and not settings.env and not task.file_env:
        return task.env  # the usual case: no copy on the way to a spawn
    return {**settings.file_env, **settings.env, **task.file_env, **task.env}
