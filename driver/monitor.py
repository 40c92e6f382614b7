"""Holding a running session: the heartbeat, the tunnel's health, reconnecting, why it ended.

``Monitor.hold`` returns when the job ended normally (Jupyter shut down from its UI or by idle
culling) and raises a NodebookError for every other end: the job ended on its own (walltime,
memory, a node failure, scancel elsewhere), or the tunnel could not be re-established.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from driver.errors import ExitCode, NodebookError
from driver.progress import Renderer, Update
from driver.remote import Remote
from driver.tunnel import Tunnel, http_ok, wait_http

# Scheduler states in which the job may still hold Jupyter (the tunnel is what broke). Not
# COMPLETING: a cancelled job is COMPLETING while its trap stops Jupyter (reconnecting to it
# would only time out, and end the session with the tunnel's exit code instead of the job's).
LIVE = ("RUNNING", "CONFIGURING", "UNKNOWN")


@dataclass
class Job:
    """The job a session submitted (or attached to), and what is known about it."""

    tag: str
    id: str | None = None
    submitted: bool = False  # a submission may have happened (cancel by tag while no id)
    gone: bool = False  # it ended on its own: nothing left to cancel
    cancel_sent: bool = False  # scancel went out over the master
    heartbeat_timeout: int | None = None  # the dead-man's switch the job runs with
    socket: str | None = None  # where its unix socket will be (from the submission)
    endpoint: str | None = None  # how Jupyter listens (from the submission)
    last_heartbeat: float = field(default_factory=time.time)  # wall clock of the last touch


def describe_end(
    ended: dict[str, Any], user: str | None, time_limit: str | None
) -> tuple[str, ExitCode]:
    """Why a job left the queue, in words with a fix, and the exit code for it."""
    state = str(ended.get("state") or "")
    by = str(ended.get("by") or "")
    exit_code = str(ended.get("exit_code") or "")
    log = [str(x) for x in ended.get("log") or []]
    tail = f"; last lines of the job log: {' | '.join(log)}" if log else ""
    if ended.get("cause") == "heartbeat":
        return (
            "the job ended itself: it had no heartbeat from this machine for its dead-man's "
            "switch's window (this machine or its network was away); start a new session",
            ExitCode.JOB_ENDED,
        )
    if ended.get("cause") == "memory" or state == "OUT_OF_MEMORY":
        # Without cgroups Slurm's memory watch kills the job (FAILED, signal 9) and says so.
        return (
            "the job ran out of memory (--mem) and Slurm ended it; ask for more with --mem next "
            "time, or load less data at once",
            ExitCode.JOB_ENDED,
        )
    if state in ("COMPLETED", "GONE", ""):
        return (
            "Jupyter was shut down (from its menu, or idle culling) and the job ended",
            ExitCode.OK,
        )
    if state == "TIMEOUT":
        limit = f" ({time_limit})" if time_limit else ""
        return (
            f"the job reached its time limit{limit}; ask for more with --time next time "
            "(`sinfo -s` shows each partition's maximum)",
            ExitCode.JOB_ENDED,
        )
    if state == "NODE_FAIL":
        return (
            "the job's node failed; start a new session (the cluster's admins can say why)" + tail,
            ExitCode.JOB_ENDED,
        )
    if state == "CANCELLED":
        if by and user and by == user:
            who = "by you, outside this session (scancel or `nodebook stop`)"
        elif by:
            who = f"by {by} (an administrator?)"
        else:
            who = "outside this session (scancel)"
        return (
            f"the job was cancelled {who}; start a new one with `nodebook session`",
            ExitCode.JOB_ENDED,
        )
    if state == "PREEMPTED":
        return (
            "the job was preempted by a higher-priority job; start a new session, or use a "
            "partition or QOS without preemption",
            ExitCode.JOB_ENDED,
        )
    if state == "FAILED":
        code = f" (exit code {exit_code})" if exit_code else ""
        return (
            f"the job failed{code}{tail}; fix what the log names, then start a new session",
            ExitCode.JOB_ENDED,
        )
    return f"the job ended ({state}){tail}", ExitCode.JOB_ENDED


@dataclass
class Monitor:
    """Keeps one connected session alive until it ends."""

    remote: Remote
    job: Job
    tunnel: Tunnel
    api_url: str
    token: str
    out: Renderer
    check_interval: float
    reconnect_bound: float
    time_limit: str | None = None
    unreachable: bool = False  # the cluster stopped answering: the job cannot be cancelled
    sleep: Callable[[float], None] = time.sleep
    last_failure: str = ""  # why the last reconnect attempt failed (ssh's reason)
    on_tick: Callable[[], None] | None = None  # each turn of hold's loop (SessionWatch.tick)

    def hold(self) -> ExitCode:
        next_check = 0.0
        job_id = self.job.id or ""
        while True:
            now = time.monotonic()
            if now >= next_check:
                status = self.remote.heartbeat(job_id)
                next_check = now + self.check_interval
                if status == "alive":
                    self.job.last_heartbeat = time.time()
                    if not http_ok(self.api_url, self.token):
                        # Jupyter stopped answering: a job killed outright (its connection file
                        # is still there), or the tunnel broke. One query tells them apart.
                        if self.remote.state(job_id) not in LIVE:
                            return self._ended()
                        if (code := self._recover()) is not None:
                            return code
                elif status == "gone":
                    return self._ended()
                elif (code := self._recover()) is not None:
                    return code
            if not self.tunnel.alive() and (code := self._recover()) is not None:
                return code
            if self.on_tick is not None:
                self.on_tick()  # the live line, notifications (driver/notify.py)
            self.sleep(0.5)

    def _recover(self) -> ExitCode | None:
        """The tunnel broke: rebuild it (None), or find that the job ended, or give up."""
        outcome = self.reconnect()
        if outcome == "ended":
            return self._ended()
        if outcome == "failed":
            raise self.lost()
        return None

    def _ended(self) -> ExitCode:
        self.job.gone = True
        ended = self.remote.ended(self.job.id or "")
        if ended.get("stale"):  # killed outright: its runtime dir is still on the node
            self.remote.tidy_node(self.tunnel.endpoint.node, self.job.id or "")
        text, code = describe_end(ended, self.remote.cluster.user or None, self.time_limit)
        self.out.emit(
            Update(
                "ended",
                job_id=self.job.id,
                state=str(ended.get("state") or "") or None,
                message=text,
                code=int(code),
                data={k: v for k, v in ended.items() if k != "nodebook"},
            )
        )
        if code != ExitCode.OK:
            raise NodebookError(text, code)
        return code

    def reconnect(self) -> str:
        """Re-establish master and tunnel with backoff within the bound: "ok", "ended" (the job
        ended meanwhile: its connection file is gone) or "failed".

        Re-established means Jupyter answers through the new tunnel again, not that an ssh
        process runs: a master hung on a dead link still answers ``-O check`` locally.
        """
        deadline = time.monotonic() + self.reconnect_bound
        delay = 1.0
        master = self.remote.master
        self.out.emit(Update("info", job_id=self.job.id, message="tunnel lost, reconnecting"))
        while time.monotonic() < deadline:
            self.tunnel.close()
            try:
                if not self.remote.responsive():
                    master.close()
                    master.start(timeout=max(5.0, min(30.0, deadline - time.monotonic())))
                if self.remote.heartbeat(self.job.id or "") == "gone":
                    return "ended"
                self.tunnel.start()
                wait_http(
                    self.api_url,
                    self.token,
                    max(2.0, min(15.0, deadline - time.monotonic())),
                    self.tunnel,
                )
                self.out.emit(Update("info", job_id=self.job.id, message="tunnel re-established"))
                return "ok"
            except NodebookError as exc:
                self.last_failure = exc.message
            self.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 10.0)
        self.unreachable = not self.remote.responsive()
        return "failed"

    def lost(self) -> NodebookError:
        text = (
            f"the tunnel was lost and could not be re-established within "
            f"{self.reconnect_bound:.0f} s"
        )
        if self.last_failure:
            text += f"; the last try: {self.last_failure}"
        return NodebookError(text, ExitCode.TUNNEL_LOST)
