"""Exit-path chaos: start sessions on the sandbox and end them every way there is, many times.

    python -m bench.chaos [--rounds N] [--paths sigint,sigterm,...] [--user alice] [--json FILE]
                          [--no-write]

Paths: sigint, sigterm, sighup (the driver is signalled), stop (`nodebook stop JOB` from
another process with the same state and temp dir: the session's driver ends it, exit 0 both),
tunnel-killed (the tunnel's ssh is
killed; the session must re-establish it, then Ctrl-C), sigkill (the driver is SIGKILLed: the
job must end itself by the dead-man's switch within --lease, and the next command
must end the orphaned ssh master), slurmctld-restart (mid-session; the session survives, then
Ctrl-C), network-cut (the laptop's only link is cut; the driver keeps reconnecting until the
session's lease ends, the job ends itself then, and the driver says so: exit 6).

After each round it looks for what that round left (tests/harness/leftovers.py): its job in the
queue, its processes on any host (job, Jupyter, tunnel ends), its ssh master and tunnels on the
laptop, its local port, its files on login and on every node at the paths the helper reports
(connection file, token, runtime dir, socket, heartbeat, .seen, hop socket, ...), its local temp
files and its session record in the local state dir. Any of them fails the round, as does a
wrong exit code (read from the driver's real wait status, SIGKILL included) and, on the
slurmctld path, a session that did not survive the restart (still HTTP 200 through its tunnel,
still listed RUNNING by `nodebook list`).

The SIGKILL path: the job must end by itself (dead-man's switch) and leave nothing on the
cluster; its files are looked for once the job has left, after the dead-man window; then the
next command (`nodebook list`, the same state dir and temp dir, as on the user's machine) must
end the killed driver's orphaned master and remove its stale session record and temp dirs, and
nothing local may be left.

It prints a table of the paths (the page's), writes bench/last-chaos.json and the chaos table in
docs/benchmarks.md (unless --no-write) and exits 1 if any round failed. Everything is scoped to
the rounds' own jobs and temp dirs: other sessions may run alongside.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import host
from bench.common import CHAOS_RESULTS, PAGE
from tests.harness import alive, leftovers
from tests.harness.driver import DriverProcess, NoEvent, run_driver
from tests.harness.sandbox import REPO, Sandbox

HEARTBEAT = 10  # --lease for every round: the dead-man window
PATHS = (
    "sigkill",
    "sigint",
    "sigterm",
    "sighup",
    "stop",
    "tunnel-killed",
    "slurmctld-restart",
    "network-cut",
)
# Exit codes each path may end with (python -m driver --help); a SIGKILLed process's wait
# status says "killed by signal 9", which os.waitstatus_to_exitcode gives as -9.
EXPECTED = {
    "sigint": {130},
    "sigterm": {143},
    "sighup": {129},
    "stop": {0},  # stopped by `nodebook stop` (the stop command's own exit is checked too)
    "tunnel-killed": {130},
    "sigkill": {-9},
    "slurmctld-restart": {130},
    "network-cut": {6},  # the driver tries until the lease ends, then says the job ended itself
}
# What each kind of leftover is called in the table (leftovers.find's keys -> Result fields).
KINDS = {
    "jobs": "jobs",
    "remote_processes": "processes",
    "laptop_processes": "local_processes",
    "port": "ports",
    "remote_files": "files",
    "local_files": "local_files",
    "unknown_paths": "errors",
}
COUNTED = (
    "bad_exit",
    "jobs",
    "processes",
    "local_processes",
    "ports",
    "files",
    "local_files",
    "not_survived",
    "errors",
)


@dataclass
class Result:
    """One path's rounds and everything they left. Every list but ``retried`` fails the path."""

    path: str
    rounds: int = 0
    failed_rounds: int = 0
    bad_exit: list[str] = field(default_factory=list)
    jobs: list[str] = field(default_factory=list)  # still in squeue
    processes: list[str] = field(default_factory=list)  # on login or a node (job's, tunnel ends)
    local_processes: list[str] = field(default_factory=list)  # laptop: driver, master, tunnel
    ports: list[str] = field(default_factory=list)  # the session's local port still open
    files: list[str] = field(default_factory=list)  # host:path on login and the nodes
    local_files: list[str] = field(default_factory=list)  # TMPDIR contents, session records
    not_survived: list[str] = field(default_factory=list)  # slurmctld-restart: session broken
    errors: list[str] = field(default_factory=list)  # a round that could not run or be checked
    retried: list[str] = field(default_factory=list)  # starts broken by something else
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return any(getattr(self, k) for k in COUNTED)

    def count(self) -> int:
        """Problems found so far (a round failed when this grew)."""
        return sum(len(getattr(self, k)) for k in COUNTED)

    def as_json(self) -> dict[str, Any]:
        counts = {k: len(getattr(self, k)) for k in (*COUNTED, "retried")}
        return asdict(self) | {"failed": self.failed, "counts": counts}


