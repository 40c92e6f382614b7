"""What a driver run left behind, scoped to that run: one checker for tests and benchmarks.

Other engineers run sessions as alice and bob on the same sandbox at the same time, so nothing
here looks at "every job of alice": only at what the run created.

- jobs: the run's job ids still in squeue;
- remote processes, on every host (they share the machine's pid namespace, so one look at
  /proc sees them all): tagged with a job in their environment (SLURM_JOB_ID, NODEBOOK_JOB_ID,
  NODEBOOK_TUNNEL), a helper command for a job (``nodebook-remote hold|hop|wait ... JOB``), or
  an argv naming one of the job's paths;
- laptop processes: the run's drivers, ssh masters, tunnels and Ansible, found by the run's
  private TMPDIR in their argv (ControlPath=...) or environment;
- the local port still accepting connections;
- local files: anything left in the run's TMPDIR, session records of its jobs in its state dir;
- cluster files at the paths the remote helper reports for each job (``nodebook-remote paths
  JOB``, run as the user with the base dir of the user's setup, so a non-default layout is
  checked where it is): connection file, heartbeat, job dir, ``.seen``, pid file on the shared
  home (seen from login); runtime dir, token, socket and hop socket on login and every node.
  The job's log is kept on purpose and not reported.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from driver.paths import rules
from driver.remote import parse_lines
from tests.harness.sandbox import (
    CLUSTER_HOSTS,
    NODES,
    Sandbox,
    in_laptop,
    job_tmp,
    laptop_argv,
    run,
)

DEFAULT_BASE = ".nodebook"
SHARED_PATHS = ("connection", "heartbeat", "job_dir", "seen", "pid_file")
NODE_LOCAL_PATHS = ("runtime_dir", "token", "socket", "hop_socket")
TAGS = ("SLURM_JOB_ID", "NODEBOOK_JOB_ID", "NODEBOOK_TUNNEL")
# helper commands whose next word is a job id (and `cancel --job JOB`)
JOB_COMMANDS = ("wait", "connection", "heartbeat", "ended", "paths", "hold", "hop", "--job")

_PATHS: dict[tuple[str, str, str], dict[str, str]] = {}


@dataclass
class Scope:
    """What belongs to one run: its user, jobs, private dirs and local ports."""

    user: str = "alice"
    job_ids: set[str] = field(default_factory=set)
    base: str = DEFAULT_BASE  # the user's nodebook_environment_base_dir (relative to $HOME)
    tmp_dirs: list[Path] = field(default_factory=list)  # the drivers' TMPDIRs
    state_dirs: list[Path] = field(default_factory=list)  # the drivers' NODEBOOK_STATE_DIRs
    ports: list[int] = field(default_factory=list)
    ignore_pids: set[int] = field(default_factory=set)  # e.g. a killed driver's orphan master
    ignore_files: set[str] = field(default_factory=set)  # e.g. a killed driver's control dir


def scope_of(drivers: Iterable[Any], user: str = "alice", base: str = DEFAULT_BASE) -> Scope:
    """The scope of some DriverProcesses: their job ids, TMPDIRs, state dirs, ready ports."""
    scope = Scope(user=user, base=base)
    for d in drivers:
        scope.job_ids |= d.job_ids
        scope.tmp_dirs.append(d.tmp)
        scope.state_dirs.append(d.state)
        if d.ready_port:
            scope.ports.append(d.ready_port)
    return scope


# -- the cluster's paths, from the helper -------------------------------------------------------


def job_paths(sandbox: Sandbox, user: str, job_id: str, base: str = DEFAULT_BASE) -> dict[str, str]:
    """Where the helper of ``user``'s setup (in ``base``) keeps one job's files (cached).

    Runs ``nodebook-remote paths JOB`` on login as the user, started with the same shell words
    the driver uses. Raises LookupError with the helper's answer when it gives none.
    """
    key = (user, base, job_id)
    if key not in _PATHS:
        command = f"{rules().helper_command(base)} paths {shlex.quote(job_id)}"
        proc = sandbox.host("login", ["bash", "-c", command], user=user, check=False)
        lines = [ln for ln in parse_lines(proc.stdout) if ln.get("nodebook") == "paths"]
        if not lines:
            raise LookupError(
                f"`nodebook-remote paths {job_id}` as {user} (base {base}) answered "
                f"rc={proc.returncode}: {(proc.stdout + proc.stderr).strip()[-300:]}"
            )
        paths = {k: str(v) for k, v in lines[0].items() if k not in ("nodebook", "job_id")}
        paths["token"] = f"{paths['runtime_dir']}/token"
        _PATHS[key] = paths
    return _PATHS[key]


def existing(
    sandbox: Sandbox, host: str, paths: Sequence[str], job: str | None = None
) -> list[str]:
    """Those of ``paths`` that exist on ``host`` (root's view; one command for all), or with
    ``job``, inside that job on its node (its private /tmp)."""
    if not paths:
        return []
    script = 'for p; do if [ -e "$p" ] || [ -L "$p" ]; then printf "%s\\n" "$p"; fi; done'
    argv = ["sh", "-c", script, "sh", *paths]
    out = in_job(sandbox, job, argv).stdout if job else sandbox.out(host, argv)
    return [line for line in out.splitlines() if line]


def cluster_files(sandbox: Sandbox, scope: Scope) -> list[str]:
    """`host:path` of the jobs' files still there (jobs whose paths are unknown: skipped)."""
    shared: list[str] = []
    local: list[str] = []
    for job in sorted(scope.job_ids):
        try:
            paths = job_paths(sandbox, scope.user, job, scope.base)
        except LookupError:
            continue
        shared += [paths[k] for k in SHARED_PATHS if paths.get(k)]
        local += [paths[k] for k in NODE_LOCAL_PATHS if paths.get(k)]
    # job_container/tmpfs: each job's private /tmp, on the shared disk under its node's base
    shared += [str(job_tmp(node, job)) for job in sorted(scope.job_ids) for node in NODES]
    found = [f"login:{p}" for p in existing(sandbox, "login", shared + local)]
    for host in CLUSTER_HOSTS:
        if host != "login":
            found += [f"{host}:{p}" for p in existing(sandbox, host, local)]
    return found


# -- processes ----------------------------------------------------------------------------------


def _read(pid: str, what: str) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/{what}").read_bytes().split(b"\0")
    except OSError:
        return []


def _job_words(argv: list[str], commands: Sequence[str] = JOB_COMMANDS) -> set[str]:
    """Job ids a helper command line names (the word after a command that takes one)."""
    words: list[str] = []
    for arg in argv:
        try:
            words += shlex.split(arg) if " " in arg else [arg]
        except ValueError:
            words.append(arg)
    if not any(w.endswith("nodebook-remote") for w in words):
        return set()
    return {words[i + 1] for i, w in enumerate(words[:-1]) if w in commands}


def processes(scope: Scope, paths: Iterable[str] = ()) -> tuple[list[str], list[str]]:
    """(`pid args` of the jobs' processes on any host, of the run's laptop processes)."""
    tags = {f"{k}={j}".encode() for j in scope.job_ids for k in TAGS}
    # a job's path, not a longer one (job 5's runtime dir is not job 50's)
    named = re.compile("|".join(re.escape(p) + r"(?![\w-])" for p in paths if p) or "(?!)")
    tmps = [str(t) for t in scope.tmp_dirs]
    envs = {f"TMPDIR={t}".encode() for t in tmps}
    envs |= {f"NODEBOOK_STATE_DIR={s}".encode() for s in scope.state_dirs}
    me = {str(os.getpid()), str(os.getppid())}
    remote: list[str] = []
    local: list[str] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or entry in me or int(entry) in scope.ignore_pids:
            continue
        argv = [a.decode(errors="replace") for a in _read(entry, "cmdline") if a]
        if not argv:
            continue
        line = f"{entry} {' '.join(argv)}"
        env = set(_read(entry, "environ"))
        if env & tags or _job_words(argv) & scope.job_ids or named.search(line):
            remote.append(line)
        elif env & envs or any(t in line for t in tmps):
            local.append(line)
    return sorted(remote), sorted(local)


# -- the laptop ---------------------------------------------------------------------------------

PROBE_PORT = (
    "import socket, sys\n"
    "s = socket.socket(); s.settimeout(2)\n"
    "sys.exit(s.connect_ex(('127.0.0.1', int(sys.argv[1]))) != 0)\n"
)


def port_listening(port: int) -> bool:
    """True when something on the laptop accepts connections on 127.0.0.1:port."""
    if in_laptop():
        with socket.socket() as s:
            s.settimeout(2)
            return s.connect_ex(("127.0.0.1", port)) == 0
    return run(laptop_argv(["python3", "-c", PROBE_PORT, str(port)]), check=False).returncode == 0


def local_files(scope: Scope) -> list[str]:
    """Files left in the run's TMPDIRs, and session records of its jobs in its state dirs."""
    found: list[str] = []
    for tmp in scope.tmp_dirs:
        if tmp.is_dir():
            found += [str(p) for p in tmp.iterdir() if str(p) not in scope.ignore_files]
    for state in scope.state_dirs:
        for job in scope.job_ids:
            found += [str(p) for p in state.glob(f"*/{job}.json")]
    return sorted(found)


# -- the checker --------------------------------------------------------------------------------


def find(sandbox: Sandbox, scope: Scope, *, files: bool = True, local: bool = True) -> dict:
    """What the run left: {kind: [items]} for every kind with something in it.

    ``files=False`` skips files (a SIGKILLed driver cannot remove its temp dir, and the cluster
    side is checked elsewhere); ``local=False`` skips the laptop (an orphaned master outlives a
    SIGKILLed driver by its ControlPersist).
    """
    ids = sorted(scope.job_ids)
    queued = set(sandbox.squeue()) if ids else set()
    problems: dict[str, list[str]] = {"jobs": [j for j in ids if j in queued]}
    named: list[str] = []
    problems["unknown_paths"] = []  # a job whose paths are unknown cannot be checked: a failure
    for job in ids:
        try:
            paths = job_paths(sandbox, scope.user, job, scope.base)
        except LookupError as exc:
            problems["unknown_paths"].append(str(exc))
            continue
        named += [paths[k] for k in (*SHARED_PATHS, *NODE_LOCAL_PATHS) if paths.get(k)]
    remote, laptop = processes(scope, named)
    problems["remote_processes"] = remote
    if local:
        problems["laptop_processes"] = laptop
        problems["port"] = [str(p) for p in scope.ports if port_listening(p)]
    if files:
        problems["remote_files"] = cluster_files(sandbox, scope)
        if local:
            problems["local_files"] = local_files(scope)
    return {k: v for k, v in problems.items() if v}


def wait_clean(
    sandbox: Sandbox, scope: Scope, timeout: float = 30, *, files: bool = True, local: bool = True
) -> dict:
    """Look again (every second) until nothing is left or the time is up; the last finding."""
    deadline = time.monotonic() + timeout
    while True:
        left = find(sandbox, scope, files=files, local=local)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(1)


def assert_clean(sandbox: Sandbox, scope: Scope, timeout: float = 30, **kw: bool) -> None:
    left = wait_clean(sandbox, scope, timeout, **kw)
    assert left == {}, f"left behind: {left}"


def cancel(
    sandbox: Sandbox, job_ids: Iterable[str], users: Sequence[str] = ("alice", "bob")
) -> None:
    """Finalizer: cancel exactly these jobs (never a user's other jobs), Slurm's and standalone
    servers' (by their pid file, through the helper of each user's default setup)."""
    ids = sorted(set(job_ids))
    slurm = [j for j in ids if j.isdigit()]
    if slurm:
        sandbox.host("login", ["scancel", *slurm], check=False)
    for job in (j for j in ids if re.fullmatch(r"s\d+", j)):
        for user in users:
            command = f"{rules().helper_command(DEFAULT_BASE)} cancel --scheduler none --job {job}"
            sandbox.host("login", ["bash", "-c", command], user=user, check=False)


def kill_local(scope: Scope) -> None:
    """Finalizer: SIGTERM the run's laptop processes (drivers, masters, tunnels)."""
    for line in local_processes(scope.tmp_dirs):
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(line.split()[0]), 15)


