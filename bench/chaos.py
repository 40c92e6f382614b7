"""Exit-path chaos: start sessions on the sandbox and end them every way there is, many times.

    python -m bench.chaos [--rounds N] [--paths sigint,sigterm,...] [--user alice] [--json FILE]

Paths: sigint, sigterm, sighup (the driver is signalled), tunnel-killed (the tunnel's ssh is
killed; the session must re-establish it, then Ctrl-C), sigkill (the driver is SIGKILLed: the
job must end itself by the dead-man's switch within --heartbeat-timeout, and the ssh master
must exit after its ControlPersist), slurmctld-restart (mid-session; the session survives, then
Ctrl-C), network-cut (the laptop's only link is cut until the driver gives up; the job ends
itself by the dead-man's switch).

After each round it looks for what that round left (tests/harness/leftovers.py): its job in the
queue, its processes on any host (job, Jupyter, tunnel ends), its ssh master and tunnels on the
laptop, its local port, its files on the cluster at the paths the helper reports and its local
temp files. It prints a table per path and exits 1 if anything was left (or an exit code was
wrong). Everything is scoped to the rounds' own jobs and temp dirs: other sessions may run
alongside.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench import host
from driver.ssh import MASTER_PERSIST  # an orphaned master outlives its last client this long
from tests.harness import leftovers
from tests.harness.driver import DriverProcess, NoEvent
from tests.harness.sandbox import Sandbox

HEARTBEAT = 10  # --heartbeat-timeout for every round: the dead-man window
PATHS = (
    "sigkill",
    "sigint",
    "sigterm",
    "sighup",
    "tunnel-killed",
    "slurmctld-restart",
    "network-cut",
)
# Exit codes each path may end with (python -m driver --help).
EXPECTED = {
    "sigint": {130},
    "sigterm": {143},
    "sighup": {129},
    "tunnel-killed": {130},
    "sigkill": {-9, 137},
    "slurmctld-restart": {130},
    "network-cut": {7},
}


@dataclass
class Result:
    path: str
    rounds: int = 0
    bad_exit: list[str] = field(default_factory=list)
    jobs: list[str] = field(default_factory=list)
    processes: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    retried: list[str] = field(default_factory=list)  # starts broken by something else
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return bool(self.bad_exit or self.jobs or self.processes or self.files or self.errors)


class NotStarted(Exception):
    """The session never became ready (the round did not get to its exit path)."""


@dataclass
class Deferred:
    """A check that must wait (a SIGKILLed driver's master outlives it by ControlPersist)."""

    result: Result
    driver: DriverProcess
    deadline: float


def _tunnel_pids(d: DriverProcess) -> list[int]:
    """The session's tunnel ssh (jump mode: `ssh ... -L ...` with the master as ProxyCommand)."""
    return [
        int(line.split()[0])
        for line in leftovers.local_processes([d.tmp])
        if line.split()[1] == "ssh" and " -L 127.0.0.1:" in line and "ControlMaster=yes" not in line
    ]


def _record(res: Result, left: dict[str, list[str]]) -> None:
    res.jobs += left.get("jobs", [])
    res.processes += left.get("remote_processes", []) + left.get("laptop_processes", [])
    res.processes += [f"port {p}" for p in left.get("port", [])]
    res.files += left.get("remote_files", []) + left.get("local_files", [])
    res.errors += [f"unknown paths: {p}" for p in left.get("unknown_paths", [])]


def _kill(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


class Chaos:
    def __init__(self, sandbox: Sandbox, user: str, log: Callable[[str], None]) -> None:
        self.sandbox = sandbox
        self.user = user
        self.log = log
        self.deferred: list[Deferred] = []

    def args(self) -> list[str]:
        args = [
            "session",
            "--no-browser",
            "--allow-second",
            "--check-interval",
            "1",
            "--heartbeat-timeout",
            str(HEARTBEAT),
            "--reconnect-bound",
            "3",
        ]
        if self.user != "alice":
            args += ["--user", self.user]
        return args

    # -- one round of one path ---------------------------------------------------------------
    def round(self, path: str, res: Result, attempts: int = 3) -> None:
        """One round; a session that could not even start (others cut the link or stop a
        daemon on the shared sandbox) is checked for leftovers like any other, then redone."""
        for attempt in range(attempts):
            try:
                self._round(path, res)
                return
            except NotStarted as exc:
                if attempt == attempts - 1:
                    raise
                res.retried.append(str(exc)[:300])
                time.sleep(5)

    def _start_or_raise(self, res: Result) -> DriverProcess:
        d = DriverProcess(self.args())
        try:
            d.wait_event("ready", timeout=180)
        except NoEvent as exc:
            d.kill()
            scope = leftovers.scope_of([d], self.user)
            left = leftovers.wait_clean(self.sandbox, scope, timeout=60, files=False)
            res.jobs += left.get("jobs", [])
            res.processes += left.get("remote_processes", [])
            self._cleanup(d)
            raise NotStarted(str(exc)) from None
        return d

    def _round(self, path: str, res: Result) -> None:
        d = self._start_or_raise(res)
        check_local = True
        timeout = 30.0
        try:
            if path in ("sigint", "sigterm", "sighup"):
                d.signal(
                    {"sigint": signal.SIGINT, "sigterm": signal.SIGTERM}.get(path, signal.SIGHUP)
                )
            elif path == "tunnel-killed":
                pids = _tunnel_pids(d)
                if not pids:
                    raise AssertionError(
                        f"no tunnel process found: {leftovers.local_processes([d.tmp])}"
                    )
                _kill(pids, signal.SIGKILL)
                d.wait_event("info", timeout=30)  # "tunnel lost, reconnecting"
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and d.poll() is None:
                    if any("re-established" in str(e.get("message")) for e in d.events):
                        break
                    d.drain(0.5)
                if not any("re-established" in str(e.get("message")) for e in d.events):
                    raise AssertionError(f"tunnel not re-established: {d.events}")
                d.signal(signal.SIGINT)
            elif path == "sigkill":
                d.signal(signal.SIGKILL)  # the driver only: its children live on, as they would
                d.wait(timeout=30)
                # the master lingers up to ControlPersist (checked later), and a SIGKILLed
                # process cannot remove its temp dir
                check_local = False
                timeout = HEARTBEAT + 60  # dead-man window + the job's poll + scheduler
            elif path == "slurmctld-restart":
                self.sandbox.cluster("daemon", "slurmctld", "restart", timeout=120)
                time.sleep(3)
                if d.poll() is not None:
                    raise AssertionError(f"session ended on slurmctld restart: {d.events}")
                d.signal(signal.SIGINT)
            elif path == "network-cut":
                self.sandbox.cluster("link", "down")
                try:
                    d.wait(timeout=120)
                finally:
                    self.sandbox.cluster("link", "up", check=False)
                timeout = HEARTBEAT + 60
            rc = d.wait(timeout=120) if path != "sigkill" else -9
            if rc not in EXPECTED[path]:
                res.bad_exit.append(f"exit {rc}: {d.output[-600:]}")
            scope = leftovers.scope_of([d], self.user)
            # (without the laptop, the cluster's files are still checked)
            left = leftovers.wait_clean(self.sandbox, scope, timeout=timeout, local=check_local)
            _record(res, left)
            if path == "sigkill":
                self.deferred.append(Deferred(res, d, time.monotonic() + MASTER_PERSIST + 60))
        finally:
            if path != "sigkill":
                self._cleanup(d)

    def _cleanup(self, d: DriverProcess) -> None:
        leftovers.tidy(self.sandbox, [d])

    def finish_deferred(self) -> None:
        """Wait (up to each deadline) for SIGKILLed drivers' masters and tunnels to exit."""
        for item in self.deferred:
            tmp = [item.driver.tmp]
            while leftovers.local_processes(tmp) and time.monotonic() < item.deadline:
                time.sleep(2)
            item.result.processes += leftovers.local_processes(tmp)
            self._cleanup(item.driver)
        self.deferred.clear()


def table(results: list[Result]) -> str:
    head = (
        f"{'path':<18} {'rounds':>6} {'bad exit':>8} {'jobs left':>9} {'procs left':>10} "
        f"{'files left':>10} {'errors':>6} {'retried':>7} {'s/round':>7}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        per = r.seconds / r.rounds if r.rounds else 0.0
        lines.append(
            f"{r.path:<18} {r.rounds:>6} {len(r.bad_exit):>8} {len(r.jobs):>9} "
            f"{len(r.processes):>10} {len(r.files):>10} {len(r.errors):>6} {len(r.retried):>7} "
            f"{per:>7.1f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rounds", type=int, default=10, help="rounds per path (default 10)")
    p.add_argument(
        "--paths", default=",".join(PATHS), help="comma-separated subset of: " + ", ".join(PATHS)
    )
    p.add_argument("--user", default="alice")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    paths = [x for x in args.paths.split(",") if x]
    unknown = set(paths) - set(PATHS)
    if unknown:
        p.error(f"unknown paths: {', '.join(sorted(unknown))}")
    # From a fresh clone too: bring the sandbox up and set the user up (both idempotent).
    host.ensure_sandbox()
    host.ensure_setup((args.user,))

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    chaos = Chaos(Sandbox(), args.user, log)
    results = [Result(path) for path in paths]
    for n in range(args.rounds):
        for res in results:
            started = time.monotonic()
            try:
                chaos.round(res.path, res)
            except Exception as exc:  # a round that could not run is a failure, not a crash
                res.errors.append(f"{type(exc).__name__}: {str(exc)[:800]}")
            res.rounds += 1
            res.seconds += time.monotonic() - started
            log(
                f"round {n + 1}/{args.rounds} {res.path}: "
                f"{'FAIL' if res.failed else 'ok'} ({time.monotonic() - started:.1f} s)"
            )
    chaos.finish_deferred()
    print(table(results))
    for r in results:
        for item in r.retried[:3]:
            print(f"  {r.path} retried (start broken by something else): {item}")
    bad = [r for r in results if r.failed]
    for r in bad:
        for what in ("bad_exit", "jobs", "processes", "files", "errors"):
            for item in getattr(r, what)[:5]:
                print(f"  {r.path} {what}: {item}")
    if args.json:
        args.json.write_text(
            json.dumps([r.__dict__ | {"failed": r.failed} for r in results], indent=2)
        )
    print("chaos: nothing left behind" if not bad else "chaos: FAILED (see above)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
