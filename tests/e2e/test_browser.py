"""A real browser (headless Debian Chromium via selenium) through the session's tunnel.

The notebook's kernel runs inside the Slurm job on the compute node: a cell printing
SLURM_JOB_ID and the hostname shows the session's job id and the node the scheduler chose.
"""

from __future__ import annotations

import json
import re
import shutil
import signal

import pytest

from driver.errors import ExitCode
from tests.harness.sandbox import PY

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(300)]

CODE = "import os, socket\nprint(f\"JOB={os.environ['SLURM_JOB_ID']} HOST={socket.gethostname()}\")"


@pytest.mark.skipif(
    not (shutil.which("chromium") and shutil.which("chromedriver")),
    reason="needs Debian's chromium and chromium-driver",
)
def test_browser_runs_a_cell_on_the_jobs_node(sandbox, drive, nothing_left):
    d = drive(["session", "--cluster", "sandbox", "--allow-second"])
    ready = d.wait_event("ready", timeout=90)
    job, node, port = ready["job_id"], ready["node"], ready["local_port"]
    token = ready["url"].split("token=", 1)[1]
    request = {
        "url": f"http://127.0.0.1:{port}/",
        "token": token,  # on stdin, never in argv
        "app": "lab",
        "code": CODE,
        "expect": "HOST=",
        "timeout": 90,
    }
    out = sandbox.laptop(
        [PY, "tests/e2e/browser_check.py"], input=json.dumps(request), timeout=180, check=False
    )
    assert out.returncode == 0, out.stderr[-3000:]
    output = json.loads(out.stdout.strip().splitlines()[-1])["output"]
    match = re.search(r"JOB=(\S+) HOST=(\S+)", output)
    assert match, output
    assert match.group(1) == job
    assert match.group(2) == node == sandbox.scontrol_job(job)["NodeList"]

    d.signal(signal.SIGINT)
    assert d.wait() == ExitCode.INTERRUPTED
    nothing_left(job, port)


@pytest.mark.skipif(
    not (shutil.which("chromium") and shutil.which("chromedriver")),
    reason="needs Debian's chromium and chromium-driver",
)
def test_fresh_launcher_asks_nothing(sandbox, drive, nothing_left):
    """A fresh JupyterLab (its Launcher) shows no toast: no "Would you like to get notified
    about official Jupyter news?", no update notice. The page asks that question whatever the
    server's news_url, unless the notification plugin's fetchNews is "false"; checkForUpdates
    false keeps it from asking the server for updates. Setup writes both as JupyterLab's setting
    defaults (nodebook_jupyter_config, labconfig/default_setting_overrides.d/nodebook.json)."""
    d = drive(["session", "--cluster", "sandbox", "--allow-second"])
    ready = d.wait_event("ready", timeout=90)
    job, port = ready["job_id"], ready["local_port"]
    request = {
        "url": f"http://127.0.0.1:{port}/",
        "token": ready["url"].split("token=", 1)[1],  # on stdin, never in argv
        "check": "notices",
        "timeout": 60,
    }
    out = sandbox.laptop(
        [PY, "tests/e2e/browser_check.py"], input=json.dumps(request), timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["toasts"] == [] and seen["count"] == "0", seen
    # the defaults setup wrote (the schema's defaults), and what the page goes by
    assert seen["defaults"] == {"fetchNews": "false", "checkForUpdates": False}, seen
    assert seen["settings"] == {"fetchNews": "false", "checkForUpdates": False}, seen

    d.signal(signal.SIGINT)
    assert d.wait() == ExitCode.INTERRUPTED
    nothing_left(job, port)
