"""The job's JupyterLab starts without running `node` (nodebook_remote's bin/nodebook-jupyter).

On a compute node, as a set-up user, the installed JupyterLab is started twice with a `node`
first on PATH that records its runs (tests/e2e/jupyter_start_probe.py): as `jupyter-lab` is
usually started, which must run it (else the check could not fail), and through the launcher the
job uses, which must not, while `/api` and the `/lab` page still answer 200. The seconds each
start took are printed, not asserted (bench/ measures speed).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.harness.sandbox import Sandbox

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(300)]

PROBE = Path(__file__).with_name("jupyter_start_probe.py")
USER = "alice"


def test_the_launcher_starts_jupyterlab_without_the_node_probe(
    sandbox: Sandbox, nodebook_setup
) -> None:
    setup = nodebook_setup(USER)
    argv = [setup.setup["python"], "-", str(setup.base), setup.setup["bin_dir"]]
    argv.append(setup.setup["config_dir"])
    out = sandbox.host("cn01", argv, user=USER, input=PROBE.read_text(), timeout=280)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    direct, launcher = result["direct"], result["launcher"]
    print({way: r["seconds"] for way, r in result.items()})
    # The control: started the usual way, jupyterlab runs `node yarn.js config` at start.
    assert direct["api"] == 200 and direct["lab"] == 200, direct["stderr"]
    assert any("yarn" in run and "config" in run for run in direct["node_runs"]), direct
    # Through the launcher: the same server and page, and node never ran.
    assert launcher["api"] == 200 and launcher["lab"] == 200, launcher["stderr"]
    assert launcher["node_runs"] == [], launcher
