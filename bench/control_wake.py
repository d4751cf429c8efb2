#!/usr/bin/env python3
"""How fast `jobctl enable`/`disable` reach a runner on a PostgreSQL state:
from the command returning to the runner's `control` event, with the
LISTEN/NOTIFY wake-up and with polling alone (the runner's listener turned
off, as under PgBouncer's transaction pooling).

    python bench/control_wake.py [--rounds 20] [--pg-url URL]

Without --pg-url it starts a throwaway server with tests/pgserver.py.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

# a runner whose store has no listener: polling alone
NO_LISTEN = ("import jobctl.store.postgres as p; p.PostgresStore.control_listener = lambda self: None;"
             " import sys; sys.argv = ['jobctl', *sys.argv[1:]];"
             " from jobctl.__main__ import main; main()")


def measure(url: str, listen: bool, rounds: int) -> list[tuple[float, float, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "jobctl.toml").write_text(f'[jobctl]\nstate = "{url}"\n\n[[tasks]]\nid = "x"\n'
                                       'schedule = "@daily"\nargv = ["true"]\n')
        env = {k: v for k, v in os.environ.items() if not k.startswith("JOBCTL_")}
        env["XDG_DATA_HOME"] = str(d / "data")
        head = [sys.executable, "-m", "jobctl"] if listen else [sys.executable, "-c", NO_LISTEN]
        out = (d / "out").open("w+")
        proc = subprocess.Popen([*head, "run", "--log-format", "json", "--node", "bench"],
                                cwd=d, env=env, stdout=out, stderr=subprocess.STDOUT)
        seen = 0

        def events() -> list[dict[str, object]]:
            return [json.loads(x) for x in (d / "out").read_text().splitlines() if x.startswith("{")]
        try:
            while not any(e["event"] == "ready" for e in events()):
                time.sleep(0.01)
            delays = []
            for i in range(rounds):
                what = "disable" if i % 2 == 0 else "enable"
                began = time.monotonic()
                subprocess.run([sys.executable, "-m", "jobctl", what, "x"], cwd=d, env=env,
                               check=True, capture_output=True)
                returned = time.monotonic()
                while True:
                    got = [e for e in events() if e["event"] == "control"]
                    if len(got) > seen:
                        seen = len(got)
                        # from the command's start; and after it returned (0: before)
                        delays.append((time.monotonic() - began, time.monotonic() - returned,
                                       returned - began))
                        break
                    time.sleep(0.002)
            return delays
        finally:
            proc.terminate()
            proc.wait(20)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--pg-url")
    args = parser.parse_args()
    server = None
    url = args.pg_url
    if url is None:
        from pgserver import PostgresServer

        server = PostgresServer().start()
    try:
        for listen in (True, False):
            if server is not None:
                url = server.url(server.create_database())
            rows = measure(url, listen, args.rounds)
            since_start = sorted(r[0] for r in rows)
            after = sorted(r[1] for r in rows)
            took = statistics.median(r[2] for r in rows)
            print(f"{'LISTEN/NOTIFY' if listen else 'polling only '}: n={len(rows)}; from the"
                  f" command's start: median {statistics.median(since_start) * 1000:.0f} ms, max"
                  f" {since_start[-1] * 1000:.0f} ms; after it returned: median"
                  f" {statistics.median(after) * 1000:.0f} ms, max {after[-1] * 1000:.0f} ms"
                  f" (the command itself: median {took * 1000:.0f} ms)")
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
