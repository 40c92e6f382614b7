"""Time to notebook and Ctrl-C to job gone: the driver and the hand-written baseline, interleaved.

Driver: t0 = spawn of `python -m driver session`; end = arrival of its `ready` line (the driver
emits it after its own first HTTP 200 through the tunnel; the probe checks one more 200).
Ctrl-C: a watcher on login polls squeue every 50 ms; once it sees the job, SIGINT goes to the
driver; the figure is the watcher's first "not in squeue" time minus the signal time.
Every ssh the driver runs goes through a logging wrapper first on its PATH (tests/harness/
sshlog.py): each round reports the connections it opened and its remote round trips (remote
commands over the master), before ready, while held and in the cleanup.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.baseline import BaselineSession
from bench.common import popen, sandbox_cluster, watch_gone_command
from bench.guard import Guard, log
from tests.harness import sshlog
from tests.harness.driver import DriverProcess, RssSampler
from tests.harness.sandbox import INVENTORY, REPO

SESSION_ARGS = ["session", "--cluster", "sandbox", "--no-browser", "--allow-second"]


def _gone_after(guard: Guard, user: str, job_id: str, act: Any) -> float:
    """Start the watcher, wait until it sees the job, call act(), return act->gone seconds."""
    watcher = popen(guard.observer(user), watch_gone_command(job_id))
    assert watcher.stdout is not None
    first = watcher.stdout.readline().strip()
    if first != "present":
        watcher.wait(10)
        raise RuntimeError(f"job {job_id} was not in squeue before the interrupt ({first!r})")
    t0 = time.time()
    act()
    line = watcher.stdout.readline().strip()
    watcher.wait(30)
    if not line.startswith("gone "):
        raise RuntimeError(f"watcher for job {job_id} ended without seeing it leave: {line!r}")
    return float(line.split()[1]) - t0


def token_of(ready: dict[str, Any]) -> str:
    return str(ready["data"]["url"]).split("token=", 1)[1]


def check_200(port: int, token: str) -> None:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/status", headers={"Authorization": f"token {token}"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        if resp.status != 200:
            raise RuntimeError(f"tunnel on {port}: HTTP {resp.status}")


def warm_inventory(state_dir: Path, cluster: str = "sandbox") -> None:
    """Resolve the inventory once into the state dir's cache, as any earlier session has.

    Only the first session after an inventory edit pays for `ansible-inventory` (the profile
    stage runs with a cold cache and shows that cost).
    """
    code = (
        "import sys; from pathlib import Path; from driver.inventory import load_cluster; "
        "load_cluster(Path(sys.argv[1]), sys.argv[2])"
    )
    env = {**os.environ, "NODEBOOK_STATE_DIR": str(state_dir)}
    argv = [sys.executable, "-c", code, str(INVENTORY), cluster]
    subprocess.run(argv, cwd=REPO, env=env, check=True, timeout=120)


def driver_round(guard: Guard, state: Path) -> dict[str, Any]:
    with RssSampler() as sampler, tempfile.TemporaryDirectory(prefix="nbb-ssh-") as tmp:
        ssh = sshlog.SshLog(Path(tmp))
        env = ssh.env(os.environ["PATH"])
        drv = guard.driver(DriverProcess(SESSION_ARGS, state_dir=state, env=env))
        sampler.roots = [drv.pid]
        try:
            return _driver_round(guard, drv, sampler, ssh)
        except BaseException:
            drv.interrupt()  # it cancels its own job
            drv.reap()
            raise


def _driver_round(
    guard: Guard, drv: DriverProcess, sampler: RssSampler, ssh: sshlog.SshLog
) -> dict[str, Any]:
    sub = drv.wait_event("submitted", 120)
    guard.job(str(sub["job_id"]), "alice")
    t_ready, ready = drv.wait_timed("ready", 300)
    check_200(int(ready["data"]["local_port"]), token_of(ready))
    job_id = str(ready["job_id"])
    t_int = time.time()
    gone = _gone_after(guard, "alice", job_id, drv.interrupt)
    rc = drv.reap()
    calls = ssh.read()
    marks = {"start": drv.started, "hold": t_ready, "cleanup": t_int}
    return {
        "job_id": job_id,
        "ttn": t_ready - drv.started,
        "ctrl_c_gone": gone,
        "ctrl_c_exit": (drv.ended or time.time()) - t_int,
        "rc": rc,
        "peak_tree_rss_kib": sampler.peak_kib,
        "peak_tree_procs": sampler.peak_procs,
        "maxrss_single_kib": drv.maxrss_kib,
        "cpu_s": drv.cpu_s,
        "events": [e.get("event") for e in drv.events],
        "ssh": {
            **sshlog.counts(calls),
            "phases": sshlog.phases(calls, marks),
            "helper_commands": sshlog.helper_commands(calls),
        },
    }


def baseline_round(guard: Guard) -> dict[str, Any]:
    base = BaselineSession("alice")
    guard.undo.append(base.close)
    t0 = time.time()
    try:
        t_ok = base.start()
        assert base.job_id is not None
        guard.job(base.job_id, "alice")
        gone = _gone_after(guard, "alice", base.job_id, base.cancel)
    finally:
        base.close()
    return {"job_id": base.job_id, "ttn": t_ok - t0, "ctrl_c_gone": gone}


def run(guard: Guard, reps: int, state: Path) -> dict[str, Any]:
    driver: list[dict[str, Any]] = []
    baseline: list[dict[str, Any]] = []
    failed: list[str] = []
    warm_inventory(state)  # a user's every session but the first after an inventory edit
    sandbox_cluster("alice")  # the baseline's and the observer's masters: read once, untimed
    for i in range(reps):
        # alternate which goes first, so slow drift hits both alike
        order = ("driver", "baseline") if i % 2 == 0 else ("baseline", "driver")
        for which in order:
            for _attempt in range(3):  # a round broken by others' fault injection is redone
                try:
                    one_round(guard, state, which, driver, baseline)
                    break
                except (RuntimeError, OSError, ValueError) as exc:
                    failed.append(f"{which}: {exc}"[:300])
                    log(f"rep {i + 1}/{reps} {which} failed, redoing it: {exc}"[:300])
            log_round(i, reps, which, driver, baseline)
    return {"driver": driver, "baseline": baseline, "failed_rounds": failed}


def one_round(
    guard: Guard,
    state: Path,
    which: str,
    driver: list[dict[str, Any]],
    baseline: list[dict[str, Any]],
) -> None:
    if which == "driver":
        driver.append(driver_round(guard, state))
    else:
        baseline.append(baseline_round(guard))


def log_round(
    i: int, reps: int, which: str, driver: list[dict[str, Any]], baseline: list[dict[str, Any]]
) -> None:
    if which == "driver" and driver:
        log(
            f"rep {i + 1}/{reps} driver: {driver[-1]['ttn']:.2f} s to notebook, "
            f"Ctrl-C -> gone {driver[-1]['ctrl_c_gone']:.2f} s"
        )
    elif baseline:
        log(
            f"rep {i + 1}/{reps} baseline: {baseline[-1]['ttn']:.2f} s to notebook, "
            f"scancel -> gone {baseline[-1]['ctrl_c_gone']:.2f} s"
        )
