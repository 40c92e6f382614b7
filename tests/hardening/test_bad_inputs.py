"""Bad inputs and broken clusters, table-driven, on the sandbox.

Every case builds its broken condition from real parts (temp inventories and ssh configs,
stopped daemons, a user whose setup is moved aside, a job script variant), runs the driver, and
asserts: the exit code documented in `python -m driver --help`, one line that names the cause
and the fix, and that nothing of this run is left (its jobs, its processes on every host, its
ssh masters and tunnels, its port, its temp files). Conditions are restored in finalizers.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.hardening.conftest import (
    daemons_stopped,
    inventory_with_config,
    job_script_variant,
    laptop_listener,
    partition_down,
    setup_moved_aside,
    ssh_config_variant,
    write_inventory,
)
from tests.harness import alive, leftovers
from tests.harness.driver import DriverProcess
from tests.harness.sandbox import KNOWN_HOSTS, SSH_DIR, Sandbox
from tests.harness.setup import run_setup, user_password

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(600)]

SESSION = ("session",)
KNOWN_HOSTS_LINE = f"UserKnownHostsFile {KNOWN_HOSTS}"
IDENTITY_LINE = f"IdentityFile {SSH_DIR}/id_%r"


@dataclass
class Ctx:
    """What a case's condition adds to the run, and hooks into it."""

    sandbox: Sandbox
    tmp: Path
    args: list[str] = field(default_factory=list)
    on_submitted: Callable[[], None] | None = None  # e.g. put setup.json back after sbatch


Condition = Callable[[Ctx], AbstractContextManager[object]]
During = Callable[[Ctx, DriverProcess], None]


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]
    code: int
    cause: str  # regex the one line must match
    fix: str  # regex the same line must match
    user: str = "alice"
    condition: Condition | None = None
    during: During | None = None
    after: Callable[[Ctx], None] | None = None
    submits: bool | None = None  # True: a job was submitted; False: none was
    where: str = "line"  # "line": the final coded line; "output": anywhere in the output


# --- conditions ------------------------------------------------------------------------------


@contextlib.contextmanager
def _inventory(ctx: Ctx, **kw: str) -> Iterator[None]:
    ctx.args += ["-i", str(write_inventory(ctx.tmp / "inv.yml", **kw))]
    yield


@contextlib.contextmanager
def _config(ctx: Ctx, edit: Callable[[str], str]) -> Iterator[None]:
    ctx.args += ["-i", str(inventory_with_config(ctx.tmp, ssh_config_variant(ctx.tmp, edit)))]
    yield


def unreachable(ctx: Ctx) -> AbstractContextManager[None]:
    return _inventory(ctx, host="10.251.1.99", ssh_args="-o ConnectTimeout=3")


def strict_off(ctx: Ctx) -> AbstractContextManager[None]:
    return _inventory(ctx, ssh_args="-o StrictHostKeyChecking=no")


def rejected_key(ctx: Ctx) -> AbstractContextManager[None]:
    key = ctx.tmp / "wrong_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return _config(ctx, lambda t: t.replace(IDENTITY_LINE, f"IdentityFile {key}"))


def unknown_host_key(ctx: Ctx) -> AbstractContextManager[None]:
    empty = ctx.tmp / "known_hosts"
    empty.write_text("")
    return _config(ctx, lambda t: t.replace(KNOWN_HOSTS_LINE, f"UserKnownHostsFile {empty}"))


def ssh_config_error(ctx: Ctx) -> AbstractContextManager[None]:
    return _config(ctx, lambda t: t + "  NoSuchOption yes\n")


@contextlib.contextmanager
def inventory_missing(ctx: Ctx) -> Iterator[None]:
    ctx.args += ["-i", str(ctx.tmp / "no-such-inventory.yml")]
    yield


@contextlib.contextmanager
def inventory_file(ctx: Ctx, text: str) -> Iterator[None]:
    path = ctx.tmp / "inventory.yml"
    path.write_text(text)
    ctx.args += ["-i", str(path)]
    yield


@contextlib.contextmanager
def setup_never_run(ctx: Ctx) -> Iterator[None]:
    with setup_moved_aside("bob") as sj:
        yield
        sj.restore()


def variant(
    edit: Callable[[str], str] | None = None, helper: Callable[[str], str] | None = None
) -> Condition:
    """The job runs an edited job script (module loads) or an edited helper (Jupyter's start)."""

    @contextlib.contextmanager
    def cond(ctx: Ctx) -> Iterator[None]:
        with job_script_variant("bob", edit, helper) as sj:
            ctx.on_submitted = sj.restore
            yield

    return cond


