"""The session driver end to end on the sandbox: real Slurm, sshd and Jupyter, no mocks."""

from __future__ import annotations

import signal
import time

import pytest

from driver.errors import ExitCode
from tests.e2e.conftest import http_status, job_environment, token_of
from tests.harness import leftovers

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(300)]


def test_jump_session_api_with_and_without_token_then_ctrl_c(sandbox, drive, nothing_left):
    d = drive(["session", "--cluster", "sandbox", "--allow-second"])
    submitted = d.wait_event("submitted")
    ready = d.wait_event("ready", timeout=90)
    port = ready["data"]["local_port"]
    # the --json ready line's contract: url, job_id, node, local_port at the top level
    assert {"url", "job_id", "node", "local_port"} <= ready.keys()
    assert ready["local_port"] == port and ready["url"].startswith(f"http://127.0.0.1:{port}/")
    assert ready["job_id"] == submitted["job_id"]
    assert ready["node"] in ("cn01", "cn02")
    assert ready["data"]["tunnel"] == "jump"
    assert http_status(sandbox, port, token_of(ready)) == 200
    assert http_status(sandbox, port, None) == 403
    # Jupyter runs on the node the scheduler chose, under the job
    job = sandbox.scontrol_job(ready["job_id"])
    assert job.get("JobState") == "RUNNING" and job.get("NodeList") == ready["node"]
    # What the job was started with (its own process's environment, after the batch script's
    # login shell and module loads): the knobs, nothing of the submitting ssh session, and no
    # SLURM_GET_USER_ENV (slurmd would run alice's login shell through `su -` first: up to 1 s)
    env = job_environment(ready["job_id"])
    assert env["NODEBOOK_HEARTBEAT_TIMEOUT"].isdigit() and env["HOME"] == "/home/alice"
    assert "SLURM_GET_USER_ENV" not in env
    assert not [k for k in env if k.startswith("SSH_")], env
    d.signal(signal.SIGINT)
    assert d.wait() == ExitCode.INTERRUPTED
    nothing_left(ready["job_id"], port)


@pytest.mark.parametrize(
    ("sig", "code"),
    [
        (signal.SIGINT, ExitCode.INTERRUPTED),
        (signal.SIGTERM, ExitCode.TERMINATED),
        (signal.SIGHUP, ExitCode.HANGUP),
    ],
)
def test_signal_right_at_ready_cleans_up(sandbox, drive, nothing_left, sig, code):
    # `ready` comes while the play's last tasks still run: the signal lands inside the
    # ansible-runner wait, which cancels the job before it stops ansible-playbook.
    d = drive(["session", "--cluster", "sandbox", "--allow-second"])
    ready = d.wait_event("ready", timeout=90)
    d.signal(sig)
    assert d.wait() == code
    notes = " ".join(str(e.get("message")) for e in d.events if e.get("event") == "info")
    assert f"job {ready['job_id']} cancelled" in notes, d.events
    nothing_left(ready["job_id"], ready["data"]["local_port"])


def test_external_scancel_is_noticed_and_reported(sandbox, drive, nothing_left):
    d = drive(["session", "--cluster", "sandbox", "--allow-second"])
    ready = d.wait_event("ready", timeout=90)
    sandbox.host("login", ["scancel", ready["job_id"]], user="alice")  # alice, elsewhere
    assert d.wait(timeout=60) == ExitCode.JOB_ENDED
    ended = [e for e in d.events if e["event"] == "ended"]
    assert ended and "cancelled by you, outside this session" in ended[0]["message"]
    nothing_left(ready["job_id"], ready["data"]["local_port"])


def test_jupyter_shut_down_from_its_ui_ends_the_session(sandbox, drive, nothing_left):
    d = drive(["session", "--cluster", "sandbox", "--allow-second"])
    ready = d.wait_event("ready", timeout=90)
    port = ready["data"]["local_port"]
    status = http_status(sandbox, port, token_of(ready), "/api/shutdown", method="POST")
    assert status == 200
    assert d.wait(timeout=60) == ExitCode.OK
    assert any(e["event"] == "ended" for e in d.events)
    nothing_left(ready["job_id"], port)