def job_processes(job_ids: Iterable[str]) -> list[str]:
    """`pid args` of the processes of these jobs on any host, right now (tags and helper
    commands; see ``processes``)."""
    return processes(Scope(job_ids=set(job_ids)))[0]


def local_processes(tmp_dirs: Iterable[Path]) -> list[str]:
    """`pid args` of the laptop processes carrying one of these TMPDIRs, right now."""
    return processes(Scope(tmp_dirs=list(tmp_dirs)))[1]


def tunnel_processes(job_id: str) -> list[str]:
    """`pid args` of what holds a tunnel to this job open, on any host: the remote ends
    (NODEBOOK_TUNNEL=JOB: ``nodebook-remote hold``'s cat, a hop's inner ssh) and every process
    whose argv runs ``nodebook-remote hold|hop JOB`` (the laptop's ssh that started one too)."""
    tag = f"NODEBOOK_TUNNEL={job_id}".encode()
    found: list[str] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        argv = [a.decode(errors="replace") for a in _read(entry, "cmdline") if a]
        words = _job_words(argv, ("hold", "hop"))
        if argv and (tag in set(_read(entry, "environ")) or job_id in words):
            found.append(f"{entry} {' '.join(argv)}")
    return found


def tidy(sandbox: Sandbox, drivers: Iterable[Any], users: Sequence[str] = ("alice", "bob")) -> None:
    """Finalizer for DriverProcesses, whatever state they are in: kill them, cancel their jobs,
    end their laptop processes (masters, tunnels), remove their private dirs."""
    drivers = list(drivers)
    for d in drivers:
        d.kill()
    cancel(sandbox, set().union(*(d.job_ids for d in drivers)) if drivers else set(), users)
    for d in drivers:
        kill_local(Scope(tmp_dirs=[d.tmp], state_dirs=[d.state]))
        d.remove_work()


def in_job(
    sandbox: Sandbox, job_id: str, argv: Sequence[str], user: str | None = None, **kw: Any
) -> Any:
    """Run argv on the job's node inside the job's own mount namespace, as root or ``user``:
    where a login adopted into the job would be (its private /tmp, on a cluster that gives each
    job one)."""
    for line in job_processes([job_id]):
        pid, _, args = line.partition(" ")
        if args.endswith("nodebook-remote job"):
            who = ["runuser", "-u", user, "--"] if user else []
            return run(["nsenter", "-t", pid, "-m", "-n", "-u", "--", *who, *argv], **kw)
    raise AssertionError(f"no `nodebook-remote job` process of job {job_id} found")