def _replace(old: str, new: str) -> Callable[[str], str]:
    """An edit (job_script_variant checks that it changes the script, or one helper part)."""

    def edit(text: str) -> str:
        return text.replace(old, new)

    return edit


@contextlib.contextmanager
def busy_port(ctx: Ctx) -> Iterator[None]:
    with laptop_listener() as port:
        ctx.args += ["--port", str(port)]
        yield


def stopped(*names: str) -> Condition:
    return lambda ctx: daemons_stopped(ctx.sandbox, *names)


@contextlib.contextmanager
def long_partition_down(ctx: Ctx) -> Iterator[None]:
    with partition_down(ctx.sandbox, "long"):
        yield


@contextlib.contextmanager
def setup_vars(ctx: Ctx, **extra: str) -> Iterator[None]:
    """Setup's extra vars in a 0600 file (the password never on a command line)."""
    path = ctx.tmp / "setup-vars.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"nodebook_password_secret": user_password("bob"), **extra}, f)
    ctx.args += ["-e", f"@{path}"]
    yield


# --- actions during the run ------------------------------------------------------------------


def scancel_when_ready(ctx: Ctx, d: DriverProcess) -> None:
    job = d.wait_event("ready")["job_id"]
    ctx.sandbox.host("login", ["scancel", str(job)], user="alice")  # the user, elsewhere


def restart_slurmctld_then_ctrl_c(ctx: Ctx, d: DriverProcess) -> None:
    d.wait_event("ready")
    ctx.sandbox.cluster("daemon", "slurmctld", "restart", timeout=120)
    # The session survives it: the driver still runs, Jupyter still answers 200 through the
    # tunnel with the session's token, and `list` (once slurmctld answers) still says RUNNING.
    problems = alive.survived(d)
    assert problems == [], f"session did not survive the slurmctld restart: {problems}"
    d.signal(signal.SIGINT)


def stop_slurmctld_then_ctrl_c(ctx: Ctx, d: DriverProcess) -> None:
    """Slurm stops answering during a session, then Ctrl-C: the job cannot be cancelled, and the
    driver must say so (not "cleaned up"). Once the driver is out, slurmctld comes back, the job
    is found still running, and the test cancels it."""
    job = str(d.wait_event("ready")["job_id"])
    ctx.sandbox.cluster("daemon", "slurmctld", "stop", timeout=60)
    try:
        d.signal(signal.SIGINT)
        d.wait(timeout=120)
    finally:
        ctx.sandbox.cluster("daemon", "slurmctld", "start", timeout=120)
    assert ctx.sandbox.scontrol_job(job).get("JobState") == "RUNNING"
    ctx.sandbox.host("login", ["scancel", job], user="alice")


