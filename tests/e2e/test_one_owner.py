"""One owner per remote step (docs/design.md, "One owner per step"): a whole session, counted
in the ssh log of every ssh that the driver, Ansible and `nodebook stop` ran (a wrapper first
on their PATH, tests/harness/sshlog.py), makes exactly one call of each of the helper's
`submit`, `connection` and `cancel`, whichever way it ends."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.harness import sshlog

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(300)]


def _helper_calls(log: sshlog.SshLog) -> dict[str, int]:
    return sshlog.helper_commands(log.read())


@pytest.mark.parametrize("end", ["ctrl_c", "stop"])
def test_one_submit_connection_and_cancel_per_session(
    sandbox, drive, nothing_left, tmp_path: Path, end: str
) -> None:
    log = sshlog.SshLog(tmp_path / "ssh")
    env = log.env(os.environ["PATH"])
    d = drive(["session", "--cluster", "sandbox"], env=env)
    ready = d.wait_event("ready", timeout=180)
    job_id = ready["job_id"]
    if end == "ctrl_c":
        d.signal(signal.SIGINT)
    else:  # the stop asks the session's driver: no ssh of its own (no login, nothing asked)
        link = d.state / "sandbox" / f"{job_id}.stop"  # beside the record: to the driver's socket
        assert link.is_symlink() and link.resolve().is_socket(), link
        stop_log = sshlog.SshLog(tmp_path / "ssh-stop")
        stop = drive(["stop", job_id, "--cluster", "sandbox"], env=stop_log.env(os.environ["PATH"]))
        assert stop.wait(timeout=60) == 0, stop.output
        assert stop_log.read() == [], "nodebook stop of a session held here ran ssh"
        assert f"stopped: {job_id} (by its driver, pid {d.pid})" in stop.output, stop.output
        assert not link.is_symlink(), "the stop link outlived its session"
    d.wait(timeout=60)
    calls = _helper_calls(log)
    assert calls.get("submit") == 1, calls
    assert calls.get("connection") == 1, calls
    assert calls.get("cancel") == 1, calls
    nothing_left(job_id, ready.get("local_port"))


def test_the_connection_call_waits_with_the_queued_job_and_brings_its_start(
    sandbox, drive, nothing_left, tmp_path: Path
) -> None:
    """The driver's one `connection --queued` call starts while the job is still PENDING (not
    once the play has seen it run), and it is the one that brings the session to `ready`."""
    log = sshlog.SshLog(tmp_path / "ssh")
    filler = sandbox.fill_nodes()
    try:
        d = drive(
            ["session", "--cluster", "sandbox", "--allow-second"], env=log.env(os.environ["PATH"])
        )
        job_id = d.wait_event("submitted")["job_id"]
        assert d.wait_event("pending", timeout=60)["state"] == "PENDING"
        deadline = time.monotonic() + 30
        while not (queued := _connections(log, job_id)):
            assert time.monotonic() < deadline, (
                f"no connection call while queued: {_helper_calls(log)}"
            )
            time.sleep(0.1)
        assert "--queued" in queued[0].command_words(), queued[0].argv
        assert sandbox.scontrol_job(job_id)["JobState"] == "PENDING"  # it waits, still queued
    finally:
        sandbox.host("login", ["scancel", filler], check=False)
    running_at, _ = d.wait_timed("running", timeout=60)
    ready = d.wait_event("ready", timeout=120)
    assert queued[0].t < running_at
    assert _connections(log, job_id) == queued  # the same call, from the queue to `ready`
    d.signal(signal.SIGINT)
    d.wait(timeout=60)
    nothing_left(job_id, ready.get("local_port"))


def _connections(log: sshlog.SshLog, job_id: str) -> list[sshlog.Invocation]:
    return [
        inv
        for inv in log.read()
        if inv.helper_command() == "connection" and job_id in inv.command_words()
    ]
