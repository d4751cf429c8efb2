"""The only place that reads wall time or the system's zone."""

from __future__ import annotations

import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol


class Clock(Protocol):
    """A source of the current instant. Core code takes `now` as an argument;
    the runner asks a Clock, so tests can step time with a fake one."""

    def now(self) -> datetime:
        """The current instant, aware, in UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never steps back."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def monotonic(self) -> float:
        return time.monotonic()


def system_zone_name() -> str:
    """The IANA name of the system's local zone (see `system_zone`)."""
    return system_zone()[0]


def system_zone() -> tuple[str, str | None]:
    """The IANA name of the zone this machine's local time is in, and a
    one-line note when jobctl cannot follow what $TZ says exactly.

    $TZ first, as the C library reads it: a zone name, optionally after a `:`
    (`Europe/Berlin`; also the tzdata's POSIX-style names `EST5EDT`, `CET`,
    which glibc too reads from those files), or the path of a zoneinfo file
    (`:/usr/share/zoneinfo/Europe/Berlin`). An empty $TZ is UTC. A POSIX rule
    that names no zone (`CET-1CEST,M3.5.0,M10.5.0/3`) cannot be a task's zone:
    the system's configured zone is used and the note says so. Without $TZ,
    the system's settings as tzlocal finds them (/etc/localtime, /etc/timezone,
    ...); UTC if there are none.
    """
    import warnings
    import zoneinfo

    from jobctl.timing import load_zone

    tz = os.environ.get("TZ")
    if tz is not None and not tz.lstrip(":"):
        return "UTC", None
    if tz is not None:
        name = tz[1:] if tz.startswith(":") else tz
        try:
            load_zone(name)
            return name, None  # (and spare every command tzlocal's imports)
        except ValueError:
            pass
    import tzlocal  # only here: it loads a table of all zone names

    unnamed = False
    with warnings.catch_warnings():
        # tzlocal warns when the zone it found disagrees with time.localtime()
        warnings.simplefilter("ignore")
        try:
            key = str(getattr(tzlocal.reload_localzone(), "key", ""))
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            # $TZ is a POSIX rule, or a name of no zone; tzlocal's name of the
            # system's zone skips such a $TZ
            unnamed = True
            try:
                key = tzlocal.get_localzone_name() or ""
            except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
                key = ""
    try:
        load_zone(key)
    except ValueError:
        unnamed, key = True, "UTC"
    if not unnamed:
        return key, None
    what = f"TZ={tz!r} names no IANA time zone" if tz is not None else \
        "the system's local zone has no IANA name"
    return key, (f"warning: {what}; using the system's zone, {key} "
                 "(set TZ, or [jobctl] timezone, to a name such as Europe/Berlin)")
