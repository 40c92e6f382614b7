"""Real work on the cluster: GPUs, accounts and QOS, web apps beside Jupyter, VS Code's ssh, and
why a job ended, on the sandbox's real Slurm (GRES GPUs on cn02, slurmdbd accounting).

One GPU session proves several things at once (the ready line, the kernel's CUDA_VISIBLE_DEVICES,
`list`, the proxy, --forward, ssh-config); the three ways a job ends run concurrently.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from driver.errors import ExitCode
from tests.e2e.conftest import token_of
from tests.harness.sandbox import Sandbox

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(600)]

RUN_CELL = Path(__file__).with_name("run_cell.py")
VENV_PY = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "python"


def cell(sandbox: Sandbox, ready: dict, code: str, keep: bool = False) -> dict:
    """Run code in a new python3 kernel of the session, through its tunnel."""
    argv = ["env", f"JUPYTER_TOKEN={token_of(ready)}", str(VENV_PY), str(RUN_CELL)]
    argv += [str(ready["local_port"]), "python3", *(["--keep"] if keep else [])]
    out = sandbox.laptop(argv, input=code, timeout=180)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] == "ok", result
    return result


def curl(sandbox: Sandbox, url: str, token: str | None = None) -> tuple[int, str]:
    header = ["-H", f"Authorization: token {token}"] if token else []
    out = sandbox.laptop(
        ["curl", "-s", "-w", "\n%{http_code}", "--max-time", "10", *header, url], check=False
    )
    body, _, code = out.stdout.rpartition("\n")
    return int(code or 0), body


SERVE = """
import http.server, threading, tempfile, functools
d = tempfile.mkdtemp()
open(d + "/marker.txt", "w").write("{marker}")
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=d)
server = http.server.ThreadingHTTPServer(("{host}", {port}), handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
print("serving")
"""


def test_gpu_session_kernel_list_proxy_forward_and_ssh_config(
    sandbox, drive, nothing_left, tmp_path
):
    app_port = random.randint(20000, 29999)
    d = drive(
        ["session", "--cluster", "sandbox", "--allow-second", "--gpus", "1",
         "--forward", str(app_port)]
    )  # fmt: skip
    ready = d.wait_event("ready", timeout=120)
    job, port, token = ready["job_id"], ready["local_port"], token_of(ready)
    # Slurm put it on the GPU node and allocated one GPU; the ready line says which
    assert ready["node"] == "cn02"
    gpus = ready["data"]["gpus"]
    assert gpus in ("0", "1"), ready
    # the kernel sees CUDA_VISIBLE_DEVICES as Slurm set it, in this job
    out = cell(
        sandbox,
        ready,
        "import os\nprint(os.environ['CUDA_VISIBLE_DEVICES'], os.environ['SLURM_JOB_ID'])",
    )
    assert out["stdout"].split() == [gpus, job]
    # `list` shows the GPUs allocated
    listed = drive(["list", "--cluster", "sandbox"])
    assert listed.wait(timeout=60) == 0
    sessions = {e["job_id"]: e for e in listed.events if e["event"] == "session"}
    assert sessions[job]["data"]["gpus"] == "1"
    # a web app started from a cell: through Jupyter's proxy with the login, not without it
    marker = f"nodebook-proxy-{random.randint(0, 10**9)}"
    serve = SERVE.format(marker=marker, host="127.0.0.1", port=app_port)
    assert "serving" in cell(sandbox, ready, serve, keep=True)["stdout"]
    proxied = f"http://127.0.0.1:{port}/proxy/{app_port}/marker.txt"
    assert curl(sandbox, proxied, token) == (200, marker)
    status, body = curl(sandbox, proxied)
    assert status in (302, 401, 403) and marker not in body
    # ... and through --forward, on a port of its own, over the same connection
    (fw,) = ready["data"]["forwards"]
    assert fw["node_port"] == app_port
    assert curl(sandbox, f"http://127.0.0.1:{fw['local_port']}/marker.txt") == (200, marker)
    # VS Code's way in: an ssh Host block that reaches the node through the session's master
    conf = drive(["ssh-config", job, "--cluster", "sandbox"])
    assert conf.wait(timeout=60) == 0
    (printed,) = [e for e in conf.events if e["event"] == "ssh-config"]
    block = tmp_path / "ssh_config"
    block.write_text(printed["data"]["config"])
    assert "ControlPath=" in block.read_text()  # through the session's master: no second login
    assert "StrictHostKeyChecking yes" in block.read_text()
    ssh = sandbox.laptop(
        ["ssh", "-F", str(block), "-o", "BatchMode=yes", f"nodebook-{job}", "hostname"],
        check=False,
        timeout=60,
    )
    assert ssh.stdout.strip() == "cn02", ssh.stderr
    d.signal(signal.SIGINT)
    assert d.wait() == ExitCode.INTERRUPTED
    nothing_left(job, port)


@pytest.mark.parametrize(
    ("args", "slurm_says", "fix"),
    [
        (["--gpus", "3"], "Requested node configuration is not available", "--gpus"),
        (["--account", "nosuch"], "Invalid account", "not one of yours (physics, chemistry)"),
        (["--qos", "short", "--time", "00:20:00"], "QOS", "--time"),
    ],
)
def test_what_slurm_refuses_gets_its_cause_and_fix_and_nothing_is_left(
    sandbox, drive, nothing_left, args, slurm_says, fix
):
    d = drive(["session", "--cluster", "sandbox", "--allow-second", *args])
    assert d.wait(timeout=120) == ExitCode.SCHEDULER
    (error,) = d.errors
    assert len(error.splitlines()) == 1 and slurm_says in error
    assert fix in error.split(slurm_says, 1)[1], error
    assert not [e for e in d.events if e["event"] == "submitted"]
    nothing_left()


def test_account_and_qos_reach_slurm(sandbox, drive, nothing_left):
    d = drive(
        ["session", "--cluster", "sandbox", "--allow-second", "--account", "chemistry",
         "--qos", "short", "--time", "00:05:00"]
    )  # fmt: skip
    ready = d.wait_event("ready", timeout=120)
    job = sandbox.scontrol_job(ready["job_id"])
    assert (job["Account"], job["QOS"], job["TimeLimit"]) == ("chemistry", "short", "00:05:00")
    d.signal(signal.SIGINT)
    assert d.wait() == ExitCode.INTERRUPTED
    nothing_left(ready["job_id"], ready["local_port"])


GROW = """
blocks = []
for _ in range(64):
    blocks.append(bytearray(16 * 1024 * 1024))  # 1 GiB in all, well past --mem 300M
print("allocated")
"""


def test_why_a_job_ended_walltime_memory_and_scancel(sandbox, drive, nothing_left):
    """Three sessions at once, each ended another way; each driver says which, with a fix."""
    walltime = drive(["session", "--cluster", "sandbox", "--allow-second", "--time", "1"])
    memory = drive(["session", "--cluster", "sandbox", "--allow-second", "--mem", "300M"])
    cancelled = drive(["session", "--cluster", "sandbox", "--allow-second"])
    ready = {name: d.wait_event("ready", timeout=180) for name, d in
             (("walltime", walltime), ("memory", memory), ("cancelled", cancelled))}  # fmt: skip
    sandbox.host("login", ["scancel", ready["cancelled"]["job_id"]], user="alice")
    argv = ["env", f"JUPYTER_TOKEN={token_of(ready['memory'])}", str(VENV_PY), str(RUN_CELL)]
    subprocess.Popen(  # the kernel is killed mid-cell: its output does not matter
        sandbox.laptop_argv([*argv, str(ready["memory"]["local_port"]), "python3"]),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    ).communicate(GROW, timeout=180)
    expect = {
        "walltime": (walltime, "TIMEOUT", "--time"),
        "memory": (memory, None, "--mem"),
        "cancelled": (cancelled, "CANCELLED", "by you"),
    }
    deadline = time.monotonic() + 240
    for name, (d, state, words) in expect.items():
        assert d.wait(timeout=max(10, deadline - time.monotonic())) == ExitCode.JOB_ENDED, name
        (ended,) = [e for e in d.events if e["event"] == "ended"]
        if state:
            assert ended["state"] == state, ended
        assert words in ended["message"], ended
    # Only once all three have ended: the leftover check looks at this test's whole TMPDIR, and
    # a driver whose session ends later (the memory one, at times) is no leftover of another.
    for name in expect:
        nothing_left(ready[name]["job_id"], ready[name]["local_port"], timeout=40)
