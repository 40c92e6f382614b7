"""Setup on a cluster whose login node cannot reach the package index, with nothing to configure.

The sandbox's index is switched off (the login node and the nodes cannot reach any index). The
controller (the sandbox's laptop) downloads from an index of its own, served here: the sandbox's
wheels plus `nbpytest`, whose newest version (2.0) needs Python >= 3.11.5, newer than the
cluster's 3.11.2, as soupsieve's did. Setup runs through the driver for bob into a throwaway base
dir (alice's and bob's own setups are not touched); everything is restored in `finally`.

In order: (1) setup succeeds, the older nbpytest 1.0 was chosen, and a session reaches HTTP 200;
(2) a re-run changes nothing; (3) with the venv deleted, the wheels kept, the controller's cache
gone and every download failing, setup rebuilds the venv from the uploaded wheels.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.offline.wheels import build_index, make_wheel

pytestmark = [pytest.mark.sandbox, pytest.mark.slow, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
PY = str(REPO / ".venv" / "bin" / "python")
USER = "bob"
BASE = ".nodebook-offline-test"
PASSWORD = "nb-offline-Secret-51c2"


@dataclass
class Offline:
    work: Path
    inventory: Path
    vars_file: Path
    cache: Path
    port: int
    server: subprocess.Popen[bytes]

    @property
    def base(self) -> Path:
        return Path(f"/home/{USER}/{BASE}")

    def env(self) -> list[str]:
        return [f"NODEBOOK_STATE_DIR={self.work / 'state'}", f"TMPDIR={self.work}", "HOME=/root"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def driver(sandbox, ctx: Offline, *args: str, timeout: float = 600) -> tuple[int, list[dict]]:
    argv = ["env", *ctx.env(), PY, "-m", "driver", *args, "-i", str(ctx.inventory), "--json"]
    proc = sandbox.laptop(argv, check=False, timeout=timeout)
    events = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    assert events, proc.stdout + proc.stderr
    return proc.returncode, events


def setup(sandbox, ctx: Offline, *extra: str) -> tuple[int, list[dict]]:
    return driver(sandbox, ctx, "setup", "--cluster", "offline", "-e", f"@{ctx.vars_file}", *extra)


@pytest.fixture(scope="module")
def offline(sandbox) -> Iterator[Offline]:
    work = Path(tempfile.mkdtemp(prefix="nboff-", dir="/tmp"))
    ours = work / "ours"
    make_wheel(ours, "nbpytest", "1.0", ">=3.9")
    make_wheel(ours, "nbpytest", "2.0", ">=3.11.5")  # too new for the cluster's 3.11.2
    wheels = (sandbox.state / "pypi" / "wheels").resolve()
    build_index(work / "index", [wheels, ours])
    port = free_port()
    serve = [PY, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(work / "index")]
    server = subprocess.Popen(
        sandbox.laptop_argv([*serve, str(port)]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    cache = work / "cache"
    host = {
        "ansible_host": "login",
        "ansible_user": USER,
        "ansible_ssh_common_args": f"-F {sandbox.ssh_config}",
        "nodebook_environment_module": "conda-python/3.11",
        "nodebook_environment_base_dir": BASE,
        # what the cluster would use if it could: the sandbox's index, switched off below
        "nodebook_jupyter_pip_index_url": "http://login:3141/simple/",
        "nodebook_jupyter_pip_trusted_hosts": ["login"],
        "nodebook_jupyter_extra_packages": ["nbpytest"],
        # where this machine downloads from (PyPI is out of the sandbox's reach)
        "nodebook_jupyter_offline_index_url": f"http://127.0.0.1:{port}/simple/",
        "nodebook_jupyter_offline_cache": str(cache),
        "nodebook_job_partition": "debug",
        "nodebook_job_time": "00:10:00",
        "nodebook_job_mem": "1G",
    }
    inventory = work / "hosts.yml"
    inventory.write_text(json.dumps({"all": {"hosts": {"offline": host}}}, indent=2))
    vars_file = work / "vars.json"
    fd = os.open(vars_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"nodebook_password_secret": PASSWORD}, f)
    ctx = Offline(work, inventory, vars_file, cache, port, server)
    sandbox.cluster("index", "off")
    try:
        yield ctx
    finally:
        sandbox.cluster("index", "on")
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=10)
        shutil.rmtree(ctx.base, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def remote_version(sandbox, ctx: Offline) -> str:
    python = ctx.base / "venv" / "bin" / "python"
    out = sandbox.host("login", [str(python), "-c", "import nbpytest; print(nbpytest.VERSION)"])
    return out.stdout.strip()


def http_status(sandbox, port: int, token: str) -> int:
    curl = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5"]
    header = ["-H", f"Authorization: token {token}"]
    out = sandbox.laptop([*curl, *header, f"http://127.0.0.1:{port}/api/status"], check=False)
    return int(out.stdout or 0)


def test_offline_setup_downloads_here_picks_the_right_version_and_a_session_answers(
    sandbox, offline
):
    code, events = setup(sandbox, offline)
    errors = [e for e in events if e["event"] == "error"]
    assert code == 0 and not errors, errors or events[-5:]
    phases = [e["message"] for e in events if e["event"] == "phase"]
    assert "installing Jupyter" in phases
    tasks = [e["data"]["task"] for e in events if e["event"] == "task"]
    assert "Download the pinned wheels for the cluster's Python and platform" in tasks
    assert "Upload the wheels to the cluster" in tasks

    # pip >= 25 resolved Requires-Python for the cluster's exact 3.11.2: 1.0, not 2.0
    uploaded = sorted(p.name for p in (offline.base / "wheels").iterdir())
    assert "nbpytest-1.0-py3-none-any.whl" in uploaded
    assert not [n for n in uploaded if n.startswith("nbpytest-2.0")]
    assert remote_version(sandbox, offline) == "1.0"
    manifest = json.loads((offline.base / "wheels" / "nodebook-wheels.json").read_text())
    assert manifest["python_version"] == "3.11.2"
    assert "nbpytest" in manifest["requirements"]
    assert sum(n.endswith(".whl") for n in uploaded) == len(manifest["files"])

    # a session on that install reaches Jupyter: HTTP 200 through the tunnel
    argv = ["env", *offline.env(), PY, "-m", "driver", "session", "-i", str(offline.inventory)]
    argv += ["--cluster", "offline", "--no-browser", "--json", "--allow-second"]
    proc = subprocess.Popen(
        sandbox.laptop_argv(argv), stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    jobs: set[str] = set()
    try:
        ready = None
        assert proc.stdout is not None
        for line in proc.stdout:
            event = json.loads(line) if line.startswith("{") else {}
            if event.get("job_id"):
                jobs.add(str(event["job_id"]))
            if event.get("event") == "ready":
                ready = event
                break
            if event.get("event") == "error":
                break
        assert ready is not None, f"no ready event (jobs {jobs})"
        token = ready["url"].split("token=", 1)[1]
        assert http_status(sandbox, ready["local_port"], token) == 200
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=120) == 130
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        if jobs:
            sandbox.host("login", ["scancel", *sorted(jobs)], check=False)
    for _ in range(30):  # the driver cancelled it on Ctrl-C: it leaves the queue
        if not set(sandbox.squeue(USER)) & jobs:
            break
        time.sleep(1)
    assert not set(sandbox.squeue(USER)) & jobs


def test_a_rerun_reuses_everything_and_changes_nothing(sandbox, offline):
    code, events = setup(sandbox, offline)
    assert code == 0, events[-5:]
    (summary,) = [e for e in events if e["event"] == "info" and "seconds" in e.get("data", {})]
    assert summary["data"]["changed"] == 0, summary
    assert summary["data"]["failed"] == 0


def test_the_venv_is_rebuilt_from_the_uploaded_wheels_when_every_download_fails(sandbox, offline):
    shutil.rmtree(offline.base / "venv")
    shutil.rmtree(offline.cache, ignore_errors=True)  # nothing left on the controller either
    os.killpg(offline.server.pid, signal.SIGTERM)  # this machine's index is gone too
    offline.server.wait(timeout=10)
    before = sorted(p.name for p in (offline.base / "wheels").iterdir())
    code, events = setup(
        sandbox, offline, "-e", "nodebook_jupyter_offline_index_url=http://127.0.0.1:9/simple/"
    )
    assert code == 0, [e for e in events if e["event"] == "error"] or events[-5:]
    assert remote_version(sandbox, offline) == "1.0"
    assert (offline.base / "venv" / "bin" / "jupyter-lab").exists()
    assert not offline.cache.exists()  # nothing was downloaded
    assert sorted(p.name for p in (offline.base / "wheels").iterdir()) == before


def test_a_kernels_ipykernel_comes_from_the_uploaded_wheels(sandbox, offline):
    """Offline, with Jupyter installed already: registering an environment of bob's as a kernel
    (ipykernel installed for him, opt-in) takes ipykernel from the wheels setup uploaded."""
    env = offline.base / "envs" / "offline-env"
    python = "/opt/nodebook-sandbox/conda-python/3.11/bin/python3"
    pip_wheel = next((sandbox.state / "pypi" / "wheels").resolve().glob("pip-*.whl"))
    seed = offline.base / pip_wheel.name
    shutil.copy(pip_wheel, seed)
    os.chown(seed, *(os.stat(offline.base)[k] for k in (4, 5)))  # bob's, as the rest of his tree
    sandbox.host("login", [python, "-m", "venv", "--without-pip", str(env)], user=USER)
    sandbox.host("login", [f"{env}/bin/python", f"{seed}/pip", "install", "--no-index", str(seed)],
                 user=USER)  # fmt: skip
    kernels = offline.work / "kernels.json"
    kernels.write_text(json.dumps({
        "nodebook_kernels_environments": [{"name": "offline-env", "display_name": "Offline env",
                                           "prefix": str(env)}],
        "nodebook_kernels_install_ipykernel": True,
    }))  # fmt: skip
    code, events = setup(sandbox, offline, "-e", f"@{kernels}")
    assert code == 0, [e for e in events if e["event"] == "error"] or events[-5:]
    check = "import ipykernel; print(ipykernel.__version__)"
    out = sandbox.host("login", [f"{env}/bin/python", "-c", check], user=USER)
    version = out.stdout.strip()
    assert (offline.base / "wheels" / f"ipykernel-{version}-py3-none-any.whl").exists()
    spec = offline.base / "share" / "jupyter" / "kernels" / "offline-env" / "kernel.json"
    assert spec.exists()
