#!/usr/bin/env python
"""Cron engine benchmark: one next-fire computation, jobctl vs cronsim vs croniter,
and what it buys a runner with 100,000 varied cron tasks.

Sub-benchmarks (run all, or name some):

    nextfire  microseconds per next-fire computation on the same (expression,
              zone, start) cases for jobctl.cron, cronsim and croniter; each
              library parses the expression as it would for a fresh task
              (jobctl: cold = parse cache cleared per call, warm = parsed once,
              as a runner with repeated expressions does)
    runner    100,000 tasks `M H * * DOW` with random M, H, DOW in 5 zones
              (about 28,000 distinct expression-and-zone pairs): `jobctl run`
              time to "ready" and peak RSS; `jobctl list --json` time

Usage:
    pip install '.[bench]'
    python bench/cron_bench.py [nextfire] [runner] [--quick] [--json] [--baseline DIR]

With --baseline DIR (a checkout of an older commit, e.g. made by
`git worktree add /tmp/base e7a8cbb`), the runner bench also measures that
jobctl, through PYTHONPATH, in the same run.

Ratios, not absolute times, are what to compare: all libraries are measured in
the same run, on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent))
import runner_bench as rb  # noqa: E402  (shared helpers: start_until_ready, write_config)

ZONES = ("UTC", "America/New_York", "Europe/Berlin", "Asia/Kolkata", "Australia/Sydney")
MiB = 1024 * 1024


def varied_tasks(n: int, seed: int = 9) -> list[tuple[str, str]]:
    """n (expression, zone) pairs `M H * * DOW` with random M, H, DOW."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        expr = f"{rng.randrange(60)} {rng.randrange(24)} * * {rng.randrange(7)}"
        out.append((expr, rng.choice(ZONES)))
    return out


def cases(n: int, seed: int = 11) -> list[tuple[str, str, datetime]]:
    """Cases for the next-fire race: the varied expressions plus common
    wildcard ones, from random instants in 2026."""
    rng = random.Random(seed)
    common = ["*/5 * * * *", "0 * * * *", "*/15 9-17 * * 1-5", "30 2 * * *", "0 0 1 * *",
              "0 12 * * 0", "15,45 * * * *"]
    out = []
    base = datetime(2026, 1, 1, tzinfo=UTC)
    for i, (expr, zone) in enumerate(varied_tasks(n, seed)):
        if i % 4 == 3:
            expr = rng.choice(common)
        start = base + timedelta(seconds=rng.randrange(365 * 86400))
        out.append((expr, zone, start))
    return out


def time_per_call(fn: Any, items: list[Any], repeat: int) -> float:
    """Median over `repeat` passes of the mean seconds per call."""
    passes = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for item in items:
            fn(item)
        passes.append((time.perf_counter() - t0) / len(items))
    return statistics.median(passes)


def bench_nextfire(quick: bool) -> dict[str, Any]:
    from cronsim import CronSim
    from croniter import croniter

    from jobctl import cron

    items = [(e, ZoneInfo(z), s) for e, z, s in cases(2_000 if quick else 20_000)]
    # in the zone, as each library wants its start
    local = [(e, tz, s.astimezone(tz)) for e, tz, s in items]
    repeat = 3 if quick else 5

    def jobctl_cold(item: Any) -> Any:
        cron.compile_expression.cache_clear()
        return cron.next_fire(item[0], item[1], item[2])

    def jobctl_warm(item: Any) -> Any:
        return cron.next_fire(item[0], item[1], item[2])

    def cronsim_next(item: Any) -> Any:
        return next(CronSim(item[0], item[2]))

    def croniter_next(item: Any) -> Any:
        return croniter(item[0], item[2]).get_next(datetime)

    # agreement, so that the race is between correct answers
    differ = {"cronsim": 0, "croniter": 0}
    for e, tz, s in local[:2_000]:
        ours = cron.next_fire(e, tz, s)
        if next(CronSim(e, s)) != ours:
            differ["cronsim"] += 1
        if croniter(e, s).get_next(datetime) != ours:
            differ["croniter"] += 1

    cron.next_fire(*local[0])  # warm the zone timelines
    results = {
        "jobctl (cold parse)": time_per_call(jobctl_cold, local, repeat),
        "jobctl (warm parse)": time_per_call(jobctl_warm, local, repeat),
        "cronsim": time_per_call(cronsim_next, local, repeat),
        "croniter": time_per_call(croniter_next, local, repeat),
    }
    rb.say(f"== next fire: microseconds per call, {len(local)} cases "
           f"(median of {repeat} passes) ==")
    for name, sec in results.items():
        ratio_cs = results["cronsim"] / sec
        ratio_ci = results["croniter"] / sec
        rb.say(f"  {name:<22} {sec * 1e6:8.2f} us   cronsim/this {ratio_cs:5.2f}x   "
               f"croniter/this {ratio_ci:5.2f}x")
    rb.say(f"  answers differing from jobctl's on the first 2,000 cases: {differ}")
    rb.say()
    return {"us_per_call": {k: round(v * 1e6, 3) for k, v in results.items()},
            "cases": len(local), "differ_first_2000": differ}


