"""The hand-written session: the same steps a careful user types, with one ControlMaster.

master -> sbatch ~/.nodebook/job.sbatch (as typed: no --export, so slurmd does not load the
user's environment through `su -`; neither does the driver) -> poll squeue (0.5 s) until
RUNNING and the connection file (0.1 s) in one remote loop -> `ssh -J login -L port:socket
node` (the jump reuses the master) -> poll /api/status until 200. Ctrl-C equivalent: `scancel`
over the master.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from bench.common import BASELINE_JOB_NAME, close_master, open_master
from driver.ssh import Master, target_argv
from driver.tunnel import free_port

POLL = (
    "id={id}; while :; do s=$(squeue -h -j $id -o %T 2>/dev/null); "
    '[ "$s" = RUNNING ] && break; [ -z "$s" ] && {{ echo "gone" >&2; exit 1; }}; sleep 0.5; done; '
    "c=$HOME/.nodebook/jobs/$id/connection.json; "
    'while [ ! -e "$c" ]; do sleep 0.1; done; cat "$c"'
)


def http_ok(url: str, token: str, timeout: float = 60) -> None:
    """Poll until the URL answers 200 (token in a header), every 50 ms."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        req = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
        with (
            contextlib.suppress(urllib.error.URLError, OSError),
            urllib.request.urlopen(req, timeout=5) as resp,
        ):
            if resp.status == 200:
                return
        time.sleep(0.05)
    raise RuntimeError(f"baseline: {url} did not answer 200 within {timeout} s")


def tunnel_argv(master: Master, conn: dict[str, Any], port: int) -> list[str]:
    """A single `ssh -L` to the Jupyter endpoint, jumping through login over the master."""
    ssh = ["ssh", *target_argv(master.cluster)]  # the inventory's -F config and user
    if conn.get("socket"):
        target = str(conn["socket"])
        return [
            *ssh,
            "-o",
            f"ProxyCommand={master.proxy_command()}",
            "-o",
            "ExitOnForwardFailure=yes",
            "-N",
            "-L",
            f"127.0.0.1:{port}:{target}",
            str(conn["node"]),
        ]
    # TCP on the node's cluster address: one plain `ssh -L` to login (what via-login forwards).
    return [
        *ssh,
        "-o",
        "ControlPath=none",
        "-o",
        "ExitOnForwardFailure=yes",
        "-N",
        "-L",
        f"127.0.0.1:{port}:{conn['node']}:{conn['port']}",
        "login",
    ]


@dataclass
class BaselineSession:
    user: str = "alice"
    master: Master | None = None
    job_id: str | None = None
    tunnel: subprocess.Popen[bytes] | None = None
    port: int = 0
    conn: dict[str, Any] = field(default_factory=dict)

    def start(self) -> float:
        """Run the steps; returns the time of the first HTTP 200 (epoch seconds)."""
        self.master = open_master(self.user)
        out = self.master.run(
            f'sbatch --parsable --job-name={BASELINE_JOB_NAME} "$HOME/.nodebook/job.sbatch"'
        )
        if out.returncode != 0:
            raise RuntimeError(f"baseline sbatch failed: {out.stderr.strip()}")
        self.job_id = out.stdout.strip().split(";")[0]
        poll = self.master.run(POLL.format(id=shlex.quote(self.job_id)), timeout=300)
        if poll.returncode != 0:
            raise RuntimeError(f"baseline job {self.job_id} ended before Jupyter answered")
        self.conn = json.loads(poll.stdout)
        self.port = free_port()
        self.tunnel = subprocess.Popen(
            tunnel_argv(self.master, self.conn, self.port),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        http_ok(f"http://127.0.0.1:{self.port}/api/status", str(self.conn["token"]))
        return time.time()

    def cancel(self) -> None:
        """The hand-written Ctrl-C: scancel over the master."""
        if self.master and self.job_id:
            self.master.run(f"scancel {shlex.quote(self.job_id)}")

    def close(self) -> None:
        """Leave nothing: tunnel, job (if still there), master."""
        if self.tunnel is not None and self.tunnel.poll() is None:
            self.tunnel.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.tunnel.wait(10)
            if self.tunnel.poll() is None:
                self.tunnel.kill()
        self.tunnel = None
        if self.master is not None:
            if self.job_id:
                self.master.run(f"scancel {shlex.quote(self.job_id)}")
            close_master(self.master)
        self.master = None
