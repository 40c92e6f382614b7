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
    assert "dead-man's switch" in errors[0]["message"]
    # The driver left nothing on the laptop: no tunnel, no master, the port is closed.
    assert not leftovers.local_processes([test_tmp])
    assert http_status(sandbox, port, None) == 0
    # Once the link is back, the job is gone within the heartbeat window (the dead-man's switch
    # ends it: nobody touches the heartbeat any more) and leaves nothing on the node.
    nothing_left(job, port, timeout=60)
    log = sandbox.host("login", ["cat", leftovers.job_paths(sandbox, "alice", job)["log"]]).stdout
    assert "no heartbeat" in log
