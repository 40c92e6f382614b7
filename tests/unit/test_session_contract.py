"""Session against a fake login node: which helper calls a session makes, and when.

The driver's half of the contract with the remote helper (issue 20, item 1: one owner per
step). Nothing runs: the helper's answers are scripted (tests/unit/fake_remote.py FakeRemote,
under the real driver.remote.Remote), the playbooks play scripted events through the real
PlaybookRun (FakeAnsible in place of ansible_runner), the master and the tunnel start nothing.
The Ctrl-C and SIGTERM are real signals, taken by the driver's own handlers.

The end-to-end count of the same calls on the sandbox is tests/e2e/test_one_owner.py.
"""

from __future__ import annotations

import functools
import io
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest

from driver import monitor as monitor_mod
from driver import session as session_mod
from driver.errors import ExitCode, NodebookError, Stopped
from driver.monitor import Monitor, describe_end
from driver.options import SessionOptions
from driver.progress import Renderer
from driver.remote import Reply
from driver.session import Session
from driver.tunnel import free_port
from tests.unit.fake_remote import (
    JOB,
    NODE,
    PENDING,
    RUNNING,
    SOCKET,
    SUBMITTED,
    TOKEN,
    Answer,
    Clock,
    FakeAnsible,
    FakeMaster,
    FakeRemote,
    FakeTunnel,
    Step,
    cluster,
    error,
    failed,
    gate,
    heartbeat,
    interrupted,
    line,
    ok,
    reply,
    retry,
)

# session.yml under the driver: wait at the gate for the driver's submission, then the wait
# step's retries while the job is PENDING, then RUNNING on a node (its Connect task is skipped:
# the driver makes that call itself).
PLAY: list[Step] = [gate, retry(PENDING), ok(RUNNING)]
# cleanup.yml, the fallback: the helper's cancel says the job is stopped.
CLEANUP: list[Step] = [ok(line("stopped", job_id=JOB))]

CANCEL = ("cancel", "--job", JOB, "--own", "--scheduler", "slurm")
CONNECTION = ("connection", JOB, "--token", "--queued", "--scheduler", "slurm")


def signalled(sig: int) -> Callable[[tuple[str, ...]], Reply]:
    """An answer during which the user presses Ctrl-C (SIGINT) or the driver gets SIGTERM."""

    def answer(_args: tuple[str, ...]) -> Reply:
        os.kill(os.getpid(), sig)  # the driver's handler raises here (the main thread)
        raise AssertionError(f"signal {sig} did not stop the session")

    return answer


@dataclass
class Scene:
    """One session with its fakes."""

    session: Session
    remote: FakeRemote
    ansible: FakeAnsible
    tunnels: list[FakeTunnel]
    screen: io.StringIO
    port: int

    def lines(self) -> list[str]:
        """What the user saw, line by line."""
        return self.screen.getvalue().splitlines()

    def cleanup_runs(self) -> list[dict[str, Any]]:
        return [ev for name, ev in self.ansible.runs if name == "cleanup.yml"]


@pytest.fixture
def scene(monkeypatch, tmp_path) -> Callable[..., Scene]:
    def make(
        answers: dict[str, list[Answer]] | None = None,
        play: list[Step] = PLAY,
        cleanup: list[Step] = CLEANUP,
    ) -> Scene:
        ansible = FakeAnsible({"session.yml": play, "cleanup.yml": cleanup})
        monkeypatch.setitem(
            sys.modules, "ansible_runner", SimpleNamespace(run_async=ansible.run_async)
        )
        master = functools.partial(FakeMaster, logged_in=ansible.at_gate)
        monkeypatch.setattr(session_mod, "Master", master)
        remote = functools.partial(FakeRemote, answers=dict(answers or {}))
        monkeypatch.setattr(session_mod, "Remote", remote)
        tunnels: list[FakeTunnel] = []

        def tunnel(*args: Any, **kw: Any) -> FakeTunnel:
            tunnels.append(FakeTunnel(*args, **kw))
            return tunnels[-1]

        monkeypatch.setattr(session_mod, "Tunnel", tunnel)
        monkeypatch.setattr(session_mod, "wait_http", lambda *a, **k: None)
        monkeypatch.setattr(monitor_mod, "http_ok", lambda *a, **k: True)
        clock = Clock()  # the heartbeat's cadence without waiting
        held = functools.partial(Monitor, sleep=clock.sleep, monotonic=clock.monotonic)
        monkeypatch.setattr(session_mod, "Monitor", held)
        screen, port = io.StringIO(), free_port()
        opts = SessionOptions(browser=False, notify=False, local_port=port, check_interval=5)
        session = Session(cluster(tmp_path), opts, Renderer(json_mode=False, out=screen))
        assert isinstance(session.remote, FakeRemote)
        return Scene(session, session.remote, ansible, tunnels, screen, port)

    return make