def _measure(work: Path, config: Path, n: int, reps: int, label: str,
             env: dict[str, str] | None) -> dict[str, Any]:
    """Time to ready and peak RSS of `jobctl run`, and `jobctl list --json`,
    alternating nothing: one jobctl (this checkout, or `env`'s PYTHONPATH)."""
    ready, rss, list_times = [], [], []
    for rep in range(reps + 1):  # the first of each is an untimed warm-up
        state = work / f"{label}-state-{rep}" / "state.db"
        state.parent.mkdir(parents=True, exist_ok=True)
        rb.progress(f"{label}: runner with {n} tasks, run {rep}")
        argv = rb.jobctl_argv("run", "--log-format", "json", "-c", str(config), "--state", str(state))
        r = _start_until_ready(argv, f"{label} run ({n} varied tasks)", work / "stderr.txt", env)
        if rep and r["ok"]:
            ready.append(r["ready_s"])
            rss.append(r["vmhwm"] / MiB)
        t0 = time.perf_counter()
        out = subprocess.run(rb.jobctl_argv("list", "--json", "-c", str(config), "--state",
                                            str(work / f"{label}-state-list.db")),
                             capture_output=True, check=True, env=env)
        if rep:
            list_times.append(time.perf_counter() - t0)
        assert len(json.loads(out.stdout)) == n
    return {"ready_s_median": round(statistics.median(ready), 3) if ready else None,
            "ready_s_runs": [round(x, 3) for x in ready],
            "vmhwm_mib_max": round(max(rss), 1) if rss else None,
            "list_json_s_median": round(statistics.median(list_times), 3),
            "list_json_s_runs": [round(x, 3) for x in list_times]}


def _start_until_ready(argv: list[str], label: str, err: Path, env: dict[str, str] | None) -> dict[str, Any]:
    if env is None:
        return rb.start_until_ready(argv, label, err)
    import os

    saved = dict(os.environ)
    os.environ.update(env)
    try:
        return rb.start_until_ready(argv, label, err)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def bench_runner(work: Path, quick: bool, baseline: Path | None) -> dict[str, Any]:
    import os

    n = 10_000 if quick else 100_000
    tasks = varied_tasks(n)
    config = work / "varied.toml"
    rb.write_config(config, [{"id": f"t{i:06d}", "schedule": e, "timezone": z, "argv": ["/bin/true"]}
                             for i, (e, z) in enumerate(tasks)])
    distinct = len(set(tasks))
    reps = 1 if quick else 3
    res: dict[str, Any] = {"tasks": n, "distinct_pairs": distinct}
    res["jobctl"] = _measure(work, config, n, reps, "jobctl", None)
    if baseline is not None:
        env = {**os.environ, "PYTHONPATH": str(baseline.resolve())}
        res["baseline"] = _measure(work, config, n, reps, "baseline", env)
        res["baseline_path"] = str(baseline)
    rb.say(f"== runner: {n} tasks, {distinct} distinct expression-and-zone pairs ==")
    rb.say(f"  {'':<10} {'ready s':>8} {'peak RSS MiB':>13} {'list --json s':>14}")
    for label in ("jobctl", "baseline"):
        if label in res:
            r = res[label]
            rb.say(f"  {label:<10} {r['ready_s_median']:>8} {r['vmhwm_mib_max']:>13} "
                   f"{r['list_json_s_median']:>14}")
    if "baseline" in res:
        a, b = res["jobctl"], res["baseline"]
        rb.say(f"  ratio      {a['ready_s_median'] / b['ready_s_median']:>7.2f}x "
               f"{a['vmhwm_mib_max'] / b['vmhwm_mib_max']:>12.2f}x "
               f"{a['list_json_s_median'] / b['list_json_s_median']:>13.2f}x")
    rb.say("  targets: ready < 2 s, peak RSS < 200 MiB, list --json < 2.5 s (the issue's machine:"
           " 3.2 s and 4.2 s before)")
    rb.say()
    return res


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("benches", nargs="*", choices=[[], "nextfire", "runner"], default=[])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true", help="results as JSON on stdout")
    parser.add_argument("--baseline", type=Path,
                        help="a checkout of an older jobctl (e.g. `git worktree add /tmp/base REV`): "
                             "the runner bench measures it too, by PYTHONPATH, in the same run")
    args = parser.parse_args()
    chosen = args.benches or ["nextfire", "runner"]
    if args.baseline is not None:
        args.baseline = args.baseline.resolve()
    if args.json:
        rb.OUT = sys.stderr
    rb.say(f"python {sys.version.split()[0]}; jobctl {rb.version_of('jobctl')} ({rb.git_describe()}), "
           f"cronsim {rb.version_of('cronsim')}, croniter {rb.version_of('croniter')}")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="jobctl-cron-bench-") as tmp:
        # `python -m jobctl` finds a jobctl/ in the working folder first: run
        # from elsewhere, so that each measures the jobctl it should
        os.chdir(tmp)
        if "nextfire" in chosen:
            results["nextfire"] = bench_nextfire(args.quick)
        if "runner" in chosen:
            results["runner"] = bench_runner(Path(tmp), args.quick, args.baseline)
    if args.json:
        print(json.dumps(results, indent=2))
    return 2 if rb.PROBLEMS.items else 0


if __name__ == "__main__":
    sys.exit(main())
