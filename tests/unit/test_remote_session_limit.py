"""A login node whose sshd refuses nodebook one more session on its connection (MaxSessions).

ssh then logs in anew by itself: with a key that works and the call succeeds; with a password
and a code (or BatchMode) it fails, and the driver names the limit and the fix instead of
calling it a lost connection or a missing setup.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from driver.errors import ExitCode, NodebookError
from driver.inventory import Cluster
from driver.remote import MAX_SESSIONS, Remote
from driver.ssh import Master

CLUSTER = Cluster(name="c", inventory=Path("i"), host="login.hpc", user="alice")
REFUSED = (
    "bashrc: loading the site's default environment\n"
    "mux_client_request_session: session request failed: Session open refused by peer\n"
    "alice@login.hpc: Permission denied (keyboard-interactive).\n"
)


class FakeMaster:
    """Answers every command with one canned result."""

    def __init__(self, rc: int, stdout: str, stderr: str) -> None:
        self.result = subprocess.CompletedProcess([], rc, stdout, stderr)

    def run(self, command: str, **kw: object) -> subprocess.CompletedProcess[str]:
        return self.result


def remote(rc: int, stdout: str = "", stderr: str = REFUSED) -> Remote:
    return Remote(FakeMaster(rc, stdout, stderr), CLUSTER)  # type: ignore[arg-type]


def test_a_refused_session_names_max_sessions_and_the_fix():
    with pytest.raises(NodebookError) as err:
        remote(255).call("list")
    message = err.value.message
    assert err.value.code == ExitCode.SSH
    assert "\n" not in message
    assert "refused nodebook another session on its ssh connection" in message
    assert "(ssh: mux_client_request_session: session request failed: Session open" in message
    assert "MaxSessions" in message and f"to {MAX_SESSIONS + 1} or more" in message
    assert "not set up" not in message and "lost the ssh connection" not in message
    # the master's own words for a channel the login node would not open
    forward = "channel 3: open failed: administratively prohibited: open failed\n"
    with pytest.raises(NodebookError, match=r"\(ssh: channel 3: open failed: administratively"):
        remote(255, stderr=forward).call("version")


def test_a_refused_heartbeat_ends_the_hold_with_it_instead_of_reconnecting():
    with pytest.raises(NodebookError, match="MaxSessions"):
        remote(255).heartbeat("7")
    assert remote(255, stderr="Connection closed by 10.0.0.1\n").heartbeat("7") == "lost"


def test_a_refusal_that_ssh_got_round_by_logging_in_again_is_no_error():
    answer = '{"nodebook": "listed"}\n'
    assert remote(0, answer).call("list").first("listed") == {"nodebook": "listed"}


class SilentMaster:
    """A login node that never answers: every command runs into its timeout."""

    def run(self, command: str, timeout: float = 30, **kw: object) -> None:
        raise subprocess.TimeoutExpired(["ssh", "login.hpc", command], timeout)


def test_no_answer_within_the_timeout_is_a_nodebook_error_with_a_fix():
    """A checked call that times out (`ended`, `usage`, `connection`, `list`) says which
    command got no answer from where, not a traceback of ssh's argv (the session's cancel:
    which job was not confirmed gone); unchecked calls (heartbeat, responsive) keep ssh's
    timeout to tell a lost link from an answer."""
    silent = Remote(SilentMaster(), CLUSTER)  # type: ignore[arg-type]
    with pytest.raises(NodebookError) as err:
        silent.ended("41")
    assert err.value.code == ExitCode.SSH
    assert "login.hpc did not answer `nodebook-remote ended` within 40 s" in err.value.message
    with pytest.raises(NodebookError) as err:
        silent.cancel("41")
    assert err.value.code == ExitCode.SCHEDULER
    assert (
        err.value.message == "the login node login.hpc did not confirm job 41's cancel within 60 s"
    )
    with pytest.raises(subprocess.TimeoutExpired):
        silent.call("version", check=False)
    assert silent.heartbeat("41") == "lost"


class ShellMaster(Master):
    """The real Master's run_lines, with `sh -c` where ssh over the master would be."""

    def client_argv(self, *options: str) -> list[str]:
        return ["sh", "-c"]


class ShellRemote(Remote):
    """The real Remote.call; its "helper command" is a shell script."""

    def command(self, *args: str) -> str:
        return args[0]


def streaming(tmp_path: Path) -> Remote:
    return ShellRemote(ShellMaster(CLUSTER, tmp_path), CLUSTER)


STATUS = '{"nodebook": "status", "job_id": "7", "state": "RUNNING", "node": "cn01"}'


def test_a_streamed_call_hands_each_line_as_it_comes_and_has_no_timeout_before_the_first(
    tmp_path,
):
    """The session's queued connection call: no timeout while the job waits (1 s here
    against a timeout of 0.5 s), then each line on its own, before the command ends."""
    got: list[tuple[str, float]] = []
    t0 = time.monotonic()
    reply = streaming(tmp_path).call(
        f"sleep 1; echo ''; echo '{STATUS}'; sleep 0.3; echo '{{\"nodebook\": \"connection\"}}'",
        timeout=0.5,
        on_line=lambda line: got.append((line["nodebook"], time.monotonic() - t0)),
    )
    assert [kind for kind, _ in got] == ["status", "connection"]
    assert got[1][1] - got[0][1] >= 0.25  # the status came as it was printed
    assert [x["nodebook"] for x in reply.lines] == ["status", "connection"]


def test_a_streamed_call_times_out_counted_from_its_first_line(tmp_path):
    t0 = time.monotonic()
    with pytest.raises(NodebookError, match=r"did not answer .* within 0 s") as err:
        streaming(tmp_path).call(f"echo '{STATUS}'; exec sleep 30", timeout=0.4, on_line=print)
    assert err.value.code == ExitCode.SSH and time.monotonic() - t0 < 5