def test_a_session_start_in_order(scene):
    """A session's start, in the order of ``Session.start``'s docstring (its steps 1-7): the
    helper calls it makes, and the lines the user sees, up to a Ctrl-C while it is held."""
    s = scene({"heartbeat": [heartbeat(True), heartbeat(True), signalled(signal.SIGINT)]})
    with pytest.raises(KeyboardInterrupt):
        s.session.start()

    tag = s.session.job.tag
    # 1. one play, session.yml, which waits at the driver's gate
    [(playbook, extravars)] = s.ansible.runs
    assert (playbook, extravars["nodebook_session_tag"]) == ("session.yml", tag)
    assert extravars["nodebook_master_gate"].endswith("/gate")
    assert s.remote.calls == [
        # 2. the driver's submission, over its master; the play gets the answer at the gate
        ("submit", "--scheduler", "slurm", "--tag", tag, "--"),
        # 3. (the wait is a task of the play, not a call of the driver's)
        # 4. the session's one connection call, from the submission until Jupyter answers
        CONNECTION,
        # 6. held: a heartbeat every check interval (5 s on the fake clock)
        ("heartbeat", JOB),
        ("usage", JOB, "--scheduler", "slurm"),  # the live line's time left (driver/notify.py)
        ("heartbeat", JOB),
        ("heartbeat", JOB),  # Ctrl-C
        # 7. the one cancel
        CANCEL,
    ]
    assert s.ansible.through_gate == [
        b"\n".join(json.dumps(x).encode() for x in (SUBMITTED, PENDING))
    ]
    seen = s.lines()
    assert seen[:5] == [
        f"submitted job {JOB}",  # 2.
        f"job {JOB}: PENDING (Resources), no estimate of the start yet",  # 2. and 3.
        f"job {JOB}: RUNNING on {NODE}, starting Jupyter",  # 3.
        f"Jupyter is ready on {NODE}: http://127.0.0.1:{s.port}/lab?token={TOKEN}",  # 5.
        "  time left, CPU and memory use: `nodebook list`",
    ], seen
    assert seen[5].startswith(f"job {JOB} is ready on {NODE} after "), seen  # it was PENDING
    assert seen[6:] == [f"tunnel closed; job {JOB} cancelled"], seen  # 7.
    # 4. the tunnel opened early, to the socket the submission named, is the one used
    [tunnel] = s.tunnels
    assert (tunnel.mode, tunnel.endpoint.node, tunnel.endpoint.socket, tunnel.local_port) == (
        "jump",
        NODE,
        SUBMITTED["socket"],
        s.port,
    )
    assert (tunnel.starts, tunnel.closes) == (1, 1)


@pytest.mark.parametrize(
    ("sig", "raised"), [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Stopped)]
)
def test_a_ready_session_makes_one_connection_call_and_at_its_end_one_cancel(scene, sig, raised):
    s = scene({"heartbeat": [heartbeat(True), signalled(sig)]})
    with pytest.raises(raised):
        s.session.start()
    assert s.remote.made("connection") == [CONNECTION]
    assert s.remote.made("cancel") == [CANCEL]
    assert s.cleanup_runs() == []  # cleanup.yml is the fallback only
    assert s.lines()[-1] == f"tunnel closed; job {JOB} cancelled"


@pytest.mark.parametrize("when", ["while the play runs", "before the play started"])
def test_ctrl_c_before_the_job_id_is_known_cancels_by_tag_in_cleanup_yml_once(
    scene, monkeypatch, when
):
    """The Ctrl-C comes while the submission is on its way: sbatch may have run, no id came.
    The driver may be waiting for the play, or still starting it (the master logs in at once)."""
    s: Scene
    in_flight = threading.Event()

    def submit_interrupted(_args: tuple[str, ...]) -> Reply:
        in_flight.set()
        os.kill(os.getpid(), signal.SIGINT)
        # ssh, in the same process group, dies of the same Ctrl-C: it answers as the driver
        # cleans up (stops waiting for the master's thread), not before
        assert s.session.connector is not None
        s.session.connector.stop.wait(10)
        return reply(rc=255, stderr="Killed by signal 2.")

    s = scene({"submit": [submit_interrupted]})
    if when == "before the play started":
        s.session.master.logged_in = None  # type: ignore[attr-defined]
        monkeypatch.setattr(session_mod, "preload", lambda: in_flight.wait(10))
    with pytest.raises(KeyboardInterrupt):
        s.session.start()
    assert s.remote.commands() == ["submit"]  # no id: no cancel by id, no connection
    assert s.cleanup_runs() == [
        {"nodebook_session_tag": s.session.job.tag, "ansible_user": "alice"}
    ]
    assert s.lines()[-1] == f"job {JOB} cancelled"


