"""A lost tunnel, a laptop that sleeps, a network that changes: the session comes back.

A session is a lease (--lease): an outage longer than --reconnect-bound but inside the lease
cancels nothing, and the same URL answers again with the kernel's state kept. A closed lid is a
cgroup v2 freezer holding every process of the driver (the driver, its ssh master, which forks
into the background, and the tunnel, in a session of its own: SIGSTOP of a process group would
miss the last two) while an nft rule in the laptop's namespace drops its packets silently (a
link taken down fails sends at once, which no lost Wi-Fi does). Keepalives and the bound are
short settings here: nothing waits for ssh's defaults.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from driver.errors import ExitCode
from tests.e2e.conftest import http_status, token_of
from tests.harness import alive, leftovers
from tests.harness.sandbox import Sandbox

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(300)]

CGROUP_ROOT = Path("/sys/fs/cgroup/unified")  # cgroup v2 (this machine's hybrid layout)
RUN_CELL = Path(__file__).with_name("run_cell.py")
VENV_PY = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "python"
LAPTOP_ADDRESS, NEW_ADDRESS = "10.251.1.2/24", "10.251.1.3/24"
SHORT = ["--reconnect-bound", "4", "--keepalive", "1"]  # an outage past both within seconds
DROP = """table inet nodebook_test_sleep {
  chain out { type filter hook output priority 0; policy accept; oifname "eth0" drop; }
  chain in { type filter hook input priority 0; policy accept; iifname "eth0" drop; }
}
"""


def tunnel_pid(test_tmp, port: int) -> int:
    """The jump tunnel's ssh (the one holding -L 127.0.0.1:<port>:...), not the master."""
    spec = f"127.0.0.1:{port}:"
    found = [
        ln for ln in leftovers.local_processes([test_tmp]) if ln.split()[1] == "ssh" and spec in ln
    ]
    assert len(found) == 1, found
    return int(found[0].split()[0])


def test_killed_tunnel_is_re_established_and_the_session_continues(
    sandbox, drive, nothing_left, test_tmp
):
    d = drive(["session", "--cluster", "sandbox", "--allow-second"])
    ready = d.wait_event("ready", timeout=90)
    job, port, token = ready["job_id"], ready["local_port"], token_of(ready)
    assert http_status(sandbox, port, token) == 200
    old = tunnel_pid(test_tmp, port)
    os.kill(old, signal.SIGKILL)
    d.wait_event("info", timeout=30)  # "tunnel lost, reconnecting"
    back = d.wait_event("info", timeout=60)
    assert back["message"] == "tunnel re-established", d.events
    # the same URL answers again, through a new tunnel process, and the job is the same one
    assert http_status(sandbox, port, token) == 200
    assert http_status(sandbox, port, None) == 403
    assert tunnel_pid(test_tmp, port) != old
    assert job in sandbox.squeue("alice") and d.poll() is None
    # the session goes on: the heartbeat still runs (the job's heartbeat file is refreshed)
    alive.beats(sandbox, job, 1, bound=15)
    d.signal(signal.SIGINT)
    assert d.wait() == ExitCode.INTERRUPTED
    nothing_left(job, port)


