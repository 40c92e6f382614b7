"""Telling the researcher, while a session runs: desktop notifications and the live line.

A desktop notification goes out when a job that waited in the queue is ready, and once when its
time limit is ``warn_before`` minutes away: ``notify-send`` on Linux, ``osascript`` on macOS,
where they are on PATH; else (or when they fail, as notify-send does without a desktop
session) the terminal's bell. Each also prints a line. ``SessionWatch.tick`` runs in the
monitor's loop (the main thread): it keeps the live line's time left and use current, asking the
helper for the job's use every ``usage_interval`` seconds; no extra ssh session is held.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

from driver.errors import NodebookError
from driver.options import USAGE_INTERVAL_S
from driver.progress import Renderer, Update
from driver.usage import IdleWatch, Usage, clock, left_text

TITLE = "nodebook"


def notify_argv(title: str, text: str, platform: str | None = None) -> list[str] | None:
    """The desktop notification command for this machine (None: none on PATH). The texts are
    arguments, never part of a script: osascript reads them as ``argv``."""
    platform = platform or sys.platform
    if platform == "darwin":
        osascript = shutil.which("osascript")
        if osascript:
            return [
                osascript,
                "-e", "on run argv",
                "-e", "display notification (item 2 of argv) with title (item 1 of argv)",
                "-e", "end run",
                title, text,
            ]  # fmt: skip
        return None
    notify_send = shutil.which("notify-send")
    return [notify_send, "--app-name", TITLE, title, text] if notify_send else None


@dataclass
class Notifier:
    """Sends desktop notifications (or rings the bell); ``enabled`` False sends nothing."""

    enabled: bool = True
    terminal: IO[str] | None = None  # where the bell rings (a terminal only)
    run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run

    def send(self, text: str) -> str | None:
        """Notify; what did it (the command's name, "bell"), or None."""
        if not self.enabled:
            return None
        argv = notify_argv(TITLE, text)
        if argv is not None:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                done = self.run(
                    argv,
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    text=True,
                    timeout=5,
                    check=False,
                )
                if done.returncode == 0:
                    return argv[0].rsplit("/", 1)[-1]
        return self.bell()

    def bell(self) -> str | None:
        term = self.terminal
        with contextlib.suppress(OSError, ValueError):
            if term is not None and term.isatty():
                term.write("\a")
                term.flush()
                return "bell"
        return None


@dataclass
class SessionWatch:
    """The time left, the use and the notifications of one held session."""

    job_id: str
    node: str
    out: Renderer
    notifier: Notifier
    fetch: Callable[[], Usage]  # the helper's usage of this job (one round trip)
    warn_before: float = 10.0  # minutes; 0: no warning
    usage_interval: float = USAGE_INTERVAL_S
    clock: Callable[[], float] = time.time  # wall clock: a sleeping laptop's time counts
    ends_at: float | None = None  # wall time the time limit ends the job
    limit: int | None = None
    usage: Usage | None = None
    warned: bool = False
    _next_fetch: float = 0.0
    _last: tuple[float, int] | None = None  # (wall time, CPU seconds) of the previous report
    _idle: IdleWatch | None = None
    errors: list[str] = field(default_factory=list)

    def ready(self, waited: float | None, url: str) -> None:
        """The job is ready: a notification if it waited in the queue (``waited`` seconds; None:
        it did not, see Session._queued)."""
        if waited is None:
            return
        text = f"job {self.job_id} is ready on {self.node} after {clock(waited)} in the queue"
        how = self.notifier.send(f"{text}: {url}")
        self.out.emit(Update("notice", job_id=self.job_id, message=text, data={"notified": how}))

    def tick(self) -> None:
        """(The monitor's loop) fetch the use when due, warn when due, redraw the live line."""
        now = self.clock()
        if now >= self._next_fetch:
            self._next_fetch = now + self.usage_interval
            try:
                self._took(self.fetch(), now)
            except (NodebookError, OSError, subprocess.SubprocessError) as exc:
                self.errors.append(str(exc))  # the heartbeat is what notices a lost cluster
        left = None if self.ends_at is None else max(0.0, self.ends_at - now)
        if (
            left is not None
            and not self.warned
            and self.warn_before > 0
            and left <= self.warn_before * 60
        ):
            self.warned = True
            if self.limit is None or self.limit > self.warn_before * 60:
                self._warn(left)
        self.out.status(self.line(left))

    def _took(self, usage: Usage, now: float) -> None:
        if usage.left is not None:
            self.ends_at, self.limit = now + usage.left, usage.limit
        if usage.cpu_time is not None:
            previous = self._last
            usage.measure(None if previous is None else (now - previous[0], previous[1]))
            self._last = (now, usage.cpu_time)
            if usage.cpus and self._idle is None:
                self._idle = IdleWatch(usage.cpus)
            hint = self._idle.add(now, usage.cpu_time) if self._idle else None
            if hint:
                self.out.emit(Update("notice", job_id=self.job_id, message=hint))
        self.usage = usage
        if self.out.json_mode:
            self.out.emit(Update("usage", job_id=self.job_id, node=self.node, data=usage.data()))

    def _warn(self, left: float) -> None:
        text = (
            f"job {self.job_id} has {clock(left)} left of its time limit ({clock(self.limit or 0)})"
            ": save your work; the next session can ask for more with --time"
        )
        how = self.notifier.send(text)
        self.out.emit(Update("notice", job_id=self.job_id, message=text, data={"notified": how}))

    def line(self, left: float | None) -> str:
        """The live line: 'job 42 on cn01 · 52:10 left of 1:00:00 · CPU 0.98 of 2 · ...'."""
        parts = [f"job {self.job_id} on {self.node}"]
        if left is not None:
            parts.append(left_text(left, self.limit))
        if self.usage is not None and self.usage.text():
            parts.append(self.usage.text())
        return " · ".join(parts)