@pytest.mark.parametrize("cancel", ["answers", "fails"])
def test_ctrl_c_while_pending_cancels_by_id_once(scene, cancel):
    """The id is known (the submission's answer) and the play waits: one cancel, at once; the
    fallback, if that fails, once. Cleanup does not cancel again."""
    lost = reply(rc=255, stderr="Connection to login.hpc closed by remote host.")
    s = scene({"cancel": [lost]} if cancel == "fails" else {}, play=[gate, interrupted])
    with pytest.raises(KeyboardInterrupt):
        s.session.start()
    assert s.remote.commands() == ["submit", "cancel"]
    assert s.remote.made("cancel") == [CANCEL]
    expected = [{"nodebook_job_id": JOB, "ansible_user": "alice"}] if cancel == "fails" else []
    assert s.cleanup_runs() == expected
    assert s.lines()[-1] == f"job {JOB} cancelled"


def test_a_refused_submission_cancels_nothing(scene):
    refused = error("refused", "sbatch refused the job: Invalid account", rc=5)
    s = scene({"submit": [refused]})
    with pytest.raises(NodebookError) as exc:
        s.session.start()
    assert (exc.value.message, exc.value.code) == (
        "sbatch refused the job: Invalid account",
        ExitCode.SCHEDULER,
    )
    assert s.remote.commands() == ["submit"]
    assert s.cleanup_runs() == []


def test_a_job_that_ended_on_its_own_is_not_cancelled(scene):
    ended = line("ended", job_id=JOB, state="TIMEOUT", exit_code="0:0")
    s = scene({"heartbeat": [heartbeat(True), heartbeat(False)], "ended": [reply(ended)]})
    with pytest.raises(NodebookError) as exc:
        s.session.start()
    text, code = describe_end(ended, "alice", None)
    assert (exc.value.message, exc.value.code) == (text, code)
    assert code == ExitCode.JOB_ENDED
    assert s.remote.made("ended") == [("ended", JOB, "--scheduler", "slurm")]
    assert s.remote.made("cancel") == []
    assert s.cleanup_runs() == []
    assert s.lines()[-2:] == [text, "tunnel closed"]


@pytest.mark.parametrize(
    "answer",
    [
        reply(rc=255, stderr="Connection to login.hpc closed by remote host."),
        error("scheduler", "scancel: error: Slurm controller not responding", rc=5),
    ],
    ids=["ssh-lost", "error-line"],
)
def test_a_failed_cancel_call_falls_back_to_cleanup_yml_once(scene, answer):
    s = scene({"heartbeat": [signalled(signal.SIGINT)], "cancel": [answer]})
    with pytest.raises(KeyboardInterrupt):
        s.session.start()
    assert s.remote.made("cancel") == [CANCEL]
    assert s.cleanup_runs() == [{"nodebook_job_id": JOB, "ansible_user": "alice"}]
    assert s.lines()[-1] == f"tunnel closed; job {JOB} cancelled"


def test_a_failed_fallback_says_both_causes_and_the_session_ends_with_an_error(scene):
    """Neither the call nor cleanup.yml could cancel: the job may still run, so the Ctrl-C's
    "interrupted; cleaned up" (exit 130) would be untrue; the session ends with an error that
    says so, both causes, when the job ends anyway and how to end it sooner."""
    cleanup_failed = [failed(line("error", error="scheduler", message="sacct: no answer"))]
    lost = reply(rc=255, stderr="Connection to login.hpc closed by remote host.")
    s = scene({"heartbeat": [signalled(signal.SIGINT)], "cancel": [lost]}, cleanup=cleanup_failed)
    with pytest.raises(NodebookError) as exc:
        s.session.start()
    assert len(s.cleanup_runs()) == 1
    assert s.lines()[-1] == "tunnel closed"
    assert exc.value.code == ExitCode.SCHEDULER
    assert exc.value.message.startswith(
        f"job {JOB} may still be running: could not cancel job {JOB}: sacct: no answer (first: "
        "lost the ssh connection to login.hpc: Connection to login.hpc closed by remote host.); "
    )
    assert exc.value.message.endswith(f"end it sooner with `nodebook stop {JOB} --cluster hpc`")


def test_a_start_that_failed_and_a_job_left_running_says_both(scene):
    why = "Jupyter did not answer within 120 s"
    cleanup_failed = [failed(line("error", error="scheduler", message="sacct: no answer"))]
    lost = reply(rc=255, stderr="Connection to login.hpc closed by remote host.")
    s = scene(
        {"connection": [error("connection", why, rc=5)], "cancel": [lost]}, cleanup=cleanup_failed
    )
    with pytest.raises(NodebookError) as exc:
        s.session.start()
    assert exc.value.message.startswith(f"job {JOB} may still be running: could not cancel")
    assert exc.value.message.endswith(f"(the session ended on: {why})")


