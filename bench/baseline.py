"""The hand-written sessions: the same steps a careful user types, with one ControlMaster.

Baseline A, nodebook's own job script by hand: master -> `sbatch ~/.nodebook/job.sbatch` (as
typed: no --export, so slurmd does not load the user's environment through `su -`; neither
does the driver) -> one remote loop: poll squeue (0.5 s) until RUNNING, then the connection
file (0.1 s) -> `ssh -J login -L port:socket node` (the jump reuses the master) -> poll
/api/status until 200.

Baseline B, `jupyter lab` with its defaults: a hand-written batch script as the manual recipe
has it (the same resources as nodebook's job, `module load`, the same venv activated, then
`jupyter lab --no-browser --ip=$(hostname) --port=P`; no nodebook config, so JupyterLab's
defaults: token auth, every server extension of the venv) -> the same loop, then the URL with
its token from the job's log (0.1 s) -> `ssh -L port:node:P login` -> poll until 200.

Ctrl-C equivalent of both: a bare `scancel` sent over the master (started, not waited for, so
that the "gone" poll from the laptop runs meanwhile, as it does while the driver cleans up).
Each remote loop prints when it saw RUNNING, so the time to notebook splits into the same
steps as the driver's events.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

from bench.common import BASELINE_JOB_NAME, close_master, open_master, popen
from driver.ssh import Master, target_argv
from driver.tunnel import free_port
from tests.harness.alive import http_status
from tests.harness.sandbox import STATE

# The sandbox's site-wide known_hosts (the cluster hosts' /etc/ssh/ssh_known_hosts).
SITE_KNOWN_HOSTS = STATE / "etc" / "ssh" / "ssh_known_hosts"

MANUAL_JOB_NAME = "nb-bench-manual"
SQUEUE_POLL_S = 0.5  # a person's `watch squeue`-like loop, in the baselines
FILE_POLL_S = 0.1  # the connection file / the log's URL
HTTP_POLL_S = 0.05  # /api/status until 200

WAIT_RUNNING = (
    "id={id}; while :; do s=$(squeue -h -j $id -o %T 2>/dev/null); "
    '[ "$s" = RUNNING ] && break; [ -z "$s" ] && {{ echo "gone" >&2; exit 1; }}; '
    f"sleep {SQUEUE_POLL_S}; done; "
    'echo "running $(date +%s.%N)"; '
)
POLL = WAIT_RUNNING + (
    "c=$HOME/.nodebook/jobs/$id/connection.json; "
    f'while [ ! -e "$c" ]; do sleep {FILE_POLL_S}; done; printf "conn "; cat "$c"; echo'
)
# the URL Jupyter logs with the node's name (not the 127.0.0.1 one)
POLL_URL = WAIT_RUNNING + (
    "log=$HOME/{name}-$id.log; "
    "while :; do u=$(grep -aoE 'http://[^/ ]+:[0-9]+/lab[?]token=[0-9a-f]+' \"$log\" "
    "2>/dev/null | grep -v 127.0.0.1 | head -1); "
    f'[ -n "$u" ] && break; sleep {FILE_POLL_S}; done; echo "url $u"'
)


def manual_script(setup: dict[str, Any], home: str) -> str:
    """Baseline B's hand-written batch script: the resources of nodebook's job (setup.json's
    sbatch options), the same modules and venv, then `jupyter lab` with its defaults."""
    opts = [o for o in setup["sbatch_options"] if not o.startswith(("--job-name", "--output"))]
    lines = ["#!/bin/bash -l", f"#SBATCH --job-name={MANUAL_JOB_NAME}"]
    lines += [f"#SBATCH {o}" for o in opts]
    lines += [f"#SBATCH --output={home}/{MANUAL_JOB_NAME}-%j.log"]
    lines += [f"module load {m}" for m in setup.get("modules", [])]
    lines += [
        f"source {setup['bin_dir']}/activate",
        "jupyter lab --no-browser --ip=$(hostname) --port=$((20000 + SLURM_JOB_ID % 20000))",
    ]
    return "\n".join(lines) + "\n"


def http_ok(port: int, token: str, timeout: float = 60) -> None:
    """Poll the laptop's 127.0.0.1:port/api/status until it answers 200, every HTTP_POLL_S."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if http_status(port, token) == "200":
            return
        time.sleep(HTTP_POLL_S)
    raise RuntimeError(f"baseline: port {port} did not answer 200 within {timeout} s")


