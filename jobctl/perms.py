"""File permissions at jobctl's edges.

What jobctl writes is private: folders it creates are 0700, and the state
file and every log are 0600, whatever the umask (cron keeps its spool this
way), because a run's output may hold anything. What jobctl runs commands
from must be safe: a config file or plugin manifest that another user could
change is refused, as cronie refuses such a crontab, because whoever can
write it runs commands as the runner's user.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from jobctl.errors import JobctlError

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def make_private_dirs(folder: Path) -> None:
    """Create `folder` and any missing parents, each 0700. Folders that
    already exist keep their mode: they are the user's, not ours."""
    missing: list[Path] = []
    for p in (folder, *folder.parents):
        if p.exists() or p.is_symlink():
            break
        missing.append(p)
    for p in reversed(missing):
        try:
            p.mkdir(mode=PRIVATE_DIR)
        except FileExistsError:
            continue  # another process made it: not ours to chmod
        # mkdir's mode is cut by the umask; a umask can only take bits away,
        # but one such as 0o200 would leave the owner unable to write
        os.chmod(p, PRIVATE_DIR)
    if not missing:
        # exists already, or one of its parents is a file: let mkdir say which
        folder.mkdir(parents=True, exist_ok=True)


def open_private(path: Path, flags: int) -> int:
    """`os.open(path, flags | O_CREAT)` giving a new file mode 0600 whatever
    the umask; a file that is already there is set to 0600 too (it is ours)."""
    fd = os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE)
    try:
        st = os.fstat(fd)
        # a device (/dev/null, /dev/full) is not ours to change
        if stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) != PRIVATE_FILE:
            os.fchmod(fd, PRIVATE_FILE)
    except OSError:
        pass  # not ours to change
    return fd


def create_private_file(path: Path) -> None:
    """Create an empty file 0600 unless one is there already (SQLite then
    gives its -wal and -shm files the same mode)."""
    try:
        fd = open_private(path, os.O_WRONLY | os.O_EXCL)
    except FileExistsError:
        return
    os.close(fd)


class UntrustedFileError(JobctlError):
    """A config file or plugin manifest (or its folder) that someone other
    than the runner's user (or root) could change."""

    def __init__(self, kind: str, path: Path, problem: str, fix: str) -> None:
        self.kind = kind
        self.path = path
        self.problem = problem
        self.fix = fix
        super().__init__(f"refusing {kind} {path}: {problem}, so whoever can change it runs "
                         f"commands as you; fix: {fix}")


def _who(uid: int) -> str:
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (KeyError, ImportError):
        return f"uid {uid}"


def _writable_by(mode: int) -> str | None:
    both = mode & stat.S_IWGRP and mode & stat.S_IWOTH
    if both:
        return "group and others"
    if mode & stat.S_IWGRP:
        return "its group"
    if mode & stat.S_IWOTH:
        return "others"
    return None


def check_trusted(path: Path, kind: str, *, folder: bool = False) -> None:
    """UntrustedFileError if `path` is group- or world-writable, or owned by
    someone other than this process's user or root. With `folder`, its
    folder is checked too (a writable folder without the sticky bit lets
    others replace the file). A file that cannot be stat'ed is left to the
    reader, which says why it cannot be read."""
    me = os.geteuid()
    try:
        st = path.stat()
    except OSError:
        return
    mode = stat.S_IMODE(st.st_mode)
    writers = _writable_by(mode)
    if writers:
        raise UntrustedFileError(kind, path, f"it is writable by {writers} (mode {mode:04o})",
                                 f"chmod go-w {path}")
    if st.st_uid not in (me, 0):
        raise UntrustedFileError(kind, path, f"it is owned by {_who(st.st_uid)}, {_not_you(me)}",
                                 f"chown {_who_name(me)} {path}")
    if not folder:
        return
    parent = path.absolute().parent
    try:
        dst = parent.stat()
    except OSError:
        return
    dmode = stat.S_IMODE(dst.st_mode)
    writers = _writable_by(dmode)
    if writers and not dmode & stat.S_ISVTX:
        raise UntrustedFileError(kind, path, f"its folder {parent} is writable by {writers} "
                                 f"(mode {dmode:04o}, no sticky bit)", f"chmod go-w {parent}")
    if dst.st_uid not in (me, 0):
        raise UntrustedFileError(kind, path, f"its folder {parent} is owned by "
                                 f"{_who(dst.st_uid)}, {_not_you(me)}",
                                 f"chown {_who_name(me)} {parent}")


def _not_you(me: int) -> str:
    return "not by root" if me == 0 else f"not by you ({_who(me)}) or root"


def _who_name(uid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (KeyError, ImportError):
        return str(uid)
