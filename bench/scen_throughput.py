"""Tunnel throughput: a 256 MiB file from Jupyter's /files/ API of a running session, through
the driver's tunnel (jump, hops, via-login) and, in the same run and against the same server,
through one hand-written `ssh -L` (socket endpoint: `ssh -J login -L port:socket node`, the jump
over a ControlMaster; TCP endpoint: `ssh -L port:node:port login`). Downloads alternate."""

from __future__ import annotations

import json
import shlex
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.baseline import http_ok, tunnel_argv
from bench.guard import Guard, log
from bench.scen_session import SESSION_ARGS
from driver.tunnel import free_port
from tests.harness import leftovers
from tests.harness.alive import token_of
from tests.harness.driver import DriverProcess

FILE = "nodebook-bench-{size}M.bin"


def download(port: int, token: str, name: str) -> float:
    """MiB/s of one GET of /files/<name> (body read in 1 MiB chunks and discarded)."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/files/{name}", headers={"Authorization": f"token {token}"}
    )
    got = 0
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=120) as resp:
        while chunk := resp.read(1 << 20):
            got += len(chunk)
    elapsed = time.perf_counter() - t0
    return got / (1 << 20) / elapsed


def one_mode(guard: Guard, mode: str, reps: int, size: int, state: Path) -> dict[str, Any]:
    name = FILE.format(size=size)
    drv = guard.driver(DriverProcess([*SESSION_ARGS, "--tunnel", mode], state_dir=state))
    base: subprocess.Popen[bytes] | None = None
    try:
        sub = drv.wait_event("submitted", 120)
        guard.job(str(sub["job_id"]), "alice")
        ready = drv.wait_event("ready", 300)
        job_id, token = str(ready["job_id"]), token_of(ready)
        port = int(ready["data"]["local_port"])
        obs = guard.observer("alice")
        conn_file = leftovers.job_paths(guard.sandbox, "alice", job_id)["connection"]
        out = obs.run(f"cat {shlex.quote(conn_file)}")
        conn = json.loads(out.stdout)
        bport = free_port()
        base = subprocess.Popen(
            tunnel_argv(obs, conn, bport),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        http_ok(bport, token, 30)
        driver_rates: list[float] = []
        base_rates: list[float] = []
        for i in range(reps):
            pair = [(driver_rates, port), (base_rates, bport)]
            for rates, p in pair if i % 2 == 0 else pair[::-1]:
                rates.append(download(p, token, name))
        log(f"{mode}: driver {driver_rates} MiB/s, single ssh -L {base_rates} MiB/s")
        endpoint = "socket" if conn.get("socket") else "tcp-node"
        return {"driver": driver_rates, "baseline": base_rates, "endpoint": endpoint}
    finally:
        if base is not None:
            base.terminate()
            base.wait(10)
        drv.interrupt()
        drv.reap()


def run(guard: Guard, reps: int, size: int, modes: str, state: Path) -> dict[str, Any]:
    name = FILE.format(size=size)
    obs = guard.observer("alice")
    path = f'"$HOME"/{name}'
    made = obs.run(f"[ -s {path} ] || head -c {size}M /dev/urandom > {path}", timeout=300)
    guard.undo.append(lambda: obs.run(f"rm -f {path}") and None)
    if made.returncode != 0:
        raise RuntimeError(f"cannot write the test file: {made.stderr.strip()}")
    result: dict[str, Any] = {"size_mib": size, "file": f"~/{name}", "modes": {}}
    for mode in modes.split(","):
        try:
            result["modes"][mode] = one_mode(guard, mode, reps, size, state)
        except Exception as exc:  # one mode failing must not hide the others
            log(f"{mode}: failed: {exc}")
            result["modes"][mode] = {"error": str(exc)[:600]}
    return result