def tunnel_argv(master: Master, conn: dict[str, Any], port: int) -> list[str]:
    """A single `ssh -L` to the Jupyter endpoint, jumping through login over the master."""
    ssh = ["ssh", *target_argv(master.cluster)]  # the inventory's -F config and user
    if conn.get("socket"):
        target = str(conn["socket"])
        return [
            *ssh,
            "-o",
            f"ProxyCommand={master.proxy_command()}",
            # By hand, the user has accepted the nodes' keys once: the cluster's own list.
            "-o",
            f"GlobalKnownHostsFile={SITE_KNOWN_HOSTS}",
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


def _lines(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    """Read the poll loop's lines: {"running": epoch, "running_seen": arrival, "rest": text,
    "rest_seen": arrival}."""
    assert proc.stdout is not None
    out: dict[str, Any] = {}
    for line in proc.stdout:
        now = time.time()
        word, _, rest = line.strip().partition(" ")
        if word == "running":
            out["running"] = float(rest)
            out["running_seen"] = now
        elif word in ("conn", "url"):
            out["rest"] = rest
            out["rest_seen"] = now
            break
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
    return out


@dataclass
class BaselineSession:
    user: str = "alice"
    kind: str = "a"  # "a": nodebook's job script by hand; "b": jupyter lab with its defaults
    script: str = ""  # baseline B's batch script (on the cluster)
    master: Master | None = None
    job_id: str | None = None
    tunnel: subprocess.Popen[bytes] | None = None
    scancel: subprocess.Popen[str] | None = None
    port: int = 0
    conn: dict[str, Any] = field(default_factory=dict)
    steps: dict[str, float] = field(default_factory=dict)  # epoch seconds of each step's end

    def start(self) -> float:
        """Run the steps; returns the time of the first HTTP 200 (epoch seconds)."""
        self.master = open_master(self.user)
        self.steps["master"] = time.time()
        if self.kind == "a":
            submit = (
                f'sbatch --parsable --job-name={BASELINE_JOB_NAME} "$HOME/.nodebook/job.sbatch"'
            )
        else:
            submit = f"sbatch --parsable {shlex.quote(self.script)}"
        out = self.master.run(submit)
        if out.returncode != 0:
            raise RuntimeError(f"baseline sbatch failed: {out.stderr.strip()}")
        self.job_id = out.stdout.strip().split(";")[0]
        self.steps["submitted"] = time.time()
        loop = POLL if self.kind == "a" else POLL_URL
        cmd = loop.format(id=shlex.quote(self.job_id), name=MANUAL_JOB_NAME)
        seen = _lines(popen(self.master, cmd), 300)
        if "rest" not in seen:
            raise RuntimeError(f"baseline job {self.job_id} ended before Jupyter answered")
        self.steps["running"] = seen["running_seen"]
        self.steps["endpoint"] = seen["rest_seen"]
        if self.kind == "a":
            self.conn = json.loads(seen["rest"])
            token = str(self.conn["token"])
        else:
            url = str(seen["rest"])
            hostport = url.split("//", 1)[1].split("/", 1)[0]
            node, port = hostport.rsplit(":", 1)
            self.conn = {"node": node, "port": int(port)}
            token = url.split("token=", 1)[1]
        self.port = free_port()
        self.tunnel = subprocess.Popen(
            tunnel_argv(self.master, self.conn, self.port),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        http_ok(self.port, token)
        self.steps["ready"] = time.time()
        return self.steps["ready"]

    def cancel(self) -> None:
        """The hand-written Ctrl-C: `scancel` sent over the master (not waited for here)."""
        if self.master and self.job_id:
            self.scancel = popen(self.master, f"scancel {shlex.quote(self.job_id)}")

    def close(self) -> None:
        """Leave nothing: tunnel, job (if still there), baseline B's log, master."""
        if self.tunnel is not None and self.tunnel.poll() is None:
            self.tunnel.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.tunnel.wait(10)
            if self.tunnel.poll() is None:
                self.tunnel.kill()
        self.tunnel = None
        if self.scancel is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.scancel.communicate(timeout=30)
            self.scancel = None
        if self.master is not None:
            if self.job_id:
                self.master.run(f"scancel {shlex.quote(self.job_id)}")
                if self.kind == "b":
                    log = f"$HOME/{MANUAL_JOB_NAME}-{shlex.quote(self.job_id)}.log"
                    self.master.run(f"rm -f {log}")
            close_master(self.master)
        self.master = None
