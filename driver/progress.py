"""ansible-runner events -> progress updates -> live lines (human) or JSON lines (--json).

The playbooks' remote steps are calls of the remote helper, whose JSON lines come back in the
tasks' results (``{"nodebook": "submitted" | "status" | "connection" | "stopped" | "error", ...}``):
job id; state, reason, estimated start; node and endpoint. A retry of the wait is an event of its
own, so each change of state is shown as it happens. Nothing here scrapes Ansible's display.
"""

import contextlib
import json
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import IO, Any

from driver.errors import ExitCode
from driver.remote import error_for, parse_lines

# A failing task's own message (not the helper's) may start with one of these tags.
FAIL_TAGS = {
    "[not-set-up]": ExitCode.NOT_SET_UP,
    "[usage]": ExitCode.USAGE,
    "[scheduler]": ExitCode.SCHEDULER,
    "[duplicate]": ExitCode.DUPLICATE,
    "[job-ended]": ExitCode.JOB_ENDED,
}
WAITING = ("PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "UNKNOWN")


@dataclass
class Update:
    """One step of a session's progress."""

    kind: str  # submitted | pending | running | ready | stopped | ended | error | info
    job_id: str | None = None
    state: str | None = None
    reason: str | None = None
    start: str | None = None
    node: str | None = None
    message: str | None = None
    code: int | None = None
    url: str | None = None  # ready: the browser URL (with the token)
    local_port: int | None = None  # ready: the tunnel's local port
    data: dict[str, Any] = field(default_factory=dict)


def carries_secret(event: dict[str, Any]) -> bool:
    """True for events that must not be kept (a no_log task's result, anything with a token)."""
    data = event.get("event_data", {})
    res = data.get("res") if isinstance(data, dict) else None
    if isinstance(res, dict) and (res.get("_ansible_no_log") or "censored" in res):
        return True
    return "token" in json.dumps(data.get("res", {})) if isinstance(data, dict) else False


def _from_line(line: dict[str, Any]) -> Update | None:
    kind = line.get("nodebook")
    data = {k: v for k, v in line.items() if k != "nodebook"}
    job_id = str(line.get("job_id") or "") or None
    if kind == "submitted":
        return Update("submitted", job_id=job_id, data=data)
    if kind == "status":
        state = str(line.get("state") or "")
        return Update(
            "pending" if state in WAITING else "running" if state == "RUNNING" else "info",
            job_id=job_id,
            state=state,
            reason=line.get("reason") or None,
            start=line.get("start") or None,
            node=line.get("node") or None,
            data={"start_known": bool(line.get("start"))},
        )
    if kind == "connection" and line.get("node"):
        return Update("ready", job_id=job_id, node=str(line["node"]), data=data)
    if kind in ("stopped", "gone"):
        return Update("stopped", job_id=job_id, data={"cancelled": kind == "stopped"})
    return None


def parse_event(event: dict[str, Any]) -> list[Update]:
    """The progress updates one ansible-runner event carries (often none)."""
    kind = event.get("event")
    data = event.get("event_data") or {}
    res = data.get("res") if isinstance(data, dict) else None
    if not isinstance(res, dict):
        return []
    lines = parse_lines(res["stdout"]) if isinstance(res.get("stdout"), str) else []
    if kind in ("runner_on_ok", "runner_retry"):
        return [u for u in map(_from_line, lines) if u is not None]
    if kind in ("runner_on_failed", "runner_on_unreachable") and not data.get("ignore_errors"):
        updates = [u for u in map(_from_line, lines) if u is not None and u.kind != "ready"]
        errors = [line for line in lines if line.get("nodebook") == "error"]
        if errors:
            err = error_for(errors[-1])
            msg, code = err.message, err.code
        else:
            msg = str(res.get("msg") or res.get("stderr") or "task failed").strip()
            code = ExitCode.SSH if kind == "runner_on_unreachable" else ExitCode.ERROR
            for tag, tag_code in FAIL_TAGS.items():
                if tag in msg:
                    msg, code = msg[msg.index(tag) + len(tag) :].strip(), tag_code
            stderr = str(res.get("stderr", ""))
            if "nodebook-remote" in stderr and "No such file or directory" in stderr:
                msg = "nodebook is not set up here (no helper installed): run `nodebook setup`"
                code = ExitCode.NOT_SET_UP
        updates.append(
            Update(
                "error",
                message=msg.splitlines()[0] if msg else msg,
                code=code,
                data={"detail": msg},
            )
        )
        return updates
    return []


def pending_line(update: Update) -> str:
    """'PENDING (Resources), estimated start 2026-01-01T12:00:00' (or 'no estimate yet')."""
    text = f"{update.state or 'PENDING'}"
    if update.reason:
        text += f" ({update.reason})"
    if update.state == "UNKNOWN":
        return "state unknown: Slurm did not answer, asking again"
    text += (
        f", estimated start {update.start}" if update.start else ", no estimate of the start yet"
    )
    return text


class _Quiet:
    """A stream whose writes never raise: a closed terminal (SIGHUP) must not stop the cleanup."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        with contextlib.suppress(OSError, ValueError):
            return self.stream.write(text)
        return 0

    def flush(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.stream.flush()

    def isatty(self) -> bool:
        with contextlib.suppress(OSError, ValueError):
            return self.stream.isatty()
        return False

    def fileno(self) -> int:
        return self.stream.fileno()


def elapsed(seconds: float) -> str:
    """0:07, 1:02:03."""
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class _StatusLine:
    """The renderable of a live status line: a spinner, the text, the time since ``since``."""

    def __init__(self, text: str, since: float) -> None:
        from rich.spinner import Spinner

        self.text, self.since = text, since
        self.spinner = Spinner("dots", style="cyan")

    def __rich__(self) -> Any:
        from rich.table import Table

        grid = Table.grid(padding=(0, 1))
        grid.add_row(self.spinner, self.text, f"[dim]{elapsed(time.monotonic() - self.since)}[/]")
        return grid


class Renderer:
    """Prints updates once each: human lines, or one JSON object per line with --json.

    On a terminal (``live``) a waiting job is one status line that changes in place (spinner,
    state, reason, estimated start, time waited), drawn with rich; elsewhere plain lines, one per
    change. ``--json`` is never live.
    """

    def __init__(
        self, json_mode: bool, out: IO[str] | None = None, live: bool | None = None
    ) -> None:
        self.json_mode = json_mode
        self.out = out or sys.stdout
        self.err = sys.stderr if out is None else out
        self._last: str | None = None
        if live is None:
            live = out is None and not json_mode and _Quiet(self.out).isatty()
        self.live = bool(live) and not json_mode
        self._lock = threading.RLock()
        self._status: Any = None  # rich.live.Live while a status line shows
        self._line: _StatusLine | None = None
        self._since: dict[str, float] = {}  # job id -> when its wait began
        self._console: Any = None

    @property
    def console(self) -> Any:
        """A rich Console on ``out`` (terminal features only when live)."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(
                file=_Quiet(self.out),
                force_terminal=self.live,
                no_color=not self.live,
                highlight=False,
                soft_wrap=not self.live,
            )
        return self._console

    def status(self, text: str, since: float | None = None) -> None:
        """Show (or change) the live status line; on a plain stream this does nothing."""
        if not self.live:
            return
        from rich.live import Live

        with self._lock:
            if self._line is None or self._status is None:
                self._line = _StatusLine(text, since or time.monotonic())
                self._status = Live(
                    self._line, console=self.console, refresh_per_second=8, transient=True
                )
                with contextlib.suppress(OSError, ValueError):
                    self._status.start()
            else:
                self._line.text = text
                if since is not None:
                    self._line.since = since

    def clear_status(self) -> None:
        """Remove the live status line (before a permanent line, and at the end)."""
        with self._lock:
            if self._status is not None:
                with contextlib.suppress(OSError, ValueError):
                    self._status.stop()
            self._status, self._line = None, None

    def print(self, text: str, error: bool = False) -> None:
        """A permanent line (above the status line, which stays)."""
        with self._lock:
            if self._status is not None and not error:
                self._status.console.print(text, markup=False, highlight=False)
                return
            # A closed terminal (SIGHUP) must not stop the cleanup: drop the line.
            with contextlib.suppress(OSError, ValueError):
                print(text, file=self.err if error else self.out, flush=True)

    def emit(self, update: Update) -> None:
        if self.json_mode:
            obj = {k: v for k, v in asdict(update).items() if v not in (None, {}, "")}
            obj["event"] = obj.pop("kind")
            line = json.dumps(obj, sort_keys=True)
        else:
            line = self.human(update)
        if line is None:
            return
        with self._lock:
            if self.live and update.kind in ("submitted", "pending") and update.job_id:
                since = self._since.setdefault(update.job_id, time.monotonic())
                if update.kind == "submitted":
                    self.status(f"job {update.job_id}: submitted, waiting for Slurm", since)
                else:
                    self.status(f"job {update.job_id}: {pending_line(update)}", since)
                if update.kind == "pending":
                    return
            if line == self._last:
                return
            self._last = line
            if update.kind != "submitted":
                self.clear_status()
            error = update.kind == "error" and not self.json_mode
            if self.json_mode or not self.live:
                with contextlib.suppress(OSError, ValueError):
                    print(line, file=self.err if error else self.out, flush=True)
            else:
                self.print(line, error=error)

    def human(self, update: Update) -> str | None:
        if update.kind == "submitted":
            return f"submitted job {update.job_id}"
        if update.kind == "pending":
            return f"job {update.job_id}: {pending_line(update)}"
        if update.kind == "running":
            where = f" on {update.node}" if update.node else ""
            return f"job {update.job_id}: RUNNING{where}, starting Jupyter"
        if update.kind == "ready":
            where = f" on {update.node}" if update.node else ""
            gpus = update.data.get("gpus")
            where += f" (GPUs {gpus})" if gpus else ""
            return f"Jupyter is ready{where}: {update.url or update.data.get('url', '')}".rstrip()
        if update.kind in ("error", "ended", "info"):
            return update.message
        return None
