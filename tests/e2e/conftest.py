"""Helpers for driver e2e tests: a driver process in the laptop namespace, read as JSON lines.

Every test gets `drive`, a factory whose finalizer kills what the test started and cancels
every job of the test users, so nothing is left running even when a test fails.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.fixtures.sandbox import REPO

PY = str(REPO / ".venv" / "bin" / "python")
# ssh masters that existed before the current test (left by an earlier SIGKILLed driver; they
# end by themselves after ControlPersist): not this test's leftovers.
BASELINE: list[str] = []
STOP_SERVERS = (
    'for p in "$HOME"/.nodebook/jobs/*.pid; do [ -r "$p" ] || continue; '
    'kill -TERM -- "-$(cat "$p")" 2>/dev/null; rm -f "$p"; done'
)


class DriverProc:
    """`python -m driver ARGS --json` running in the laptop namespace."""

    def __init__(self, sandbox, args: list[str], state_dir: Path) -> None:
        argv = ["env", f"NODEBOOK_STATE_DIR={state_dir}", "HOME=/root", PY, "-m", "driver", *args]
        self.proc = subprocess.Popen(
            sandbox.laptop_argv(argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        self.events: list[dict] = []
        self._q: queue.Queue[dict | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.pid: int | None = None

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "text", "message": line.rstrip()}
            self._q.put(event)
        self._q.put(None)

    def wait_event(self, kind: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                event = self._q.get(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty:
                break
            if event is None:
                break
            self.events.append(event)
            if event.get("event") == kind:
                if kind == "ready":
                    self.pid = event["data"]["driver_pid"]
                return event
        err = self.proc.stderr.read() if self.proc.poll() is not None and self.proc.stderr else ""
        raise AssertionError(f"no {kind!r} event; events: {self.events}; stderr: {err[-2000:]}")

    def signal(self, sig: int) -> None:
        import os

        os.kill(self.pid or self.proc.pid, sig)

    def wait(self, timeout: float = 60) -> int:
        rc = self.proc.wait(timeout=timeout)
        while True:  # drain the remaining events
            try:
                event = self._q.get(timeout=2)
            except queue.Empty:
                break
            if event is None:
                break
            self.events.append(event)
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            if self.pid:
                import contextlib
                import os

                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
            self.proc.kill()
            self.proc.wait(timeout=10)


def http_status(sandbox, port: int, token: str | None, path: str = "/api/status") -> int:
    """HTTP status of a request through the tunnel, made from the laptop namespace."""
    header = ["-H", f"Authorization: token {token}"] if token else []
    out = sandbox.laptop(
        [
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
            *header,
            f"http://127.0.0.1:{port}{path}",
        ],
        check=False,
    )
    return int(out.stdout or 0)


def remote_processes(sandbox, host: str, user: str) -> list[str]:
    """`pid args` of a user's processes on a sandbox host, untruncated."""
    out = sandbox.host(host, ["ps", "-ww", "-u", user, "-o", "pid=,args="], check=False).stdout
    return [line.strip() for line in out.splitlines() if line.strip()]


def laptop_ssh_processes(sandbox) -> list[str]:
    out = subprocess.run(["ps", "-ww", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return [ln for ln in out.splitlines() if "ControlPath=/tmp/nb-" in ln]


def assert_nothing_left(
    sandbox,
    user: str = "alice",
    job_id: str | None = None,
    port: int | None = None,
    timeout: float = 20,
    ignore_ssh: list[str] | None = None,
) -> None:
    """No job in squeue, no Jupyter on the nodes or login, no tunnel, no master, no socket."""
    deadline = time.monotonic() + timeout
    while True:
        jobs = sandbox.squeue(user)
        procs = {
            h: [p for p in sandbox.user_processes(h, user) if "jupyter" in p or "cat" in p]
            for h in ("login", "cn01", "cn02")
        }
        ssh = [p for p in laptop_ssh_processes(sandbox) if p not in (ignore_ssh or BASELINE)]
        listening = port is not None and http_status(sandbox, port, None) != 0
        leftovers = []
        if job_id:
            for h in ("cn01", "cn02"):
                out = sandbox.host(h, ["ls", "-d", f"/tmp/nodebook-{user}-{job_id}"], check=False)
                if out.returncode == 0:
                    leftovers.append(f"{h}:/tmp/nodebook-{user}-{job_id}")
        problems = {
            "jobs": jobs,
            "procs": {h: p for h, p in procs.items() if p},
            "ssh": ssh,
            "port_listening": listening,
            "files": leftovers,
        }
        if not any(problems.values()):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"left behind: {problems}")
        time.sleep(0.5)


@pytest.fixture
def drive(sandbox, nodebook_setup, tmp_path):
    """Factory: drive(args) starts the driver; the finalizer leaves nothing running."""
    nodebook_setup("alice")
    BASELINE[:] = laptop_ssh_processes(sandbox)
    started: list[DriverProc] = []

    def start(args: list[str]) -> DriverProc:
        extra = (
            ["--no-browser", "--check-interval", "1"] if args[0] in ("session", "attach") else []
        )
        d = DriverProc(sandbox, [*args, "--json", *extra], tmp_path / "state")
        started.append(d)
        return d

    yield start
    for d in started:
        d.kill()
    for user in ("alice", "bob"):
        sandbox.host("login", ["scancel", "-u", user], check=False)
        # standalone servers (no Slurm): their process groups, by pid file
        sandbox.host("login", ["bash", "-c", STOP_SERVERS], user=user, check=False)
    for line in laptop_ssh_processes(sandbox):
        pid = int(line.split()[0])
        subprocess.run(["kill", str(pid)], check=False)
