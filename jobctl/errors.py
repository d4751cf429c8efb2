"""Every error jobctl reports to a user derives from JobctlError.

Each subclass takes the data and builds its own message, and carries the exit
status the CLI uses for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from jobctl.model import Problem

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_USAGE = 2
EXIT_BUSY = 75  # EX_TEMPFAIL: refused because something is already running


class JobctlError(Exception):
    """Base of every error jobctl reports to a user."""

    exit_code = EXIT_USAGE


class ConfigNotFoundError(JobctlError):
    def __init__(self, tried: Sequence[Path]) -> None:
        self.tried = list(tried)
        lines = "\n".join(f"  {p}" for p in self.tried)
        super().__init__(
            "no config file found; tried:\n"
            f"{lines}\n"
            "Pass --config PATH, set JOBCTL_CONFIG, or create one with a [[tasks]] table."
        )


class ConfigIsDirectoryError(ConfigNotFoundError):
    """The config path names a directory (still no config file found)."""

    def __init__(self, path: Path) -> None:
        self.tried = [path]
        JobctlError.__init__(self, f"{path} is a directory, not a config file: "
                                   "name the TOML file itself")


class ConfigError(JobctlError):
    """The config did not resolve; `problems` lists every error found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        errors = [p for p in self.problems if p.severity == "error"]
        n = len(errors)
        super().__init__(f"{n} error{'s' if n != 1 else ''} in config")


class UnknownTaskError(JobctlError):
    def __init__(self, task_id: str, known: Sequence[str]) -> None:
        import difflib

        self.task_id = task_id
        # compared case-folded, so that BACKUP finds backup
        folded = {k.casefold(): k for k in known}
        close = difflib.get_close_matches(task_id.casefold(), list(folded), n=1)
        hint = f" (did you mean '{folded[close[0]]}'?)" if close else ""
        super().__init__(f"no task with id '{task_id}'{hint}")


class BadExpressionError(JobctlError):
    def __init__(self, expression: str, reason: str) -> None:
        self.expression = expression
        self.reason = reason
        super().__init__(f"bad schedule '{expression}': {reason}")


class UsageError(JobctlError):
    """A bad option value that the argument parser could not catch."""


class ScheduleSearchError(JobctlError):
    """A next-fire search stopped advancing (a bug or broken zone data): the
    search ends with this error instead of spinning."""

    def __init__(self, expression: str, zone: str, after: object, task_id: str | None = None) -> None:
        self.expression = expression
        self.zone = zone
        self.after = after
        self.task_id = task_id
        who = f"task '{task_id}': " if task_id else ""
        super().__init__(
            f"{who}schedule '{expression}' in {zone}: the search for the next fire after "
            f"{after} made no progress, so the task gets no fire time; please report this "
            "with the expression and zone"
        )

    def for_task(self, task_id: str) -> ScheduleSearchError:
        """The same error, naming the task it was computed for."""
        return ScheduleSearchError(self.expression, self.zone, self.after, task_id)
