#!/usr/bin/env python3
"""Lateness of cluster slots and start-up of commands on a PostgreSQL state.

    python bench/cluster_lateness.py             # 20 s per lateness run, 10 start-ups per command
    python bench/cluster_lateness.py --quick     # 10 s, 5 start-ups
    python bench/cluster_lateness.py --json      # figures as JSON on stdout
    python bench/cluster_lateness.py --pg-url postgresql://u:pw@host:5432/postgres

(a) Lateness: 100 cluster tasks due at every second (`every 1s`, one batch of
100 per instant) on 3 nodes sharing a PostgreSQL state, against the same
config on one node with a SQLite state, run one after the other: p50/p99/max
of (started_at - scheduled_for) over the runs of the whole seconds after every
node was ready. started_at is when the node had spawned the process, on its
clock (corrected to the database's on a cluster). Target: the cluster's p50
and p99 within 2x of single-node SQLite.

(b) Start-up: `jobctl list` and `jobctl status` on a PostgreSQL state (100
tasks, after the lateness run, so the state has a few thousand runs), the
same on the SQLite state, against `python -c "import typer"`: median wall
time of whole processes, and the ratio to the floor.

Without --pg-url it starts a throwaway server with tests/pgserver.py. Every
process it starts is stopped on the way out. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import cluster_bench as cb  # noqa: E402
import runner_bench as rb  # noqa: E402
from runner_bench import jobctl_argv, percentile, progress, write_config  # noqa: E402

PY = sys.executable


def config(d: Path, state: str, n_tasks: int) -> Path:
    tasks = [{"id": f"due-{i:03d}", "schedule": "every 1s", "scope": "cluster",
              "argv": ["true"]} for i in range(n_tasks)]
    cfg = d / "jobctl.toml"
    write_config(cfg, tasks, {"state": state})
    return cfg


def lateness_of(rows: list[tuple[Any, ...]], ready: float, stopped: float) -> dict[str, Any]:
    """rows: (scheduled_for, started_at, node) of schedule runs."""
    window = [(s, st, n) for s, st, n in rows
              if ready + 1 <= s.timestamp() <= stopped - 2]
    late = [(st - s).total_seconds() * 1000 for s, st, _n in window]
    nodes: dict[str, int] = {}
    for _s, _st, n in window:
        nodes[n] = nodes.get(n, 0) + 1
    return {"runs": len(late), "p50_ms": round(percentile(late, 50), 1),
            "p99_ms": round(percentile(late, 99), 1), "max_ms": round(max(late, default=0), 1),
            "early_runs": sum(1 for x in late if x < 0), "runs_per_node": nodes}


def run_nodes(d: Path, cfg: Path, names: tuple[str, ...], seconds: float) -> tuple[float, float, dict[str, Any]]:
    procs, outs = {}, {}
    for name in names:
        outs[name] = d / f"runner-{name}.out"
        procs[name] = cb.spawn(jobctl_argv("run", "--log-format", "json", "--node", name,
                                           "-c", str(cfg)), outs[name], d)
    for name in names:
        cb.wait_for(lambda n=name: cb.has_event(outs[n], "ready") or procs[n].poll() is not None,
                    60, f"node {name} ready")
        if procs[name].poll() is not None:
            raise RuntimeError(f"node {name} exited {procs[name].returncode}: "
                               f"{outs[name].read_text()[-1500:]}")
    ready = time.time()
    progress(f"{len(names)} node(s) ready, running {seconds:.0f}s")
    time.sleep(seconds)
    stopped = time.time()
    rcs = {n: cb.stop(p) for n, p in procs.items()}
    return ready, stopped, rcs


def bench_cluster(base: str, d: Path, n_tasks: int, seconds: float) -> tuple[dict[str, Any], str, Path]:
    url = cb.new_database(base, "bench_lateness")
    cfg = config(d, url, n_tasks)
    ready, stopped, rcs = run_nodes(d, cfg, cb.NODES, seconds)
    rows = cb.pg(url, "select scheduled_for, started_at, node from jobctl.runs"
                      " where trigger = 'schedule'")
    res = lateness_of(rows, ready, stopped)
    dup = cb.pg(url, "select count(*) from (select 1 from jobctl.runs where trigger = 'schedule'"
                     " group by task_id, scheduled_for having count(*) > 1) d")[0][0]
    res.update(exit_status=rcs, duplicated_slots=dup)
    return res, url, cfg


def bench_sqlite(d: Path, n_tasks: int, seconds: float) -> tuple[dict[str, Any], Path]:
    import sqlite3

    state = d / "state.db"
    cfg = config(d, str(state), n_tasks)
    ready, stopped, rcs = run_nodes(d, cfg, ("solo",), seconds)
    with sqlite3.connect(state) as conn:
        raw = conn.execute("select scheduled_for, started_at, node from runs"
                           " where trigger = 'schedule'").fetchall()
    rows = [(datetime.fromisoformat(s).astimezone(UTC), datetime.fromisoformat(st).astimezone(UTC),
             n) for s, st, n in raw]
    res = lateness_of(rows, ready, stopped)
    res["exit_status"] = rcs
    return res, cfg


def startup(argvs: dict[str, list[str]], repeat: int, cwd: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, argv in argvs.items():
        times = []
        for i in range(repeat + 1):
            began = time.perf_counter()
            proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
            took = time.perf_counter() - began
            if proc.returncode != 0:
                raise RuntimeError(f"{name} exited {proc.returncode}: {proc.stderr[-800:]}")
            if i:  # the first is a warm-up
                times.append(took * 1000)
        out[name] = {"median_ms": round(statistics.median(times), 1),
                     "min_ms": round(min(times), 1)}
    floor = out["import typer (floor)"]["median_ms"]
    for v in out.values():
        v["ratio"] = round(v["median_ms"] / floor, 2)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="10 s per lateness run, 5 start-ups")
    ap.add_argument("--seconds", type=float, help="length of each lateness run")
    ap.add_argument("--tasks", type=int, default=100)
    ap.add_argument("--repeat", type=int, help="timed start-ups per command")
    ap.add_argument("--pg-url", help="a server URL to CREATE DATABASE from (default: start one)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON on stdout")
    a = ap.parse_args()
    if a.json:
        rb.OUT = sys.stderr
    seconds = a.seconds or (10.0 if a.quick else 20.0)
    repeat = a.repeat or (5 if a.quick else 10)
    result: dict[str, Any] = {"tasks": a.tasks, "seconds": seconds,
                              "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                              "jobctl_commit": rb.git_describe()}
    server = None
    try:
        with tempfile.TemporaryDirectory(prefix="jobctl-lateness-bench-") as tmp:
            if a.pg_url:
                base = a.pg_url
            else:
                progress("starting a throwaway PostgreSQL (tests/pgserver.py)")
                server = cb.load_pgserver().PostgresServer().start()
                base = server.base_url
            (Path(tmp) / "pg").mkdir()
            (Path(tmp) / "sqlite").mkdir()
            progress("lateness: one node, SQLite")
            result["sqlite_1_node"], sqlite_cfg = bench_sqlite(Path(tmp) / "sqlite", a.tasks, seconds)
            progress("lateness: three nodes, PostgreSQL")
            result["postgres_3_nodes"], _url, pg_cfg = bench_cluster(base, Path(tmp) / "pg",
                                                                     a.tasks, seconds)
            progress(f"start-up: {repeat} timed runs per command")
            result["startup"] = startup({
                "import typer (floor)": [PY, "-c", "import typer"],
                "list (PostgreSQL)": jobctl_argv("list", "-c", str(pg_cfg)),
                "status (PostgreSQL)": jobctl_argv("status", "-c", str(pg_cfg)),
                "list (SQLite)": jobctl_argv("list", "-c", str(sqlite_cfg)),
                "status (SQLite)": jobctl_argv("status", "-c", str(sqlite_cfg)),
            }, repeat, Path(tmp))
    except KeyboardInterrupt:
        progress("interrupted: stopping everything")
        return 130
    finally:
        for p in list(cb.LIVE):
            cb.stop(p)
        if server is not None:
            server.stop()
    s, c = result["sqlite_1_node"], result["postgres_3_nodes"]
    result["ratio_p50"] = round(c["p50_ms"] / max(s["p50_ms"], 0.1), 2)
    result["ratio_p99"] = round(c["p99_ms"] / max(s["p99_ms"], 0.1), 2)
    say = rb.say
    say(f"lateness of {a.tasks} cluster tasks due each second, {seconds:.0f}s "
        "(started_at - scheduled_for, ms):")
    say(f"  {'':22} {'runs':>6} {'p50':>8} {'p99':>8} {'max':>8} early")
    for key, r in (("1 node, SQLite", s), ("3 nodes, PostgreSQL", c)):
        say(f"  {key:22} {r['runs']:>6} {r['p50_ms']:>8} {r['p99_ms']:>8} {r['max_ms']:>8} "
            f"{r['early_runs']}")
    say(f"  cluster / single: p50 {result['ratio_p50']}x, p99 {result['ratio_p99']}x "
        f"(target <= 2x); runs per node {c['runs_per_node']}; duplicated slots "
        f"{c['duplicated_slots']}")
    say("start-up (median of whole processes, ms; ratio to import typer):")
    for name, v in result["startup"].items():
        say(f"  {name:22} {v['median_ms']:>8} {v['ratio']:>6}x")
    if a.json:
        print(json.dumps(result, indent=2, default=str))
    return 0 if result["ratio_p50"] <= 2 and result["ratio_p99"] <= 2 else 1


if __name__ == "__main__":
    sys.exit(main())
