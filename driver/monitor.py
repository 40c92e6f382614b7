"""Holding a running session: the heartbeat, the tunnel's health, reconnecting, why it ended.

``Monitor.hold`` returns when the job ended normally (Jupyter shut down from its UI or by idle
culling) and raises a NodebookError for every other end: the job ended on its own (walltime,
memory, a node failure, scancel elsewhere, its lease), or the tunnel could not be re-established.

A session is a lease: the job keeps running while no heartbeat reaches it for up to its lease
(``--lease``), then ends itself. Until then a lost connection is re-established, however long it
takes (a closed lid, a network that changed); nothing is cancelled. A machine that slept, or a
driver whose processes were frozen, is noticed on waking by a jump of the wall clock (``Waking``).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from driver.errors import ExitCode, NodebookError
from driver.progress import Renderer, Update
from driver.record import Job
from driver.remote import Remote
from driver.tunnel import Tunnel, http_ok, wait_http

# Scheduler states in which the job may still hold Jupyter (the tunnel is what broke). Not
# COMPLETING: a cancelled job is COMPLETING while its trap stops Jupyter (reconnecting to it
# would only time out, and end the session with the tunnel's exit code instead of the job's).
LIVE = ("RUNNING", "CONFIGURING", "UNKNOWN")


def span(seconds: float) -> str:
    """A duration as people say it: 45 s, 3 min 20 s, 2 h 5 min."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s" if s % 60 else f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60} min" if s % 3600 // 60 else f"{s // 3600} h"


def at(wall: float) -> str:
    """A wall-clock time as the local HH:MM:SS."""
    return time.strftime("%H:%M:%S", time.localtime(wall))


def has_terminal() -> bool:
    """This process can ask on a terminal (ssh prompts on /dev/tty)."""
    try:
        os.close(os.open("/dev/tty", os.O_RDWR))
    except OSError:
        return False
    return True


@dataclass
class Waking:
    """Notices that this machine slept or this process was frozen: the wall clock moved on by
    more than ``gap`` seconds between two ticks that are ``interval`` apart.

    The wall clock, not the monotonic one: a suspended machine's monotonic clock stops (it would
    see no time pass at all); a frozen process's does not, but then both jump alike. A thread
    ticks (``start``), so a main thread busy in a call does not count as away.
    """

    gap: float = 3.0
    interval: float = 0.5
    clock: Callable[[], float] = time.time
    last: float | None = None
    away_since: float | None = None
    away_for: float = 0.0  # seconds away, not yet taken
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    def tick(self) -> None:
        now = self.clock()
        with self._lock:
            if self.last is not None and now - self.last > self.gap:
                if not self.away_for:
                    self.away_since = self.last
                self.away_for += now - self.last
            self.last = now

    def take(self) -> tuple[float, float] | None:
        """(since, seconds) of an absence noticed since the last take, or None. It ticks first:
        after a thaw the caller may run before this thread's next tick."""
        self.tick()
        with self._lock:
            if not self.away_for:
                return None
            away = (self.away_since or 0.0, self.away_for)
            self.away_since, self.away_for = None, 0.0
            return away

    def start(self) -> None:
        self.tick()

        def run() -> None:
            while not self._stop.wait(self.interval):
                self.tick()

        threading.Thread(target=run, name="nodebook-waking", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()


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
            "the job ended itself while this machine was away: no heartbeat reached it for its "
            "lease (--lease); start a new session (a longer --lease outlasts longer absences)",
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
    clock: Callable[[], float] = time.time  # the wall clock: the lease and absences count in it
    monotonic: Callable[[], float] = time.monotonic  # the heartbeat's cadence (check_interval)
    waking: Waking | None = None  # notices sleep and frozen processes (a thread, from hold)
    last_failure: str = ""  # why the last reconnect attempt failed (ssh's reason)
    on_tick: Callable[[], None] | None = None  # each turn of hold's loop (SessionWatch.tick)

    def hold(self) -> ExitCode:
        if self.waking is None:
            self.waking = Waking(clock=self.clock)
            self.waking.start()
        try:
            return self._hold()
        finally:
            self.waking.stop()

    def _hold(self) -> ExitCode:
        next_check = 0.0
        job_id = self.job.id or ""
        while True:
            if (away := self._took_away()) is not None and (code := self._woke(*away)) is not None:
                return code
            now = self.monotonic()
            if now >= next_check:
                status = self.remote.heartbeat(job_id)
                next_check = now + self.check_interval
                if status == "alive":
                    self.job.last_heartbeat = self.clock()
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

    def _took_away(self) -> tuple[float, float] | None:
        return self.waking.take() if self.waking is not None else None

    def _woke(self, since: float, seconds: float) -> ExitCode | None:
        """This machine was away (asleep, or the driver frozen): check the session at once."""
        self._say_away(since, seconds)
        lease_end = self.job.lease_end()
        if lease_end is not None and self.clock() >= lease_end:
            return self._lease_over(lease_end)
        if self.remote.responsive(timeout=3) and http_ok(self.api_url, self.token):
            self._back(since)
            return None
        return self._recover(since)

    def _say_away(self, since: float, seconds: float) -> None:
        self.out.emit(
            Update(
                "info",
                job_id=self.job.id,
                message=f"this machine was away for {span(seconds)} (since {at(since)})",
                data={"away_s": round(seconds), "away_since": since},
            )
        )

    def _back(self, since: float) -> None:
        self.out.emit(
            Update(
                "info",
                job_id=self.job.id,
                message=f"back after {span(self.clock() - since)}: the session goes on",
                data={"back_after_s": round(self.clock() - since)},
            )
        )

    def _recover(self, since: float | None = None) -> ExitCode | None:
        """The tunnel broke: rebuild it (None), or find that the job ended, or give up."""
        outcome = self.reconnect(since)
        if outcome == "ended":
            return self._ended()
        if outcome == "lease":
            return self._lease_over(self.job.lease_end() or self.clock())
        if outcome == "failed":
            raise self.lost()
        return None

    def _lease_over(self, lease_end: float) -> ExitCode:
        """No heartbeat reached the job for its whole lease: it ends itself (the helper's
        switch, within its poll). Not touched again here, so as not to revive it: the cluster
        is asked how the job ended, which waits for that end."""
        self.out.emit(
            Update(
                "info",
                job_id=self.job.id,
                message=(
                    f"the lease of job {self.job.id} ran out at {at(lease_end)} while this "
                    "machine was away: the job ends itself"
                ),
            )
        )
        master = self.remote.master
        try:
            if not self.remote.responsive(timeout=3):
                master.close()
                master.start(timeout=30)
        except NodebookError as exc:
            self.unreachable = True
            raise NodebookError(
                f"job {self.job.id} ended itself while this machine was away (its lease ran out "
                f"at {at(lease_end)}); the cluster does not answer to say more: {exc.message}",
                ExitCode.JOB_ENDED,
            ) from exc
        self.unreachable = False
        return self._ended()

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

    def reconnect(self, since: float | None = None) -> str:
        """Re-establish master and tunnel (the same local port) with backoff: "ok", "ended"
        (the job ended meanwhile: its connection file is gone), "lease" (its lease ran out) or
        "failed" (a session without a lease, past the reconnect bound).

        Past the reconnect bound it says so once and goes on trying until the lease ends:
        nothing is cancelled. Re-established means Jupyter answers through the new tunnel
        again, not that an ssh process runs: a master hung on a dead link still answers
        ``ssh -O check`` locally.
        """
        lost_at = self.clock()
        bound = lost_at + self.reconnect_bound
        said = False
        delay = 1.0
        master = self.remote.master
        self.out.emit(Update("info", job_id=self.job.id, message="tunnel lost, reconnecting"))
        while True:
            lease_end = self.job.lease_end()
            if lease_end is not None and self.clock() >= lease_end:
                return "lease"
            if self.clock() >= bound and not said:
                if lease_end is None:
                    self.unreachable = not self.remote.responsive()
                    return "failed"
                said = True
                self._still_trying(lease_end)
            # Each try gets at most the reconnect bound (and never past the lease).
            left = self.reconnect_bound
            if lease_end is not None:
                left = min(left, max(1.0, lease_end - self.clock()))
            self.tunnel.close()
            try:
                if not self.remote.responsive():
                    self.unreachable = True  # meanwhile, Ctrl-C cannot cancel: cleanup knows
                    master.close()
                    master.start(timeout=max(5.0, min(30.0, left)))
                self.unreachable = False
                status = self.remote.heartbeat(self.job.id or "")
                if status == "gone":
                    return "ended"
                if status == "alive":
                    self.job.last_heartbeat = self.clock()  # the lease starts over
                self.tunnel.start()
                wait_http(self.api_url, self.token, max(2.0, min(15.0, left)), self.tunnel)
                self.out.emit(Update("info", job_id=self.job.id, message="tunnel re-established"))
                if since is not None or said:
                    self._back(since if since is not None else lost_at)
                return "ok"
            except NodebookError as exc:
                self.last_failure = exc.message
                if "Permission denied" in exc.message and not has_terminal():
                    self.unreachable = True  # not logged in: nothing can be cancelled
                    raise self.login_again(exc) from exc
            # A frozen or sleeping machine: try again at once on waking, not after the backoff.
            away, waited = self._took_away(), 0.0
            while away is None and waited < min(delay, self.reconnect_bound):
                self.sleep(0.5)
                waited += 0.5
                away = self._took_away()
            if away is not None:
                self._say_away(*away)
                since = away[0] if since is None else since
                delay = 1.0
            else:
                delay = min(delay * 2, 10.0)

    def _still_trying(self, lease_end: float) -> None:
        why = f" ({self.last_failure})" if self.last_failure else ""
        self.out.emit(
            Update(
                "info",
                job_id=self.job.id,
                message=(
                    f"cluster unreachable for {self.reconnect_bound:.0f} s{why}: still trying "
                    f"until {at(lease_end)}, when the lease ends and job {self.job.id} ends "
                    "itself; nothing is cancelled meanwhile (Ctrl-C ends the session now)"
                ),
                data={"lease_end": lease_end},
            )
        )

    def login_again(self, exc: NodebookError) -> NodebookError:
        """The login node wants a password or code again and no terminal can ask for it."""
        end = self.job.lease_end()
        until = f" (it ends itself at {at(end)}, when its lease runs out)" if end else ""
        return NodebookError(
            f"reconnecting: the login node asks to log in again and this command has no "
            f"terminal to ask for a password or code on ({exc.message}); job {self.job.id} runs "
            f"on{until}: run `nodebook attach {self.job.id}` in a terminal",
            ExitCode.SSH,
        )

    def lost(self) -> NodebookError:
        text = (
            f"the tunnel was lost and could not be re-established within "
            f"{self.reconnect_bound:.0f} s"
        )
        if self.last_failure:
            text += f"; the last try: {self.last_failure}"
        return NodebookError(text, ExitCode.TUNNEL_LOST)
