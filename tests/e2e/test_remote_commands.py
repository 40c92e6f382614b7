"""Every remote command nodebook runs is a call of the remote helper (docs/design.md).

An `ssh` wrapper first on the driver's PATH (tests/harness/sshlog.py) logs every invocation:
the driver's own (master, helper calls, tunnel), Ansible's (its raw tasks go through `ssh`
from PATH) and the ProxyCommands'. Over a whole session ended with Ctrl-C, a second one
ended by `stop` and a third whose job is cancelled elsewhere, every invocation that carries a
remote command (not `-O ...`, not the `-N` master, not a `-W` proxy) must run
`.../nodebook-remote ...`.
"""

from __future__ import annotations

import os
import time

import pytest

from driver.errors import ExitCode
from tests.e2e.conftest import http_status, token_of
from tests.harness import sshlog

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(300)]

# What a session and a stop call between them (the session's wait retries, heartbeats vary).
EXPECTED = {"submit", "wait", "connection", "heartbeat", "hold", "ended", "cancel"}


def wait_for_heartbeat(log: sshlog.SshLog, after: int, timeout: float = 30) -> None:
    """Until the log shows a heartbeat call after the first `after` invocations."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(i.helper_command() == "heartbeat" for i in log.read()[after:]):
            return
        time.sleep(0.2)
    raise AssertionError(f"no heartbeat went over ssh: {[i.argv for i in log.read()]}")


def test_every_remote_command_of_a_session_and_a_stop_runs_the_helper(
    sandbox, drive, nothing_left, tmp_path
):
    log = sshlog.SshLog(tmp_path / "ssh")
    env = log.env(os.environ["PATH"])
    session = ["session", "--cluster", "sandbox", "--allow-second"]

    # 1. start, ready, a heartbeat, Ctrl-C
    d = drive(session, env=env)
    ready = d.wait_event("ready", timeout=90)
    assert http_status(sandbox, ready["local_port"], token_of(ready)) == 200
    wait_for_heartbeat(log, 0)
    d.ctrl_c()
    assert d.wait() == ExitCode.INTERRUPTED
    nothing_left(ready["job_id"], ready["local_port"])

    # 2. another session, ended by `nodebook stop` from a second driver
    second = drive(session, env=env)
    ready2 = second.wait_event("ready", timeout=90)
    masters_before = {c.option("ControlPath") for c in log.read() if c.master}
    stop = drive(["stop", ready2["job_id"], "--cluster", "sandbox"], env=env)
    assert stop.wait(timeout=60) == 0, stop.output
    assert second.wait(timeout=60) == ExitCode.OK  # its own driver ended it, on the stop's ask
    nothing_left(ready2["job_id"], ready2["local_port"])
    # the session's driver cancelled over its own master (already up), in one call: the stop
    # made no login (and ran no Ansible) of its own
    after = log.read()
    fast = [
        c for c in after
        if c.helper_command() == "cancel" and "--own" in c.command_words()
        and ready2["job_id"] in c.command_words()
    ]  # fmt: skip
    assert len(fast) == 1 and fast[0].option("ControlPath") in masters_before, [
        c.argv for c in fast
    ]
    own = [c for c in after if c.master and c.option("ControlPath") not in masters_before]
    assert own == [], [c.argv for c in own]

    # 3. a third one whose job is cancelled elsewhere: the driver asks why it ended (`ended`)
    third = drive(session, env=env)
    ready3 = third.wait_event("ready", timeout=90)
    sandbox.host("login", ["scancel", ready3["job_id"]], user="alice")
    assert third.wait(timeout=60) == ExitCode.JOB_ENDED
    nothing_left(ready3["job_id"], ready3["local_port"])

    calls = log.read()
    with_command = [c for c in calls if c.remote_command]
    not_helper = [c.argv for c in with_command if c.helper_command() is None]
    assert not_helper == [], f"remote commands that do not run the helper: {not_helper}"
    # and every other invocation is a master, a proxy or a control command (nothing unlogged)
    other = [c.argv for c in calls if not c.remote_command]
    assert all(c.master or c.proxy or c.control for c in calls if not c.remote_command), other
    seen = sshlog.helper_commands(calls)
    assert set(seen) >= EXPECTED, seen
