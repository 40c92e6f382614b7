"""A fake login node for Session and Monitor (tests/unit/test_session_contract.py,
tests/unit/test_monitor_contract.py): the driver's side of the helper contract, no processes.

The fakes sit where the driver meets the outside, as tests/unit/fake_slurm.py sits under the
helper:

- ``FakeRemote`` is driver.remote.Remote with ``call`` answered from a script: every helper
  command is recorded with its arguments, as the ssh log of tests/e2e/test_one_owner.py records
  it, and the real Remote turns the answers into results and errors.
- ``FakeAnsible`` stands for ansible_runner: each playbook plays a script of the helper's lines
  as its tasks' events, in a thread, and stops when cancelled; the real PlaybookRun parses them.
- ``FakeMaster`` and ``FakeTunnel`` start nothing; ``Clock`` is a monotonic clock and a sleep
  that only moves when slept.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from driver.inventory import Cluster
from driver.remote import Remote, Reply
from driver.tunnel import Endpoint, Forward

JOB = "4242"
NODE = "cn01"
SOCKET = f"/home/alice/.nodebook/run/{JOB}/jupyter.sock"
TOKEN = "s3cret-token"


def line(kind: str, **fields: Any) -> dict[str, Any]:
    """One of the helper's JSON lines."""
    return {"nodebook": kind, **fields}


def reply(*lines: dict[str, Any], rc: int = 0, stderr: str = "") -> Reply:
    return Reply(rc, list(lines), stderr)


def error(kind: str, message: str, rc: int = 6) -> Reply:
    """The helper's `die`: one error line and a non-zero exit."""
    return reply(line("error", error=kind, message=message, job_id=JOB), rc=rc)


SUBMITTED = line(
    "submitted",
    job_id=JOB,
    heartbeat_timeout=7200,
    scheduler="slurm",
    endpoint="socket",
    socket=SOCKET,
)
PENDING = line("status", job_id=JOB, state="PENDING", reason="Resources", waiting=True)
RUNNING = line("status", job_id=JOB, state="RUNNING", node=NODE, host_keys=[])
CONNECTION = line(
    "connection",
    job_id=JOB,
    node=NODE,
    socket=SOCKET,
    base_url="/",
    app="lab",
    hop_socket="",
    host_keys=[],
    token=TOKEN,
)

# An answer: a Reply, a function of the call's arguments that returns one (it may block, or
# signal the driver), or an exception the call raises.
Answer = Reply | Callable[[tuple[str, ...]], Reply] | BaseException

# What the login node answers when a test does not say otherwise: a session that starts at once
# and keeps running.
USUAL: dict[str, list[Answer]] = {
    "submit": [reply(SUBMITTED, PENDING)],
    # (--queued: the job's state once it starts, then where Jupyter answers)
    "connection": [reply(RUNNING, CONNECTION)],
    "heartbeat": [reply(line("heartbeat", job_id=JOB, alive=True, state="RUNNING"))],
    "usage": [reply(line("usage", job_id=JOB))],
    "version": [reply(line("version", version="test"))],
    "cancel": [reply(line("stopped", job_id=JOB))],
    "ended": [reply(line("ended", job_id=JOB, state="COMPLETED"))],
}


def heartbeat(alive: bool) -> Reply:
    return reply(line("heartbeat", job_id=JOB, alive=alive))


def cluster(tmp: Path) -> Cluster:
    return Cluster(name="hpc", inventory=tmp / "hosts.yml", host="login.hpc", user="alice")


