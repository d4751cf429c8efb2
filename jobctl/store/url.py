"""State targets that are database URLs: how they are shown and passed on.
No driver here: commands on a SQLite state import this module for free."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from jobctl.model import is_database_url

__all__ = ["is_database_url", "same_target", "shown_target", "without_password"]


def without_password(url: str) -> str:
    """The URL with any password left out: printable, and what child
    processes get (they find the password in PGPASSWORD or ~/.pgpass, as
    libpq users expect, never on a command line or in a job's environment).
    A password in the query (`?password=`) is left out too."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url.split("@")[-1] if "@" in url else url
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}@{hostport}" if user else hostport
    query = "&".join(p for p in parts.query.split("&") if p and not p.lower().startswith("password="))
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def shown_target(target: Path | str) -> str:
    """How messages name a state: a path, or a URL without its password."""
    return without_password(str(target)) if is_database_url(target) else str(target)


def same_target(a: Path | str, b: Path | str) -> bool:
    if is_database_url(a) or is_database_url(b):
        return is_database_url(a) and is_database_url(b) and \
            without_password(str(a)) == without_password(str(b))
    return Path(a).expanduser().absolute() == Path(b).expanduser().absolute()