def until(what: str, check, timeout: float) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` when ``timeout`` passes first."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.2)


@pytest.fixture
def cgroup() -> Iterator[Path]:
    """A cgroup v2 of its own for the test's driver (and every process it starts)."""
    if not (CGROUP_ROOT / "cgroup.procs").exists():
        pytest.fail(f"no cgroup v2 hierarchy at {CGROUP_ROOT}: the freezer test needs one")
    path = CGROUP_ROOT / f"nodebook-test-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    try:
        yield path
    finally:
        (path / "cgroup.freeze").write_text("0\n")
        (path / "cgroup.kill").write_text("1\n")  # whatever of the driver's is left
        until("the test's cgroup empties", lambda: "populated 0" in events(path), 10)
        path.rmdir()


def events(cgroup: Path) -> str:
    return (cgroup / "cgroup.events").read_text()


def thaw(cgroup: Path) -> None:
    (cgroup / "cgroup.freeze").write_text("0\n")


def network_back(sandbox: Sandbox) -> None:
    sandbox.laptop(["nft", "delete", "table", "inet", "nodebook_test_sleep"], check=False)


@contextlib.contextmanager
def lid_closed(sandbox: Sandbox, cgroup: Path) -> Iterator[None]:
    """Every process of the driver frozen and the laptop's packets dropped silently; the block
    may wake the driver (``thaw``) and bring the network back (``network_back``) in either
    order; whatever it did not is undone when it ends."""
    sandbox.laptop(["nft", "-f", "-"], input=DROP)
    try:
        (cgroup / "cgroup.freeze").write_text("1\n")
        until("the driver's processes freeze", lambda: "frozen 1" in events(cgroup), 10)
        yield
    finally:
        thaw(cgroup)
        network_back(sandbox)


def cell(sandbox: Sandbox, ready: dict, code: str, kernel_id: str = "") -> dict:
    """Run code in a kernel of the session (a new one, kept running; or ``kernel_id``)."""
    argv = ["env", f"JUPYTER_TOKEN={token_of(ready)}", str(VENV_PY), str(RUN_CELL)]
    argv += [str(ready["local_port"]), "python3", "--keep"]
    argv += [f"--in={kernel_id}"] if kernel_id else []
    out = sandbox.laptop(argv, input=code, timeout=180)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] == "ok", result
    return result


def heartbeat_age(sandbox: Sandbox, job: str) -> float:
    return time.time() - os.stat(leftovers.job_paths(sandbox, "alice", job)["heartbeat"]).st_mtime


def notes(d) -> str:
    return " | ".join(str(e.get("message")) for e in d.events if e["event"] in ("info", "error"))


def said(d, words: str) -> bool:
    """The driver's lines so far (reading what came) have ``words``."""
    d.drain(0.2)
    return words in notes(d)


def started(sandbox: Sandbox, drive, cgroup: Path, lease: str = "120"):
    """A session whose driver runs in ``cgroup``, ready, with ``answer`` set in a kernel."""
    args = ["session", "--cluster", "sandbox", "--allow-second", *SHORT, "--lease", lease]
    d = drive(args, cgroup=cgroup)
    ready = d.wait_event("ready", timeout=90)
    return d, ready, cell(sandbox, ready, "answer = 6 * 7")["kernel_id"]


def test_a_laptop_that_sleeps_inside_the_lease_comes_back_with_its_kernel(
    sandbox, drive, nothing_left, cgroup
):
    d, ready, kernel = started(sandbox, drive, cgroup)
    job, port, token = ready["job_id"], ready["local_port"], token_of(ready)
    with lid_closed(sandbox, cgroup):
        until("a while asleep", lambda: heartbeat_age(sandbox, job) > 8, 60)
        # The laptop wakes before its network is back (Wi-Fi, a VPN): the driver notices and
        # finds the cluster unreachable for longer than the reconnect bound and three
        # keepalives (4 s and 3 s). The old rule gave up here (exit 7) and cancelled the job.
        thaw(cgroup)
        until("the driver is still trying", lambda: said(d, "still trying until"), 60)
        network_back(sandbox)
        until("the same URL answers again", lambda: http_status(sandbox, port, token) == 200, 10)
    assert cell(sandbox, ready, "print(answer)", kernel)["stdout"].strip() == "42"
    until("the driver says it is back", lambda: said(d, "back after"), 30)
    assert "this machine was away for" in notes(d), d.events
    assert job in sandbox.squeue("alice") and d.poll() is None
    d.ctrl_c()
    assert d.wait(timeout=60) == ExitCode.INTERRUPTED
    nothing_left(job, port)


def test_a_laptop_that_sleeps_past_the_lease_finds_the_job_ended_and_says_why(
    sandbox, drive, nothing_left, cgroup
):
    d = drive(["session", "--cluster", "sandbox", "--allow-second", *SHORT, "--lease", "6"],
              cgroup=cgroup)  # fmt: skip
    ready = d.wait_event("ready", timeout=90)
    job, port = ready["job_id"], ready["local_port"]
    with lid_closed(sandbox, cgroup):
        until("the job ends itself", lambda: job not in sandbox.squeue("alice"), 60)
    assert d.wait(timeout=90) == ExitCode.JOB_ENDED, d.events
    errors = [e for e in d.events if e["event"] in ("error", "ended")]
    assert errors and "ended itself while this machine was away" in errors[-1]["message"], d.events
    assert "this machine was away for" in notes(d), d.events
    assert not leftovers.local_processes([d.tmp])
    nothing_left(job, port)
    log = sandbox.host("login", ["cat", leftovers.job_paths(sandbox, "alice", job)["log"]]).stdout
    assert "no heartbeat" in log


def test_a_network_that_changes_while_awake_comes_back_by_itself(
    sandbox, drive, nothing_left, cgroup
):
    d, ready, kernel = started(sandbox, drive, cgroup)
    job, port, token = ready["job_id"], ready["local_port"], token_of(ready)
    try:
        # Another network: the laptop's address goes away, a new one comes (the connections
        # made from the old one hang: only ssh's keepalives can tell).
        sandbox.laptop(["ip", "addr", "del", LAPTOP_ADDRESS, "dev", "eth0"])
        sandbox.laptop(["ip", "addr", "add", NEW_ADDRESS, "dev", "eth0"])
        until("the tunnel is re-established", lambda: said(d, "tunnel re-established"), 60)
        assert http_status(sandbox, port, token) == 200
        assert cell(sandbox, ready, "print(answer)", kernel)["stdout"].strip() == "42"
        assert job in sandbox.squeue("alice") and d.poll() is None
        d.ctrl_c()
        assert d.wait(timeout=60) == ExitCode.INTERRUPTED
    finally:  # the sandbox's own address back, for the tests after this one
        sandbox.laptop(["ip", "addr", "del", NEW_ADDRESS, "dev", "eth0"], check=False)
        sandbox.laptop(["ip", "addr", "replace", LAPTOP_ADDRESS, "dev", "eth0"], check=False)
    nothing_left(job, port)


def test_attach_after_a_reboot_reopens_the_same_url(sandbox, drive, nothing_left, cgroup):
    _, ready, kernel = started(sandbox, drive, cgroup)
    job, port, token = ready["job_id"], ready["local_port"], token_of(ready)
    # A reboot: the driver, its master and its tunnel end at once, and clean nothing up.
    (cgroup / "cgroup.kill").write_text("1\n")
    until("the driver's processes are gone", lambda: "populated 0" in events(cgroup), 10)
    assert http_status(sandbox, port, token) == 0
    again = drive(["attach", job, "--cluster", "sandbox"])
    back = again.wait_event("ready", timeout=90)
    assert back["local_port"] == port and back["url"] == ready["url"], (ready, back)
    assert http_status(sandbox, port, token) == 200
    assert cell(sandbox, back, "print(answer)", kernel)["stdout"].strip() == "42"
    again.ctrl_c()
    assert again.wait(timeout=60) == ExitCode.INTERRUPTED
    nothing_left(job, port)
