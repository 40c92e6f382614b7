"""The sandbox cluster from the outside: where its files are, and running commands on its hosts.

Every path of the sandbox the tests and benchmarks use is defined here once. Commands run on a
host through ``sandbox/cluster.py exec HOST`` (as root, or as a user in a login shell); the
hosts share the machine's pid namespace, so /proc shows every host's processes.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from driver.paths import SANDBOX_INVENTORY

REPO = Path(__file__).resolve().parents[2]
STATE = Path(os.environ.get("NODEBOOK_SANDBOX_STATE", "/var/lib/nodebook-sandbox"))
SSH_DIR = STATE / "ssh"
SSH_CONFIG = SSH_DIR / "config"
KNOWN_HOSTS = SSH_DIR / "known_hosts"
CLUSTER = [sys.executable, str(REPO / "sandbox" / "cluster.py")]
VENV_PY = REPO / ".venv" / "bin" / "python"
PY = str(VENV_PY if VENV_PY.exists() else Path(sys.executable))
INVENTORY = SANDBOX_INVENTORY
NODES = ("cn01", "cn02")
CLUSTER_HOSTS = ("login", *NODES)


@contextlib.contextmanager
def cluster_module(name: str) -> Iterator[ModuleType]:
    """sandbox/cluster.py imported as module ``name``, for tests of its parts; gone after."""
    spec = importlib.util.spec_from_file_location(name, REPO / "sandbox" / "cluster.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[name]


def job_tmp(node: str, job_id: str) -> Path:
    """Where job_container/tmpfs keeps a job's private /tmp (``<this>/.<job>``), on the
    machine's disk (BasePath <state>/slurm/jobtmp, and Slurm adds the node); Slurm removes it
    when the job ends."""
    return STATE / "slurm" / "jobtmp" / node / job_id


def run(
    argv: Sequence[str],
    *,
    input: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run argv from the repository's root; with ``check`` a failure raises with its output."""
    full_env = None if env is None else {**os.environ, **env}
    proc = subprocess.run(
        list(argv),
        input=input,
        env=full_env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=None if input is not None else subprocess.DEVNULL,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"command failed ({proc.returncode}): {shlex.join(argv)}\n"
            f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
        )
    return proc


def host_argv(name: str, argv: Sequence[str], user: str | None = None) -> list[str]:
    """argv that runs ``argv`` on a sandbox host: as root, or as ``user`` with a login's clean
    environment in the user's home, but no login shell: the cluster hosts' login shells talk
    (sandbox-site.sh), and the tests read the command's own output. A test that wants the login
    shell (``module``) runs ``bash -lc`` and finds its lines among the greeting's."""
    if not user:
        return [*CLUSTER, "exec", name, "--", *argv]
    home = f"/home/{user}"
    clean = ["env", "-i", f"HOME={home}", f"USER={user}", f"LOGNAME={user}", "SHELL=/bin/bash"]
    clean += ["PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"]
    in_home = ["sh", "-c", 'cd "$HOME" && exec "$@"', "sh", *argv]
    return [*CLUSTER, "exec", name, "--user", user, "--", *clean, *in_home]


def _namespaces(pid: int | str) -> tuple[str, str]:
    return (os.readlink(f"/proc/{pid}/ns/net"), os.readlink(f"/proc/{pid}/ns/uts"))


def in_laptop() -> bool:
    """True when this process already runs in the laptop's namespaces (a benchmark probe)."""
    with contextlib.suppress(OSError, ValueError):
        anchor = (STATE / "run" / "anchor-laptop.pid").read_text().strip()
        return _namespaces("self") == _namespaces(anchor)
    return False


def laptop_argv(argv: Sequence[str]) -> list[str]:
    """argv that runs ``argv`` as root in the laptop's namespaces (as is, when already there).

    ``cluster.py exec`` ends in exec (nsenter without a fork): the process started is the
    command itself, so its pid, signals and wait4 accounting are the command's.
    """
    return list(argv) if in_laptop() else host_argv("laptop", argv)


