"""Host-side helpers: probes in the laptop namespace, sdiag, the filler job, the machine."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import time
from collections.abc import Sequence
from typing import Any

from bench.common import FILL_JOB_NAME, OUTPUTS
from tests.harness.sandbox import CLUSTER, REPO, VENV_PY, Sandbox, laptop_argv
from tests.harness.setup import run_setup, user_password

RUNNER_VERSION = "import importlib.metadata as m; print(m.version('ansible-runner'))"
SANDBOX = Sandbox()


def on(host: str, argv: Sequence[str], user: str | None = None, timeout: float = 60) -> str:
    """stdout of argv on a sandbox host (as root, or as `user` in a login shell)."""
    return SANDBOX.out(host, argv, user, timeout=timeout)


def probe_argv(*args: str, module: str = "bench.probe") -> list[str]:
    return laptop_argv([str(VENV_PY), "-m", module, *args])


def run_probe(*args: str, timeout: float = 3600) -> dict[str, Any]:
    """Run one probe scenario in the laptop namespace; its last stdout line is the result."""
    return run_probe_module("bench.probe", *args, timeout=timeout)


def run_probe_module(module: str, *args: str, timeout: float = 3600) -> dict[str, Any]:
    proc = subprocess.Popen(
        probe_argv(*args, module=module), stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except BaseException:
        stop_probe(proc)
        raise
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"probe {module} {' '.join(args)} failed (rc={proc.returncode})")
    return json.loads(lines[-1])


def stop_probe(proc: subprocess.Popen[str]) -> None:
    """SIGTERM the probe (it cleans up), wait for it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(180)
        except subprocess.TimeoutExpired:
            proc.kill()


_RPC_LINE = re.compile(r"^\s*(\S+)\s+\(\s*\d+\)\s+count:(\d+)", re.M)


def parse_sdiag(out: str) -> dict[str, dict[str, int]]:
    """slurmctld's RPC counts from sdiag's text: {"by_type": {TYPE: n}, "by_user": {user: n}}."""
    by_type = out.split("by message type", 1)[1] if "by message type" in out else ""
    by_type, _, by_user = by_type.partition("by user")
    by_user = by_user.split("Pending RPC", 1)[0]
    return {
        "by_type": {m[1]: int(m[2]) for m in _RPC_LINE.finditer(by_type)},
        "by_user": {m[1]: int(m[2]) for m in _RPC_LINE.finditer(by_user)},
    }


def sdiag() -> dict[str, dict[str, int]]:
    """slurmctld's RPC counts by type and by user (sdiag as root on login; no reset)."""
    return parse_sdiag(on("login", ["sdiag"]))


def squeue(fmt: str = "%i|%u|%j|%T") -> list[list[str]]:
    out = on("login", ["squeue", "-h", "-o", fmt])
    return [ln.split("|") for ln in out.splitlines() if ln.strip()]


def job_state(job_id: str) -> str:
    out = on("login", ["squeue", "-h", "-j", job_id, "-o", "%T"]).strip()
    return out or "GONE"


def fill_nodes(user: str = "bob") -> str:
    """One job of `user` holding both nodes exclusively; returns its id once RUNNING."""
    out = on(
        "login",
        ["sbatch", "--parsable", f"--job-name={FILL_JOB_NAME}", "-N", "2", "--exclusive",
         "--time=15", "--wrap", "sleep 900"],
        user=user,
    )  # fmt: skip
    job_id = out.strip().split(";")[0]
    if not job_id.isdigit():
        raise RuntimeError(f"could not submit the filler job: {out!r}")
    deadline = time.monotonic() + 300
    while job_state(job_id) != "RUNNING":
        if time.monotonic() > deadline:
            raise RuntimeError(f"filler job {job_id} did not start within 300 s")
        time.sleep(1)
    return job_id


def cancel_fill() -> None:
    on("login", ["scancel", "-n", FILL_JOB_NAME, "-u", "bob"])
    on("login", ["scancel", "-n", FILL_JOB_NAME, "-u", "alice"])


