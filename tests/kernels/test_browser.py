"""alice's own environments as kernels, end to end: a real session (Slurm job, ssh tunnel,
JupyterLab on the node) and a real browser (headless Debian Chromium through selenium).

In JupyterLab's launcher she picks her conda env's kernel, then her venv's, and runs a cell in
each that prints sys.prefix, NODEBOOK_SANDBOX_CUDA (set by `module load cuda/12.4`, which only
the kernel's launcher loads), SLURM_JOB_ID (the kernel runs inside the session's job), the conda
env's activate.d variable, nbmarker's WHERE and the host name.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from driver.errors import ExitCode
from tests.kernels.conftest import PY, USER, driver_argv

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(900)]

FIELDS = ("prefix", "cuda", "job", "activated", "where", "host")
CODE = (
    "import os, socket, sys, nbmarker; env = os.environ.get; "
    'print("NBK", sys.prefix, env("NODEBOOK_SANDBOX_CUDA"), env("SLURM_JOB_ID"), '
    'env("NBMARKER_ACTIVATED"), nbmarker.WHERE, socket.gethostname(), sep="|")'
)


class Session:
    """`nodebook session --json` for alice in the laptop namespace, events read as they come."""

    def __init__(self, sandbox: Any, work: Path) -> None:
        args = ["session", "--cluster", "sandbox", "--allow-second", "--no-browser", "--json"]
        self.proc = subprocess.Popen(
            sandbox.laptop_argv(driver_argv(work, *args)),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.events: list[dict[str, Any]] = []
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                self.lines.put(json.loads(line))

    def wait_for(self, kind: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(queue.Empty):
                event = self.lines.get(timeout=0.5)
                self.events.append(event)
                if event.get("event") == kind:
                    return event
            if self.proc.poll() is not None and self.lines.empty():
                break
        raise AssertionError(f"no {kind!r} event: rc={self.proc.poll()} events={self.events}")

    @property
    def job_ids(self) -> set[str]:
        return {str(e["job_id"]) for e in self.events if e.get("job_id")}

    def stop(self, driver_pid: int | None) -> int | None:
        """Ctrl-C to the driver (it cancels the job and closes the tunnel), then wait."""
        with contextlib.suppress(ProcessLookupError, TypeError):
            os.kill(driver_pid or self.proc.pid, signal.SIGINT)
        try:
            return self.proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
            return None


def printed(output: str) -> dict[str, str]:
    line = next(ln for ln in output.splitlines() if ln.startswith("NBK|"))
    return dict(zip(FIELDS, line.split("|")[1:], strict=True))


def kernelspecs(sandbox: Any, port: int, token: str) -> dict[str, Any]:
    """GET /api/kernelspecs through the tunnel, from the laptop (the token in a header)."""
    argv = ["curl", "-sf", "--max-time", "20", "-H", f"Authorization: token {token}"]
    out = sandbox.laptop([*argv, f"http://127.0.0.1:{port}/api/kernelspecs"], timeout=60)
    return json.loads(out.stdout)


@pytest.mark.skipif(
    not (shutil.which("chromium") and shutil.which("chromedriver")),
    reason="needs Debian's chromium and chromium-driver",
)
def test_the_chosen_environments_kernel_runs_in_the_job_with_its_module(kernels, sandbox):
    kernels.apply(default="torchish")
    work = Path(tempfile.mkdtemp(prefix="nbk-", dir="/tmp"))
    session = Session(sandbox, work)
    driver_pid = None
    try:
        ready = session.wait_for("ready", timeout=180)
        driver_pid = ready.get("data", {}).get("driver_pid")
        job, node, port = str(ready["job_id"]), ready["node"], int(ready["local_port"])
        token = ready["url"].split("token=", 1)[1]
        # The job's Jupyter offers both environments, and torchish is the default.
        specs = kernelspecs(sandbox, port, token)
        assert specs["default"] == "torchish"
        assert {"torchish", "analysis", "python3"} <= set(specs["kernelspecs"])
        request = {
            "url": f"http://127.0.0.1:{port}/",
            "token": token,  # on stdin, never in argv
            "timeout": 150,
            "screenshot": f"{tempfile.gettempdir()}/nodebook-kernels-browser-failure.png",
            "kernels": [
                {"display_name": "Torchish (CUDA 12.4)", "code": CODE, "expect": "NBK|"},
                {"display_name": "Analysis venv (CUDA 12.4)", "code": CODE, "expect": "NBK|"},
            ],
        }
        out = sandbox.laptop(
            [PY, "tests/kernels/browser_kernels.py"],
            input=json.dumps(request),
            timeout=600,
            check=False,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        conda, venv = json.loads(out.stdout.strip().splitlines()[-1])["results"]
        assert conda["kernel_label"] == "Torchish (CUDA 12.4)"
        assert [s["kernel"] for s in conda["sessions"]] == ["torchish"]
        assert printed(conda["output"]) == {
            "prefix": kernels.conda["prefix"],  # the env's own Python
            "cuda": "12.4",  # module load cuda/12.4, by the kernel's launcher
            "job": job,  # inside the session's Slurm job
            "activated": "1",  # the env's etc/conda/activate.d ran
            "where": "conda",
            "host": node,
        }
        assert [s["kernel"] for s in venv["sessions"]] == ["analysis"]
        assert printed(venv["output"]) == {
            "prefix": kernels.venv["prefix"],
            "cuda": "12.4",
            "job": job,
            "activated": "None",
            "where": "venv",
            "host": node,
        }
    finally:
        rc = session.stop(driver_pid)
        ids = sorted(session.job_ids)
        if ids:
            sandbox.host("login", ["scancel", *ids], check=False)
        shutil.rmtree(work, ignore_errors=True)
        kernels.apply()
    assert rc == ExitCode.INTERRUPTED, session.events[-3:]
    # The session's job left the queue (Ctrl-C cancels it).
    deadline = time.monotonic() + 30
    while set(ids) & set(sandbox.squeue(USER)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not set(ids) & set(sandbox.squeue(USER))
