"""A lost tunnel: re-established automatically; beyond --reconnect-bound, given up and said so."""

from __future__ import annotations

import os
import signal
import time

import pytest

from driver.errors import ExitCode
from tests.e2e.conftest import http_status, token_of
from tests.harness import leftovers

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(300)]


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
    hb = leftovers.job_paths(sandbox, "alice", job)["heartbeat"]
    first = os.stat(hb).st_mtime
    deadline = time.monotonic() + 15
    while os.stat(hb).st_mtime == first and time.monotonic() < deadline:
        time.sleep(0.5)
    assert os.stat(hb).st_mtime > first
    d.signal(signal.SIGINT)
    assert d.wait() == ExitCode.INTERRUPTED
    nothing_left(job, port)


def test_link_cut_beyond_the_bound_gives_up_and_the_job_ends(
    sandbox, drive, nothing_left, test_tmp
):
    d = drive(
        [
            "session",
            "--cluster",
            "sandbox",
            "--allow-second",
            "--reconnect-bound",
            "6",
            "--heartbeat-timeout",
            "20",
        ]
    )
    ready = d.wait_event("ready", timeout=90)
    job, port = ready["job_id"], ready["local_port"]
    sandbox.cluster("link", "down")
    try:
        rc = d.wait(timeout=120)
    finally:
        sandbox.cluster("link", "up")

    assert rc == ExitCode.TUNNEL_LOST, d.events
    errors = [e for e in d.events if e["event"] == "error"]
    assert errors and "could not be re-established within 6 s" in errors[0]["message"]
    # It kept trying to reach the cluster (to cancel) until the job's dead-man's switch, and
    # said so: the job id and the time by which it is gone.
    notes = " ".join(str(e.get("message")) for e in d.events if e["event"] == "info")
    assert f"trying to cancel job {job} until" in notes, d.events
    assert f"job {job} could not be cancelled from here and has ended itself" in notes
    # The driver left nothing on the laptop: no tunnel, no master, the port is closed.
    assert not leftovers.local_processes([test_tmp])
    assert http_status(sandbox, port, None) == 0
    # The job is gone (the dead-man's switch ended it: nobody touched the heartbeat any more)
    # and left nothing on the node.
    nothing_left(job, port, timeout=60)
    log = sandbox.host("login", ["cat", leftovers.job_paths(sandbox, "alice", job)["log"]]).stdout
    assert "no heartbeat" in log


def test_link_back_within_the_window_the_job_is_cancelled(sandbox, drive, nothing_left, test_tmp):
    """Unreachable beyond the reconnect bound, but back before the dead-man's switch: the driver
    cancels the job itself before it exits (exit 7 still: the session was lost)."""
    d = drive(
        ["session", "--cluster", "sandbox", "--allow-second", "--reconnect-bound", "4",
         "--heartbeat-timeout", "120"]
    )  # fmt: skip
    ready = d.wait_event("ready", timeout=90)
    job, port = ready["job_id"], ready["local_port"]
    sandbox.cluster("link", "down")
    try:
        trying = d.wait_event("info", timeout=60)
        while "trying to cancel" not in trying["message"]:
            trying = d.wait_event("info", timeout=60)
    finally:
        sandbox.cluster("link", "up")
    assert d.wait(timeout=120) == ExitCode.TUNNEL_LOST, d.events
    notes = " ".join(str(e.get("message")) for e in d.events if e["event"] == "info")
    assert "the cluster answers again" in notes and f"job {job} cancelled" in notes, d.events
    nothing_left(job, port)
    log = sandbox.host("login", ["cat", leftovers.job_paths(sandbox, "alice", job)["log"]]).stdout
    assert "no heartbeat" not in log  # cancelled, not ended by its switch
