"""A crontab in, jobctl task tables out (see `jobctl.importers`).

Read as cronie/vixie cron reads it: comment and blank lines skipped; a
`NAME=VALUE` line (spaces around `=` allowed, the value quoted or not) sets
a variable for every job line below it; a job line is five fields (or an
@shortcut) then, in the system format (`/etc/crontab`, `/etc/cron.d/*`), a
user name, then the command to the end of the line. The command runs as
`$SHELL -c COMMAND` (SHELL defaults to /bin/sh) after cron's `%` rule: the
first unescaped `%` ends the command and the rest, each further `%` turned
into a newline, is its standard input; `\\%` is a literal `%`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from jobctl.errors import BadExpressionError
from jobctl.importers import IdAllocator, ImportedTask, ImportResult, refusal, slug
from jobctl.model import Problem

DEFAULT_SHELL = "/bin/sh"
# what cron runs a job with when the command has a `%`: the same shell, the
# same argv, and stdin a pipe holding exactly the text after the `%`
PERCENT_WRAPPER = 'printf %s "$2" | "$0" -c "$1"'

_ENV_RE = re.compile(r"""[ \t]*(?:"([^"]*)"|'([^']*)'|([^\s=]+))[ \t]*=[ \t]*(.*)""")
# words that do not name what a job does, when choosing its id: a segment
# starting with plumbing is passed over; a prefix (and its options) is skipped
_PLUMBING = frozenset({"cd", "test", "[", "[[", ":", "sleep", "export", "umask", "set", "if",
                       "then", "mkdir"})
_PREFIXES = frozenset({"exec", "nice", "ionice", "nohup", "sudo", "env", "chronic", "timeout",
                       "run-one", "time", "command"})


def is_system_crontab(path: Path) -> bool:
    """Whether cron reads `path` in the system format, with a user field."""
    text = str(path)
    return text == "/etc/crontab" or text.startswith("/etc/cron.d/")


def split_percent(command: str) -> tuple[str, str | None]:
    """cron's `%` rule: the command cron hands the shell, and its stdin
    (None when the line has no unescaped `%`: stdin is then empty).

    As vixie cron's do_command.c does it: in the command `\\%` becomes `%`
    and other backslashes stay; in the input each `%` becomes a newline,
    `\\%` a `%`, and other backslashes stay."""
    out: list[str] = []
    escaped = False
    for i, ch in enumerate(command):
        if escaped:
            escaped = False
            if ch == "%":
                out[-1] = "%"
                continue
            out.append(ch)
            continue
        if ch == "\\":
            escaped = True
            out.append(ch)
            continue
        if ch == "%":
            return "".join(out), _stdin_of(command[i + 1:])
        out.append(ch)
    return "".join(out), None


def _stdin_of(rest: str) -> str:
    out: list[str] = []
    escaped = False
    for ch in rest:
        if escaped:
            if ch != "%":
                out.append("\\")
        elif ch == "%":
            ch = "\n"
        escaped = ch == "\\"
        if not escaped:
            out.append(ch)
    if escaped:
        out.append("\\")
    return "".join(out)


def id_stem(command: str) -> str:
    """A readable id stem: the name of the program the command is about
    (`/usr/local/bin/backup-db.sh --full` -> `backup-db`)."""
    for segment in re.split(r"&&|\|\||[;|&()]", command):
        prefix = ""
        for word in segment.split():
            if "=" in word.split("/", 1)[0] or word.startswith(("-", "<", ">", "$", "2>")) \
                    or word[:1].isdigit():
                continue
            base = word.rstrip("/").rsplit("/", 1)[-1]
            if base in _PREFIXES:
                prefix = prefix or base
                continue
            if base in _PLUMBING:
                break  # try the next segment
            base = re.sub(r"\.(sh|py|pl|rb|bash)$", "", base)
            stem = slug(base, "")
            if stem:
                return stem
        if prefix:
            return prefix  # `env` alone is what the job runs
    return "task"


class _Job:
    def __init__(self, line: int, text: str, schedule: str, user: str | None, command: str) -> None:
        self.line = line
        self.text = text
        self.schedule = schedule
        self.user = user
        self.command = command


