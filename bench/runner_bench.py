#!/usr/bin/env python
"""Runner benchmark for jobctl, side by side with APScheduler 3.x (the peer).

Sub-benchmarks (run all, or name some):

    lateness  fire lateness of `jobctl run` (process start minus scheduled instant)
              for 1 task every 1s, 100 tasks firing together, 1,000 tasks firing
              together; the spawn floor (N back-to-back Popen); APScheduler's
              BackgroundScheduler with the same load
    startup   time from process start to "ready" and peak RSS with 10,000 and
              100,000 cron tasks; jobctl (fresh and restarted state) and APScheduler
    idle      CPU use of an idle runner holding 10,000 tasks due hours ahead
    history   `jobctl history` / `list` / `status` against a state file holding
              1,000,000 runs, minus the start-up cost of `jobctl validate`

Every jobctl figure is measured in the same run as the peer's (and the floor's),
and comparisons are ratios, because the machine may be noisy.

Usage:
    python bench/runner_bench.py [lateness] [startup] [idle] [history]
                                 [--quick] [--alerts] [--json] [--out DIR]

--alerts (lateness): each scenario is also run with a webhook (every event,
success included) and a ping URL on every task, both served by a local HTTP
server in this process, and the runner's /metrics on (`[jobctl] metrics`,
scraped every second by a thread of this process), and the lateness of that run is given as a ratio to
the plain run of the same session (the target: within 1.1x).

--quick shrinks every benchmark so the whole run takes about a minute (a sanity
check; targets that need the full sizes are then not evaluated). --json prints
the results as JSON on stdout (the tables then go to stderr), so
`python bench/runner_bench.py --json > results.json` saves them.

Exit status: 0 if every evaluated target passes, 1 if one fails, 2 if a jobctl
process misbehaved (crash, non-zero exit, traceback, error event).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import socket
import statistics
import subprocess
import threading
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

PY = sys.executable
SELF = str(Path(__file__).resolve())
BENCHES = ("lateness", "startup", "idle", "history")
CLK_TCK = os.sysconf("SC_CLK_TCK")
MiB = 1024 * 1024

OUT = sys.stdout  # where tables go (stderr with --json)


def say(text: str = "") -> None:
    print(text, file=OUT, flush=True)


def progress(text: str) -> None:
    print(f"  .. {text}", file=sys.stderr, flush=True)


# -- small helpers --------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100), like numpy's default."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summary_ms(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {"n": len(ms), "p50_ms": round(percentile(ms, 50), 3),
            "p99_ms": round(percentile(ms, 99), 3), "max_ms": round(max(ms), 3) if ms else float("nan"),
            "min_ms": round(min(ms), 3) if ms else float("nan")}


def ts(text: str) -> float:
    """An ISO 8601 instant with offset as a POSIX timestamp."""
    return datetime.fromisoformat(text).timestamp()


def version_of(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def proc_status(pid: int) -> dict[str, int]:
    """VmHWM / VmRSS (bytes) and thread count of a live process."""
    out: dict[str, int] = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            out[key] = int(value.split()[0]) * 1024
        elif key == "Threads":
            out[key] = int(value)
    return out


def cpu_sample(pid: int) -> dict[str, float]:
    """CPU used so far by a whole process (all threads): utime+stime from
    /proc/PID/stat (clock ticks), the sum of per-thread schedstat run times (ns,
    live threads only) and the sum of per-thread context switches."""
    stat = Path(f"/proc/{pid}/stat").read_bytes()
    fields = stat.rpartition(b")")[2].split()
    ticks = int(fields[14 - 3]) + int(fields[15 - 3])
    sched_ns = 0
    switches = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            sched_ns += int((task / "schedstat").read_text().split()[0])
            for line in (task / "status").read_text().splitlines():
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    switches += int(line.split()[1])
        except (OSError, ValueError, IndexError):
            pass
    return {"cpu_s": ticks / CLK_TCK, "sched_s": sched_ns / 1e9, "switches": switches,
            "wall": time.monotonic()}


def stop_process(proc: subprocess.Popen, timeout: float = 60.0) -> int | None:  # type: ignore[type-arg]
    """SIGTERM our child and wait; SIGKILL it (only it) if it does not exit."""
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


def avoid_cron_boundary(needed_s: float) -> None:
    """Cron configs here fire at most every 5 minutes, on UTC 5-minute
    boundaries (every zone's offset is a multiple of 15 minutes); wait out a
    boundary that would fall inside a measurement of `needed_s` seconds."""
    left = 300 - time.time() % 300
    if left < needed_s + 3:
        progress(f"waiting {left + 2:.0f}s for a cron 5-minute boundary to pass")
        time.sleep(left + 2)


def toml_value(v: object) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return json.dumps(v)  # ASCII strings, ints and booleans: the same in TOML


def write_config(path: Path, tasks: list[dict[str, Any]], settings: dict[str, Any] | None = None) -> None:
    parts = ["[jobctl]"]
    for k, v in {"timezone": "UTC", **(settings or {})}.items():
        parts.append(f"{k} = {toml_value(v)}")
    parts.append("")
    for t in tasks:
        parts.append("[[tasks]]")
        parts.extend(f"{k} = {toml_value(v)}" for k, v in t.items())
        parts.append("")
    path.write_text("\n".join(parts), encoding="utf-8")


def git_describe() -> str:
    """The commit of the jobctl being measured, '+dirty' if jobctl/ has edits."""
    repo = Path(SELF).parent.parent
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--", "jobctl"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def jobctl_argv(*args: str) -> list[str]:
    return [PY, "-m", "jobctl", *args]


@dataclass
class Problems:
    """Misbehaviour of a jobctl process: each turns the exit status into 2."""

    items: list[str] = field(default_factory=list)

    def add(self, text: str) -> None:
        self.items.append(text)
        print(f"  !! {text}", file=sys.stderr, flush=True)


PROBLEMS = Problems()


def check_stderr(label: str, path: Path) -> None:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return
    if "Traceback" in text or "Error" in text:
        PROBLEMS.add(f"{label}: stderr says:\n{text[-3000:]}")


class EventTail:
    """Reads JSON event lines from a file the runner is still writing."""

    def __init__(self, path: Path) -> None:
        self.f = open(path, "rb")  # noqa: SIM115 - kept open while the runner writes
        self.buf = b""

    def read(self) -> list[dict[str, Any]]:
        data = self.f.read()
        if not data:
            return []
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        out = []
        for line in lines:
            if line.strip():
                try:
                    out.append(json.loads(line))
                except ValueError:
                    out.append({"event": "unparsable", "line": line.decode(errors="replace")})
        return out

    def close(self) -> None:
        self.f.close()


# -- hidden child modes: the peer and the spawn floor ---------------------------


def _noop() -> None:
    pass


def child_floor(argv: list[str]) -> None:
    """Spawn N /bin/true back to back, R times; print the spans (s) as JSON.

    plain: subprocess.Popen(["/bin/true"]), the floor the issue names;
    executor: jobctl's own executor.spawn with what the runner passes (log
    pipe, new session, the run's env), its launches built beforehand as the
    runner builds them before the instant."""
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--repeat", type=int, required=True)
    p.add_argument("--mode", choices=("plain", "executor"), default="plain")
    a = p.parse_args(argv)
    spans = []
    tmp = tempfile.TemporaryDirectory(prefix="jobctl-floor-")
    logs = Path(tmp.name)
    for _ in range(a.repeat):
        if a.mode == "executor":
            from jobctl.executor import Launch, spawn

            launches = [Launch(argv=["/bin/true"], env={**os.environ, "JOBCTL_RUN_ID": str(i)},
                               cwd=None, log_path=logs / f"{i}.log", max_log_bytes=MiB,
                               lazy_log=True) for i in range(a.n)]
            start = time.time()
            running = [spawn(launch) for launch in launches]
            last = time.time()
            for proc in running:
                proc.wait()
                proc.close()
        else:
            start = time.time()
            procs = [subprocess.Popen(["/bin/true"]) for _ in range(a.n)]
            last = time.time()
            for proc in procs:
                proc.wait()
        spans.append(last - start)
        time.sleep(0.2)
    tmp.cleanup()
    print(json.dumps(spans))


def child_peer_lateness(argv: list[str]) -> None:
    """APScheduler with N interval jobs of `interval` s sharing one start;
    each job records when it was called and when Popen(/bin/true) returned."""
    import threading

    p = argparse.ArgumentParser()
    p.add_argument("--tasks", type=int, required=True)
    p.add_argument("--interval", type=float, required=True)
    p.add_argument("--rounds", type=int, required=True)
    p.add_argument("--workers", type=int, default=100)
    a = p.parse_args(argv)

    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.jobstores.memory import MemoryJobStore
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.interval import IntervalTrigger

    expected = a.tasks * a.rounds
    records: list[tuple[int, float, float]] = []
    done = threading.Event()

    def job(i: int) -> None:
        called = time.time()
        proc = subprocess.Popen(["/bin/true"])
        spawned = time.time()
        records.append((i, called, spawned))
        if len(records) >= expected:
            done.set()
        proc.wait()

    sched = BackgroundScheduler(
        jobstores={"default": MemoryJobStore()},
        executors={"default": ThreadPoolExecutor(max_workers=a.workers)},
        job_defaults={"misfire_grace_time": 3600, "coalesce": False, "max_instances": 10},
        timezone=UTC,
    )
    anchor = datetime.now(UTC)
    first = anchor + timedelta(seconds=a.interval)
    for i in range(a.tasks):
        sched.add_job(job, IntervalTrigger(seconds=a.interval, start_date=first, timezone=UTC),
                      args=[i], id=f"t{i}")
    sched.start()
    print(json.dumps({"event": "ready", "first": first.timestamp()}), flush=True)
    done.wait(a.rounds * a.interval + 30 + a.tasks * 0.02)
    sched.shutdown(wait=True)
    print(json.dumps({"first": first.timestamp(), "interval": a.interval,
                      "records": records}), flush=True)


def child_peer_serve(argv: list[str]) -> None:
    """APScheduler holding cron jobs from a JSON file of [expr, zone] pairs:
    prints a ready line once start() returned, then idles until SIGTERM."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    p = argparse.ArgumentParser()
    p.add_argument("--tasks-file", required=True)
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.jobstores.memory import MemoryJobStore
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.cron import CronTrigger

    t1 = time.perf_counter()
    tasks = json.loads(Path(a.tasks_file).read_text())
    sched = BackgroundScheduler(
        jobstores={"default": MemoryJobStore()},
        executors={"default": ThreadPoolExecutor(max_workers=20)},
        job_defaults={"misfire_grace_time": 3600, "coalesce": True},
        timezone=UTC,
    )
    for i, (expr, zone) in enumerate(tasks):
        sched.add_job(_noop, CronTrigger.from_crontab(expr, timezone=zone), id=f"task-{i}")
    t2 = time.perf_counter()
    sched.start()
    t3 = time.perf_counter()
    print(json.dumps({"event": "ready", "jobs": len(tasks), "import_s": t1 - t0,
                      "add_s": t2 - t1, "start_s": t3 - t2}), flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    sched.shutdown(wait=False)
    sys.stdout.flush()
    os._exit(0)


CHILD_MODES = {"_floor": child_floor, "_peer-lateness": child_peer_lateness,
               "_peer-serve": child_peer_serve}


# -- targets ------------------------------------------------------------------------


@dataclass
class Target:
    bench: str
    what: str
    value: str
    ok: bool | None  # None: not evaluated

    def row(self) -> str:
        verdict = {True: "PASS", False: "FAIL", None: "n/a"}[self.ok]
        return f"  {verdict:<5} {self.what:<66} {self.value}"


def print_targets(targets: list[Target]) -> None:
    say("targets:")
    for t in targets:
        say(t.row())
    say()


# -- 1. lateness ---------------------------------------------------------------------


@dataclass
class Scenario:
    name: str
    tasks: int
    interval: int
    rounds: int


def run_floor(n: int, repeat: int, mode: str) -> list[float]:
    out = subprocess.run([PY, SELF, "_floor", "--n", str(n), "--repeat", str(repeat),
                          "--mode", mode], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


class AlertSink:
    """A local HTTP server that takes webhooks and pings (answers 200), and
    counts them; in a thread of the bench process."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.count = 0
        self.lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def _take(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                with sink.lock:
                    sink.count += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = _take

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class MetricsScraper:
    """GETs the runner's /metrics every second (as Prometheus would, but
    more often) from a thread, counting the answers."""

    def __init__(self) -> None:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.scrapes = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        import urllib.request

        while not self.done.wait(1.0):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics",
                                            timeout=2) as answer:
                    if answer.status == 200 and b"jobctl_runs_total" in answer.read():
                        self.scrapes += 1
            except OSError:
                pass  # not serving yet

    def stop(self) -> None:
        self.done.set()
        self.thread.join(5)


def jobctl_lateness(work: Path, sc: Scenario, alerts: AlertSink | None = None) -> dict[str, Any]:
    d = work / f"lateness-{sc.name}{'-alerts' if alerts else ''}"
    d.mkdir(parents=True, exist_ok=True)
    config = d / "jobctl.toml"
    settings: dict[str, Any] = {}
    scraper: MetricsScraper | None = None
    if alerts is not None:
        # every run: a /start ping, a success ping and a webhook POST; and the
        # runner serves /metrics, scraped every second meanwhile
        scraper = MetricsScraper()
        settings = {"webhook": f"{alerts.url}/webhook",
                    "webhook_events": ["failure", "recovery", "success"],
                    "ping_url": f"{alerts.url}/ping",
                    "metrics": f"127.0.0.1:{scraper.port}"}
    write_config(config, [{"id": f"t{i:04d}", "schedule": f"every {sc.interval}s",
                           "argv": ["/bin/true"]} for i in range(sc.tasks)], settings)
    out_path, err_path = d / "events.jsonl", d / "stderr.txt"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(jobctl_argv("run", "--log-format", "json", "-c", str(config),
                                            "--state", str(d / "state.db")),
                                stdout=out, stderr=err)
    tail = EventTail(out_path)
    if scraper is not None:
        scraper.start()
    expected = sc.tasks * sc.rounds
    starts: list[dict[str, Any]] = []
    other: dict[str, int] = {}
    bad_finish = 0
    anchor = None
    give_up = time.time() + 60 + sc.rounds * sc.interval + sc.tasks * 0.02
    last_slot = float("inf")
    try:
        while time.time() < give_up and proc.poll() is None:
            for ev in tail.read():
                kind = ev.get("event")
                if kind == "ready":
                    anchor = ts(ev["at"])
                    last_slot = anchor + sc.rounds * sc.interval + 0.001
                    give_up = time.time() + sc.rounds * sc.interval + 30 + sc.tasks * 0.02
                elif kind == "start":
                    if ts(ev["scheduled_for"]) <= last_slot:
                        starts.append(ev)
                elif kind == "finish":
                    if ev.get("status") != "success":
                        bad_finish += 1
                else:
                    other[kind] = other.get(kind, 0) + 1
            if len(starts) >= expected:
                break
            time.sleep(0.1)
    finally:
        if scraper is not None:
            scraper.stop()
        rc = stop_process(proc)
    for ev in tail.read():
        kind = ev.get("event")
        if kind == "finish" and ev.get("status") != "success":
            bad_finish += 1
        elif kind not in ("start", "finish"):
            other[kind] = other.get(kind, 0) + 1
    tail.close()
    if rc != 0:
        PROBLEMS.add(f"jobctl run (lateness {sc.name}) exited with {rc}")
    check_stderr(f"jobctl run (lateness {sc.name})", err_path)
    if len(starts) < expected:
        PROBLEMS.add(f"jobctl run (lateness {sc.name}): {len(starts)} of {expected} fires started")
    for kind in ("error", "skip", "missed", "unparsable", "hook_failed"):
        if other.get(kind):
            PROBLEMS.add(f"jobctl run (lateness {sc.name}): {other[kind]} '{kind}' events")
    if bad_finish:
        PROBLEMS.add(f"jobctl run (lateness {sc.name}): {bad_finish} runs did not succeed")
    late = [ts(e["at"]) - ts(e["scheduled_for"]) for e in starts]
    rounds: dict[float, list[float]] = {}
    for e, lt in zip(starts, late):
        rounds.setdefault(round(ts(e["scheduled_for"]), 3), []).append(lt)
    if scraper is not None and not scraper.scrapes:
        PROBLEMS.add(f"jobctl run (lateness {sc.name}): /metrics was never scraped")
    return {"runner": "jobctl", **summary_ms(late), "expected": expected,
            "round_max_ms": [round(max(v) * 1000, 3) for _, v in sorted(rounds.items())],
            "round_sizes": [len(v) for _, v in sorted(rounds.items())],
            **({"metrics_scrapes": scraper.scrapes} if scraper is not None else {})}


def peer_lateness(sc: Scenario, workers: int) -> dict[str, Any]:
    out = subprocess.run([PY, SELF, "_peer-lateness", "--tasks", str(sc.tasks), "--interval",
                          str(sc.interval), "--rounds", str(sc.rounds), "--workers", str(workers)],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"APScheduler peer failed:\n{out.stderr[-3000:]}")
    data = json.loads(out.stdout.strip().splitlines()[-1])
    first, step = data["first"], data["interval"]
    late, called_late = [], []
    rounds: dict[int, list[float]] = {}
    for _i, called, spawned in data["records"]:
        k = round((called - first) / step)
        slot = first + k * step
        if k >= sc.rounds:
            continue
        late.append(spawned - slot)
        called_late.append(called - slot)
        rounds.setdefault(k, []).append(spawned - slot)
    return {"runner": "APScheduler", **summary_ms(late), "expected": sc.tasks * sc.rounds,
            "called_p50_ms": round(percentile([c * 1000 for c in called_late], 50), 3),
            "round_max_ms": [round(max(v) * 1000, 3) for _, v in sorted(rounds.items())],
            "round_sizes": [len(v) for _, v in sorted(rounds.items())],
            "workers": workers}


ALERTS = False  # set by --alerts


def bench_lateness(work: Path, quick: bool) -> tuple[dict[str, Any], list[Target]]:
    if quick:
        scenarios = [Scenario("1 task every 1s", 1, 1, 4), Scenario("100 tasks every 2s", 100, 2, 2),
                     Scenario("1000 tasks every 5s", 1000, 5, 1)]
        floor_reps = {100: 3, 1000: 1}
    else:
        scenarios = [Scenario("1 task every 1s", 1, 1, 20), Scenario("100 tasks every 5s", 100, 5, 4),
                     Scenario("1000 tasks every 10s", 1000, 10, 3)]
        floor_reps = {100: 4, 1000: 2}
    floors: dict[str, dict[int, list[float]]] = {"plain": {100: [], 1000: []},
                                                 "executor": {100: [], 1000: []}}

    def measure_floor() -> None:
        for mode in ("plain", "executor"):
            for n, reps in floor_reps.items():
                floors[mode][n] += run_floor(n, reps, mode)

    progress("spawn floor (before)")
    measure_floor()
    results = []
    for sc in scenarios:
        progress(f"jobctl run: {sc.name} x {sc.rounds} rounds")
        j = jobctl_lateness(work, sc)
        with_alerts = None
        if ALERTS:
            progress(f"jobctl run with a webhook and a ping URL on every task: {sc.name}")
            sink = AlertSink()
            try:
                with_alerts = jobctl_lateness(work, sc, sink)
                with_alerts["requests_seen"] = sink.count
            finally:
                sink.close()
        progress(f"APScheduler: {sc.name} x {sc.rounds} rounds")
        try:
            a = peer_lateness(sc, workers=100)
        except RuntimeError as e:
            PROBLEMS.items.append(str(e))
            a = None
        results.append({"scenario": sc.name, "tasks": sc.tasks, "interval_s": sc.interval,
                        "rounds": sc.rounds, "jobctl": j, "apscheduler": a,
                        "jobctl_alerts": with_alerts})
    progress("spawn floor (after)")
    measure_floor()
    floor_out = {mode: {str(n): {"median_ms": round(statistics.median(v) * 1000, 3),
                                 "min_ms": round(min(v) * 1000, 3),
                                 "runs_ms": [round(x * 1000, 3) for x in v]}
                        for n, v in per.items()}
                 for mode, per in floors.items()}

    say("== lateness: process start minus scheduled instant ==")
    say(f"{'scenario':<22} {'runner':<12} {'fires':>9} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9}"
        f"   {'per-round max ms'}")
    for r in results:
        for key in ("jobctl", "apscheduler"):
            s = r[key]
            if s is None:
                say(f"{r['scenario']:<22} {'APScheduler':<12} (failed)")
                continue
            rm = ", ".join(f"{x:.1f}" for x in s["round_max_ms"][:6])
            rm += ", ..." if len(s["round_max_ms"]) > 6 else ""
            fires = f"{s['n']}/{s['expected']}"
            say(f"{r['scenario'] if key == 'jobctl' else '':<22} {s['runner']:<12} {fires:>9} "
                f"{s['p50_ms']:>9.2f} {s['p99_ms']:>9.2f} {s['max_ms']:>9.2f}   {rm}")
        j, a = r["jobctl"], r["apscheduler"]
        if a:
            say(f"{'':<22} {'jobctl/APS':<12} {'':>9} {j['p50_ms'] / a['p50_ms']:>8.2f}x "
                f"{j['p99_ms'] / a['p99_ms']:>8.2f}x {j['max_ms'] / a['max_ms']:>8.2f}x")
    say("(APScheduler starts its jobs from 100 worker threads, so its Popen calls overlap;"
        " jobctl spawns one after another)")
    alert_targets: list[Target] = []
    if ALERTS:
        say()
        say("== lateness with a webhook and a ping URL on every task, vs plain (same session) ==")
        say(f"{'scenario':<22} {'fires':>9} {'requests':>9} {'p50 ms':>9} {'p99 ms':>9} "
            f"{'max ms':>9} {'med round max':>14}")
        for r in results:
            j, w = r["jobctl"], r["jobctl_alerts"]
            if w is None:
                continue
            say(f"{r['scenario']:<22} {w['n']:>4}/{w['expected']:<4} {w['requests_seen']:>9} "
                f"{w['p50_ms']:>9.2f} {w['p99_ms']:>9.2f} {w['max_ms']:>9.2f} "
                f"{statistics.median(w['round_max_ms'] or [0]):>14.2f}")
            ratios = {k: w[k] / j[k] if j[k] else float("nan") for k in ("p50_ms", "p99_ms", "max_ms")}
            rounds_ratio = (statistics.median(w["round_max_ms"]) / statistics.median(j["round_max_ms"])
                            if j["round_max_ms"] and w["round_max_ms"] else float("nan"))
            r["alerts_ratio"] = {**{k: round(v, 3) for k, v in ratios.items()},
                                 "median_round_max": round(rounds_ratio, 3)}
            say(f"{'  alerts/plain':<22} {'':>9} {'':>9} {ratios['p50_ms']:>8.2f}x "
                f"{ratios['p99_ms']:>8.2f}x {ratios['max_ms']:>8.2f}x {rounds_ratio:>13.2f}x")
            key = "p99_ms" if r["tasks"] == 1 else "median_round_max"
            value = ratios["p99_ms"] if r["tasks"] == 1 else rounds_ratio
            alert_targets.append(Target(
                "lateness", f"{r['scenario']}: with webhook+ping within 1.1x of plain ({key[:-3] if key.endswith('_ms') else key})",
                f"{value:.2f}x", value <= 1.1))
    say()
    say("spawn floor: N x /bin/true started back to back, last start minus batch start")
    say(f"{'how':<40} {'N':>5} {'median ms':>10} {'min ms':>9} {'runs':>5}")
    for mode, label in (("plain", "plain Popen (the floor)"),
                        ("executor", "jobctl executor.spawn (pipe, session)")):
        for n in (100, 1000):
            f = floor_out[mode][str(n)]
            say(f"{label:<40} {n:>5} {f['median_ms']:>10.2f} {f['min_ms']:>9.2f} {len(f['runs_ms']):>5}")
    say()

    targets: list[Target] = list(alert_targets)
    one = results[0]["jobctl"]
    targets.append(Target("lateness", "1 task: jobctl p99 < 5 ms", f"{one['p99_ms']:.2f} ms",
                          one["n"] > 0 and one["p99_ms"] < 5))
    floor100 = floor_out["plain"]["100"]["median_ms"]
    for r in results[1:]:
        j = r["jobctl"]
        n = r["tasks"]
        floor_n = floor_out["plain"].get(str(n), {}).get("median_ms")
        if not j["round_max_ms"] or floor_n is None:
            continue
        med_round = statistics.median(j["round_max_ms"])
        worst = max(j["round_max_ms"])
        r["floor_ratio_median_round"] = round(med_round / floor_n, 3)
        r["floor_ratio_worst_round"] = round(worst / floor_n, 3)
        if n == 100:
            targets.append(Target(
                "lateness", "batch of 100: jobctl max lateness <= 1.3x spawn floor(100)",
                f"median round {med_round:.1f} ms / {floor100:.1f} ms = {med_round / floor100:.2f}x"
                f" (worst round {worst / floor100:.2f}x)", med_round / floor100 <= 1.3))
        else:
            targets.append(Target(
                "lateness", f"batch of {n}: jobctl max lateness vs spawn floor({n}) (info)",
                f"median round {med_round:.1f} ms / {floor_n:.1f} ms = {med_round / floor_n:.2f}x"
                f" (worst round {worst / floor_n:.2f}x)", None))
    wins, total, losses = 0, 0, []
    for r in results:
        if r["apscheduler"] is None:
            continue
        for k in ("p50_ms", "p99_ms", "max_ms"):
            total += 1
            if r["jobctl"][k] < r["apscheduler"][k]:
                wins += 1
            else:
                losses.append(f"{r['scenario']} {k[:-3]}")
    targets.append(Target("lateness", "every jobctl figure lower than APScheduler's",
                          f"{wins}/{total} lower" + (f"; not: {', '.join(losses)}" if losses else ""),
                          total > 0 and wins == total))
    print_targets(targets)
    return {"scenarios": results, "spawn_floor": floor_out}, targets


# -- 2. startup ----------------------------------------------------------------------

FIXED_EXPRS = (
    "*/5 * * * *", "*/10 * * * *", "*/15 * * * *", "0 * * * *", "30 */2 * * *", "0 */6 * * *",
    "0 3 * * *", "30 2 * * *", "15 9 * * mon-fri", "0 8 * * mon-fri", "30 17 * * mon-fri",
    "0 9-17 * * mon-fri", "*/20 9-18 * * mon-fri", "0 6 * * sat,sun", "0 10 * * sun",
    "0 0 1 * *", "30 1 15 * *", "0 0 1,15 * *", "0 0 1 jan *", "0 2 * jan,jul *",
    "5 4 * * tue", "10 22 * * fri", "0 7,19 * * *",
)
ZONES = ("UTC", "America/New_York", "America/Los_Angeles", "Europe/Berlin", "Europe/London",
         "Asia/Tokyo", "Asia/Kolkata", "Australia/Sydney")


def startup_tasks(n: int) -> list[tuple[str, str]]:
    """n (expression, zone) pairs: half from a fixed list of common schedules,
    half staggered by minute/hour/day as people do to spread load (so most
    expressions are distinct and no next-fire cache can share them)."""
    out = []
    for i in range(n):
        zone = ZONES[(i * 3) % len(ZONES)]
        if i % 2 == 0:
            expr = FIXED_EXPRS[(i // 2 * 7) % len(FIXED_EXPRS)]
        else:
            m, h, d = (i * 7) % 60, (i * 5) % 24, 1 + (i % 28)
            expr = (f"{m} {h} * * *", f"{m} */{2 + i % 5} * * *", f"{m} {h} * * mon-fri",
                    f"{m} {h} {d} * *")[(i // 2) % 4]
        out.append((expr, zone))
    return out


def write_startup_config(path: Path, tasks: list[tuple[str, str]]) -> None:
    write_config(path, [{"id": f"task-{i:06d}", "schedule": expr, "timezone": zone,
                         "argv": ["/bin/true"]} for i, (expr, zone) in enumerate(tasks)])


def start_until_ready(argv: list[str], label: str, err_path: Path,
                      after_ready: Any = None) -> dict[str, Any]:
    """Start a process, time until its stdout shows a "ready" event, read its
    peak RSS, optionally call after_ready(pid), then SIGTERM it."""
    with open(err_path, "wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err)
    assert proc.stdout is not None
    ready = None
    other: dict[str, int] = {}
    try:
        for line in proc.stdout:
            ev = json.loads(line)
            if ev.get("event") == "ready":
                ready = ev
                break
            other[ev.get("event", "?")] = other.get(ev.get("event", "?"), 0) + 1
        elapsed = time.perf_counter() - start
        mem = proc_status(proc.pid)
        extra = after_ready(proc.pid) if (after_ready and ready) else None
    finally:
        rc = stop_process(proc)
        rest = proc.stdout.read()
        proc.stdout.close()
    for line in rest.splitlines():
        try:
            kind = json.loads(line).get("event", "?")
        except ValueError:
            kind = "unparsable"
        other[kind] = other.get(kind, 0) + 1
    if ready is None:
        PROBLEMS.add(f"{label}: no ready event (exit {rc})")
        check_stderr(label, err_path)
        return {"ok": False}
    if rc != 0:
        PROBLEMS.add(f"{label}: exited with {rc} after SIGTERM")
    check_stderr(label, err_path)
    for kind in ("error", "unparsable"):
        if other.get(kind):
            PROBLEMS.add(f"{label}: {other[kind]} '{kind}' events")
    return {"ok": True, "ready_s": elapsed, "vmhwm": mem.get("VmHWM", 0), "vmrss": mem.get("VmRSS", 0),
            "ready": ready, "events": other, "extra": extra}


def bench_startup(work: Path, quick: bool) -> tuple[dict[str, Any], list[Target]]:
    sizes = [(1_000, 1), (10_000, 1)] if quick else [(10_000, 3), (100_000, 2)]
    rows = []
    warm = True  # one untimed run of each first: page cache, .pyc files
    for n, reps in sizes:
        d = work / f"startup-{n}"
        d.mkdir(parents=True, exist_ok=True)
        tasks = startup_tasks(n)
        config = d / "jobctl.toml"
        write_startup_config(config, tasks)
        tasks_file = d / "tasks.json"
        tasks_file.write_text(json.dumps(tasks))
        samples: dict[str, list[dict[str, Any]]] = {"jobctl (fresh state)": [],
                                                     "jobctl (restart)": [], "APScheduler": []}
        expect_jobctl, expect_peer = 1 + n / 20_000, 2 + n / 4_000
        if warm:
            warm = False
            progress(f"{n} tasks: warm-up runs (untimed)")
            start_until_ready(jobctl_argv("run", "--log-format", "json", "-c", str(config), "--state",
                                          str(d / "warm" / "state.db")), "jobctl run (warm-up)",
                              d / "stderr.txt")
            start_until_ready([PY, SELF, "_peer-serve", "--tasks-file", str(tasks_file)],
                              "APScheduler (warm-up)", d / "stderr-peer.txt")
        for rep in range(reps):
            state = d / f"state-{rep}" / "state.db"
            state.parent.mkdir(parents=True, exist_ok=True)
            argv = jobctl_argv("run", "--log-format", "json", "-c", str(config), "--state", str(state))
            for label in ("jobctl (fresh state)", "jobctl (restart)"):
                avoid_cron_boundary(expect_jobctl)
                progress(f"{n} tasks: {label} #{rep + 1}")
                samples[label].append(start_until_ready(argv, f"jobctl run ({n} tasks, {label})",
                                                        d / "stderr.txt"))
            avoid_cron_boundary(expect_peer)
            progress(f"{n} tasks: APScheduler #{rep + 1}")
            samples["APScheduler"].append(start_until_ready(
                [PY, SELF, "_peer-serve", "--tasks-file", str(tasks_file)],
                f"APScheduler ({n} tasks)", d / "stderr-peer.txt"))
        distinct = len(set(tasks))
        for label, runs in samples.items():
            ok = [r for r in runs if r["ok"]]
            if not ok:
                rows.append({"tasks": n, "runner": label, "ok": False})
                continue
            row = {"tasks": n, "runner": label, "ok": True, "runs": len(ok),
                   "ready_s_median": round(statistics.median(r["ready_s"] for r in ok), 4),
                   "ready_s_runs": [round(r["ready_s"], 4) for r in ok],
                   "vmhwm_mib_max": round(max(r["vmhwm"] for r in ok) / MiB, 1),
                   "vmrss_mib_max": round(max(r["vmrss"] for r in ok) / MiB, 1),
                   "distinct_schedules": distinct}
            if label == "APScheduler":
                row["breakdown_s"] = {k: round(statistics.median(r["ready"][k] for r in ok), 4)
                                      for k in ("import_s", "add_s", "start_s")}
            evs = {}
            for r in ok:
                for k, v in r["events"].items():
                    evs[k] = evs.get(k, 0) + v
            row["events_seen"] = evs
            rows.append(row)

    say("== startup: process start to 'ready', peak RSS (VmHWM) right after ready ==")
    say(f"{'tasks':>7} {'runner':<22} {'ready s (median)':>17} {'runs':>5} {'VmHWM MiB':>10}"
        f" {'vs APS time':>12} {'vs APS mem':>11}")
    by = {(r["tasks"], r["runner"]): r for r in rows}
    for r in rows:
        if not r["ok"]:
            say(f"{r['tasks']:>7} {r['runner']:<22} FAILED")
            continue
        aps = by.get((r["tasks"], "APScheduler"))
        rt = rm = ""
        if aps and aps.get("ok") and r["runner"] != "APScheduler":
            rt = f"{r['ready_s_median'] / aps['ready_s_median']:.2f}x"
            rm = f"{r['vmhwm_mib_max'] / aps['vmhwm_mib_max']:.2f}x"
        extra = ""
        if "breakdown_s" in r:
            b = r["breakdown_s"]
            extra = f"   (import {b['import_s']:.2f}s, add_job {b['add_s']:.2f}s, start {b['start_s']:.2f}s)"
        say(f"{r['tasks']:>7} {r['runner']:<22} {r['ready_s_median']:>17.3f} {r['runs']:>5} "
            f"{r['vmhwm_mib_max']:>10.1f} {rt:>12} {rm:>11}{extra}")
    say()
    targets = []
    for label in ("jobctl (fresh state)", "jobctl (restart)"):
        r = by.get((100_000, label))
        if r is None:
            targets.append(Target("startup", f"{label} 100,000 tasks: ready < 2 s, peak RSS < 200 MiB",
                                  "not run (needs the full size)", None))
            continue
        if not r["ok"]:
            targets.append(Target("startup", f"{label} 100,000 tasks: ready", "failed", False))
            continue
        targets.append(Target("startup", f"{label} 100,000 tasks: ready < 2 s",
                              f"{r['ready_s_median']:.3f} s", r["ready_s_median"] < 2.0))
        targets.append(Target("startup", f"{label} 100,000 tasks: peak RSS < 200 MiB",
                              f"{r['vmhwm_mib_max']:.1f} MiB", r["vmhwm_mib_max"] < 200))
    print_targets(targets)
    return {"rows": rows}, targets


# -- 3. idle -------------------------------------------------------------------------


def bench_idle(work: Path, quick: bool) -> tuple[dict[str, Any], list[Target]]:
    n, settle, window = (2_000, 1.0, 5.0) if quick else (10_000, 3.0, 20.0)
    hour = (datetime.now(UTC).hour + 6) % 24
    tasks = [(f"{i % 60} {hour} * * *", "UTC") for i in range(n)]
    d = work / "idle"
    d.mkdir(parents=True, exist_ok=True)
    config = d / "jobctl.toml"
    write_startup_config(config, tasks)
    tasks_file = d / "tasks.json"
    tasks_file.write_text(json.dumps(tasks))

    def measure(pid: int) -> dict[str, float]:
        time.sleep(settle)
        a = cpu_sample(pid)
        time.sleep(window)
        b = cpu_sample(pid)
        wall = b["wall"] - a["wall"]
        return {"window_s": wall, "cpu_s": b["cpu_s"] - a["cpu_s"],
                "pct_core": 100 * (b["cpu_s"] - a["cpu_s"]) / wall,
                "sched_pct_core": 100 * (b["sched_s"] - a["sched_s"]) / wall,
                "switches_per_s": (b["switches"] - a["switches"]) / wall,
                "threads": proc_status(pid).get("Threads", 0)}

    rows = []
    for label, argv in (
        ("jobctl", jobctl_argv("run", "--log-format", "json", "-c", str(config),
                               "--state", str(d / "state.db"))),
        ("APScheduler", [PY, SELF, "_peer-serve", "--tasks-file", str(tasks_file)]),
    ):
        progress(f"idle: {label}, {n} tasks, settle {settle:g}s, measure {window:g}s")
        r = start_until_ready(argv, f"{label} idle", d / f"stderr-{label}.txt", after_ready=measure)
        if not r["ok"] or r["extra"] is None:
            rows.append({"runner": label, "ok": False})
            continue
        rows.append({"runner": label, "ok": True, "tasks": n, "schedule": f"M {hour} * * * (UTC)",
                     **{k: round(v, 4) for k, v in r["extra"].items()}})
    say(f"== idle: {n} tasks due at {hour:02d}:MM UTC (hours ahead), settle {settle:g}s, "
        f"CPU over {window:g}s ==")
    say(f"{'runner':<12} {'cpu s':>7} {'% core':>8} {'% (schedstat)':>14} {'wakeups/s':>10} {'threads':>8}")
    for r in rows:
        if not r["ok"]:
            say(f"{r['runner']:<12} FAILED")
            continue
        say(f"{r['runner']:<12} {r['cpu_s']:>7.2f} {r['pct_core']:>8.3f} {r['sched_pct_core']:>14.3f} "
            f"{r['switches_per_s']:>10.1f} {r['threads']:>8}")
    say()
    targets = []
    j = next((r for r in rows if r["runner"] == "jobctl"), None)
    a = next((r for r in rows if r["runner"] == "APScheduler"), None)
    if j and j["ok"]:
        targets.append(Target("idle", f"jobctl idle CPU < 0.5% of a core ({n} tasks)",
                              f"{j['pct_core']:.3f}% (schedstat {j['sched_pct_core']:.3f}%)",
                              j["pct_core"] < 0.5))
        if a and a["ok"]:
            targets.append(Target("idle", "jobctl idle CPU vs APScheduler (info)",
                                  f"{j['sched_pct_core']:.3f}% vs {a['sched_pct_core']:.3f}% (schedstat)",
                                  None))
    else:
        targets.append(Target("idle", "jobctl idle CPU < 0.5% of a core", "failed", False))
    print_targets(targets)
    return {"rows": rows}, targets


# -- 4. history ----------------------------------------------------------------------


def build_history_state(path: Path, n_tasks: int, n_runs: int) -> list[str]:
    """A jobctl state file with n_runs finished runs spread evenly (interleaved
    in time) over n_tasks tasks, one run per task per hour, most recent now."""
    import sqlite3

    from jobctl.store import open_store, to_text

    store = open_store(path, create=True)
    assert store is not None
    store.close()
    ids = [f"task-{i:04d}" for i in range(n_tasks)]
    host = socket.gethostname()
    boot = "00000000-0000-0000-0000-000000000000"
    per_task = math.ceil(n_runs / n_tasks)
    base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=per_task + 1)
    logs = str(path.parent / "logs")
    last: dict[str, tuple[int, str]] = {}

    def rows():  # type: ignore[no-untyped-def]
        for k in range(n_runs):
            t, rnd = k % n_tasks, k // n_tasks
            task = ids[t]
            sched = base + timedelta(hours=rnd, seconds=(t % 3600))
            started = sched + timedelta(microseconds=2500)
            finished = started + timedelta(seconds=0.05 + (k % 300) / 10)
            failed = k % 53 == 0
            s = to_text(sched)
            last[task] = (k + 1, s)
            yield (k + 1, task, "schedule", "failed" if failed else "success", 1, s,
                   to_text(started), to_text(finished), 1 if failed else 0,
                   "exit code 1" if failed else None, 10_000 + k % 50_000, str(1_000_000 + k), boot,
                   host, 4242, "12345", f"{logs}/{k + 1}.log")

    conn = sqlite3.connect(str(path), isolation_level=None)
    conn.execute("begin")
    conn.executemany(
        "insert into runs (id, task_id, trigger, status, attempt, scheduled_for, started_at,"
        " finished_at, exit_code, error, pid, proc_start, boot_id, host, owner_pid, owner_start,"
        " log_path) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows())
    conn.executemany(
        "insert into task_state (task_id, last_run_id, last_scheduled) values (?, ?, ?)"
        " on conflict (task_id) do update set last_run_id = excluded.last_run_id,"
        " last_scheduled = excluded.last_scheduled",
        [(task, rid, s) for task, (rid, s) in last.items()])
    conn.execute("commit")
    conn.execute("pragma wal_checkpoint(truncate)")
    conn.close()
    return ids


def time_cmd(argv: list[str], repeat: int, label: str) -> list[float]:
    def once() -> float:
        start = time.perf_counter()
        p = subprocess.run(argv, capture_output=True, check=False)
        elapsed = time.perf_counter() - start
        if p.returncode != 0:
            PROBLEMS.add(f"{label} exited with {p.returncode}: {p.stderr.decode(errors='replace')[-2000:]}")
        return elapsed

    once()  # warm-up
    return [once() for _ in range(repeat)]


def bench_history(work: Path, quick: bool) -> tuple[dict[str, Any], list[Target]]:
    n_tasks, n_runs, repeat = (100, 100_000, 3) if quick else (1_000, 1_000_000, 5)
    d = work / "history"
    d.mkdir(parents=True, exist_ok=True)
    state = d / "state.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(state) + suffix).unlink(missing_ok=True)
    progress(f"history: building a state file with {n_runs:,} runs over {n_tasks:,} tasks")
    t0 = time.perf_counter()
    ids = build_history_state(state, n_tasks, n_runs)
    build_s = time.perf_counter() - t0
    config = d / "jobctl.toml"
    write_config(config, [{"id": task, "schedule": f"{i % 60} * * * *", "argv": ["/bin/true"]}
                          for i, task in enumerate(ids)])
    task = ids[len(ids) // 2]
    # sanity: the history command sees the rows
    p = subprocess.run(jobctl_argv("history", task, "--json", "-n", "1000", "-c", str(config),
                                   "--state", str(state)), capture_output=True, text=True, check=False)
    if p.returncode != 0:
        PROBLEMS.add(f"jobctl history exited {p.returncode}: {p.stderr[-2000:]}")
        seen = 0
    else:
        seen = len(json.loads(p.stdout))
    c, s = ["-c", str(config)], ["--state", str(state)]
    commands = [
        ("validate (baseline)", jobctl_argv("validate", *c), False),
        (f"history {task} --json", jobctl_argv("history", task, "--json", *c, *s), True),
        ("history --json (all tasks)", jobctl_argv("history", "--json", *c, *s), True),
        (f"history {task} --status failed --json",
         jobctl_argv("history", task, "--status", "failed", "--json", *c, *s), True),
        (f"history {task} -n 1000 --json", jobctl_argv("history", task, "-n", "1000", "--json", *c, *s), None),
        ("list --json", jobctl_argv("list", "--json", *c, *s), None),
        ("status --json", jobctl_argv("status", "--json", *c, *s), None),
    ]
    rows = []
    base = None
    for label, argv, targeted in commands:
        progress(f"history: {label}")
        times = time_cmd(argv, repeat, f"jobctl {label}")
        med = statistics.median(times)
        if base is None:
            base = med
        rows.append({"command": label, "median_ms": round(med * 1000, 2),
                     "min_ms": round(min(times) * 1000, 2),
                     "runs_ms": [round(t * 1000, 2) for t in times],
                     "beyond_startup_ms": round((med - base) * 1000, 2), "targeted": targeted})
    say(f"== history: state file with {n_runs:,} runs over {n_tasks:,} tasks "
        f"(built in {build_s:.1f}s; `history {task} -n 1000` sees {seen} rows) ==")
    say(f"{'command':<46} {'median ms':>10} {'min ms':>8} {'beyond start-up ms':>19}")
    for r in rows:
        say(f"{r['command']:<46} {r['median_ms']:>10.1f} {r['min_ms']:>8.1f} {r['beyond_startup_ms']:>19.1f}")
    say()
    targets = [Target("history", f"{r['command']}: < 100 ms beyond start-up",
                      f"{r['beyond_startup_ms']:.1f} ms", r["beyond_startup_ms"] < 100)
               for r in rows if r["targeted"]]
    print_targets(targets)
    return {"runs": n_runs, "tasks": n_tasks, "build_s": round(build_s, 2), "rows_seen": seen,
            "rows": rows}, targets


# -- main ------------------------------------------------------------------------------


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] in CHILD_MODES:
        CHILD_MODES[sys.argv[1]](sys.argv[2:])
        return 0
    global OUT
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="benchmarks: " + ", ".join(BENCHES))
    parser.add_argument("benches", nargs="*", metavar="BENCH",
                        help=f"which to run ({', '.join(BENCHES)}); default all")
    parser.add_argument("--quick", action="store_true", help="shrink everything (~1 minute)")
    parser.add_argument("--json", action="store_true",
                        help="print results as JSON on stdout (tables go to stderr)")
    parser.add_argument("--alerts", action="store_true",  # webhook + ping + metrics
                        help="lateness: also run with a webhook, a ping URL and /metrics (scraped) on every task "
                             "(a local server) and give the ratio to the plain run")
    parser.add_argument("--out", type=Path, help="keep generated configs/state here (default: temp dir)")
    args = parser.parse_args()
    unknown = [b for b in args.benches if b not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHES)}")
    chosen = [b for b in BENCHES if b in args.benches] if args.benches else list(BENCHES)
    if args.json:
        OUT = sys.stderr
    global ALERTS
    ALERTS = args.alerts

    tmp = None
    if args.out is None:
        tmp = tempfile.TemporaryDirectory(prefix="jobctl-runner-bench-")
        work = Path(tmp.name)
    else:
        work = args.out.resolve()
        work.mkdir(parents=True, exist_ok=True)

    info = {
        "jobctl_commit": git_describe(),
        "python": platform.python_version(), "platform": platform.platform(),
        "cpus": os.cpu_count(), "jobctl": version_of("jobctl"),
        "apscheduler": version_of("APScheduler"), "cronsim": version_of("cronsim"),
        "quick": args.quick, "loadavg_start": os.getloadavg(),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    say(f"python {info['python']} on {info['platform']}, {info['cpus']} CPUs, "
        f"load {' '.join(f'{x:.2f}' for x in info['loadavg_start'])}")
    say(f"jobctl {info['jobctl']} ({info['jobctl_commit']}), APScheduler {info['apscheduler']}, "
        f"cronsim {info['cronsim']}"
        f"{'  (--quick)' if args.quick else ''}")
    say()
    fns = {"lateness": bench_lateness, "startup": bench_startup, "idle": bench_idle,
           "history": bench_history}
    results: dict[str, Any] = {}
    targets: list[Target] = []
    t0 = time.monotonic()
    try:
        for name in chosen:
            progress(f"== {name}")
            res, tg = fns[name](work, args.quick)
            results[name] = res
            targets += tg
    finally:
        if tmp is not None:
            tmp.cleanup()
    info["elapsed_s"] = round(time.monotonic() - t0, 1)
    info["loadavg_end"] = os.getloadavg()

    evaluated = [t for t in targets if t.ok is not None]
    ok = all(t.ok for t in evaluated)
    say("== summary ==")
    for t in targets:
        say(f"[{t.bench}] " + t.row().strip())
    if PROBLEMS.items:
        say()
        say("jobctl problems:")
        for p in PROBLEMS.items:
            say("  - " + p.replace("\n", "\n    "))
    say()
    say(f"{sum(1 for t in evaluated if t.ok)}/{len(evaluated)} targets pass; "
        f"took {info['elapsed_s']:.0f}s")
    if args.json:
        print(json.dumps({"info": info, "results": results,
                          "targets": [t.__dict__ for t in targets],
                          "problems": PROBLEMS.items, "all_pass": ok}, indent=2, default=str))
    if PROBLEMS.items:
        return 2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
