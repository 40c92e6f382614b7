"""A session held open for the scheduler-query count: bench/run.py (host side) fills the nodes,
reads sdiag around windows, and steps this probe through its phases over stdin/stdout:

    probe -> {"phase": "pending", "job_id": ...}   (the driver reported PENDING)
    probe -> {"phase": "ready", "job_id": ...}     (after the host freed the nodes)
    host  -> "stop"                                 (the probe sends SIGINT to the driver)
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from bench.guard import Guard
from bench.scen_session import SESSION_ARGS
from tests.harness.driver import DriverProcess


def say(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


def run(guard: Guard, state: Path) -> dict[str, Any]:
    drv = guard.driver(DriverProcess(SESSION_ARGS, state_dir=state))
    t_sub, sub = drv.wait_timed("submitted", 120)
    job_id = str(sub["job_id"])
    guard.job(job_id, "alice")
    # the first state shown after submit: PENDING (with its reason) or RUNNING
    deadline = time.monotonic() + 180
    first: tuple[float, dict[str, Any]] | None = None
    while first is None and time.monotonic() < deadline:
        for t, e in zip(drv.arrivals, drv.events, strict=False):
            if e.get("event") in ("pending", "running"):
                first = (t, e)
                break
        else:
            if drv.poll() is not None:
                break
            drv.drain(0.2)
    if first is None:
        raise RuntimeError(f"no pending or running event: {drv.events}")
    t_first, e_first = first
    say(
        {
            "phase": "pending",
            "job_id": job_id,
            "first_event": e_first.get("event"),
            "reason": e_first.get("reason"),
            "submitted_to_first_state_s": t_first - t_sub,
        }
    )
    ready = drv.wait_event("ready", 900)
    say({"phase": "ready", "job_id": job_id, "node": ready.get("node")})
    sys.stdin.readline()
    drv.interrupt()
    rc = drv.reap()
    return {"job_id": job_id, "rc": rc, "events": [e.get("event") for e in drv.events]}