def interrupt_setup(ctx: Ctx, d: DriverProcess) -> None:
    """Ctrl-C (SIGINT to the foreground process group) as soon as setup starts its pip install
    (the task's start event: no pause to guess how far it got)."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        d.drain(0.5)
        if any("Install the pinned requirements" in str(e.get("message")) for e in d.events):
            break
        assert d.poll() is None, f"setup ended before it was interrupted: {d.output[-3000:]}"
    d.ctrl_c()


def rerun_setup(ctx: Ctx) -> None:
    run = run_setup(ctx.sandbox, "bob")
    assert run.rc == 0 and run.failed() == 0, run.output[-4000:]


# --- the table -------------------------------------------------------------------------------

USAGE, NOT_SET_UP, SSH, SCHED, ENDED, NOT_FOUND, INTERRUPTED = 2, 3, 4, 5, 6, 9, 130
SSH_FIX = r"; (check|fix|the login node's host key)"

CASES = [
    # local checks: nothing touches the network
    Case("time-malformed", ("--time", "2h"), USAGE, r"--time '2h'", r"use HH:MM:SS", submits=False),
    Case("time-zero", ("--time", "0"), USAGE, r"--time '0'", r"longer than zero", submits=False),
    Case(
        "mem-malformed", ("--mem", "8GB"), USAGE, r"--mem '8GB'", r"a size like 8G", submits=False
    ),
    Case("cpus-zero", ("--cpus", "0"), USAGE, r"--cpus 0", r"at least 1", submits=False),
    Case(
        "cpus-not-a-number",
        ("--cpus", "two"),
        USAGE,
        r"argument --cpus: invalid int value: 'two'",
        r"usage: nodebook session",
        submits=False,
        where="output",
    ),
    Case(
        "gpus-malformed",
        ("--gpus", "a100:0"),
        USAGE,
        r"--gpus 'a100:0'",
        r"TYPE:COUNT",
        submits=False,
    ),
    Case(
        "port-below-1024", ("--port", "80"), USAGE, r"--port 80", r"pick 1024-65535", submits=False
    ),
    Case(
        "unknown-cluster",
        ("--cluster", "nosuch"),
        USAGE,
        r"no host 'nosuch'",
        r"pick one of .*sandbox.* with --cluster",
        submits=False,
    ),
    Case(
        "inventory-missing",
        (),
        USAGE,
        r"no-such-inventory.yml does not exist",
        r"pass -i PATH",
        condition=inventory_missing,
        submits=False,
    ),
    Case(
        "inventory-not-yaml",
        (),
        USAGE,
        r"cannot read inventory .*YAML parsing failed",
        r"fix the file",
        condition=lambda ctx: inventory_file(ctx, "all: [\n  hosts: {\n"),
        submits=False,
    ),
    Case(
        "inventory-without-hosts",
        (),
        USAGE,
        r"defines no hosts",
        r"add your cluster's login node",
        condition=lambda ctx: inventory_file(ctx, "all:\n  vars:\n    x: 1\n"),
        submits=False,
    ),
    Case(
        "host-key-checking-off",
        (),
        USAGE,
        r"StrictHostKeyChecking=no is refused",
        r"pin the host keys",
        condition=strict_off,
        submits=False,
    ),
    # ssh
    Case(
        "unreachable-login-host",
        (),
        SSH,
        r"cannot ssh to 10\.251\.1\.99: .*(timed out|No route|unreachable)",
        r"reachable from here",
        condition=unreachable,
        submits=False,
    ),
    Case(
        "wrong-user",
        ("--user", "mallory"),
        SSH,
        r"mallory@.*Permission denied",
        r"check the user name",
        submits=False,
    ),
    Case(
        "rejected-key",
        (),
        SSH,
        r"Permission denied \(publickey",
        r"the key \(ansible_ssh_private_key_file\)",
        condition=rejected_key,
        submits=False,
    ),
    Case(
        "unknown-host-key",
        (),
        SSH,
        r"host key is known",
        r"known_hosts: verify its fingerprint",
        condition=unknown_host_key,
        submits=False,
    ),
    Case(
        "ssh-config-error",
        (),
        SSH,
        r"Bad configuration option: nosuchoption",
        r"fix the ssh config error",
        condition=ssh_config_error,
        submits=False,
    ),
    # the cluster's state
    Case(
        "setup-never-run",
        (),
        NOT_SET_UP,
        r"not set up for bob .*no /home/bob/\.nodebook/setup\.json",
        r"run `nodebook setup` first",
        user="bob",
        condition=setup_never_run,
        submits=False,
    ),
    Case(
        "missing-module",
        ("setup", "-e", "nodebook_environment_module=conda-python/3.9"),
        1,
        r"module conda-python/3.9 does not exist",
        r"Close matches from `module avail`: .*conda-python/3.11",
        user="bob",
        condition=setup_vars,
        where="output",
        submits=False,
    ),
    Case(
        "interrupted-setup-rerun",
        ("setup",),
        INTERRUPTED,
        r"setup was interrupted",
        r"run `nodebook setup` again",
        user="bob",
        condition=setup_vars,
        during=interrupt_setup,
        after=rerun_setup,
        submits=False,
    ),
    # the scheduler
    Case(
        "bad-partition",
        ("--partition", "nosuch"),
        SCHED,
        r"(?i)sbatch refused the job: .*invalid partition",
        r"`sinfo -s`",
        submits=False,
    ),
    Case(
        "time-over-partition-limit",
        ("--partition", "debug", "--time", "01:00:00"),
        SCHED,
        r"sbatch refused the job: .*time limit",
        r"ask for less --time, .*`sinfo -s` lists the partitions' limits",
        submits=False,
    ),
    Case(
        "pending-longer-than-limit",
        ("--partition", "long", "--pending-limit", "5"),
        SCHED,
        r"job \d+ still PENDING \(PartitionDown\) after 5 s",
        r"raise --pending-limit",
        condition=long_partition_down,
        submits=True,
    ),
    Case(
        "slurmctld-down",
        (),
        SCHED,
        r"Slurm does not answer",
        r"retry when `squeue` works",
        condition=stopped("slurmctld"),
        submits=False,
    ),
    Case(
        "busy-local-port",
        (),
        USAGE,
        r"local port \d+ is in use",
        r"pick another with --port",
        condition=busy_port,
        submits=False,
    ),
    # the job
    Case(
        "job-dies-at-start-module-load",
        (),
        ENDED,
        r"module load nosuch/0.0 failed",
        r"fix what the log names",
        user="bob",
        condition=variant(_replace("module load conda-python/3.11", "module load nosuch/0.0")),
        submits=True,
    ),
    Case(
        "jupyter-fails-to-start",
        (),
        ENDED,
        r"Jupyter did not start: .*(jupyter exited before it answered|nonexistent)",
        r"fix what the log names",
        user="bob",
        condition=variant(
            helper=_replace(
                '"${args[@]}" --no-browser &',
                '"${args[@]}" --no-browser --ServerApp.root_dir=/nonexistent-nb &',
            )
        ),
        submits=True,
    ),
    Case(
        "connection-file-disk-full",
        (),
        ENDED,
        r"No space left on device",
        r"fix what the log names",
        user="bob",
        condition=variant(
            helper=_replace(
                'os.open(conn_path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)',
                'os.open("/dev/full", os.O_WRONLY)',
            )
        ),
        submits=True,
    ),
    Case(
        "compute-node-sshd-down",
        (),
        7,
        # what the login node met at the node's sshd (the helper's probe), not a guess
        r"nothing on cn0\d accepts ssh \(ssh: connect to cn0\d port 22: Connection refused\)",
        r"use --tunnel via-login",
        condition=stopped("sshd-cn01", "sshd-cn02"),
        submits=True,
    ),
    Case(
        "job-cancelled-externally",
        (),
        ENDED,
        r"cancelled by you, outside this session",
        r"start a new one with `nodebook session`",
        during=scancel_when_ready,
        submits=True,
    ),
    # Walltime reached: tests/e2e/test_real_work.py (with memory and scancel, concurrently).
    Case(
        "slurmctld-restarted-mid-session",
        (),
        INTERRUPTED,
        r"interrupted; cleaned up",
        r"interrupted; cleaned up",
        during=restart_slurmctld_then_ctrl_c,
        submits=True,
    ),
    Case(
        "slurmctld-down-at-ctrl-c",
        (),
        SCHED,
        r"^error: job \d+ may still be running: could not cancel job \d+: Slurm does not answer",
        r"end it sooner with `nodebook stop \d+ --cluster sandbox`$",
        during=stop_slurmctld_then_ctrl_c,
        submits=True,
    ),
    Case(
        "attach-to-no-such-job",
        ("attach", "999999"),
        NOT_FOUND,
        r"job 999999 has no running Jupyter",
        r"see `nodebook list`",
    ),
]


def _final_line(d: DriverProcess) -> str:
    coded = [e for e in d.events if "code" in e and e.get("event") in ("error", "info")]
    return str(coded[-1]["message"]) if coded else ""


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(
    sandbox: Sandbox, nodebook_setup: Callable[[str], object], tmp_path: Path, case: Case
) -> None:
    nodebook_setup(case.user)  # only the case's user: bob's cases run in bob's lane
    ctx = Ctx(sandbox, tmp_path)
    d: DriverProcess | None = None
    try:
        with contextlib.ExitStack() as stack:
            if case.condition is not None:
                stack.enter_context(case.condition(ctx))
            command = case.args[:1] if case.args[:1] in (("setup",), ("attach",)) else SESSION
            args = [*command, *case.args[len(command) if command != SESSION else 0 :], *ctx.args]
            if args[0] in ("session", "attach"):
                args += ["--no-browser", "--check-interval", "1"]
            if args[0] == "session":
                args += ["--allow-second"]
            if case.user != "alice":
                args += ["--user", case.user]
            d = DriverProcess(args)
            if ctx.on_submitted is not None:
                with contextlib.suppress(AssertionError):
                    d.wait_event("submitted", timeout=90)
                ctx.on_submitted()
            if case.during is not None:
                case.during(ctx, d)
            rc = d.wait(timeout=300)
        text = _final_line(d) if case.where == "line" else d.output
        assert rc == case.code, f"exit {rc}, want {case.code}: {d.output[-3000:]}"
        assert re.search(case.cause, text), f"cause {case.cause!r} not in: {text[-3000:]}"
        assert re.search(case.fix, text), f"fix {case.fix!r} not in: {text[-3000:]}"
        if case.where == "line":
            assert "\n" not in text and text.startswith(("error: ", "interrupted", "SIG")), text
        if case.submits is not None:
            assert bool(d.job_ids) == case.submits, f"job ids {d.job_ids}: {d.output[-2000:]}"
        scope = leftovers.scope_of([d], case.user)
        leftovers.assert_clean(sandbox, scope, timeout=60)
        if case.after is not None:
            case.after(ctx)
    finally:
        if d is not None:
            leftovers.tidy(sandbox, [d])
