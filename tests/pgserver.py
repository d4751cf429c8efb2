"""A throwaway PostgreSQL server for the tests.

`JOBCTL_TEST_POSTGRES_URL` names an existing server (a URL to a database the
tests may CREATE DATABASE from); without it, `PostgresServer.start()` runs
Debian's binaries (/usr/lib/postgresql/*/bin) itself: a data dir in a temp
dir, 127.0.0.1 on a free port, a unix socket in the temp dir, password
authentication. PostgreSQL refuses to run as root, so as root the server runs
as the `postgres` user (else `nobody`) via setpriv.

Nothing here skips: a server that cannot be started or reached is an error
that says why, and the tests that need it fail.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

URL_ENV = "JOBCTL_TEST_POSTGRES_URL"


class PostgresUnavailable(RuntimeError):
    pass


def _bin_dir() -> str:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise PostgresUnavailable(
            "no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb): install them "
            f"(apt-get install postgresql) or set {URL_ENV} to a server's URL")
    return os.path.dirname(found[-1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One server for the test session; `database()` makes a fresh database."""

    def __init__(self) -> None:
        self.base_url = ""
        self.password = ""
        self._tmp: str | None = None
        self._data: str | None = None
        self._user: pwd.struct_passwd | None = None
        self._bin = ""
        self._options = ""

    # -- start and stop

    def start(self) -> PostgresServer:
        given = os.environ.get(URL_ENV)
        if given:
            self.base_url = given
            self.password = urlsplit(given).password or ""
            self._check()
            return self
        self._bin = _bin_dir()
        self._user = self._unprivileged_user()
        self._tmp = tempfile.mkdtemp(prefix="jobctl-pg-")
        os.chmod(self._tmp, 0o755)
        self._data = os.path.join(self._tmp, "data")
        sockets = os.path.join(self._tmp, "sock")
        os.mkdir(sockets)
        pwfile = os.path.join(self._tmp, "pw")
        self.password = secrets.token_hex(12)
        with open(pwfile, "w") as f:
            f.write(self.password + "\n")
        if self._user is not None:
            for p in (self._tmp, sockets, pwfile):
                os.chown(p, self._user.pw_uid, self._user.pw_gid)
        try:
            self._as_server_user([f"{self._bin}/initdb", "-D", self._data, "-U", "jobctl",
                                  "--pwfile", pwfile, "-A", "scram-sha-256", "-E", "UTF8",
                                  "--no-sync"], timeout=120)
        finally:
            os.unlink(pwfile)
        port = _free_port()
        options = (f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={sockets}"
                   " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
                   " -c max_connections=200")
        self._options = options
        self._start_server()
        self.base_url = f"postgresql://jobctl:{self.password}@127.0.0.1:{port}/postgres"
        self._check()
        return self

    def _start_server(self) -> None:
        assert self._tmp is not None and self._data is not None
        self._as_server_user([f"{self._bin}/pg_ctl", "-D", self._data, "-o", self._options, "-w",
                              "-t", "60", "-l", os.path.join(self._tmp, "log"), "start"],
                             timeout=90)

    def restart(self, down_s: float = 0.0) -> None:
        """Stop the server (fast: clients are disconnected, open transactions
        rolled back), stay down `down_s` seconds, and start it again on the
        same port. Only for a server started here."""
        import time

        if self._data is None:
            raise PostgresUnavailable(f"cannot restart a server given by {URL_ENV}")
        self._as_server_user([f"{self._bin}/pg_ctl", "-D", self._data, "-m", "fast", "-w",
                              "-t", "60", "stop"], timeout=90)
        time.sleep(down_s)
        self._start_server()

    def stop(self) -> None:
        if self._data is not None and os.path.isdir(self._data):
            try:
                self._as_server_user([f"{self._bin}/pg_ctl", "-D", self._data, "-m", "immediate",
                                      "-w", "stop"], timeout=60)
            except PostgresUnavailable:
                pid_file = os.path.join(self._data, "postmaster.pid")
                if os.path.exists(pid_file):
                    with open(pid_file) as f:
                        pid = int(f.readline())
                    os.kill(pid, 9)
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def log_tail(self) -> str:
        if self._tmp is None:
            return ""
        try:
            with open(os.path.join(self._tmp, "log")) as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    # -- databases

    def url(self, database: str) -> str:
        parts = urlsplit(self.base_url)
        return urlunsplit(parts._replace(path="/" + database))

    def admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.base_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def create_database(self) -> str:
        name = f"jobctl_test_{secrets.token_hex(6)}"
        self.admin(f'create database "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        self.admin(f'drop database if exists "{name}" with (force)')

    # -- plumbing

    def _check(self) -> None:
        import psycopg

        try:
            with psycopg.connect(self.base_url, connect_timeout=10) as conn:
                conn.execute("select 1")
        except psycopg.Error as e:
            where = urlsplit(self.base_url)
            raise PostgresUnavailable(
                f"cannot reach the test PostgreSQL at {where.hostname}:{where.port}: {e}\n"
                f"{self.log_tail()}") from None

    @staticmethod
    def _unprivileged_user() -> pwd.struct_passwd | None:
        if os.geteuid() != 0:
            return None
        for name in ("postgres", "nobody"):
            try:
                return pwd.getpwnam(name)
            except KeyError:
                continue
        raise PostgresUnavailable("running as root with neither a 'postgres' nor a 'nobody' user")

    def _as_server_user(self, argv: Sequence[str], *, timeout: float) -> None:
        cmd = list(argv)
        if self._user is not None:
            cmd = ["setpriv", f"--reuid={self._user.pw_uid}", f"--regid={self._user.pw_gid}",
                   "--clear-groups", "--", *cmd]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8",
               "TZ": "UTC"}
        try:
            done = subprocess.run(cmd, env=env, cwd=self._tmp, capture_output=True, text=True,
                                  timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise PostgresUnavailable(f"{os.path.basename(argv[0])} failed: {e}") from None
        if done.returncode != 0:
            raise PostgresUnavailable(
                f"{os.path.basename(argv[0])} exited {done.returncode}: "
                f"{(done.stderr or done.stdout).strip()[-1500:]}\n{self.log_tail()}")