def import_crontab(text: str, path: Path, *, system: bool = False, mail: str | None = None,
                   shell: str = DEFAULT_SHELL, env_in_settings: bool = True,
                   taken: Iterable[str] = ()) -> ImportResult:
    """The tasks of a crontab.

    `system`: the format with a user field. `mail`: the mail program found
    on this machine (MAILTO becomes an `on_failure` hook that runs it), or
    None (MAILTO becomes a comment). `shell`: the `[jobctl] shell` of the
    config the tasks go to (a task whose cron shell differs runs it through
    `argv`). `env_in_settings`: variables set before the first job go to
    `[jobctl] env` (a new config) rather than into each task's `env` (an
    existing config, whose other tasks they must not touch). `taken`: ids
    already in use.
    """
    ids = IdAllocator(taken)
    refused: list[Problem] = []
    tasks: list[ImportedTask] = []
    env: dict[str, str] = {}
    leading: dict[str, str] | None = None  # the variables set before the first job
    cron_shell, shell_line = DEFAULT_SHELL, 0
    zone: str | None = None
    zone_line = ""
    mailto: str | None = None
    mailto_line = 0
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for number, raw in enumerate(lines, start=1):
        line = raw.lstrip(" \t")
        if not line or line.startswith("#"):
            continue
        if "\r" in raw:
            refused.append(refusal(path, number, "the line ends in a carriage return (saved with "
                                   "Windows line ends?); cron would pass it on to the command"))
            continue
        m = _ENV_RE.fullmatch(raw)
        if m is not None:
            name = next(g for g in m.groups()[:3] if g is not None)
            value = m.group(4).rstrip(" \t")
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            if name == "SHELL":
                cron_shell, shell_line = value, number
            elif name in ("CRON_TZ", "TZ"):
                from jobctl.timing import load_zone

                try:
                    load_zone(value)
                except ValueError as e:
                    refused.append(refusal(path, number, f"{name}={value}: {e}"))
                    zone = None
                    continue
                zone, zone_line = value, f"{name}={value} (line {number})"
                if name == "TZ":
                    env[name] = value  # cron also hands TZ to the job
            elif name == "MAILTO":
                mailto, mailto_line = value, number
            else:
                env[name] = value
            continue
        job = _parse_job(raw, line, number, path, system, refused)
        if job is None:
            continue
        if leading is None:
            leading = dict(env)
        command, stdin = split_percent(job.command)
        task_id = ids.allocate(id_stem(command))
        table: dict[str, object] = {"id": task_id, "schedule": job.schedule}
        comments = [f"{path}:{job.line}: {job.text.strip()}"]
        if job.schedule.lower() == "@reboot":
            comments.append("cron ran it once when cron started (at boot); jobctl runs it each "
                            "time `jobctl run` starts")
        if zone is not None:
            table["timezone"] = zone
            comments.append(zone_line)
        if job.user is not None:
            table["user"] = job.user
        if stdin is not None:
            table["argv"] = ["/bin/sh", "-c", PERCENT_WRAPPER, cron_shell, command, stdin]
            comments.append(f"cron's % rule: runs `{cron_shell} -c` on the command before the "
                            "first %, with the rest (each % a newline) as its stdin")
        elif cron_shell != shell:
            table["argv"] = [cron_shell, "-c", command]
            comments.append(f"SHELL={cron_shell} (line {shell_line})")
        else:
            table["command"] = command
        own = {k: v for k, v in env.items()
               if not env_in_settings or k not in leading or leading[k] != v}
        if own:
            table["env"] = own
        if mailto is not None:
            comments.extend(_mail(table, task_id, mailto, mailto_line, mail))
        tasks.append(ImportedTask(table, tuple(comments)))
    settings: dict[str, object] = {}
    settings_comments: list[str] = []
    if env_in_settings and leading:
        settings["env"] = leading
        settings_comments.append("variables set above the first job, for every task as in cron")
    if not system:
        settings_comments.append("a user crontab's jobs ran as its owner; jobctl runs them as the "
                                 "user running `jobctl run`")
    return ImportResult(str(path), tuple(tasks), settings, tuple(settings_comments), tuple(refused))


def _mail(table: dict[str, object], task_id: str, mailto: str, line: int,
          mail: str | None) -> list[str]:
    said = (f"MAILTO={mailto} (line {line}): cron mailed any output of a run; jobctl keeps "
            "the output in `jobctl logs` and alerts on failure only")
    addresses = [a.strip() for a in mailto.split(",") if a.strip()]
    if not addresses:
        return [f"MAILTO is empty (line {line}): cron sent no mail; jobctl keeps the output in "
                "`jobctl logs`"]
    if mail is None:
        return [said, "no `mail` command on this machine: to be alerted, set on_failure to a "
                "command that gets the run's output on its stdin"]
    table["on_failure"] = [mail, "-s", f"jobctl: {task_id} failed", *addresses]
    return [said + ", mailing it to " + ", ".join(addresses)]


def _parse_job(raw: str, line: str, number: int, path: Path, system: bool,
               refused: list[Problem]) -> _Job | None:
    from jobctl.timing import parse_schedule

    def refuse(reason: str) -> None:
        refused.append(refusal(path, number, reason))

    words_needed = 1 if line.startswith("@") else 5
    if system:
        words_needed += 1
    parts = re.split(r"[ \t]+", line, maxsplit=words_needed)
    if len(parts) <= words_needed or not parts[words_needed]:
        what = "a user and a command" if system else "a command"
        refuse(f"expected {'an @shortcut' if line.startswith('@') else 'five time fields'} "
               f"then {what}: {line.strip()!r}")
        return None
    fields = parts[:1] if line.startswith("@") else parts[:5]
    schedule = " ".join(fields)
    if any("~" in f for f in fields):
        refuse(f"'{schedule}': cronie's '~' picks a random value when cron loads the file; "
               "jobctl cannot know which, so the job would not fire at the same times")
        return None
    try:
        parse_schedule(schedule)
    except BadExpressionError as e:
        refuse(str(e))
        return None
    user = parts[words_needed - 1] if system else None
    return _Job(number, raw, schedule, user, parts[words_needed])
