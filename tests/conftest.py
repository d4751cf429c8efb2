from __future__ import annotations

import textwrap
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from jobctl.cli import app
from jobctl.cli._common import Services

UTC = timezone.utc
NOW = datetime(2026, 6, 15, 12, 0, 0, tzinfo=UTC)


class FakeClock:
    """A clock that only moves when a test moves it."""

    def __init__(self, now: datetime = NOW) -> None:
        self._now = now
        self._mono = 1000.0

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
        self._mono += seconds

    def set(self, now: datetime) -> None:
        self._now = now


@pytest.fixture(autouse=True)
def _pin_terminal(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    # rich sizes tables from COLUMNS; pin it so output does not wrap by machine.
    monkeypatch.setenv("COLUMNS", "200")
    # default config and state paths land in the test's temp dir, never in ~
    base = tmp_path_factory.mktemp("home")
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        monkeypatch.setenv(var, str(base / var.lower()))
    monkeypatch.delenv("JOBCTL_CONFIG", raising=False)
    monkeypatch.delenv("JOBCTL_STATE", raising=False)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def wait_for(cond: Callable[[], object], timeout: float = 15.0, what: str = "condition") -> object:
    """Poll `cond` until it returns something true (returned), or fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def write_config(tmp_path: Path, text: str, name: str = "jobctl.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


@pytest.fixture
def cli(tmp_path: Path, clock: FakeClock) -> Callable[..., object]:
    """Invoke the real app with a fake clock, an empty env and tmp_path as cwd."""
    runner = CliRunner()

    def invoke(*args: str, env: dict[str, str] | None = None, input: str | None = None):  # type: ignore[no-untyped-def]
        services = Services(clock=clock, env=dict(env or {}), cwd=tmp_path, system_zone="UTC")
        return runner.invoke(app, list(args), obj=services, input=input)

    return invoke


# -- PostgreSQL ------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_server() -> Iterator[object]:
    """The session's PostgreSQL server ($JOBCTL_TEST_POSTGRES_URL, or one started
    here). If it cannot be had, every test that needs it fails, saying why."""
    from pgserver import PostgresServer, PostgresUnavailable

    server = PostgresServer()
    try:
        try:
            server.start()
        except PostgresUnavailable as e:
            pytest.fail(f"PostgreSQL tests cannot run: {e}", pytrace=False)
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server: object) -> Iterator[str]:
    """The URL of a fresh database of its own for one test (dropped after)."""
    from pgserver import PostgresServer

    assert isinstance(pg_server, PostgresServer)
    name = pg_server.create_database()
    try:
        yield pg_server.url(name)
    finally:
        pg_server.drop_database(name)
