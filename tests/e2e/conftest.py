"""Helpers for driver e2e tests: a driver process in the laptop namespace, read as JSON lines.

Every test gets `drive`, a factory whose finalizer kills what the test started and cancels the
jobs its drivers reported, so nothing is left running even when a test fails.

Other engineers' tests and benchmarks use the same sandbox and users at the same time, so every
check here is scoped to what this test created: its job ids, the processes tagged with them
(Slurm's SLURM_JOB_ID, a standalone server's NODEBOOK_JOB_ID, a tunnel's NODEBOOK_TUNNEL, read
from /proc: the sandbox hosts share the machine's pid namespace), and the ssh processes whose
ControlPath lies in this test's private TMPDIR.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.fixtures import driver_run
from tests.fixtures.sandbox import REPO

PY = str(REPO / ".venv" / "bin" / "python")
# The current test's private TMPDIR (short: it holds the ssh control sockets).
CURRENT_TMP: list[str] = []


def stop_server(job_id: str) -> str:
    """Shell that stops one standalone server (its process group, by pid file)."""
    if not re.fullmatch(r"s\d+", job_id):
        raise ValueError(job_id)
    p = f'"$HOME"/.nodebook/jobs/{job_id}.pid'
    return f'[ -r {p} ] && kill -TERM -- "-$(cat {p})" 2>/dev/null; rm -f {p}; true'


def http_status(
    sandbox, port: int, token: str | None, path: str = "/api/status", method: str = "GET"
) -> int:
    """HTTP status of a request through the tunnel, made from the laptop namespace."""
    header = ["-H", f"Authorization: token {token}"] if token else []
    header += ["-X", method] if method != "GET" else []
    out = sandbox.laptop(
        [
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
            *header,
            f"http://127.0.0.1:{port}{path}",
        ],
        check=False,
    )
    return int(out.stdout or 0)


def remote_processes(sandbox, host: str, user: str) -> list[str]:
    """`pid args` of a user's processes on a sandbox host, untruncated."""
    out = sandbox.host(host, ["ps", "-ww", "-u", user, "-o", "pid=,args="], check=False).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def laptop_ssh_processes(sandbox, tmp: str | None = None) -> list[str]:
    """ssh processes of this test's drivers (ControlPath inside its TMPDIR)."""
    tmp = tmp or (CURRENT_TMP[0] if CURRENT_TMP else "/tmp/nb-")
    out = subprocess.run(["ps", "-ww", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return [ln for ln in out.splitlines() if f"ControlPath={tmp}" in ln]


def tagged_processes(job_id: str) -> list[str]:
    """`pid args` of processes belonging to one job, on any sandbox host (shared pid namespace):
    the job's own (SLURM_JOB_ID / NODEBOOK_JOB_ID) and its tunnels' (NODEBOOK_TUNNEL)."""
    return driver_run.tagged_processes([job_id])


def job_script_environment(job_id: str) -> dict[str, str]:
    """The environment Slurm started the job's batch script with (its /proc environ: what
    sbatch and slurmd passed, before the script's own `bash -l` changes anything)."""
    for line in tagged_processes(job_id):
        pid, _, args = line.partition(" ")
        if "slurm_script" in args:
            with contextlib.suppress(OSError):
                raw = Path(f"/proc/{pid}/environ").read_bytes()
                return dict(
                    kv.decode(errors="replace").partition("=")[::2] for kv in raw.split(b"\0") if kv
                )
    raise AssertionError(f"no batch script of job {job_id} found")


def assert_nothing_left(
    sandbox,
    user: str = "alice",
    job_id: str | None = None,
    port: int | None = None,
    timeout: float = 20,
    ignore_ssh: list[str] | None = None,
) -> None:
    """This test's job left the queue; no process of it (Jupyter, job script, srun, tunnel cat,
    inner hop ssh) runs anywhere; no ssh of this test's drivers; the local port is closed; the
    node-local runtime dir is gone."""
    deadline = time.monotonic() + timeout
    while True:
        jobs = [j for j in sandbox.squeue(user) if j == job_id] if job_id else []
        procs = tagged_processes(job_id) if job_id else []
        ssh = [p for p in laptop_ssh_processes(sandbox) if p not in (ignore_ssh or [])]
        listening = port is not None and http_status(sandbox, port, None) != 0
        leftovers = []
        if job_id:
            for h in ("cn01", "cn02", "login"):
                out = sandbox.host(h, ["ls", "-d", f"/tmp/nodebook-{user}-{job_id}"], check=False)
                if out.returncode == 0:
                    leftovers.append(f"{h}:/tmp/nodebook-{user}-{job_id}")
        problems = {
            "jobs": jobs,
            "procs": procs,
            "ssh": ssh,
            "port_listening": listening,
            "files": leftovers,
        }
        if not any(problems.values()):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"left behind: {problems}")
        time.sleep(0.5)


@pytest.fixture
def test_tmp():
    """A short private TMPDIR for this test's drivers (their ssh control sockets live there)."""
    tmp = tempfile.mkdtemp(prefix="nbt-", dir="/tmp")
    CURRENT_TMP[:] = [tmp + "/"]
    yield tmp
    for line in laptop_ssh_processes(None, tmp + "/"):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(line.split()[0]), signal.SIGTERM)
    CURRENT_TMP.clear()
    shutil.rmtree(tmp, ignore_errors=True)


def cancel_jobs(sandbox, job_ids: set[str], users: tuple[str, ...] = ("alice", "bob")) -> None:
    """Cancel exactly these jobs (Slurm ids) and stop these standalone servers."""
    slurm = sorted(j for j in job_ids if j.isdigit())
    if slurm:
        sandbox.host("login", ["scancel", *slurm], check=False)
    for job in sorted(j for j in job_ids if j.startswith("s")):
        for user in users:
            sandbox.host("login", ["bash", "-c", stop_server(job)], user=user, check=False)


@pytest.fixture
def drive(sandbox, nodebook_setup, tmp_path, test_tmp):
    """Factory: drive(args) starts the driver; the finalizer leaves nothing of it running."""
    nodebook_setup("alice")
    started: list[driver_run.Driver] = []

    def start(args: list[str], check_interval: str = "1") -> driver_run.Driver:
        extra = (
            ["--no-browser", "--check-interval", check_interval]
            if args[0] in ("session", "attach")
            else []
        )
        d = driver_run.Driver(
            sandbox,
            [*args, *extra],
            work=Path(test_tmp),
            tmp_dir=Path(test_tmp),
            state_dir=tmp_path / "state",
        )
        started.append(d)
        return d

    yield start
    for d in started:
        d.kill()
    with contextlib.suppress(Exception):
        for d in started:
            d.wait(timeout=5)
    cancel_jobs(sandbox, set().union(*(d.job_ids for d in started)) if started else set())