class NotStarted(Exception):
    """The session never became ready (the round did not get to its exit path)."""


def _tunnel_pids(d: DriverProcess) -> list[int]:
    """The session's tunnel ssh (jump mode: `ssh ... -L ...` with the master as ProxyCommand)."""
    return [
        int(line.split()[0])
        for line in leftovers.local_processes([d.tmp])
        if line.split()[1] == "ssh" and " -L 127.0.0.1:" in line and "ControlMaster=yes" not in line
    ]


def record(res: Result, left: dict[str, list[str]]) -> None:
    """Add what leftovers.find reported to the path's result; any kind at all fails it."""
    for kind, items in left.items():
        name = KINDS.get(kind, "errors")
        prefix = "" if kind in KINDS else f"{kind}: "
        if kind == "unknown_paths":
            prefix = "unknown paths: "
        getattr(res, name).extend(prefix + str(i) for i in items)


def local_leftovers(scope: leftovers.Scope) -> dict[str, list[str]]:
    """The laptop's share of leftovers.find: processes (driver, master, tunnel), the port,
    temp files and session records."""
    left = {
        "laptop_processes": leftovers.processes(scope)[1],
        "port": [str(p) for p in scope.ports if leftovers.port_listening(p)],
        "local_files": leftovers.local_files(scope),
    }
    return {k: v for k, v in left.items() if v}


