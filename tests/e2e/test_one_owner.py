"""One owner per remote step (docs/design.md, "One owner per step"): a whole session, counted
in the ssh log of every ssh that the driver, Ansible and `nodebook stop` ran (a wrapper first
on their PATH, tests/harness/sshlog.py), makes exactly one call of each of the helper's
`submit`, `connection` and `cancel`, whichever way it ends."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.harness import sshlog


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
        stop_log = sshlog.SshLog(tmp_path / "ssh-stop")
        stop = drive(["stop", job_id, "--cluster", "sandbox"], env=stop_log.env(os.environ["PATH"]))
        assert stop.wait(timeout=60) == 0, stop.output
        assert stop_log.read() == [], "nodebook stop of a session held here ran ssh"
    d.wait(timeout=60)
    calls = _helper_calls(log)
    assert calls.get("submit") == 1, calls
    assert calls.get("connection") == 1, calls
    assert calls.get("cancel") == 1, calls
    nothing_left(job_id, ready.get("local_port"))