def test_connection_failing_surfaces_the_helpers_message_and_exit_code(scene):
    why = "Jupyter did not start: the job left the queue (FAILED); last lines of the job log: x"
    s = scene({"connection": [error("job-ended", why, rc=6)]})
    with pytest.raises(NodebookError) as exc:
        s.session.start()
    assert (exc.value.message, exc.value.code) == (why, ExitCode.JOB_ENDED)
    assert s.remote.made("connection") == [CONNECTION]  # asked once, not again
    assert not any(text.startswith("Jupyter is ready") for text in s.lines())
    assert s.remote.made("cancel") == [CANCEL]  # whatever is left of the job goes
    assert s.cleanup_runs() == []


def test_a_failed_wait_step_ends_the_start_with_its_error_and_one_cancel(scene):
    why = f"job {JOB} waited longer than the pending limit (1 min): cancelled"
    play = [gate, retry(PENDING), failed(line("error", error="pending-limit", message=why))]
    s = scene(play=play)
    with pytest.raises(NodebookError) as exc:
        s.session.start()
    assert (exc.value.message, exc.value.code) == (why, ExitCode.SCHEDULER)
    assert s.remote.commands() == ["submit", "cancel"]  # never RUNNING: no connection call
    assert s.cleanup_runs() == []


@pytest.mark.parametrize(
    ("lease", "beat_ago", "expected"),
    [
        (0, 0, f"it has no lease (--lease 0) and runs until its time limit; end it with "
         f"`nodebook stop {JOB} --cluster hpc` once the cluster answers"),
        (600, 700, "it has ended itself by now (its lease ran out: no heartbeat since {beat})"),
        (600, 100, "it ends itself by {end} at the latest, when its lease (600 s after the last "
         f"heartbeat) runs out; end it sooner with `nodebook stop {JOB} --cluster hpc` once "
         "the cluster answers"),
    ],
)  # fmt: skip
def test_an_unreachable_cluster_says_when_the_job_ends_itself(scene, lease, beat_ago, expected):
    """The note of a session that could not cancel over a lost link, from the job's lease: the
    same words as a cancel that failed (one helper), with when the stop can work."""
    s = scene()
    job = s.session.job
    job.id, job.heartbeat_timeout = JOB, lease
    job.last_heartbeat = time.time() - beat_ago
    clock = functools.partial(time.strftime, "%H:%M:%S")
    want = expected.format(
        beat=clock(time.localtime(job.last_heartbeat)),
        end=clock(time.localtime(job.last_heartbeat + lease)),
    )
    note = s.session._unreachable_note()
    assert note == f"cluster unreachable: job {JOB} was not cancelled from here; {want}"


@pytest.mark.timeout(60)  # (the play waits for the ready line: a regression would hang)
def test_the_connection_call_says_the_job_runs_before_the_play_can(scene):
    """ansible-playbook takes most of a second to start: when the job starts at once, the
    connection call (made from the submission on) sees it first. The early tunnel opens on its
    word, RUNNING is shown once, a late word of the queue from the play is not shown, and the
    session is ready before the play's wait has reported anything."""
    seen: dict[str, Scene] = {}

    def wait_until_ready(play: Any) -> None:
        play.until(lambda: any(x.startswith("Jupyter is ready") for x in seen["s"].lines()))
        play.emit("runner_retry", (PENDING,))  # the wait's answer, computed before the start

    s = scene(
        {"heartbeat": [heartbeat(True), signalled(signal.SIGINT)]},
        play=[gate, wait_until_ready, ok(RUNNING)],
    )
    seen["s"] = s
    with pytest.raises(KeyboardInterrupt):
        s.session.start()
    assert s.remote.made("connection") == [CONNECTION]
    lines = s.lines()
    assert lines[:4] == [
        f"submitted job {JOB}",
        f"job {JOB}: PENDING (Resources), no estimate of the start yet",
        f"job {JOB}: RUNNING on {NODE}, starting Jupyter",
        f"Jupyter is ready on {NODE}: http://127.0.0.1:{s.port}/lab?token={TOKEN}",
    ], lines
    assert sum("RUNNING" in x for x in lines) == 1 and sum("PENDING" in x for x in lines) == 1
    [tunnel] = s.tunnels  # opened early, to the socket the submission named
    assert (tunnel.mode, tunnel.endpoint.node, tunnel.endpoint.socket) == ("jump", NODE, SOCKET)