@dataclass
class FakeMaster:
    """The session's ssh master: already logged in, runs nothing."""

    cluster: Cluster
    control_dir: Path
    keepalive: int = 10
    starts: int = 0
    closes: int = 0
    # set: the login takes until this is set (the play is at the gate), as a real one takes a
    # few tenths of a second while ansible-playbook starts
    logged_in: threading.Event | None = None

    @property
    def control_path(self) -> Path:
        return self.control_dir / "m"

    def begin(self) -> SimpleNamespace | None:
        self.starts += 1
        self.control_path.touch()  # Remote.responsive looks for the socket
        if self.logged_in is None:
            return None
        done = self.logged_in
        return SimpleNamespace(wait=lambda timeout=None: done.wait(10), abort=done.set)

    def start(self, timeout: float = 120) -> None:
        connecting = self.begin()
        if connecting is not None:
            connecting.wait()

    def close(self) -> None:
        self.closes += 1

    def ansible_env(self) -> dict[str, str]:
        return {}


@dataclass
class FakeRemote(Remote):
    """The helper on a fake login node. ``answers`` maps a command to its answers in turn (the
    last one repeats); every call is kept in ``calls`` as the helper's argv."""

    answers: dict[str, list[Answer]] = field(default_factory=dict)
    calls: list[tuple[str, ...]] = field(default_factory=list)

    def call(
        self,
        *args: str,
        timeout: float = 30,
        check: bool = True,
        late: Any = None,
        on_line: Callable[[dict[str, Any]], None] | None = None,
    ) -> Reply:
        self.calls.append(args)
        queue = self.answers.setdefault(args[0], list(USUAL.get(args[0], [reply(rc=127)])))
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(answer, subprocess.TimeoutExpired) and check and late is not None:
            raise late from answer  # as Remote.call does
        if isinstance(answer, BaseException):
            raise answer
        result = answer if isinstance(answer, Reply) else answer(args)
        for line in result.lines if on_line is not None else []:
            on_line(line)  # as they come
        if check:
            self.raise_for(result)
        return result

    def tidy_node(self, node: str, job_id: str) -> None:
        self.calls.append(("tidy", job_id, f"(on {node})"))

    def made(self, command: str) -> list[tuple[str, ...]]:
        """The calls of one helper command, in order."""
        return [args for args in self.calls if args[0] == command]

    def commands(self) -> list[str]:
        """The helper commands called, in order, repeats of one command folded into one."""
        said: list[str] = []
        for args in self.calls:
            if not said or said[-1] != args[0]:
                said.append(args[0])
        return said


@dataclass
class FakeTunnel:
    """A tunnel without ssh: ``alive`` answers in turn from ``lives`` (the last repeats)."""

    remote: Any
    mode: str
    endpoint: Endpoint
    local_port: int
    job_id: str
    hop_socket: str | None = None
    forwards: tuple[Forward, ...] = ()
    proc: None = None
    lives: list[bool] = field(default_factory=lambda: [True])
    starts: int = 0
    closes: int = 0

    def start(self) -> None:
        self.starts += 1

    def close(self) -> None:
        self.closes += 1

    def alive(self) -> bool:
        return self.lives.pop(0) if len(self.lives) > 1 else self.lives[0]


@dataclass
class Clock:
    """Monotonic time that moves only when slept (Monitor's ``monotonic`` and ``sleep``)."""

    now: float = 100.0
    slept: list[float] = field(default_factory=list)

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


# -- the playbooks ---------------------------------------------------------------------------
@dataclass
class Play:
    """What a step of a fake play sees: its extravars, ansible-runner's event handler and
    whether the driver cancelled the run."""

    extravars: dict[str, Any]
    handler: Callable[[dict[str, Any]], bool]
    cancelled: Callable[[], bool]
    at_gate: threading.Event  # the play waits at the driver's gate
    through_gate: list[bytes]  # what the driver handed the play there

    def emit(self, kind: str, lines: tuple[dict[str, Any], ...]) -> None:
        stdout = "\n".join(json.dumps(x) for x in lines)
        self.handler({"event": kind, "event_data": {"res": {"stdout": stdout, "rc": 0}}})

    def over(self) -> bool:
        """Cancelled, or the session is cleaning up (its gate is gone): a real play would be
        dead by now (ansible-runner's SIGKILL, or the same Ctrl-C)."""
        gate = self.extravars.get("nodebook_master_gate")
        return self.cancelled() or (gate is not None and not Path(gate).exists())

    def until(self, done: Callable[[], bool]) -> bool:
        """Poll (as the gate's own loop does, driver.gate.POLL) until ``done``; False if the
        play is over first."""
        while not done():
            if self.over():
                return False
            time.sleep(0.005)
        return True


