"""Leave nothing behind: every driver, tunnel, master and job a benchmark starts is registered
here and undone at the end, also on Ctrl-C, SIGTERM and SIGHUP. Before that, what the drivers
left is looked for (tests/harness/leftovers.py) and reported as the scenario's failure."""

from __future__ import annotations

import contextlib
import shlex
import signal
import sys
from collections.abc import Callable, Iterator
from types import FrameType

from bench.common import close_master, open_master
from driver.ssh import Master
from tests.harness import leftovers
from tests.harness.driver import DriverProcess
from tests.harness.sandbox import Sandbox


class Interrupted(Exception):
    """SIGTERM or SIGHUP while benchmarking."""


def _raise(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


class Guard:
    def __init__(self) -> None:
        self.sandbox = Sandbox()
        self.drivers: list[DriverProcess] = []
        self.jobs: dict[str, str] = {}  # job id -> user
        self.masters: dict[str, Master] = {}
        self.undo: list[Callable[[], None]] = []

    def observer(self, user: str) -> Master:
        """A long-lived master per user for watching and sweeping (not part of any timing)."""
        master = self.masters.get(user)
        if master is None or not master.control_path.exists():
            master = open_master(user)
            self.masters[user] = master
        return master

    def driver(self, drv: DriverProcess) -> DriverProcess:
        self.drivers.append(drv)
        return drv

    def job(self, job_id: str, user: str) -> None:
        self.jobs[job_id] = user

    def left_behind(self, timeout: float = 30) -> list[str]:
        """What the drivers and jobs left (each user's jobs at the paths of their setup)."""
        problems: list[str] = []
        users = sorted(set(self.jobs.values())) or ["alice"]
        for i, user in enumerate(users):
            scope = leftovers.Scope(
                user=user,
                job_ids={j for j, u in self.jobs.items() if u == user},
                tmp_dirs=[d.tmp for d in self.drivers] if i == 0 else [],
                state_dirs=[d.state for d in self.drivers] if i == 0 else [],
                ports=[d.ready_port for d in self.drivers if d.ready_port] if i == 0 else [],
            )
            found = leftovers.wait_clean(self.sandbox, scope, timeout)
            problems += [f"{kind}: {item}" for kind, items in found.items() for item in items]
        return problems

    def remove_runtime_dirs(self) -> list[str]:
        """Remove what the jobs' own cleanup left (after it was reported): the runtime dirs on
        the nodes and the job's files on the shared home (connection file with its token,
        heartbeat, .seen, pid file, job dir; the job's log stays). The benchmark leaves
        nothing, even when a job's trap was killed."""
        removed = []
        for job_id, user in self.jobs.items():
            try:
                paths = leftovers.job_paths(self.sandbox, user, job_id)
            except LookupError:
                continue
            run_dir = paths["runtime_dir"]
            for node in ("cn01", "cn02"):
                if leftovers.existing(self.sandbox, node, [run_dir]):
                    self.sandbox.host(node, ["rm", "-rf", run_dir], check=False)
                    removed.append(f"{node}:{run_dir}")
            shared = [paths[k] for k in leftovers.SHARED_PATHS if paths.get(k)]
            found = leftovers.existing(self.sandbox, "login", shared)
            if found:
                self.sandbox.host("login", ["rm", "-rf", *found], check=False)
                removed += [f"login:{f}" for f in found]
        return removed

    def close(self) -> None:
        """Interrupt drivers (they cancel their jobs), then cancel any job left, close masters."""
        for drv in self.drivers:
            if drv.rc is None:
                drv.interrupt()
        for drv in self.drivers:
            if drv.rc is None:
                drv.reap(timeout=90)
        for fn in reversed(self.undo):
            with contextlib.suppress(Exception):
                fn()
        by_user: dict[str, list[str]] = {}
        for job_id, user in self.jobs.items():
            by_user.setdefault(user, []).append(job_id)
        for user, ids in by_user.items():
            with contextlib.suppress(Exception):
                self.observer(user).run("scancel " + " ".join(shlex.quote(i) for i in ids))
        for master in self.masters.values():
            with contextlib.suppress(Exception):
                close_master(master)
        for drv in self.drivers:
            leftovers.kill_local(leftovers.Scope(tmp_dirs=[drv.tmp], state_dirs=[drv.state]))
            drv.remove_work()


@contextlib.contextmanager
def guarded() -> Iterator[Guard]:
    guard = Guard()
    old = {s: signal.signal(s, _raise) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield guard
    finally:
        ign = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, *old)}
        try:
            guard.close()
        finally:
            for s, h in {**ign, **old}.items():
                signal.signal(s, h)


def log(msg: str) -> None:
    print(f"  [bench] {msg}", file=sys.stderr, flush=True)
