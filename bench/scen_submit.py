"""The driver's early submit: what it gains over session.yml's own submit task.

session.yml's submit task is where the job's submission is defined (one helper call, its
arguments built by ``nodebook_submit_args``). The driver runs that one call itself over its ssh
master as soon as the master is up, while ansible-playbook is still starting, and hands the
helper's lines to the play through the gate (driver/gate.py). This stage measures that
exception against the rule, in pairs of sessions run back to back:

- early: ``python -m driver session`` as it is;
- play: the same driver with the early submit switched off (bench/play_submit_driver.py:
  ``Session._submit_args`` returns None, so the play's submit task runs, as it does for an
  inventory value the driver cannot evaluate).

Each pair's order (half the pairs each way, shuffled) and an untimed pause before each of its two
sessions (the same for both: the job's start waits for Slurm's scheduling pass) are drawn from
the seed, which the results record with every pair's order and pause. Per session: spawn ->
arrival of the ``submitted`` line, and -> ``ready`` (after which the probe checks one more HTTP
200), then Ctrl-C (SIGINT to the driver's process group) and the job's leaving squeue as polled
from the laptop (bench.common.gone_after), the exit code, and from the ssh wrapper's log
(tests/harness/sshlog.py) every run of the helper's ``submit`` and who ran it: the driver (its
clients of the master say ControlMaster=no) or Ansible. A session that fails is redone, up to
ATTEMPTS in all, each failed attempt recorded; report.py counts them and the pairs left out.
"""

from __future__ import annotations

import math
import os
import random
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import sandbox_cluster
from bench.guard import Guard, log
from bench.scen_session import (
    ATTEMPTS,
    PHASE_SPAN_S,
    SESSION_ARGS,
    _event_times,
    attempt_trace,
    check_200,
    gone_seen,
    warm_inventory,
)
from driver.errors import ExitCode
from tests.harness import sshlog
from tests.harness.alive import token_of
from tests.harness.driver import DriverProcess

KINDS = ("early", "play")
MODULES = {"early": "driver", "play": "bench.play_submit_driver"}


def submitter(call: sshlog.Invocation) -> str:
    """Who ran a helper call: the driver (a client of its master, ControlMaster=no) or
    Ansible (its ssh connection plugin, a client with ControlMaster=auto)."""
    return "driver" if (call.option("ControlMaster") or "").lower() == "no" else "ansible"


def plan(pairs: int, seed: int) -> list[dict[str, Any]]:
    """Each pair's order (half the pairs each way, the first one more for an odd count,
    shuffled) and pause (uniform over PHASE_SPAN_S), from ``seed``."""
    rng = random.Random(seed)
    firsts = [KINDS[i % 2] for i in range(pairs)]
    rng.shuffle(firsts)
    out = []
    for first in firsts:
        order = [first, *(k for k in KINDS if k != first)]
        out.append({"order": order, "pause": PHASE_SPAN_S * rng.random()})
    return out


def session(guard: Guard, state: Path, kind: str) -> dict[str, Any]:
    """One session to ready, ended by Ctrl-C; its times, exit code and submit calls."""
    with tempfile.TemporaryDirectory(prefix="nbb-ssh-") as tmp:
        ssh = sshlog.SshLog(Path(tmp))
        env = ssh.env(os.environ["PATH"])
        drv = guard.driver(
            DriverProcess(SESSION_ARGS, state_dir=state, module=MODULES[kind], env=env)
        )
        try:
            sub = drv.wait_event("submitted", 120)
            guard.job(str(sub["job_id"]), "alice")
            t_ready, ready = drv.wait_timed("ready", 300)
            check_200(int(ready["data"]["local_port"]), token_of(ready))
            job_id = str(ready["job_id"])
            seen = gone_seen(guard, job_id, drv.ctrl_c)
            rc = drv.reap()
        except BaseException:
            drv.interrupt()  # it cancels its own job
            drv.reap()
            raise
        calls = [c for c in ssh.read() if c.helper_command() == "submit"]
        # a wrong exit code keeps what the driver said and did (report.py counts it)
        trace = attempt_trace(drv, ssh, False) if rc != ExitCode.INTERRUPTED else None
    times = _event_times(drv)
    return {
        **({"trace": trace} if trace else {}),
        "job_id": job_id,
        "submitted": times.get("submitted", math.nan) - drv.started,
        "ready": t_ready - drv.started,
        "submit_sent": min((c.t for c in calls), default=math.nan) - drv.started,
        "submit_calls": [submitter(c) for c in calls],
        "gone_seen": seen["gone"],
        "rc": rc,
    }


def run(guard: Guard, pairs: int, state: Path, seed: int) -> dict[str, Any]:
    out: dict[str, Any] = {k: [] for k in KINDS}
    failed: list[dict[str, Any]] = []
    warm_inventory(state)  # as any earlier session of the user has done
    sandbox_cluster("alice")  # the observer's master: read once, untimed
    pairs_plan = plan(pairs, seed)
    for i, p in enumerate(pairs_plan):
        for position, kind in enumerate(p["order"]):
            for attempt in range(ATTEMPTS):
                try:
                    time.sleep(p["pause"])
                    res = session(guard, state, kind)
                except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as exc:
                    failed.append({"round": i, "kind": kind, "attempt": attempt,
                                   "error": str(exc)[:300]})  # fmt: skip
                    log(f"pair {i + 1}/{pairs} {kind} attempt {attempt + 1} failed: {exc}"[:300])
                    continue
                res.update(round=i, position=position, attempt=attempt, pause=p["pause"])
                out[kind].append(res)
                log(f"pair {i + 1}/{pairs} {kind}: submitted {res['submitted']:.2f} s, "
                    f"ready {res['ready']:.2f} s, submit by {res['submit_calls']}")  # fmt: skip
                break
    return {**out, "pairs": pairs, "seed": seed, "plan": pairs_plan, "failed_attempts": failed}
