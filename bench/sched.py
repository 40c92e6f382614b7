"""Scheduler queries per minute while PENDING and while RUNNING (host side).

bob's job holds both nodes exclusively, so alice's session stays PENDING; slurmctld's per-user
RPC counts (sdiag, as root on login) are read at the start and end of a window. Then the filler
is cancelled, the session starts, and a second window is read while it runs. The figure is the
number of Slurm client commands the session itself runs (bench/rpctrace.py: strace on the
session's sshd), each one RPC to slurmctld; the sdiag per-user delta is kept beside it, marked
"contaminated" when alice had other jobs in the window (other sessions of the same user).
"""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

from bench import host
from bench.rpctrace import ExecTrace, session_sshd
from tests.harness.sandbox import REPO


def _line(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"hold probe ended early (rc={proc.wait()})")
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError("hold probe: no phase line in time")


def _others(job_id: str) -> list[str]:
    return [r[0] for r in host.squeue() if r[1] == "alice" and r[0] != job_id]


def window(job_id: str, sshd: int, seconds: float, want: str) -> dict[str, Any]:
    others_before = _others(job_id)
    before = host.rpc_counts()
    states = set()
    with ExecTrace(sshd) as trace:
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            time.sleep(min(10.0, seconds - (time.monotonic() - t0)))
            states.add(host.job_state(job_id))
        elapsed = time.monotonic() - t0
    after = host.rpc_counts()
    others = sorted(set(others_before) | set(_others(job_id)))
    delta = after.get("alice", 0) - before.get("alice", 0)
    cmds = trace.slurm_commands()
    return {
        "seconds": elapsed,
        "session_slurm_commands": cmds,
        "per_minute": sum(cmds.values()) * 60 / elapsed,
        "remote_execs": len(trace.commands),
        "sdiag_alice_rpcs": delta,
        "sdiag_alice_per_minute": delta * 60 / elapsed,
        "states_seen": sorted(states),
        "valid": states == {want},
        "other_alice_jobs": others,
        "contaminated": bool(others),
    }


def run(seconds: float) -> dict[str, Any]:
    result: dict[str, Any] = {}
    fill = host.fill_nodes("bob")
    proc = subprocess.Popen(
        host.probe_argv("hold"), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        pending = _line(proc, 300)
        job_id = str(pending["job_id"])
        # the session's wait task: `bash .../nodebook-remote --protocol N wait JOB --window 30`
        sshd = session_sshd(f" wait {job_id} --window")
        result["pending"] = window(job_id, sshd, seconds, "PENDING")
        host.cancel_fill()
        _line(proc, 300)  # ready
        result["running"] = window(job_id, sshd, seconds, "RUNNING")
        assert proc.stdin is not None
        proc.stdin.write("stop\n")
        proc.stdin.flush()
        result["session"] = _line(proc, 300)
        proc.wait(60)
    finally:
        host.stop_probe(proc)
        host.on("login", ["scancel", fill])
        host.cancel_fill()
    return result