def machine() -> dict[str, Any]:
    mem_kib = 0
    with open("/proc/meminfo", encoding="ascii") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    cpu = ""
    with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break

    def ver(argv: list[str]) -> str:
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        except OSError:
            return "?"
        text = (p.stdout or p.stderr).strip().splitlines()
        return text[0] if text else "?"

    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "cpu": cpu,
        "kernel": platform.release(),
        "os": ver(["sh", "-c", ". /etc/os-release; echo $PRETTY_NAME"]),
        "python": ver([str(VENV_PY), "--version"]),
        "ansible": ver([str(REPO / ".venv/bin/ansible"), "--version"]),
        "ansible_runner": ver([str(VENV_PY), "-c", RUNNER_VERSION]),
        "openssh": ver(["ssh", "-V"]),
        "slurm": on("login", ["sinfo", "--version"]).strip(),
        "jupyter": ver(["sh", "-c", "cat /home/alice/.nodebook/setup.json 2>/dev/null | "
                        "python3 -c 'import json,sys; print(json.load(sys.stdin)[\"packages\"])'"]),
    }  # fmt: skip


def code_state() -> dict[str, Any]:
    """The commit measured (full hash) and whether the work tree differed from it: others work
    in the same tree, so the paths that differed are named too. The benchmarks' own results
    and page do not count: `make chaos` before `make bench` changes them."""
    git = ["git", "-C", str(REPO)]
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True)
    status = subprocess.run(
        [*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
    )
    outputs = {str(p.relative_to(REPO)) for p in OUTPUTS}
    changed = sorted(
        line[3:] for line in status.stdout.splitlines() if line.strip() and line[3:] not in outputs
    )
    return {"commit": head.stdout.strip(), "dirty": bool(changed), "dirty_paths": changed}


def loadavg() -> float:
    """The 1-minute load average of this machine (all sandbox hosts share it)."""
    with open("/proc/loadavg", encoding="ascii") as f:
        return float(f.read().split()[0])


def activity() -> dict[str, Any]:
    """Other load on the shared sandbox right now: others' jobs, test and chaos runs."""
    ps = subprocess.run(["ps", "-eo", "args="], capture_output=True, text=True).stdout
    jobs = [r for r in squeue() if not r[2].startswith("nb-bench")]
    return {
        "load_1min": loadavg(),
        "jobs_in_queue": len(jobs),
        "pytest_runs": sum(1 for ln in ps.splitlines() if "pytest" in ln and "python" in ln),
        "chaos_runs": sum(
            1 for ln in ps.splitlines() if "bench.chaos" in ln or "bench/chaos.py" in ln
        ),
    }


DOWN = 3  # `sandbox/cluster.py status`: no sandbox at all (1: degraded, 0: up)


def ensure_sandbox(wait: float = 300) -> None:
    """Start the sandbox only when there is none. A degraded one (a test stopped a daemon for
    a while, others use it) is waited for and never torn down: `cluster.py up` on a degraded
    sandbox removes it first, under everyone else's feet."""
    deadline = time.monotonic() + wait
    while True:
        rc = subprocess.run(
            [*CLUSTER, "status"], capture_output=True, text=True, check=False
        ).returncode
        if rc == 0:
            return
        if rc == DOWN:
            print("bench: starting the sandbox (sandbox/cluster.py up)", flush=True)
            SANDBOX.up()
            return
        if time.monotonic() > deadline:
            raise SystemExit(
                f"bench: the sandbox stayed degraded for {wait:.0f} s (`sandbox/cluster.py "
                "status`); not touching a sandbox others use: fix or restart it by hand"
            )
        print("bench: the sandbox is degraded (a test stopped a daemon?); waiting", flush=True)
        time.sleep(10)


def compile_driver() -> None:
    """Byte-compile the driver and its rules, as pip does when it installs nodebook: a checkout
    run with PYTHONDONTWRITEBYTECODE would otherwise compile them again in every session."""
    subprocess.run(
        [str(VENV_PY), "-m", "compileall", "-q", "driver", "plugins"],
        cwd=REPO,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def ensure_setup(users: Sequence[str] = ("alice", "bob")) -> None:
    """Set up the users (idempotent: changed=0 when done), as a fresh sandbox has none."""
    for user in users:
        for attempt in range(3):  # a chaos loop's slurmctld restart fails setup's sbatch check
            done = run_setup(SANDBOX, user, password=user_password(user))
            changed = done.recap.get("sandbox", {}).get("changed")
            print(f"bench: setup for {user}: rc={done.rc} changed={changed}", flush=True)
            if not done.rc:
                break
            if attempt == 2:
                raise SystemExit(done.output[-1500:])
            time.sleep(15)
