"""After a scenario: nothing of it may be left (jobs, Jupyter, runtime dirs, drivers, tunnels)."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable
from pathlib import Path

from bench import host


def orphan_ssh(since_s: float) -> list[str]:
    """ssh clients/masters started in the last `since_s` s whose driver control dir is gone."""
    out = subprocess.run(
        ["ps", "-ww", "-eo", "pid=,etimes=,args="], capture_output=True, text=True, check=False
    ).stdout
    found = []
    for line in out.splitlines():
        pid, etimes, args = line.split(None, 2)
        m = re.search(r"ControlPath=(/tmp/nb-[^/\s]+)/", args)
        if m and args.startswith("ssh") and int(etimes) <= since_s and not Path(m[1]).exists():
            found.append(f"laptop: ssh {pid} of a finished driver: {args[:120]}")
    return found


def check(
    jobs: Iterable[tuple[str, str]], driver_pids: Iterable[int] = (), since_s: float = 0
) -> list[str]:
    """Problems found for these (job id, user) pairs and driver pids; empty when clean."""
    jobs = list(jobs)
    problems: list[str] = []
    queued = {r[0] for r in host.squeue()}
    problems += [f"job {j} still in squeue" for j, _ in jobs if j in queued]
    for node in ("cn01", "cn02", "login"):
        ps = host.on(node, ["ps", "-ww", "-eo", "user=,args="])
        dirs = host.on(node, ["sh", "-c", "ls -d /tmp/nodebook-* 2>/dev/null"]).split()
        for job_id, user in jobs:
            mark = f"/tmp/nodebook-{user}-{job_id}"
            problems += [f"{node}: process {ln[:120]}" for ln in ps.splitlines() if mark in ln]
            problems += [f"{node}: {d} left" for d in dirs if d.startswith(mark)]
    for pid in driver_pids:
        try:
            os.kill(pid, 0)
            problems.append(f"driver pid {pid} still running")
        except ProcessLookupError:
            pass
    return problems + (orphan_ssh(since_s) if since_s else [])


def remove_runtime_dirs(jobs: Iterable[tuple[str, str]]) -> list[str]:
    """Remove what the jobs' own cleanup left on the nodes (after it was reported): the
    benchmark leaves nothing, even when the job script's trap was killed."""
    removed = []
    for node in ("cn01", "cn02"):
        for job_id, user in jobs:
            path = f"/tmp/nodebook-{user}-{job_id}"
            out = host.on(node, ["sh", "-c", f'[ -d "{path}" ] && rm -rf "{path}" && echo x'])
            if out.strip():
                removed.append(f"{node}:{path}")
    return removed