def test_ctrl_c_while_pending_cancels_the_job(sandbox, drive, nothing_left):
    filler = sandbox.fill_nodes()  # the session's job stays PENDING behind it
    try:
        d = drive(["session", "--cluster", "sandbox", "--allow-second"])
        submitted = d.wait_event("submitted")
        pending = d.wait_event("pending", timeout=60)
        assert pending["state"] == "PENDING" and pending.get("reason")
        d.signal(signal.SIGINT)
        assert d.wait() == ExitCode.INTERRUPTED
        assert submitted["job_id"] not in sandbox.squeue("alice")
    finally:
        sandbox.host("login", ["scancel", filler], check=False)
    nothing_left(submitted["job_id"])


def test_duplicate_guard_list_and_stop(sandbox, drive, nothing_left):
    first = drive(["session", "--cluster", "sandbox", "--allow-second"])
    ready = first.wait_event("ready", timeout=90)
    second = drive(["session", "--cluster", "sandbox"])  # the guard is what this tests
    assert second.wait(timeout=60) == ExitCode.DUPLICATE
    err = [e for e in second.events if e["event"] == "error"]
    # (other sessions of alice may run in parallel: the guard names one of them)
    assert err and "already running" in err[0]["message"] and "attach " in err[0]["message"]
    assert not [e for e in second.events if e["event"] == "submitted"]  # it submitted nothing
    listed = drive(["list", "--cluster", "sandbox"])
    assert listed.wait(timeout=60) == 0
    sessions = {e["job_id"]: e for e in listed.events if e["event"] == "session"}
    assert sessions[ready["job_id"]]["state"] == "RUNNING"
    assert sessions[ready["job_id"]]["node"] == ready["node"]
    stop = drive(["stop", ready["job_id"], "--cluster", "sandbox"])
    assert stop.wait(timeout=60) == 0
    assert f"stopped: {ready['job_id']} (by its driver" in stop.output
    # the running session's own driver cancelled it, on the stop's request
    assert first.wait(timeout=60) == ExitCode.OK
    assert "stopped by `nodebook stop`" in first.output
    nothing_left(ready["job_id"], ready["data"]["local_port"])


def test_stop_ends_only_nodebook_sessions(sandbox, drive):
    """A mistyped id never ends another kind of job: `stop` of alice's own batch job, and of an
    id that does not exist, says there is no such session and cancels nothing."""
    other = sandbox.host(
        "login", ["sbatch", "--parsable", "-J", "not-nodebook", "--wrap", "sleep 300"], user="alice"
    ).stdout.strip()
    try:
        for job in (other, "999999"):
            stop = drive(["stop", job, "--cluster", "sandbox"])
            assert stop.wait(timeout=60) == ExitCode.NOT_FOUND, stop.output
            assert f"no session {job}" in stop.output
        assert other in sandbox.squeue("alice")
    finally:
        sandbox.host("login", ["scancel", other], user="alice", check=False)


def test_attach_after_the_driver_was_killed(sandbox, drive, nothing_left, test_tmp):
    first = drive(["session", "--cluster", "sandbox", "--allow-second"])
    ready = first.wait_event("ready", timeout=90)
    first.kill()  # SIGKILL: no cleanup at all; the job keeps running for now
    assert ready["job_id"] in sandbox.squeue("alice")
    # its master ends after ControlPersist on its own; its control dir stays (the driver is gone)
    orphans = [int(line.split()[0]) for line in leftovers.local_processes([test_tmp])]
    assert orphans, "the killed driver's master should outlive it"
    kept = {str(p) for p in test_tmp.iterdir()}
    again = drive(["attach", ready["job_id"], "--cluster", "sandbox"])
    ready2 = again.wait_event("ready", timeout=60)
    assert http_status(sandbox, ready2["data"]["local_port"], token_of(ready2)) == 200
    again.signal(signal.SIGINT)
    assert again.wait() == ExitCode.INTERRUPTED
    nothing_left(ready["job_id"], ready2["data"]["local_port"], ignore_pids=orphans,
                 ignore_files=kept)  # fmt: skip


def test_dead_mans_switch_ends_the_job(sandbox, drive):
    d = drive(["session", "--cluster", "sandbox", "--allow-second", "--lease", "8"])
    ready = d.wait_event("ready", timeout=90)
    d.kill()
    deadline = time.monotonic() + 60
    while ready["job_id"] in sandbox.squeue("alice") and time.monotonic() < deadline:
        time.sleep(1)
    assert ready["job_id"] not in sandbox.squeue("alice")


