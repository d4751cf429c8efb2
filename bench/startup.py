#!/usr/bin/env python
"""Start-up benchmark for jobctl: whole-process wall time against an `import typer` floor.

Generates a realistic N-task config (default 10,000 tasks), then times, as separate
processes run with this same interpreter:

    python -c "import typer"                 (the floor: what any typer CLI pays)
    python -m jobctl --help
    python -m jobctl validate -c FILE
    python -m jobctl list --json -c FILE

Each command gets one untimed warm-up run, then R timed runs. Targets (median / floor median):
`--help` <= 1.3x, `validate` and `list --json` <= 5x.

Usage:
    python bench/startup.py [--tasks N] [--repeat R] [--out DIR] [--json]

Exit status: 0 if every target passes, 1 if any fails, 2 if a jobctl run fails.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

# -- config generation ---------------------------------------------------------

CRON_EXPRS = (
    "*/5 * * * *", "*/10 * * * *", "*/15 * * * *", "*/30 * * * *", "* * * * *",
    "0 * * * *", "15 * * * *", "45 */2 * * *", "0 */4 * * *", "0 */6 * * *",
    "0 3 * * *", "30 2 * * *", "0 0 * * *", "0 12 * * *", "30 23 * * *",
    "15 9 * * mon-fri", "0 8 * * 1-5", "30 17 * * mon-fri", "0 9-17 * * mon-fri",
    "*/20 9-18 * * 1-5", "0 6 * * sat,sun", "0 10 * * sun", "0 4 * * 0",
    "0 0 1 * *", "0 6 1 * *", "30 1 15 * *", "0 0 1,15 * *", "0 5 28 * *",
    "0 0 1 1 *", "0 0 1 */3 *", "0 2 * jan,jul *", "0 3 1 jan-jun *",
    "5 4 * * tue", "10 22 * * fri", "0 7,19 * * *", "20 0-6 * * *",
    "0 1 * * 1", "0 0 * * 6", "*/2 8-20 * * *", "1-59/7 * * * *",
)
SPECIAL = ("@daily", "@hourly", "@weekly", "@monthly", "every 5m", "every 1h", "90s", "30s",
           "every 15m", "1h30m")
ZONES = (
    "UTC", "America/New_York", "America/Los_Angeles", "Europe/Berlin", "Europe/London",
    "Asia/Tokyo", "Asia/Kolkata", "Australia/Sydney",
)
GROUPS = ("backups", "reports", "etl", "monitoring", "cleanup", "billing", "search")
VERBS = ("sync", "rotate", "export", "check", "compact", "refresh", "notify", "archive")


def generate_config(path: Path, n_tasks: int) -> None:
    """Write an n_tasks-task jobctl config; deterministic for a given n_tasks.

    Written by hand (every value is a plain ASCII string, which JSON and TOML
    quote alike), so the benchmark needs nothing beyond jobctl."""
    schedules = CRON_EXPRS + SPECIAL
    tasks = []
    for i in range(n_tasks):
        group = GROUPS[i % len(GROUPS)]
        tasks.append({
            "id": f"task-{i + 1:05d}",
            "name": f"{VERBS[(i // 3) % len(VERBS)].capitalize()} {group} #{i + 1}",
            "group": group,
            # Strides coprime with the table sizes so schedule/zone/group combine freely.
            "schedule": schedules[(i * 7) % len(schedules)],
            "timezone": ZONES[(i * 3) % len(ZONES)],
            "command": "echo hello",
        })
    lines = ['[jobctl]', 'timezone = "UTC"', ""]
    for task in tasks:
        lines.append("[[tasks]]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in task.items()]
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")


# -- timing --------------------------------------------------------------------


def fail(message: str) -> None:
    print(message, file=sys.stderr)
    sys.exit(2)


def run_once(argv: list[str], check: bool) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if check and proc.returncode != 0:
        fail(
            f"FAILED (exit {proc.returncode}): {' '.join(argv)}\n"
            f"{proc.stderr.decode(errors='replace')[-4000:]}"
        )
    return elapsed


def time_command(argv: list[str], repeat: int, check: bool) -> list[float]:
    run_once(argv, check)  # warm-up: page cache, .pyc files
    return [run_once(argv, check) for _ in range(repeat)]


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100), like numpy's default."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def version_of(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def sanity_check(py: str, config: Path, n_tasks: int) -> None:
    """Make sure the config really loads as n_tasks tasks before timing anything."""
    proc = subprocess.run([py, "-m", "jobctl", "list", "--json", "-c", str(config)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        fail(f"FAILED (exit {proc.returncode}): jobctl list --json\n{proc.stderr[-4000:]}")
    data = json.loads(proc.stdout)
    items = data if isinstance(data, list) else data.get("tasks", data)
    if len(items) != n_tasks:
        fail(f"FAILED: jobctl list --json returned {len(items)} tasks, expected {n_tasks}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks in the config (10000)")
    parser.add_argument("--repeat", type=int, default=10, help="timed runs per command (10)")
    parser.add_argument("--out", type=Path, help="directory for the config (default: a temp dir)")
    parser.add_argument("--json", action="store_true", help="print machine-readable results")
    args = parser.parse_args()
    if args.tasks < 1 or args.repeat < 1:
        parser.error("--tasks and --repeat must be at least 1")

    tmp = None
    if args.out is None:
        tmp = tempfile.TemporaryDirectory(prefix="jobctl-bench-")
        out = Path(tmp.name)
    else:
        out = args.out
        out.mkdir(parents=True, exist_ok=True)
    config = out / f"jobctl-{args.tasks}.toml"

    try:
        generate_config(config, args.tasks)
        py = sys.executable
        sanity_check(py, config, args.tasks)

        # The `jobctl` console script beside this interpreter is what users
        # run; `python -m jobctl` also pays runpy's imports (about 4 ms).
        script = Path(py).parent / "jobctl"
        jobctl = [str(script)] if script.exists() else [py, "-m", "jobctl"]
        # (label, argv, target ratio or None, check exit status)
        commands = [
            ("import typer (floor)", [py, "-c", "import typer"], None, True),
            ("jobctl --help", [*jobctl, "--help"], 1.3, True),
            ("jobctl validate", [*jobctl, "validate", "-c", str(config)], 5.0, True),
            ("jobctl list --json", [*jobctl, "list", "--json", "-c", str(config)], 5.0, True),
        ]
        results = []
        floor_median = None
        for label, argv, target, check in commands:
            if not args.json:
                print(f"timing {label} ...", file=sys.stderr, flush=True)
            times = time_command(argv, args.repeat, check)
            median = statistics.median(times)
            if floor_median is None:
                floor_median = median
            ratio = median / floor_median
            results.append({
                "command": label,
                "argv": argv[1:],
                "runs_ms": [round(t * 1000, 2) for t in times],
                "min_ms": round(min(times) * 1000, 2),
                "median_ms": round(median * 1000, 2),
                "p90_ms": round(percentile(times, 90) * 1000, 2),
                "ratio": round(ratio, 2),
                "target": target,
                "pass": None if target is None else ratio <= target,
            })
    finally:
        if tmp is not None:
            tmp.cleanup()

    info = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "typer": version_of("typer"),
        "rich": version_of("rich"),
        "cronsim": version_of("cronsim"),
        "jobctl": version_of("jobctl"),
        "tasks": args.tasks,
        "repeat": args.repeat,
        "config": str(config) if tmp is None else None,
    }
    ok = all(r["pass"] is not False for r in results)

    if args.json:
        print(json.dumps({"info": info, "results": results, "all_pass": ok}, indent=2))
    else:
        print(f"python {info['python']} ({info['implementation']}, {info['platform']})")
        print(f"typer {info['typer']}, rich {info['rich']}, "
              f"cronsim {info['cronsim']}, jobctl {info['jobctl']}")
        print(f"{args.tasks} tasks, {args.repeat} timed runs per command (+1 warm-up)")
        print()
        header = f"{'command':<22} {'min ms':>8} {'median ms':>10} {'p90 ms':>8} {'ratio':>7}  target"
        print(header)
        print("-" * len(header))
        for r in results:
            verdict = "" if r["target"] is None else (
                f"<= {r['target']:g}x  {'PASS' if r['pass'] else 'FAIL'}")
            print(f"{r['command']:<22} {r['min_ms']:>8.1f} {r['median_ms']:>10.1f} "
                  f"{r['p90_ms']:>8.1f} {r['ratio']:>6.2f}x  {verdict}")
        print()
        print("ALL PASS" if ok else "SOME TARGETS FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