@dataclass(frozen=True)
class Sandbox:
    """Handles for tests and benchmarks: commands on the laptop, the cluster's hosts, over ssh."""

    state: Path = STATE
    owned: bool = False  # True when this test session started the cluster (and will stop it)

    @property
    def ssh_config(self) -> Path:
        return self.state / "ssh" / "config"

    @property
    def known_hosts(self) -> Path:
        return self.state / "ssh" / "known_hosts"

    @property
    def inventory(self) -> Path:
        return INVENTORY

    def secret(self, name: str) -> str:
        """A sandbox secret, e.g. `alice.password` or `alice.otp`."""
        return (self.state / "secrets" / name).read_text().strip()

    def cluster(self, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
        """Run `sandbox/cluster.py ARGS` (status, daemon NAME restart, link down, ...)."""
        return run([*CLUSTER, *args], **kw)  # type: ignore[arg-type]

    def laptop_argv(self, argv: Sequence[str]) -> list[str]:
        return laptop_argv(argv)

    def laptop(self, argv: Sequence[str], **kw: object) -> subprocess.CompletedProcess[str]:
        """Run argv as root in the laptop's network namespace, cwd = the repository."""
        return run(laptop_argv(argv), **kw)  # type: ignore[arg-type]

    def host(
        self, name: str, argv: Sequence[str], user: str | None = None, **kw: object
    ) -> subprocess.CompletedProcess[str]:
        """Run argv on login/cn01/cn02 (or laptop): as root, or as `user` in a login shell."""
        return run(host_argv(name, argv, user), **kw)  # type: ignore[arg-type]

    def out(self, name: str, argv: Sequence[str], user: str | None = None, **kw: object) -> str:
        """stdout of argv on a host, whatever its exit status."""
        return self.host(name, argv, user, check=False, **kw).stdout

    def ssh(
        self, user: str, command: str, host: str = "login", **kw: object
    ) -> subprocess.CompletedProcess[str]:
        """Run a remote command over ssh from the laptop, as a real user would: a compute
        node through the login node (the laptop knows only the login node's host key), while a
        job of the user runs there (pam_slurm_adopt admits no one else)."""
        argv = ["ssh", "-F", str(self.ssh_config), "-o", "BatchMode=yes", f"{user}@login"]
        if host == "login":
            return self.laptop([*argv, command], **kw)
        with self.holding(user, host):
            return self.laptop(
                [*argv, shlex.join(["ssh", "-o", "BatchMode=yes", host, command])], **kw
            )

    @contextlib.contextmanager
    def holding(self, user: str, node: str) -> Iterator[str]:
        """A job of ``user`` that sleeps on ``node`` for the block (its id), so that the user may
        ssh there; cancelled after."""
        sbatch = ["sbatch", "--parsable", "-w", node, "-t", "5", "-J", "holder", "-o", "/dev/null",
                  "--wrap", "exec sleep 300"]  # fmt: skip
        job = self.host("login", sbatch, user=user).stdout.strip().split(";")[0]
        try:
            state = ["squeue", "-h", "-j", job, "-o", "%T"]
            deadline = time.monotonic() + 30
            while self.out("login", state).strip() != "RUNNING":
                assert time.monotonic() < deadline, f"holder job {job} did not start on {node}"
                time.sleep(0.1)
            yield job
        finally:
            self.host("login", ["scancel", job], check=False)

    def fill_nodes(self, user: str = "alice") -> str:
        """A job of ``user`` on both nodes (16 CPUs each, exclusive; 5 min at most): a session's
        job waits behind it (PENDING, Resources) until the caller scancels it (its id)."""
        sbatch = ["sbatch", "--parsable", "-J", "filler", "-N", "2", "--exclusive", "-t", "5",
                  "-o", "/dev/null", "--wrap", "exec sleep 300"]  # fmt: skip
        return self.host("login", sbatch, user=user).stdout.strip().split(";")[0]

    def squeue(self, user: str | None = None) -> list[str]:
        """Job ids in the queue (all users, or one)."""
        argv = ["squeue", "-h", "-o", "%i"] + (["-u", user] if user else [])
        return self.host("login", argv).stdout.split()

    def scontrol_job(self, job_id: str) -> dict[str, str]:
        out = self.out("login", ["scontrol", "-o", "show", "job", job_id])
        return dict(f.split("=", 1) for f in out.split() if "=" in f)

    def user_processes(self, host: str, user: str) -> list[str]:
        """`pid args` lines of a user's processes (the hosts share one pid namespace)."""
        out = self.out(host, ["ps", "-ww", "-u", user, "-o", "pid=,args="])
        return [line.strip() for line in out.splitlines() if line.strip()]

    @property
    def profile(self) -> str:
        """The cluster hosts' module system: lmod or modules (`cluster.py up --profile`)."""
        with contextlib.suppress(FileNotFoundError):
            return (self.state / "profile").read_text().strip() or "lmod"
        return "lmod"

    def is_up(self) -> bool:
        return run([*CLUSTER, "status"], check=False).returncode == 0

    def up(self, profile: str = "lmod") -> None:
        run([*CLUSTER, "up", "--profile", profile], timeout=600)
