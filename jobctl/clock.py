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
    """The IANA name of the system's local zone, or 'UTC' if it has none.

    Looks at $TZ, then the /etc/localtime link, then /etc/timezone.
    """
    from jobctl.timing import load_zone

    candidates: list[str] = []
    tz_env = os.environ.get("TZ", "").lstrip(":")
    if tz_env:
        candidates.append(tz_env)
    try:
        target = os.readlink("/etc/localtime")
        parts = Path(target).parts
        if "zoneinfo" in parts:
            candidates.append("/".join(parts[parts.index("zoneinfo") + 1:]))
    except OSError:
        pass
    try:
        candidates.append(Path("/etc/timezone").read_text().strip())
    except OSError:
        pass
    for name in candidates:
        try:
            load_zone(name)
            return name
        except ValueError:
            continue
    return "UTC"
