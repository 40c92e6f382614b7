"""Shared bits of the benchmarks: job names, the observers' ssh masters, the "job gone" poll from
the laptop, statistics.

Paths, commands on the sandbox's hosts, driver processes and the leftover check are the test
harness's (tests/harness/); an ssh master is the driver's own (driver.ssh.Master), built for
the sandbox's inventory host.
"""

from __future__ import annotations

import os
import shlex
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from functools import cache
from typing import Any
from unittest import mock

from driver.errors import NodebookError
from driver.inventory import Cluster, load_cluster
from driver.ssh import Master, cleanup_dir, make_control_dir
from tests.harness.sandbox import INVENTORY, REPO

# What `make bench` and `make chaos` write: their raw results and the page made from them. They
# are outputs, not the code measured (host.code_state leaves them out).
RUN_RESULTS = REPO / "bench" / "last-run.json"
CHAOS_RESULTS = REPO / "bench" / "last-chaos.json"
PAGE = REPO / "docs" / "benchmarks.md"
OUTPUTS = (RUN_RESULTS, CHAOS_RESULTS, PAGE)

# Job name of the hand-written baseline's jobs (not "nodebook": the driver's duplicate guard
# and other users of the sandbox must not mistake them for sessions).
BASELINE_JOB_NAME = "nb-bench-baseline"
FILL_JOB_NAME = "nb-bench-fill"
# What `python -m bench.docs --check-commit` compares between the results' commit and HEAD: the
# code a session runs and the code that measures it (the results, the page and the page's
# template and renderer are not measurements).
CODE_PATHS = ("driver", "roles", "playbooks", "plugins", "bench")
NOT_MEASURED = ("bench/benchmarks.template.md", "bench/docs.py")


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


@cache
def sandbox_cluster(user: str) -> Cluster:
    """The sandbox's Slurm cluster as the driver reads it from the inventory, as ``user``."""
    with (
        tempfile.TemporaryDirectory(prefix="nbb-inv-") as tmp,  # its cache, not root's home's
        mock.patch.dict(os.environ, {"NODEBOOK_STATE_DIR": tmp}),
    ):
        return load_cluster(INVENTORY, "sandbox", user)


def open_master(user: str, attempts: int = 12) -> Master:
    """A ControlMaster to login as ``user`` (driver.ssh.Master); retried 5 s apart while the
    laptop's link is down (chaos runs cut it)."""
    master = Master(sandbox_cluster(user), make_control_dir())
    for i in range(attempts):
        try:
            master.start(timeout=60)
            return master
        except NodebookError:
            if i == attempts - 1:
                close_master(master)
                raise
            time.sleep(5)
    return master


def close_master(master: Master) -> None:
    master.close()
    cleanup_dir(master.control_dir)


def popen(master: Master, command: str) -> subprocess.Popen[str]:
    """A remote command over the master, its stdout read as it comes."""
    return subprocess.Popen(
        [*master.client_argv("-T"), command],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def squeue_lists(master: Master, job_id: str) -> Callable[[], bool]:
    """`ssh login squeue -h -j JOB` over the master, as a user types it on the laptop: does
    squeue still list the job? (An ssh failure raises: the observation is lost.)"""

    def query() -> bool:
        done = master.run(f"squeue -h -j {shlex.quote(job_id)} -o %i", timeout=30)
        if done.returncode == 255:
            raise RuntimeError(f"squeue over ssh failed: {done.stderr.strip()[-200:]}")
        return job_id in done.stdout.split()

    return query


def gone_after(
    listed: Callable[[], bool], act: Callable[[], None], timeout: float = 60
) -> dict[str, Any]:
    """End a job as a user does and time its leaving as the user sees it.

    ``listed`` is one squeue poll from the laptop (``squeue_lists``). Once a poll has listed
    the job, ``act`` starts the end (a signal, a spawned command, a scancel sent: it must not
    wait for it), then polls run back to back; the figure is the arrival of the first answer
    without the job minus the time ``act`` was called. Every end kind is timed so, by the same
    loop on the same clock. Returns {"t0", "gone", "polls", "poll_s" (median poll duration:
    the resolution)}.
    """
    if not listed():
        raise RuntimeError("the job was not in squeue before its end")
    t0 = time.time()
    act()
    durations: list[float] = []
    while True:
        start = time.time()
        still = listed()
        end = time.time()
        durations.append(end - start)
        if not still:
            return {"t0": t0, "gone": end - t0, "polls": len(durations),
                    "poll_s": median(durations)}  # fmt: skip
        if end - t0 > timeout:
            raise RuntimeError(f"the job was still in squeue {timeout:.0f} s after its end")
