"""The docs stay true: every command is documented and every sample validates."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from jobctl.cli import app
from jobctl.resolve import resolve

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
SAMPLES = sorted((ROOT / "sample-configs").glob("*.toml"))


def test_every_command_is_in_readme() -> None:
    for info in app.registered_commands:
        assert f"`jobctl {info.name}" in README, info.name


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_sample_configs_validate(sample: Path) -> None:
    from conftest import NOW

    schedule_set = resolve(sample, system_zone="UTC", now=NOW)
    assert schedule_set.tasks
    assert all(r.loaded for r in schedule_set.plugins), schedule_set.plugin_problems


def test_quick_start_has_two_setup_commands_and_ci_runs_the_test_one() -> None:
    quick = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", quick, re.S)
    setup = [b.strip() for b in blocks[:2]]
    assert setup[0].startswith("pip install . && jobctl ")
    ci = (ROOT / ".ci" / "run").read_text()
    assert setup[1] in ci.splitlines()


def test_every_setting_and_task_key_is_documented() -> None:
    from jobctl.config import SETTINGS_KEYS, TASK_KEYS

    for key in (*SETTINGS_KEYS, *TASK_KEYS):
        assert f"| `{key}` |" in README, key
