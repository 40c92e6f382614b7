"""Where a session's time goes: one traced driver session (bench/traced_driver.py) with every
`ssh` invocation logged by a wrapper first on PATH. Runs in the laptop namespace:

    python -m bench.profile [early-scancel]   -> timeline on stderr, summary JSON on stdout

`early-scancel` measures a proposed cleanup order (scancel over the master before cleanup.yml)
without changing the driver: see bench/traced_driver.py.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.guard import guarded
from bench.procs import DriverProc
from bench.scen_session import SESSION_ARGS, _gone_after

WRAPPER = """#!/bin/sh
t=$(date +%s.%N)
printf '%s %s\\n' "$t" "$(printf '%s' "$*" | tr '\\n' ' ' | cut -c1-600)" >> "$NBB_SSH_LOG"
exec /usr/bin/ssh "$@"
"""


def ssh_kind(args: str) -> str:
    if "-O check" in args:
        return "ssh -O check (master alive?)"
    if "-O forward" in args or "-O cancel" in args:
        return "ssh -O forward/cancel"
    if "-O exit" in args:
        return "ssh -O exit"
    if "ControlMaster=yes" in args:
        return "ssh master (new connection)"
    if "-L " in args and "ProxyCommand" in args:
        return "ssh -L tunnel to the node (its ProxyCommand is the next line)"
    if " -W " in args:
        return "ssh -W (jump through master)"
    if "ControlPersist" in args or "ansible" in args or ("ControlPath=" in args and " -C " in args):
        return "ssh from Ansible (over master)"
    if "-L " in args:
        return "ssh -L tunnel to the node"
    return "ssh command over master"


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="nbb-prof-") as tmp, guarded() as guard:
        d = Path(tmp)
        wrapper = d / "bin" / "ssh"
        wrapper.parent.mkdir()
        wrapper.write_text(WRAPPER)
        wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
        trace, sshlog = d / "trace.jsonl", d / "ssh.log"
        env = {
            "NBB_TRACE": str(trace),
            "NBB_SSH_LOG": str(sshlog),
            "PATH": f"{wrapper.parent}{os.pathsep}{os.environ['PATH']}",
        }
        drv = guard.driver(DriverProc(SESSION_ARGS, d / "state", "bench.traced_driver", env))
        t0 = drv.started
        _, sub = drv.wait_event("submitted", 120)
        guard.job(str(sub["job_id"]), "alice")
        t_ready, ready = drv.wait_event("ready", 300)
        t_ready -= t0
        time.sleep(1)
        t_int = time.time() - t0
        gone = _gone_after(guard, "alice", str(ready["job_id"]), drv.interrupt)
        drv.reap()
        steps = [json.loads(ln) for ln in trace.read_text().splitlines()]
        sshs = []
        for ln in sshlog.read_text().splitlines():
            when, _, args = ln.partition(" ")
            sshs.append({"t": float(when) - t0, "what": ssh_kind(args)})
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
