"""Where a session's time goes: one traced driver session (bench/traced_driver.py) with every
`ssh` invocation logged by a wrapper first on PATH (tests/harness/sshlog.py). Runs in the
laptop namespace:

    python -m bench.profile   -> timeline on stderr, summary JSON on stdout
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.guard import guarded
from bench.scen_session import SESSION_ARGS, gone_seen
from tests.harness import sshlog
from tests.harness.driver import DriverProcess

HOLD_S = 1.0  # the traced session is held this long after ready before its Ctrl-C


def ssh_kind(inv: sshlog.Invocation) -> str:
    if inv.control:
        what = next((o.split()[1] for o in inv.options if o.startswith("-O ")), "")
        return {
            "check": "ssh -O check (master alive?)",
            "exit": "ssh -O exit",
        }.get(what, "ssh -O forward/cancel")
    if inv.master:
        return "ssh master (new connection)"
    if inv.proxy:
        return "ssh -W (jump through master)"
    if inv.own_connection:
        return "ssh to the node (new connection, jump tunnel)"
    helper = inv.helper_command()
    if helper is None:
        return "ssh command over master (not the helper)"
    return f"ssh over master: nodebook-remote {helper}"


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="nbb-prof-") as tmp, guarded() as guard:
        d = Path(tmp)
        log = sshlog.SshLog(d / "ssh")
        trace = d / "trace.jsonl"
        t0 = time.time()  # the trace's times count from here (the driver's spawn)
        env = {"NBB_TRACE": str(trace), "NBB_T0": repr(t0), **log.env(os.environ["PATH"])}
        traced = "bench.traced_driver"
        state = d / "state"
        drv = guard.driver(DriverProcess(SESSION_ARGS, state_dir=state, module=traced, env=env))
        sub = drv.wait_event("submitted", 120)
        guard.job(str(sub["job_id"]), "alice")
        t_ready, ready = drv.wait_timed("ready", 300)
        t_ready -= t0
        time.sleep(HOLD_S)
        t_int = time.time() - t0
        gone = gone_seen(guard, str(ready["job_id"]), drv.ctrl_c)["gone"]
        drv.reap()
        steps = [json.loads(ln) for ln in trace.read_text().splitlines()]
        calls = log.read()
    sshs = [{"t": c.t - t0, "what": ssh_kind(c)} for c in calls]
    timeline = sorted(steps + sshs, key=lambda x: x["t"])
    for item in timeline:
        extra = f"  [{item['task']}]" if item.get("task") else ""
        print(f"{item['t']:7.3f}  {item['what']}{extra}", file=sys.stderr)
    start = [s for s in sshs if s["t"] <= t_ready]
    stop = [s for s in sshs if s["t"] >= t_int]
    summary: dict[str, Any] = {
        "ready_s": t_ready,
        "ctrl_c_gone_s": gone,
        "ssh_invocations_start": len(start),
        "ssh_invocations_cleanup": len(stop),
        "ssh_by_kind_start": _count(start),
        "ssh_by_kind_cleanup": _count(stop),
        "ssh": sshlog.counts(calls),
        "helper_commands": sshlog.helper_commands(calls),
        "ansible_tasks": _tasks(steps),
        "timeline": timeline,
    }
    print(json.dumps(summary))
    return 0


def _count(items: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for i in items:
        out[i["what"]] = out.get(i["what"], 0) + 1
    return out


def _tasks(steps: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in steps:
        if s["what"] == "ansible playbook_on_task_start":
            out[s["playbook"]] = out.get(s["playbook"], 0) + 1
    return out


if __name__ == "__main__":
    sys.exit(main())
