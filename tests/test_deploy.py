"""The README's Deployment section, tried as written as far as this machine
allows: the systemd unit through `systemd-analyze verify`, and the
container's ENTRYPOINT and ENV run as PID 1 of a new pid namespace (what
`docker run` gives it), with its output echo, /healthz and /metrics."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import wait_for, write_config

README = (Path(__file__).parent.parent / "README.md").read_text()
JOBCTL = Path(sys.executable).with_name("jobctl")


def _block(heading: str, lang: str) -> str:
    section = README.split(f"### {heading}\n", 1)[1]
    match = re.search(rf"```{lang}\n(.*?)```", section, re.S)
    assert match, f"no {lang} block under {heading}"
    return match.group(1)


def _duration(text: str) -> float:
    return float(text.removesuffix("s"))


def test_the_systemd_unit_verifies_and_gives_jobctl_its_grace(tmp_path: Path) -> None:
    unit = _block("systemd", "ini")
    keys = dict(line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#"))
    assert keys["KillMode"] == "mixed" and keys["KillSignal"] == "SIGTERM"
    assert keys["Restart"] == "on-failure" and keys["RestartPreventExitStatus"] == "2"
    from jobctl.model import Settings

    defaults = Settings(timezone="UTC")
    assert _duration(keys["TimeoutStopSec"]) > defaults.shutdown_grace + defaults.kill_grace
    assert "JOBCTL_STATE=/var/lib/jobctl/" in keys["Environment"] and keys["StateDirectory"] == "jobctl"
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    # as written, but with this checkout's jobctl (verify wants the binary to exist)
    path = tmp_path / "jobctl.service"
    path.write_text(unit.replace("/usr/local/bin/jobctl", str(JOBCTL)))
    result = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr  # no key it ignores


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_container_entrypoint_as_pid_1_echoes_output_and_serves_the_probes(tmp_path: Path) -> None:
    dockerfile = _block("Container", "dockerfile")
    [entry] = [json.loads(line.split(" ", 1)[1]) for line in dockerfile.splitlines()
               if line.startswith("ENTRYPOINT ")]
    [env_line] = [line.split(" ", 1)[1] for line in dockerfile.splitlines() if line.startswith("ENV ")]
    assert entry[0] == "jobctl" and "0.0.0.0:9100" in entry
    port = _free_port()
    # the image's paths, moved into tmp_path
    root = tmp_path / "image"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBCTL_")}
    for pair in env_line.split():
        key, value = pair.split("=", 1)
        env[key] = str(root) + value
    config, state = Path(env["JOBCTL_CONFIG"]), Path(env["JOBCTL_STATE"])
    config.parent.mkdir(parents=True)
    state.parent.mkdir(parents=True)
    write_config(config.parent, """
[[tasks]]
id = "hello"
schedule = "every 1s"
command = "echo hello from $JOBCTL_TASK_ID; sleep 0.2 &"
""", name=config.name)
    argv = [str(JOBCTL)] + [a.replace("9100", str(port)) for a in entry[1:]]
    out = tmp_path / "container.out"
    ns = subprocess.Popen(["unshare", "--fork", "--kill-child", "--pid", "--mount-proc", *argv],
                          cwd=tmp_path, env=env, stdout=out.open("w"), stderr=subprocess.STDOUT)
    pid: object = None
    try:
        def runner_pid() -> int | None:
            assert ns.poll() is None, f"unshare exited {ns.returncode}: {out.read_text()}"
            children = Path(f"/proc/{ns.pid}/task/{ns.pid}/children").read_text().split()
            return int(children[0]) if children else None

        pid = wait_for(runner_pid, 15, "the runner in its namespace")
        assert isinstance(pid, int)
        status = Path(f"/proc/{pid}/status").read_text()
        assert [line.split()[-1] for line in status.splitlines() if line.startswith("NSpid:")] == ["1"]

        def events() -> list[dict[str, object]]:
            return [json.loads(line) for line in out.read_text().splitlines() if line.startswith("{")]

        # `docker logs`: the task's output, as json events
        wait_for(lambda: sum(e["event"] == "output" for e in events()) >= 2, 30, "echoed output")
        lines = {e["line"] for e in events() if e["event"] == "output"}
        assert lines == {"hello from hello"}
        base = f"http://127.0.0.1:{port}"  # 0.0.0.0 answers on loopback too
        with urllib.request.urlopen(f"{base}/healthz", timeout=10) as resp:
            assert (resp.status, resp.read()) == (200, b"ok\n")
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as resp:
            families = {f.name for f in text_string_to_metric_families(resp.read().decode())}
        assert {"jobctl_runs", "jobctl_running", "jobctl_fire_lateness_seconds"} <= families
        # the image's HEALTHCHECK command, as written (but for the port)
        [check] = [json.loads(line.split(" CMD ", 1)[1]) for line in dockerfile.splitlines()
                   if line.startswith("HEALTHCHECK ")]
        check = [a.replace("9100", str(port)) for a in check]
        assert check[0] == "python"
        probe = subprocess.run([sys.executable, *check[1:]], capture_output=True, text=True, timeout=30)
        assert probe.returncode == 0, probe.stderr
        # `docker stop`: SIGTERM to PID 1, a clean exit 0
        os.kill(pid, signal.SIGTERM)
        assert ns.wait(30) == 0, out.read_text()
    finally:
        if ns.poll() is None:
            if isinstance(pid, int):
                os.kill(pid, signal.SIGKILL)
            ns.kill()
            ns.wait()
    assert events()[-1]["event"] == "stopped"
    assert state.exists() and (state.parent / "logs").is_dir()  # the state lives in the volume
