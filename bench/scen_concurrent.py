"""N sessions at once (half alice, half bob, `--allow-second`): all reach their notebook, no
local port, job, or (node, endpoint) collision, then all are interrupted and none is left."""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path
from typing import Any

from bench.guard import Guard, log
from bench.scen_session import SESSION_ARGS, check_200
from bench.scen_setup import setup_once
from tests.harness import leftovers
from tests.harness.alive import http_status, token_of
from tests.harness.driver import DriverProcess, RssSampler
from tests.harness.setup import user_password


def first_state_delay(drv: DriverProcess) -> float | None:
    """Seconds from the `submitted` line to the first `pending` or `running` line."""
    sub = first = None
    for event, t in zip(drv.events, drv.arrivals, strict=False):
        kind = event.get("event")
        if kind == "submitted" and sub is None:
            sub = t
        elif kind in ("pending", "running") and first is None:
            first = t
    return None if sub is None or first is None else first - sub


def run(guard: Guard, n: int, state: Path) -> dict[str, Any]:
    users = ["alice" if i % 2 == 0 else "bob" for i in range(n)]
    for user in sorted(set(users)):
        # other people's setup tests remove a user's setup now and then: restore it first
        if guard.observer(user).run('test -f "$HOME/.nodebook/setup.json"').returncode != 0:
            log(f"{user} is not set up (removed by a test?): running setup first")
            done = setup_once(user, user_password(user))
            if done["rc"] != 0:
                raise RuntimeError(f"setup for {user} failed: {done['tail'][-300:]}")
    sessions: list[dict[str, Any]] = []
    failures: list[str] = []
    with RssSampler(interval=0.2) as sampler:
        t0 = time.time()
        drivers = [
            guard.driver(
                DriverProcess([*SESSION_ARGS, "--allow-second", "--user", u], state_dir=state / u)
            )
            for u in users
        ]
        sampler.roots = [d.pid for d in drivers]
        for user, drv in zip(users, drivers, strict=True):
            try:
                sub = drv.wait_event("submitted", 300)
                guard.job(str(sub["job_id"]), user)
                t_ready, ready = drv.wait_timed("ready", 600)
                sessions.append(
                    {
                        "first_state_s": first_state_delay(drv),
                        "user": user,
                        "job_id": str(ready["job_id"]),
                        "node": ready["node"],
                        "port": int(ready["data"]["local_port"]),
                        "token": token_of(ready),
                        "ttn": t_ready - drv.started,
                    }
                )
            except RuntimeError as exc:
                failures.append(f"{user}: {exc}"[:400])
        all_ready = time.time() - t0
        log(f"{len(sessions)}/{n} sessions ready after {all_ready:.1f} s")
        for s in sessions:
            paths = leftovers.job_paths(guard.sandbox, s["user"], s["job_id"])
            conn = guard.observer(s["user"]).run(f"cat {shlex.quote(paths['connection'])}")
            info = json.loads(conn.stdout) if conn.returncode == 0 else {}
            # where Jupyter listens on the node: its socket, or (a second session of a user, on
            # loopback TCP) host:port
            s["endpoint"] = info.get("socket") or (
                f"{info['host']}:{info['port']}" if info.get("port") else None
            )
            try:
                check_200(s["port"], s["token"])
                s["http"] = 200
            except (OSError, RuntimeError) as exc:
                s["http"] = str(exc)
        # another user's token must not open this server
        cross = None
        alices = [s for s in sessions if s["user"] == "alice"]
        bobs = [s for s in sessions if s["user"] == "bob"]
        if alices and bobs:
            answer = http_status(alices[0]["port"], bobs[0]["token"])
            cross = int(answer) if answer.isdigit() else answer
        t_int = time.time()
        for drv in drivers:
            drv.interrupt()
        rcs = [drv.reap(180) for drv in drivers]
        all_exited = time.time() - t_int
    for s in sessions:
        s.pop("token")
    return {
        "n": n,
        "ready": len(sessions),
        "failures": failures,
        "all_ready_s": all_ready,
        "all_exited_s": all_exited,
        "sessions": sessions,
        "cross_token_status": cross,
        "rcs": rcs,
        "driver_pids": [d.pid for d in drivers],
        "peak_tree_rss_kib": sampler.peak_kib,
        "peak_tree_procs": sampler.peak_procs,
    }
