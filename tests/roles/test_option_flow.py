"""A real option from the option table (plugins/filter/nodebook.py OPTIONS), followed on the
sandbox through everything that carries it: the rendered job script's #SBATCH line, sbatch
--test-only of that script, playbooks/session.yml run by hand, the remote helper's submit, and
the job Slurm runs. tests/unit/test_option_table.py shows a new row reaches the same places.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml

from driver.paths import rules
from tests.fixtures.setup import SetupResult
from tests.harness.sandbox import INVENTORY, Sandbox
from tests.harness.setup import ANSIBLE_PLAYBOOK, PlaybookRun, parse_recap

pytestmark = pytest.mark.sandbox

USER = "alice"
OPTION = next(o for o in rules().OPTIONS if o.variable == "nodebook_job_mem")
SESSION_VALUE = "768M"  # what this session asks for
TOO_MUCH = "64000M"  # more than any sandbox node has (RealMemory 16000)


def inventory_value() -> Any:
    return yaml.safe_load((INVENTORY.parent / "group_vars" / "all.yml").read_text())[
        OPTION.variable
    ]


def play(sandbox: Sandbox, playbook: str, **extra: str) -> PlaybookRun:
    argv = [ANSIBLE_PLAYBOOK, "-i", str(INVENTORY), playbook, "-l", "sandbox"]
    for name, value in {"ansible_user": USER, **extra}.items():
        argv += ["-e", f"{name}={value}"]
    proc = sandbox.laptop(argv, timeout=300, check=False, input="")
    return PlaybookRun(proc, parse_recap(proc.stdout))


def queued(sandbox: Sandbox, tag: str) -> list[str]:
    """The user's jobs that carry this session's tag (the helper's --comment=nodebook:TAG)."""
    out = sandbox.out("login", ["squeue", "-h", "-u", USER, "-o", "%i %k"])
    return [line.split()[0] for line in out.splitlines() if line.endswith(f"nodebook:{tag}")]


@pytest.fixture
def alice(nodebook_setup) -> SetupResult:
    return nodebook_setup(USER)


def test_the_job_script_carries_the_option_and_sbatch_accepts_it(
    sandbox: Sandbox, alice: SetupResult
) -> None:
    lines = alice.job_script.read_text().splitlines()
    assert f"#SBATCH {OPTION.slurm}={inventory_value()}" in lines
    script = str(alice.job_script)
    ok = sandbox.host(
        "login",
        ["sbatch", "--test-only", f"{OPTION.slurm}={SESSION_VALUE}", script],
        user=USER,
        check=False,
    )
    assert ok.returncode == 0 and "to start at" in ok.stderr, ok.stderr
    refused = sandbox.host(
        "login",
        ["sbatch", "--test-only", f"{OPTION.slurm}={TOO_MUCH}", script],
        user=USER,
        check=False,
    )
    assert refused.returncode != 0, refused.stderr


@pytest.fixture
def session(sandbox: Sandbox) -> Iterator[Callable[..., PlaybookRun]]:
    """Runs playbooks/session.yml by hand as alice under one tag; afterwards cleanup.yml stops
    what it started, and nothing of the tag is left in the queue."""
    tag = f"opt{uuid.uuid4().hex[:10]}"

    def start(**extra: str) -> PlaybookRun:
        return play(sandbox, "playbooks/session.yml", nodebook_session_tag=tag, **extra)

    start.tag = tag  # type: ignore[attr-defined]
    yield start
    stop = play(sandbox, "playbooks/cleanup.yml", nodebook_session_tag=tag)
    assert stop.rc == 0, stop.output[-3000:]
    assert queued(sandbox, tag) == []


def test_session_yml_passes_the_option_through_the_helper_to_the_job(
    sandbox: Sandbox, alice: SetupResult, session
) -> None:
    run = session(**{OPTION.variable: SESSION_VALUE, "nodebook_job_lease": "120"})
    assert run.rc == 0, run.output[-4000:]
    found = re.search(r"Job (\d+): Jupyter runs on (\S+);", run.output)
    assert found, run.output[-3000:]
    job = found.group(1)
    assert queued(sandbox, session.tag) == [job]
    shown = sandbox.out("login", ["scontrol", "show", "job", job])
    assert f"MinMemoryNode={SESSION_VALUE}" in shown, shown
    # the job script's own line (the inventory's value) was overridden by the session's
    assert f"#SBATCH {OPTION.slurm}={inventory_value()}" in alice.job_script.read_text()


def test_a_value_slurm_refuses_is_named_and_nothing_is_queued(
    sandbox: Sandbox, alice: SetupResult, session
) -> None:
    run = session(**{OPTION.variable: TOO_MUCH})
    assert run.rc != 0
    assert "sbatch refused the job" in run.output, run.output[-3000:]
    assert queued(sandbox, session.tag) == []
