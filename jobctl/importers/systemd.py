"""A systemd timer and its service in, jobctl task tables out (see
`jobctl.importers`).

`calendar_to_cron` turns an `OnCalendar=` expression into the 5-field cron
expression that fires at the same instants, or says why there is none:
seconds other than :00, a specific year, `~` (days counted from the month's
end), and a weekday together with a day of the month (systemd wants both,
cron either) have no equivalent.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Iterable
from datetime import datetime, timezone, tzinfo
from pathlib import Path

from jobctl.errors import BadExpressionError
from jobctl.importers import IdAllocator, ImportedTask, ImportResult, refusal, slug
from jobctl.model import Problem

SHORTCUTS = {
    "minutely": "*-*-* *:*:00",
    "hourly": "*-*-* *:00:00",
    "daily": "*-*-* 00:00:00",
    "monthly": "*-*-01 00:00:00",
    "weekly": "Mon *-*-* 00:00:00",
    "yearly": "*-01-01 00:00:00",
    "annually": "*-01-01 00:00:00",
    "quarterly": "*-01,04,07,10-01 00:00:00",
    "semiannually": "*-01,07-01 00:00:00",
}
_WEEKDAYS = {"mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6, "sun": 0,
             "monday": 1, "tuesday": 2, "wednesday": 3, "thursday": 4, "friday": 5,
             "saturday": 6, "sunday": 0}
_WEEKDAY_RE = re.compile(r"[A-Za-z]+(?:(?:\.\.|-|,)[A-Za-z]+)*")


class CalendarError(ValueError):
    """An OnCalendar= expression with no exact 5-field cron equivalent; the message says why."""


def calendar_to_cron(text: str) -> tuple[str, str | None]:
    """The cron expression and the zone (None: the system's) of an OnCalendar= value."""
    words = text.split()
    zone: str | None = None
    if len(words) > 1 and not _is_weekdays(words[-1]) and not re.search(r"[:\d*]", words[-1][:1]):
        from jobctl.timing import load_zone

        try:
            load_zone(words[-1])
        except ValueError as e:
            raise CalendarError(str(e)) from None
        zone = words.pop()
    if len(words) == 1 and words[0].lower() in SHORTCUTS:
        words = SHORTCUTS[words[0].lower()].split()
    if not words:
        raise CalendarError("empty expression")
    if words[0].startswith("@"):
        raise CalendarError("a single instant (@SECONDS): use `at` for a one-shot task")
    dow = "*"
    if _is_weekdays(words[0]):
        dow = _weekdays(words.pop(0))
    date = time = None
    for word in words:
        if ":" in word and time is None:
            time = word
        elif "-" in word and ":" not in word and date is None and time is None:
            date = word
        else:
            raise CalendarError(f"cannot read '{word}' as a date (Y-M-D) or a time (H:M:S)")
    if "~" in (date or ""):
        raise CalendarError("'~' counts days from the end of the month, which cron cannot express")
    date_parts = (date or "*-*-*").split("-")
    if len(date_parts) == 2:
        date_parts.insert(0, "*")
    if len(date_parts) != 3:
        raise CalendarError(f"cannot read '{date}' as a date (Y-M-D or M-D)")
    year, month, day = date_parts
    if year != "*":
        raise CalendarError(f"year '{year}': cron has no year field")
    time_parts = (time or "00:00:00").split(":")
    if len(time_parts) == 2:
        time_parts.append("00")
    if len(time_parts) != 3:
        raise CalendarError(f"cannot read '{time}' as a time (H:M or H:M:S)")
    hour, minute, second = time_parts
    if not re.fullmatch(r"0+(\.0+)?", second):
        raise CalendarError(f"seconds ':{second}': cron fires on whole minutes only (:00)")
    cron_month = _component(month, 1, 12, "month")
    cron_day = _component(day, 1, 31, "day")
    if cron_day != "*" and dow != "*":
        raise CalendarError("a weekday and a day of the month together: systemd fires when both "
                            "match, cron when either does")
    expr = " ".join((_component(minute, 0, 59, "minute"), _component(hour, 0, 23, "hour"),
                     cron_day, cron_month, dow))
    from jobctl.timing import parse_schedule

    try:
        parse_schedule(expr)
    except BadExpressionError as e:
        raise CalendarError(e.reason) from None
    return expr, zone


def dst_difference(expr: str, zone: str, after: datetime, days: int = 400) -> str | None:
    """Why systemd and jobctl would fire `expr` differently in `zone` within
    `days` after `after`, or None if they agree.

    At a clock change they part ways (measured with systemd-analyze 252):
    a fixed time that a spring-forward gap skips is skipped that day by
    systemd, run at the end of the gap by jobctl (as cronie does); in a
    repeated fall-back hour, a wildcard or step time fires once in systemd,
    on both passes in jobctl. A fixed time in a repeat fires once in both,
    and wildcard times in a gap in neither."""
    from jobctl.cron import parse_cron_fields
    from jobctl.timing import load_zone

    _, pattern = parse_cron_fields(expr)
    tz = load_zone(zone)
    start = int(after.timestamp()) // 3600 * 3600
    offset = _offset(tz, start)
    for real in range(start + 3600, start + days * 86400, 3600):
        new = _offset(tz, real)
        if new == offset:
            continue
        lo, hi = real - 3600, real  # the change is in (lo, hi]
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if _offset(tz, mid) == offset else (lo, mid)
        gap = new > offset
        first, end = (hi + offset, hi + new) if gap else (hi + new, hi + offset)
        hit = pattern.next_wall(first, end)
        offset = new
        if hit is None or (gap and not pattern.fixed) or (not gap and pattern.fixed):
            continue
        wall = datetime.fromtimestamp(hit, timezone.utc).replace(tzinfo=None)
        if gap:
            return (f"in {zone} the clock skips {wall:%H:%M} on {wall:%Y-%m-%d}: systemd does not "
                    "fire that day, jobctl fires at the end of the gap")
        return (f"in {zone} the clock repeats {wall:%H:%M} on {wall:%Y-%m-%d}: systemd fires the "
                "repeated times once, jobctl on both passes")
    return None


def _offset(tz: tzinfo, real: int) -> int:
    moment = datetime.fromtimestamp(real, timezone.utc).astimezone(tz)
    delta = moment.utcoffset()
    return int(delta.total_seconds()) if delta is not None else 0


def _is_weekdays(word: str) -> bool:
    return bool(_WEEKDAY_RE.fullmatch(word)) and all(
        name.lower() in _WEEKDAYS for name in re.split(r"\.\.|-|,", word))


def _weekdays(word: str) -> str:
    days: set[int] = set()
    for item in word.split(","):
        ends = re.split(r"\.\.|-", item)
        first, last = _WEEKDAYS[ends[0].lower()], _WEEKDAYS[ends[-1].lower()]
        # Mon=1 .. Sun=7 as systemd orders them
        a, b = (first or 7), (last or 7)
        if a > b:
            raise CalendarError(f"weekdays '{item}': systemd refuses a range that wraps around")
        days.update(d % 7 for d in range(a, b + 1))
    if len(days) == 7:
        return "*"
    return _ranges(sorted(days))


def _ranges(values: list[int]) -> str:
    out: list[str] = []
    start = prev = values[0]
    for v in values[1:] + [-2]:
        if v == prev + 1:
            prev = v
            continue
        out.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = v
    return ",".join(out)


def _component(text: str, lo: int, hi: int, what: str) -> str:
    if text == "*":
        return "*"
    items = []
    for item in text.split(","):
        base, slash, step = item.partition("/")
        if slash and not step.isdigit():
            raise CalendarError(f"{what} '{item}': the step must be a whole number")
        if base == "*":
            items.append(f"*/{int(step)}" if slash else "*")
            continue
        first, dots, last = base.partition("..")
        try:
            a = int(first)
            b = int(last) if dots else None
        except ValueError:
            raise CalendarError(f"{what} '{item}' is not a number, a range A..B or a "
                                "repetition A/STEP") from None
        for value in (a, b):
            if value is not None and not lo <= value <= hi:
                raise CalendarError(f"{what} {value} is out of range {lo}-{hi}")
        if slash:
            items.append(f"{a}-{b if b is not None else hi}/{int(step)}")
        else:
            items.append(f"{a}-{b}" if b is not None else str(a))
    return ",".join(items)


# -- units -----------------------------------------------------------------------------

_UNITS = {
    "us": 1e-6, "usec": 1e-6, "ms": 1e-3, "msec": 1e-3,
    "": 1, "s": 1, "sec": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
    "M": 2629800, "month": 2629800, "months": 2629800,
    "y": 31557600, "year": 31557600, "years": 31557600,
}


def timespan(text: str) -> float | None:
    """A systemd time span (`15min`, `1h 30min`, `6000`) in seconds; None
    for `infinity`. ValueError if it is not one."""
    if text.strip() == "infinity":
        return None
    parts = re.findall(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)", text)
    if not parts or "".join(a + b for a, b in parts) != re.sub(r"\s", "", text):
        raise ValueError(f"'{text}' is not a time span")
    total = 0.0
    for amount, unit in parts:
        if unit not in _UNITS and unit.lower() not in _UNITS:
            raise ValueError(f"'{text}': unknown unit '{unit}'")
        total += float(amount) * _UNITS.get(unit, _UNITS.get(unit.lower(), 1))
    return total


class _Entry:
    def __init__(self, section: str, key: str, value: str, line: int) -> None:
        self.section = section
        self.key = key
        self.value = value
        self.line = line

    def __str__(self) -> str:
        return f"{self.key}={self.value}"


def parse_unit(text: str) -> list[_Entry]:
    """The `Key=Value` entries of a unit file, with their section and line
    (a line ending in a backslash continues on the next)."""
    entries: list[_Entry] = []
    section = ""
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not pending and (not line or line[0] in "#;"):
            continue
        if line.endswith("\\"):
            if not pending:
                start = number
            pending += line[:-1] + " "
            continue
        if pending:
            line, pending = pending + line, ""
        else:
            start = number
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        if sep:
            entries.append(_Entry(section, key.strip(), value.strip(), start))
    return entries


def service_for(timer_text: str, timer_path: Path) -> Path:
    """The service a timer starts: its `Unit=`, else the same name with .service, beside it."""
    name = timer_path.stem + ".service"
    for entry in parse_unit(timer_text):
        if entry.section == "Timer" and entry.key == "Unit" and entry.value:
            name = entry.value
    return timer_path.with_name(name)


_CONDITIONS = ("Condition", "Assert")


def import_systemd(timer_text: str, timer_path: Path, service_text: str, service_path: Path,
                   *, system_zone: str, now: datetime, taken: Iterable[str] = (),
                   exists: Callable[[str], bool] = lambda path: True) -> ImportResult:
    """The tasks of one timer and its service: one per trigger (`OnCalendar=`
    line, `OnUnitActiveSec=`, `OnBootSec=0`), all running the service's
    command. Ids are the timer's name, or NAME-1, NAME-2, ... for several
    triggers (then also their `group`). An OnCalendar= time without a zone
    is read in `system_zone`, and is refused if systemd and jobctl would
    fire it differently at a clock change in the year after `now`."""
    refused: list[Problem] = []
    notes: list[str] = []

    def refuse(path: Path, entry: _Entry, reason: str) -> None:
        refused.append(refusal(path, entry.line, f"{entry}: {reason}"))

    schedules: list[tuple[str, str | None, _Entry]] = []
    common: dict[str, object] = {}
    calendar_keys: dict[str, object] = {}
    description: str | None = None
    for entry in parse_unit(timer_text):
        key, value = entry.key, entry.value
        where = f"{timer_path}:{entry.line}"
        if entry.section == "Unit" and key == "Description":
            description = value
        elif entry.section == "Timer" and key == "OnCalendar":
            if not value:
                schedules = [s for s in schedules if s[2].key != "OnCalendar"]
                continue
            try:
                expr, zone = calendar_to_cron(value)
            except CalendarError as e:
                refuse(timer_path, entry, str(e))
                continue
            differs = dst_difference(expr, zone or system_zone, now)
            if differs:
                refuse(timer_path, entry, f"{differs}; give it a zone without clock changes "
                       "(a suffix such as UTC) or a time clear of the change")
                continue
            schedules.append((expr, zone, entry))
        elif entry.section == "Timer" and key in ("OnUnitActiveSec", "OnBootSec", "OnStartupSec"):
            try:
                seconds = timespan(value)
            except ValueError as e:
                refuse(timer_path, entry, str(e))
                continue
            if key == "OnUnitActiveSec":
                if seconds is None or seconds < 1 or seconds != int(seconds):
                    refuse(timer_path, entry, "jobctl intervals are whole seconds")
                    continue
                from jobctl.timing import format_duration

                schedules.append((f"every {format_duration(seconds)}", None, entry))
                notes.append(f"{where}: {entry}: systemd counted from the service's last start; "
                             "jobctl counts from the runner's start")
            elif seconds == 0:
                schedules.append(("@reboot", None, entry))
            else:
                refuse(timer_path, entry, "jobctl cannot wait after it starts: @reboot runs as "
                       "`jobctl run` starts, and intervals count from then")
        elif entry.section == "Timer" and key == "Persistent":
            if value.lower() in ("1", "yes", "true", "on"):
                calendar_keys["catch_up"] = "once"
        elif entry.section == "Timer" and key == "RandomizedDelaySec":
            try:
                seconds = timespan(value)
            except ValueError as e:
                refuse(timer_path, entry, str(e))
                continue
            if seconds:
                from jobctl.timing import format_duration

                common["jitter"] = format_duration(int(seconds))
                notes.append(f"{where}: {entry}: systemd drew a new delay for each run (unless "
                             "FixedRandomDelay=true); jobctl's jitter is fixed per task")
        elif entry.section == "Timer" and key == "AccuracySec":
            notes.append(f"{where}: {entry}: systemd could fire up to that late to batch "
                         "wake-ups; jobctl fires on time")
        elif entry.section == "Timer" and key in ("OnActiveSec", "OnUnitInactiveSec"):
            refuse(timer_path, entry, "jobctl has no trigger counted from the timer's activation "
                   "or the service's stop")
        elif entry.section == "Timer" and key in ("Unit", "FixedRandomDelay"):
            continue
        elif entry.section == "Install" or (entry.section == "Unit" and key == "Documentation"):
            continue
        else:
            notes.append(f"{where}: not imported: {entry}")
    argv, service_keys = _service(service_text, service_path, refuse, notes, exists)
    if not schedules and not any(p.origin.path == timer_path for p in refused):
        refused.append(refusal(timer_path, 0, "no OnCalendar=, OnUnitActiveSec= or OnBootSec=0: "
                               "nothing says when it runs"))
    refused.sort(key=lambda p: (str(p.origin.path) != str(timer_path), p.origin.line))
    if argv is None:
        schedules = []  # the service's command was refused: no task can run it
    stem = slug(timer_path.stem)
    ids = IdAllocator(taken)
    tasks: list[ImportedTask] = []
    for number, (schedule, zone, entry) in enumerate(schedules, start=1):
        table: dict[str, object] = {
            "id": ids.allocate(stem if len(schedules) == 1 else f"{stem}-{number}")}
        if len(schedules) > 1:
            table["group"] = stem
        if description:
            table["description"] = description
        table["schedule"] = schedule
        if zone:
            table["timezone"] = zone
        if argv is not None:
            table["argv"] = argv
        table.update(service_keys)
        table.update(common)
        if entry.key == "OnCalendar":
            table.update(calendar_keys)
        comments = [f"{timer_path}:{entry.line}: {entry}", *notes]
        jitter_note = _fit_jitter(table)
        if jitter_note:
            comments.append(jitter_note)
        tasks.append(ImportedTask(table, tuple(comments)))
    return ImportResult(f"{timer_path} and {service_path}", tuple(tasks), refused=tuple(refused))


def _fit_jitter(table: dict[str, object]) -> str | None:
    """Shorten a jitter that reaches the schedule's next fire (`apt-daily`:
    RandomizedDelaySec=12h on a timer firing every 12h), which jobctl's
    config refuses, to a minute less than the shortest gap; say so. None:
    the jitter fits (or there is none)."""
    from jobctl.timing import format_duration, min_gap_seconds, parse_duration, parse_schedule

    jitter = table.get("jitter")
    if not isinstance(jitter, str):
        return None
    try:
        gap = min_gap_seconds(parse_schedule(str(table["schedule"])))
    except (BadExpressionError, ValueError):
        return None
    seconds = parse_duration(jitter)
    if gap is None or seconds < gap:
        return None
    if gap > 60:
        table["jitter"] = format_duration(gap - 60)
        kept = f"jitter = \"{table['jitter']}\", a minute less"
    else:
        del table["jitter"]
        kept = "no jitter"
    return (f"RandomizedDelaySec={jitter} reaches the next fire ({format_duration(gap)} "
            f"apart), which jobctl refuses (a delayed run would meet the next one): {kept}")


def _service(text: str, path: Path, refuse: object, notes: list[str],
             exists: Callable[[str], bool]) -> tuple[list[str] | None, dict[str, object]]:
    assert callable(refuse)
    keys: dict[str, object] = {}
    argv: list[str] | None = None
    env: dict[str, str] = {}
    oneshot = False
    timeouts: dict[str, float] = {}
    exec_lines: list[_Entry] = []
    pre_lines: list[_Entry] = []
    for entry in parse_unit(text):
        key, value = entry.key, entry.value
        where = f"{path}:{entry.line}"
        if entry.section != "Service":
            if entry.section == "Unit" and key.startswith(_CONDITIONS):
                notes.append(f"{where}: not imported: {entry} (systemd skipped a run when it did "
                             "not hold; jobctl always runs)")
            elif not (entry.section == "Unit" and key in ("Description", "Documentation")):
                notes.append(f"{where}: not imported: {entry}")
            continue
        if key == "ExecStart":
            if not value:
                exec_lines = []
                continue
            exec_lines.append(entry)
        elif key == "Type":
            oneshot = value == "oneshot"
            if value == "forking":
                refuse(path, entry, "the service's main process forks away; jobctl waits for "
                       "the process it starts")
        elif key == "WorkingDirectory":
            cwd = value.removeprefix("-")
            if cwd.startswith("~") or cwd.startswith("%"):
                refuse(path, entry, "a home directory or specifier: write the path out as cwd")
            else:
                keys["cwd"] = cwd
        elif key == "Environment":
            try:
                words = shlex.split(value)
            except ValueError as e:
                refuse(path, entry, f"cannot split it ({e})")
                continue
            for word in words:
                name, sep, val = word.partition("=")
                if not sep:
                    refuse(path, entry, f"'{word}' is not NAME=VALUE")
                    continue
                env[name] = val
        elif key == "EnvironmentFile":
            if "env_file" in keys:
                refuse(path, entry, "a second EnvironmentFile=: a task has one env_file")
                continue
            if value.startswith("-") and not exists(value[1:]):
                # '-': optional; missing now, so systemd reads nothing, and an
                # env_file naming it would make the config invalid
                notes.append(f"{where}: {entry}: the file does not exist, which systemd "
                             "allowed ('-'); not imported: if you create it, add "
                             f"env_file = \"{value[1:]}\"")
                continue
            keys["env_file"] = value.removeprefix("-")
            if value.startswith("-"):
                notes.append(f"{where}: {entry}: systemd ignored the file when missing; "
                             "jobctl refuses a config whose env_file is missing")
        elif key == "User":
            keys["user"] = value
        elif key in ("TimeoutStartSec", "RuntimeMaxSec", "TimeoutSec"):
            try:
                seconds = timespan(value)
            except ValueError as e:
                refuse(path, entry, str(e))
                continue
            if seconds:
                timeouts[key] = seconds
        elif key == "ExecStartPre":
            if not value:
                pre_lines = []
                continue
            pre_lines.append(entry)
        elif key in ("ExecStartPost", "ExecCondition", "ExecStop", "ExecStopPost",
                     "ExecReload"):
            refuse(path, entry, "jobctl runs one command per task: put the commands in one "
                   "script and make it ExecStart=")
        else:
            notes.append(f"{where}: not imported: {entry}")
    if not exec_lines:
        refused_line = _Entry("Service", "ExecStart", "", 0)
        refuse(path, refused_line, "the service has no ExecStart=")
    else:
        for extra in exec_lines[1:]:
            refuse(path, extra, "several ExecStart= lines (run in turn by Type=oneshot): put them "
                   "in one script")
        argv = (_with_pre(pre_lines, exec_lines[0], path, refuse, notes) if pre_lines
                else _exec_argv(exec_lines[0], path, refuse, notes))
    if env:
        keys["env"] = env
    limit = [timeouts[k] for k in ("RuntimeMaxSec",) if k in timeouts]
    if oneshot:
        limit += [timeouts[k] for k in ("TimeoutStartSec", "TimeoutSec") if k in timeouts]
    if limit:
        from jobctl.timing import format_duration

        keys["timeout"] = format_duration(int(min(limit)) or 1)
    return argv, keys


def _with_pre(pre_lines: list[_Entry], main: _Entry, path: Path, refuse: object,
              notes: list[str]) -> list[str] | None:
    """ExecStartPre= lines, then ExecStart=, as one `sh -c` script that runs
    them in turn as systemd does: a failing ExecStartPre= stops there (the
    run fails with its status) unless it has '-', and the main command's
    '-' counts its failure as success."""
    parts = []
    for entry in [*pre_lines, main]:
        parsed = _parse_exec(entry, path, refuse, notes)
        if parsed is None:
            return None
        argv, ignore = parsed
        command = shlex.join(argv)
        if entry is main:
            parts.append(f"{command} || :" if ignore else f"exec {command}")
        else:
            parts.append(f"{command} || :" if ignore else f"{command} || exit")
    notes.append(f"{path}:{pre_lines[0].line}: ExecStartPre= runs first, in the same `sh -c` "
                 "as ExecStart= (a failing one without '-' fails the run, as in systemd)")
    return ["/bin/sh", "-c", "; ".join(parts)]


def _exec_argv(entry: _Entry, path: Path, refuse: object, notes: list[str]) -> list[str] | None:
    """ExecStart='s argv (its '-' as an `|| :` wrapper); None when refused."""
    parsed = _parse_exec(entry, path, refuse, notes)
    if parsed is None:
        return None
    argv, ignore = parsed
    if ignore:
        notes.append(f"{path}:{entry.line}: '-': systemd counted a failing exit as success; so "
                     "does this task's `|| :`")
        return ["/bin/sh", "-c", '"$@" || :', argv[0], *argv]
    return argv


def _parse_exec(entry: _Entry, path: Path, refuse: object,
                notes: list[str]) -> tuple[list[str], bool] | None:
    """An Exec*= line's argv and whether its '-' prefix ignores a failure;
    None when refused (with the reason)."""
    assert callable(refuse)
    value = entry.value
    prefix = re.match(r"[-@+!:|]*", value)
    flags = prefix.group() if prefix else ""
    command = value[len(flags):]
    for flag, why in (("@", "'@' gives the program another argv[0], which argv cannot express"),
                      ("+", "'+' runs it with full privileges, outside the unit's sandbox"),
                      ("!", "'!' runs it with elevated privileges"),
                      ("|", "'|' runs it through the user's login shell")):
        if flag in flags:
            refuse(path, entry, why)
            return None
    if "\\" in command:
        refuse(path, entry, "backslash escapes: write the argv by hand")
        return None
    if re.search(r"%[^%]", command.replace("%%", "")):
        refuse(path, entry, "a %-specifier (unit name, instance, ...) that jobctl does not fill in")
        return None
    if ":" not in flags and "$" in command:
        refuse(path, entry, "systemd expands $VARIABLES in ExecStart=; jobctl passes argv as "
               "written")
        return None
    try:
        argv = shlex.split(command.replace("%%", "%"))
    except ValueError as e:
        refuse(path, entry, f"cannot split it ({e})")
        return None
    if not argv or ";" in argv:
        refuse(path, entry, "one command only")
        return None
    where = f"{path}:{entry.line}"
    if "/" not in argv[0]:
        notes.append(f"{where}: systemd found {argv[0]} in its fixed search path; jobctl looks "
                     "in the task's PATH")
    return argv, "-" in flags
