"""The only place that reads wall time or the system's zone."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
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


class OffsetClock:
    """Another clock's time corrected by its measured offset to a reference
    clock (a shared state's database): on a cluster, when a slot is due is
    the database's time, whatever this machine's clock says. `sync` measures
    the offset; until then it is zero. The monotonic clock is the base's."""

    MAX_ROUND_TRIP = 1.0  # seconds: a slower sample says little; keep the last good offset

    def __init__(self, base: Clock) -> None:
        self.base = base
        self.offset = 0.0
        """Seconds to add to the base clock's time (reference - base)."""
        self.round_trip: float | None = None
        """How long the last sample taken took (its error is at most half)."""

    def now(self) -> datetime:
        return self.base.now() + timedelta(seconds=self.offset)

    def monotonic(self) -> float:
        return self.base.monotonic()

    def sync(self, read: Callable[[], datetime | None]) -> None:
        """Read the reference clock once (`read`: None if it has none) and
        take its offset, corrected by half the round trip: the reference
        read its clock somewhere between the two looks at ours."""
        before = self.base.now()
        remote = read()
        after = self.base.now()
        if remote is None:
            return
        trip = (after - before).total_seconds()
        if self.round_trip is not None and trip > self.MAX_ROUND_TRIP:
            return
        self.round_trip = trip
        self.offset = (remote - (before + (after - before) / 2)).total_seconds()


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
