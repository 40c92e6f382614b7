"""Shared bits of the benchmarks: job names, the observers' ssh masters, statistics.

Paths, commands on the sandbox's hosts, driver processes and the leftover check are the test
harness's (tests/harness/); an ssh master is the driver's own (driver.ssh.Master), built for
the sandbox's inventory host.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from functools import cache

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
WATCH_POLL_S = 0.02  # the "job gone" watcher's squeue poll on login


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


@contextlib.contextmanager
def _state_dir() -> Iterator[None]:
    """A throwaway NODEBOOK_STATE_DIR (the inventory cache goes there, not into root's home)."""
    old = os.environ.get("NODEBOOK_STATE_DIR")
    with tempfile.TemporaryDirectory(prefix="nbb-inv-") as tmp:
        os.environ["NODEBOOK_STATE_DIR"] = tmp
        try:
            yield
        finally:
            if old is None:
                os.environ.pop("NODEBOOK_STATE_DIR", None)
            else:
                os.environ["NODEBOOK_STATE_DIR"] = old


@cache
def sandbox_cluster(user: str) -> Cluster:
    """The sandbox's Slurm cluster as the driver reads it from the inventory, as ``user``."""
    with _state_dir():
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


def watch_gone_command(job_id: str) -> str:
    """Remote loop: 'present' once the job is seen, then 'gone <epoch>' when squeue drops it.

    Runs on login (same kernel clock as the laptop in the sandbox), polling every WATCH_POLL_S.
    """
    return (
        f"id={shlex.quote(job_id)}; said=0; "
        "while :; do "
        'if [ -n "$(squeue -h -j "$id" -o %i 2>/dev/null)" ]; then '
        '[ "$said" = 0 ] && { echo present; said=1; }; '
        f'else echo "gone $(date +%s.%N)"; break; fi; sleep {WATCH_POLL_S}; done'
    )
