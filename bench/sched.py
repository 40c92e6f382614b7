"""Scheduler load of one session, in RPCs, while PENDING and while RUNNING (host side); and how
soon the first state after submit is shown behind a full cluster.

bob's job holds both nodes exclusively, so alice's session stays PENDING. The session's user's
load is slurmctld's own per-user RPC count (sdiag, as root on login, never reset: the difference
of two readings around a window). Nothing else of alice runs meanwhile (the probe's drivers use
no observer; the host's own state checks run as root, before and after each window, never in
it), so alice's difference is the session's; a window in which alice had other jobs is marked.
sdiag has no per-user split by type: the RPC types are the difference of the global per-type
counts over the window, and they are the session's when every RPC of the window was alice's,
root's sdiag itself or a daemon's own message (slurmd's registration, a job's completion:
``DAEMON_TYPES``), so ``types_are_alices``. Then the filler is cancelled, the session starts,
and a second window is read while it runs.

Beside it, the Slurm client commands the session ran (strace on the session's sshd on login,
bench/rpctrace.py): one command can be several RPCs (squeue: federation, partitions, job).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from typing import Any

from bench import host
from bench.rpctrace import ExecTrace, session_sshd
from tests.harness.sandbox import REPO

OWN_TYPES = ("REQUEST_STATS_INFO",)  # root's sdiag readings themselves
# messages slurmd and slurmstepd send on their own (as root or SlurmUser), never a user's client
DAEMON_TYPES = (
    "MESSAGE_NODE_REGISTRATION_STATUS",
    "MESSAGE_EPILOG_COMPLETE",
    "REQUEST_COMPLETE_BATCH_SCRIPT",
    "REQUEST_COMPLETE_PROLOG",
    "REQUEST_STEP_COMPLETE",
)


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


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """after - before per key (keys with a change only); a negative one means slurmctld
    restarted in between (its counters start again at 0)."""
    keys = set(before) | set(after)
    out = {k: after.get(k, 0) - before.get(k, 0) for k in keys}
    return {k: v for k, v in sorted(out.items()) if v}


def summarize(
    before: dict[str, dict[str, int]],
    after: dict[str, dict[str, int]],
    seconds: float,
    states: tuple[str, str],
    want: str,
    others: list[str],
    user: str = "alice",
) -> dict[str, Any]:
    """One window's figures from two sdiag readings (pure: tested in tests/bench)."""
    users = delta(before["by_user"], after["by_user"])
    types = delta(before["by_type"], after["by_type"])
    restarted = any(v < 0 for v in (*users.values(), *types.values()))
    mine = users.get(user, 0)
    own = sum(types.get(t, 0) for t in (*OWN_TYPES, *DAEMON_TYPES))
    foreign = sum(v for u, v in users.items() if u != user) - own
    problems = []
    if set(states) != {want}:
        problems.append(f"state {states[0]} at the start, {states[1]} at the end")
    if restarted:
        problems.append("slurmctld restarted in the window (its counters went back)")
    return {
        "seconds": seconds,
        "rpcs": mine,
        "per_minute": mine * 60 / seconds if seconds > 0 else None,
        "by_user": users,
        "by_type": types,
        "types_are_alices": foreign == 0 and not restarted,
        "session_types": {k: v for k, v in types.items() if k not in (*OWN_TYPES, *DAEMON_TYPES)}
        if foreign == 0
        else {},
        "states": list(states),
        "valid": not problems,
        "problems": problems,
        "other_alice_jobs": others,
        "contaminated": bool(others),
    }


def window(job_id: str, sshd: int | None, seconds: float, want: str) -> dict[str, Any]:
    others_before = _others(job_id)
    first = host.job_state(job_id)
    trace = ExecTrace(sshd) if sshd else None
    with trace or contextlib.nullcontext():
        before = host.sdiag()
        t0 = time.monotonic()
        time.sleep(seconds)
        after = host.sdiag()
        elapsed = time.monotonic() - t0
    last = host.job_state(job_id)
    others = sorted(set(others_before) | set(_others(job_id)))
    res = summarize(before, after, elapsed, (first, last), want, others)
    if trace:
        res["session_slurm_commands"] = trace.slurm_commands()
        res["remote_execs"] = len(trace.commands)
    return res


def run(pending_s: float, running_s: float) -> dict[str, Any]:
    result: dict[str, Any] = {"pending_window_s": pending_s, "running_window_s": running_s}
    fill = host.fill_nodes("bob")
    proc = subprocess.Popen(
        host.probe_argv("hold"), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        pending = _line(proc, 300)
        job_id = str(pending["job_id"])
        result["first_state"] = pending
        # the session's remote commands descend from its master's sshd on login
        try:
            sshd: int | None = session_sshd(f" wait {job_id}", timeout=20)
        except RuntimeError:
            sshd = None
        result["pending"] = window(job_id, sshd, pending_s, "PENDING")
        host.cancel_fill()
        _line(proc, 300)  # ready
        result["running"] = window(job_id, sshd, running_s, "RUNNING")
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