# A step returns "failed" to fail the play, "stop" to end it (the rest is skipped), or None.
Step = Callable[[Play], str | None]


def ok(*lines: dict[str, Any]) -> Step:
    """A task's result carrying the helper's lines (the last wait, cleanup's cancel)."""
    return lambda play: play.emit("runner_on_ok", lines)


def retry(*lines: dict[str, Any]) -> Step:
    """One retry of the wait task: a state that is still waiting."""
    return lambda play: play.emit("runner_retry", lines)


def failed(*lines: dict[str, Any]) -> Step:
    """A task that failed with the helper's error line."""
    return lambda play: play.emit("runner_on_failed", lines) or "failed"


def gate(play: Play) -> str | None:
    """session.yml's first task: wait at the driver's gate (a FIFO) for the driver's submission
    (its helper lines), as `cat` would; a gate released without a word ends the play."""
    fd = os.open(play.extravars["nodebook_master_gate"], os.O_RDONLY | os.O_NONBLOCK)
    play.at_gate.set()
    got: list[bytes] = []

    def read() -> bool:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:  # a writer is there, still writing
            return False
        got.append(chunk)
        return not chunk and any(got)  # the writer wrote and is done

    try:
        play.until(read)
    finally:
        os.close(fd)
    play.through_gate.append(b"".join(got))
    return None if play.through_gate[-1] else "stop"


def interrupted(play: Play) -> str:
    """A step during which the user presses Ctrl-C: the play goes on until the driver stops it."""
    os.kill(os.getpid(), signal.SIGINT)
    play.until(lambda: False)
    return "stop"


class PlayThread(threading.Thread):
    """ansible-runner's thread; its play starts once the driver waits for it (``is_alive`` or
    ``join``), as ansible-playbook takes a while to start."""

    def __init__(self, run: Callable[[], None], name: str) -> None:
        super().__init__(target=run, name=name, daemon=True)
        self.polled = threading.Event()

    def is_alive(self) -> bool:
        self.polled.set()
        return super().is_alive()

    def join(self, timeout: float | None = None) -> None:
        self.polled.set()
        super().join(timeout)


@dataclass
class FakeAnsible:
    """ansible_runner for session.yml and cleanup.yml: ``scripts`` names each playbook's steps.
    Every run is kept in ``runs`` as (playbook, extravars)."""

    scripts: dict[str, list[Step]]
    runs: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    at_gate: threading.Event = field(default_factory=threading.Event)
    through_gate: list[bytes] = field(default_factory=list)

    def playbooks(self) -> list[str]:
        return [name for name, _ in self.runs]

    def run_async(self, **kw: Any) -> tuple[threading.Thread, SimpleNamespace]:
        name = Path(kw["playbook"]).name
        self.runs.append((name, dict(kw["extravars"])))
        play = Play(
            kw["extravars"],
            kw["event_handler"],
            kw["cancel_callback"],
            self.at_gate,
            self.through_gate,
        )
        runner = SimpleNamespace(status=None, rc=None)

        def run() -> None:
            status = "successful" if play.until(thread.polled.is_set) else "canceled"
            for step in self.scripts.get(name, []) if status == "successful" else []:
                if play.cancelled():
                    status = "canceled"
                    break
                outcome = step(play)
                if outcome in ("failed", "stop"):
                    status = "failed" if outcome == "failed" else status
                    break
            runner.status, runner.rc = status, 0 if status == "successful" else 2

        thread = PlayThread(run, f"fake-{name}")
        thread.start()
        return thread, runner