def test_hops_mode(sandbox, drive, nothing_left):
    d = drive(["session", "--cluster", "sandbox", "--allow-second", "--tunnel", "hops"])
    ready = d.wait_event("ready", timeout=90)
    port = ready["data"]["local_port"]
    assert ready["data"]["tunnel"] == "hops"
    assert http_status(sandbox, port, token_of(ready)) == 200
    assert http_status(sandbox, port, None) == 403
    d.signal(signal.SIGINT)
    assert d.wait() == ExitCode.INTERRUPTED
    nothing_left(ready["job_id"], port)
    # no orphan inner ssh on login (this job's hop socket is in its argv), no hop socket left
    hop = leftovers.job_paths(sandbox, "alice", ready["job_id"])["hop_socket"]
    assert not [p for p in sandbox.user_processes("login", "alice") if hop in p]
    assert sandbox.host("login", ["ls", hop], check=False).returncode != 0


def test_standalone_server_direct_mode(sandbox, drive, nothing_left):
    d = drive(["session", "--cluster", "sandbox-server", "--allow-second"])
    ready = d.wait_event("ready", timeout=90)
    port = ready["data"]["local_port"]
    assert ready["data"]["tunnel"] == "direct" and ready["job_id"].startswith("s")
    assert http_status(sandbox, port, token_of(ready)) == 200
    assert http_status(sandbox, port, None) == 403
    procs = leftovers.job_processes([ready["job_id"]])
    assert [p for p in procs if p.endswith("nodebook-remote job")], procs
    d.signal(signal.SIGTERM)
    assert d.wait() == ExitCode.TERMINATED
    nothing_left(ready["job_id"], port)
    assert not leftovers.job_processes([ready["job_id"]])


def test_bob_cannot_reach_alices_server(sandbox, drive, nothing_left):
    # the socket endpoint asked for (--allow-second alone would mean loopback TCP)
    d = drive(["session", "--cluster", "sandbox", "--allow-second", "--endpoint", "socket"])
    ready = d.wait_event("ready", timeout=90)
    job, node = ready["job_id"], ready["node"]
    paths = leftovers.job_paths(sandbox, "alice", job)
    sock = paths["socket"]
    assert leftovers.existing(sandbox, node, [sock], job) == [sock]  # there, for alice
    # bob on the node, in alice's job's mount namespace (its private /tmp, where the socket is)
    probe = leftovers.in_job(
        sandbox,
        job,
        [
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--unix-socket",
            sock,
            "http://x/api/status",
        ],
        "bob",
        check=False,
    )
    assert probe.returncode != 0 and probe.stdout in ("", "000")
    conn = paths["connection"]
    assert sandbox.host("login", ["cat", conn], user="bob", check=False).returncode != 0
    d.signal(signal.SIGINT)
    assert d.wait() == ExitCode.INTERRUPTED
    nothing_left(job, ready["data"]["local_port"])


def test_a_partition_for_another_account_is_refused_with_the_fix_then_works_with_it(
    sandbox, drive, nothing_left
):
    # chem admits only the account chemistry; alice's default account is physics.
    d = drive(["session", "--cluster", "sandbox", "--allow-second", "--partition", "chem"])
    assert d.wait() == ExitCode.SCHEDULER
    (error,) = d.errors
    assert "\n" not in error, error
    assert error.startswith("error: sbatch refused the job: Invalid account or account/"), error
    assert "partition chem admits only the account chemistry, not physics (your default " in error
    assert "pass --account chemistry" in error
    queued = sandbox.out("login", ["squeue", "-h", "-u", "alice", "-p", "chem", "-o", "%i"])
    assert not d.job_ids and not queued.split()  # nothing was queued
    d = drive(["session", "--cluster", "sandbox", "--allow-second", "--partition", "chem",
               "--account", "chemistry"])  # fmt: skip
    ready = d.wait_event("ready", timeout=90)
    job = sandbox.scontrol_job(ready["job_id"])
    assert (job.get("Partition"), job.get("Account")) == ("chem", "chemistry")
    d.signal(signal.SIGINT)
    assert d.wait() == ExitCode.INTERRUPTED
    nothing_left(ready["job_id"], ready["local_port"])
