"""Leave nothing behind: every driver, tunnel, master and job a benchmark starts is registered
here and undone at the end, also on Ctrl-C, SIGTERM and SIGHUP."""

from __future__ import annotations

import contextlib
import shlex
import signal
import sys
from collections.abc import Callable, Iterator
from types import FrameType

from bench.common import BenchMaster
from bench.procs import DriverProc


class Interrupted(Exception):
    """SIGTERM or SIGHUP while benchmarking."""


def _raise(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


class Guard:
    def __init__(self) -> None:
        self.drivers: list[DriverProc] = []
        self.jobs: dict[str, str] = {}  # job id -> user
        self.masters: dict[str, BenchMaster] = {}
        self.undo: list[Callable[[], None]] = []

    def observer(self, user: str) -> BenchMaster:
        """A long-lived master per user for watching and sweeping (not part of any timing)."""
        master = self.masters.get(user)
        if master is None or not master.path.exists():
            master = BenchMaster(user, persist=600)
            master.start()
            self.masters[user] = master
        return master

    def driver(self, drv: DriverProc) -> DriverProc:
        self.drivers.append(drv)
        return drv

    def job(self, job_id: str, user: str) -> None:
        self.jobs[job_id] = user

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
                master.close()


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