def _kill(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


class Chaos:
    def __init__(self, sandbox: Sandbox, user: str, log: Callable[[str], None]) -> None:
        self.sandbox = sandbox
        self.user = user
        self.log = log

    def args(self) -> list[str]:
        args = [
            "session",
            "--no-browser",
            "--allow-second",
            "--check-interval",
            "1",
            "--lease",
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
            self._cleanup(d)  # cancels its job: the job's own trap must still tidy the cluster
            left = leftovers.wait_clean(self.sandbox, scope, timeout=60, local=False)
            record(res, left)
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
            elif path == "stop":
                self._stop(res, d)
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
                # the master lingers up to ControlPersist (checked later, with the local state)
                check_local = False
                timeout = HEARTBEAT + 60  # dead-man window + the job's poll + scheduler
            elif path == "slurmctld-restart":
                self.sandbox.cluster("daemon", "slurmctld", "restart", timeout=120)
                res.not_survived += alive.survived(d, None if self.user == "alice" else self.user)
                d.signal(signal.SIGINT)
            elif path == "network-cut":
                self.sandbox.cluster("link", "down")
                try:
                    d.wait(timeout=120)
                finally:
                    self.sandbox.cluster("link", "up", check=False)
                timeout = HEARTBEAT + 60
            rc = d.wait(timeout=120)  # the real wait status (wait4), SIGKILL too
            if rc not in EXPECTED[path]:
                res.bad_exit.append(f"exit {rc}: {d.output[-600:]}")
            scope = leftovers.scope_of([d], self.user)
            if path == "sigkill":
                # the job leaves by its dead-man's switch; only then are the cluster's files
                # looked at (a job still in the queue may still hold them)
                gone_by = time.monotonic() + timeout
                while scope.job_ids & set(self.sandbox.squeue()) and time.monotonic() < gone_by:
                    time.sleep(1)
            # (without the laptop, the cluster's files are still checked)
            left = leftovers.wait_clean(self.sandbox, scope, timeout=timeout, local=check_local)
            record(res, left)
            if path == "sigkill":
                self._next_command_prunes(res, d)
        finally:
            if path != "sigkill":
                self._cleanup(d)

    def _stop(self, res: Result, d: DriverProcess) -> None:
        """`nodebook stop JOB` as the user types it in another terminal of the same machine."""
        job = next((str(e["job_id"]) for e in d.events if e.get("event") == "ready"), "")
        args = ["stop", job, "--cluster", "sandbox"]
        args += ["--user", self.user] if self.user != "alice" else []
        stop = run_driver(args, state_dir=d.state, tmp_dir=d.tmp, timeout=120)
        if stop.rc != 0:
            res.bad_exit.append(f"`nodebook stop` exit {stop.rc}: {stop.output[-300:]}")
        stop.remove_work()

    def _cleanup(self, d: DriverProcess) -> None:
        leftovers.tidy(self.sandbox, [d])

    def _next_command_prunes(self, res: Result, d: DriverProcess) -> None:
        """After a SIGKILLed driver, the user's next command on the same machine (`list`, the
        same state dir and temp dir) ends its orphaned master and removes its stale session
        record and temp dirs: then nothing of it may be left on the laptop (processes, port,
        temp files, record)."""
        args = ["list", "--cluster", "sandbox"]
        args += ["--user", self.user] if self.user != "alice" else []
        ls = run_driver(args, state_dir=d.state, tmp_dir=d.tmp, timeout=120)
        if ls.rc != 0:
            res.errors.append(f"`list` after SIGKILL: exit {ls.rc}: {ls.output[-300:]}")
        ls.remove_work()
        record(res, local_leftovers(leftovers.scope_of([d], self.user)))


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
    p.add_argument(
        "--no-write", action="store_true", help="leave bench/last-chaos.json and the docs alone"
    )
    args = p.parse_args(argv)
    paths = [x for x in args.paths.split(",") if x]
    unknown = set(paths) - set(PATHS)
    if unknown:
        p.error(f"unknown paths: {', '.join(sorted(unknown))}")
    started = f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M}"
    # From a fresh clone too: bring the sandbox up and set the user up (both idempotent).
    host.ensure_sandbox()
    host.ensure_setup((args.user,))
    code = {**host.machine(), **host.code_state()}

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    chaos = Chaos(Sandbox(), args.user, log)
    results = [Result(path) for path in paths]
    activity: list[dict[str, Any]] = []
    for n in range(args.rounds):
        activity.append({"round": n + 1, **host.activity()})
        for res in results:
            started_round = time.monotonic()
            before = res.count()
            try:
                chaos.round(res.path, res)
            except Exception as exc:  # a round that could not run is a failure, not a crash
                res.errors.append(f"{type(exc).__name__}: {str(exc)[:800]}")
            res.rounds += 1
            if res.count() > before:
                res.failed_rounds += 1
            res.seconds += time.monotonic() - started_round
            log(
                f"round {n + 1}/{args.rounds} {res.path}: "
                f"{'FAIL' if res.count() > before else 'ok'} "
                f"({time.monotonic() - started_round:.1f} s)"
            )
    from bench import docs  # (docs reads this module's COUNTED)

    print(docs.t_chaos({}, {"results": [r.as_json() for r in results]}))
    for r in results:
        for item in r.retried[:3]:
            print(f"  {r.path} retried (start broken by something else): {item}")
    bad = [r for r in results if r.failed]
    for r in bad:
        for what in COUNTED:
            for item in getattr(r, what)[:5]:
                print(f"  {r.path} {what}: {item}")
    raw = {
        "started": started,
        "rounds": args.rounds,
        "user": args.user,
        "heartbeat_timeout_s": HEARTBEAT,
        "machine": code,
        "activity": activity,
        "results": [r.as_json() for r in results],
    }
    if args.json:
        args.json.write_text(json.dumps(raw["results"], indent=2))
    if not args.no_write:
        CHAOS_RESULTS.write_text(json.dumps(raw, indent=1, sort_keys=True) + "\n")
        docs.write()
        print(f"wrote {CHAOS_RESULTS.relative_to(REPO)} and {PAGE.relative_to(REPO)}")
    print("chaos: nothing left behind" if not bad else "chaos: FAILED (see above)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
