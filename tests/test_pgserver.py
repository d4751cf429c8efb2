"""The test suite's own PostgreSQL: started when none is given, stopped at the
end, and a failure (never a skip) when it cannot be had."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = '''
def test_needs_postgres(pg_url):
    import psycopg
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    print("URL", pg_url)
'''


def run_probe(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_probe.py").write_text(PROBE)
    # the suite's own fixtures, in a session of their own
    (tmp_path / "conftest.py").write_text(
        "import importlib.util, sys\n"
        f"sys.path.insert(0, {str(ROOT / 'tests')!r})\n"
        f"spec = importlib.util.spec_from_file_location('suite_conftest', {str(ROOT / 'tests' / 'conftest.py')!r})\n"
        "suite = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(suite)\n"
        "pg_server, pg_url = suite.pg_server, suite.pg_url\n")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider", "-s", str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)


def postgres_pids(port: int | None = None) -> set[int]:
    """PostgreSQL server processes (those listening on `port` when given:
    other test sessions on the machine may run servers of their own)."""
    pids = set()
    for stat in Path("/proc").glob("[0-9]*/comm"):
        try:
            if stat.read_text().strip() not in ("postgres", "postmaster"):
                continue
            if port is not None:
                args = (stat.parent / "cmdline").read_bytes().split(b"\0")
                if b"-p" not in args or args[args.index(b"-p") + 1] != str(port).encode():
                    continue
            pids.add(int(stat.parent.name))
        except (OSError, IndexError):
            continue
    return pids


def test_an_unreachable_server_fails_the_tests_that_need_it(tmp_path: Path) -> None:
    env = dict(os.environ, JOBCTL_TEST_POSTGRES_URL="postgresql://jobctl:s3cret@127.0.0.1:1/postgres")
    done = run_probe(tmp_path, env)
    out = done.stdout + done.stderr
    assert done.returncode != 0, out
    assert "skipped" not in out, out
    assert "PostgreSQL tests cannot run: cannot reach the test PostgreSQL at 127.0.0.1:1" in out, out
    assert "s3cret" not in out


def test_a_server_of_its_own_is_started_and_stopped(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "JOBCTL_TEST_POSTGRES_URL"}
    done = run_probe(tmp_path, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
    # a database of its own, on 127.0.0.1
    match = re.search(r"@127\.0\.0\.1:(\d+)/jobctl_test_", done.stdout)
    assert match, done.stdout
    assert not postgres_pids(int(match.group(1)))  # nothing left running
