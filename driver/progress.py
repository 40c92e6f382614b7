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
from driver.usage import clock as elapsed

# A failing task's own message (not the helper's) may start with one of these tags.
FAIL_TAGS = {
    "[not-set-up]": ExitCode.NOT_SET_UP,
    "[usage]": ExitCode.USAGE,
    "[scheduler]": ExitCode.SCHEDULER,
    "[duplicate]": ExitCode.DUPLICATE,
    "[job-ended]": ExitCode.JOB_ENDED,
}
# Under the ready line: where the session's time left and use show.
USAGE_HINT = "time left, CPU and memory use: `nodebook list`"
WAITING = ("PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "UNKNOWN")


@dataclass
class Update:
    """One step of a session's progress."""

    kind: str  # submitted | pending | running | ready | stopped | ended | error | info | notice
    # | usage (--json only: the live line's numbers)
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


def from_line(line: dict[str, Any]) -> Update | None:
    """The update one of the helper's lines stands for (None: not one to show)."""
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
            data={"start_known": bool(line.get("start")), "host_keys": line.get("host_keys") or []},
        )
    if kind == "connection" and line.get("node"):
        return Update("ready", job_id=job_id, node=str(line["node"]), data=data)
    if kind in ("stopped", "gone"):
        return Update("stopped", job_id=job_id, data={"cancelled": kind == "stopped"})
    return None


def parse_event(event: dict[str, Any]) -> list[Update]:
    """The progress updates one ansible-runner event carries (often none)."""
    from driver.remote import error_for, parse_lines  # not for commands that print only

    kind = event.get("event")
    data = event.get("event_data") or {}
    res = data.get("res") if isinstance(data, dict) else None
    if not isinstance(res, dict):
        return []
    lines = parse_lines(res["stdout"]) if isinstance(res.get("stdout"), str) else []
    if kind in ("runner_on_ok", "runner_retry"):
        return [u for u in map(from_line, lines) if u is not None]
    if kind in ("runner_on_failed", "runner_on_unreachable") and not data.get("ignore_errors"):
        updates = [u for u in map(from_line, lines) if u is not None and u.kind != "ready"]
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


def gpus_text(count: object = None, devices: object = None) -> str:
    """A session's GPUs in the same words on the ready line and in `nodebook list`: Slurm's count
    ('2 GPUs'), or the job's CUDA_VISIBLE_DEVICES counted and named ('1 GPU: index 0',
    '2 GPUs: indices 0,1'; UUIDs as they are). '' when there are none."""
    names = [d.strip() for d in str(devices or "").split(",") if d.strip()]
    count = str(count or "")
    if not names and not count.isdigit():
        return f"GPUs {count}" if count else ""  # a count Slurm wrote some other way: as it is
    n = len(names) or int(count)
    text = f"{n} GPU{'' if n == 1 else 's'}" if n else ""
    if names and all(d.isdigit() for d in names):
        text += f": {'index' if n == 1 else 'indices'} {','.join(names)}"
    elif names:
        text += f": {','.join(names)}"
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


class _StatusLine:
    """The renderable of a live status line: a spinner, the text, the time since ``since``."""

    def __init__(self, text: str, since: float) -> None:
        from rich.spinner import Spinner

        self.text, self.since = text, since
        self.spinner = Spinner("dots", style="cyan")

    def __rich__(self) -> Any:
        from rich.table import Table
        from rich.text import Text

        # One line whatever the terminal's width: the text is cut, the time always shows.
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True, min_width=1)
        grid.add_column(no_wrap=True, overflow="ellipsis", ratio=1)
        grid.add_column(no_wrap=True, min_width=8, justify="right")
        clock = Text(elapsed(time.monotonic() - self.since), style="dim")
        grid.add_row(self.spinner, Text.from_markup(self.text), clock)
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

    def status(self, text: str, since: float | None = None, dim: str = "") -> None:
        """Show (or change) the live status line: ``text``, then ``dim`` dimmed (both plain
        text). On a plain stream this does nothing, and loads nothing (rich is imported, and
        the text escaped for its markup, only on a terminal)."""
        if not self.live:
            return
        from rich.live import Live
        from rich.markup import escape

        text = escape(text) + (f"[dim]{escape(dim)}[/]" if dim else "")

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
            gpus = gpus_text(devices=update.data.get("gpus"))
            where += f" ({gpus})" if gpus else ""
            url = update.url or update.data.get("url", "")
            hint = USAGE_HINT + (", and the line below while this runs" if self.live else "")
            return f"Jupyter is ready{where}: {url}\n  {hint}"
        if update.kind in ("error", "ended", "info", "notice"):
            return update.message
        return None


# ------------------------------------------------------------------------------- setup

# What a researcher sees of playbooks/setup.yml: one line per phase, in this order.
SETUP_PHASES = ("checking", "installing Jupyter", "password", "config", "job script")


def setup_phase(event_data: dict[str, Any]) -> str | None:
    """The phase a setup task belongs to, from its role and tasks file (None: the current)."""
    if "validate_argument_spec" in str(event_data.get("task_action") or ""):
        return None  # the role's argument check, reported at its import in the playbook
    role = str(event_data.get("role") or "")
    path = str(event_data.get("task_path") or "").rsplit(":", 1)[0]
    tasks_file = path.rsplit("/", 1)[-1]
    if role == "nodebook_environment" or tasks_file == "validate.yml":
        return "checking"
    if role in ("nodebook_jupyter", "nodebook_kernels") and tasks_file == "install.yml":
        return "installing Jupyter"
    if role == "nodebook_password":
        return "password"
    if role in ("nodebook_jupyter_config", "nodebook_kernels") and tasks_file == "configure.yml":
        return "config"
    if role == "nodebook_job":
        return "job script"
    return None


@dataclass
class PhaseState:
    name: str
    started: float
    tasks: int = 0
    changed: int = 0


class SetupProgress:
    """ansible-runner events of a setup run -> phase lines, a live task line, a full log.

    Human, on a terminal: a spinner with the phase, its current task and the time it has taken,
    and a permanent line when each phase is done. Human elsewhere: the permanent lines only.
    ``--json``: a ``task`` event per task and a ``phase`` event per finished phase. ``verbose``:
    Ansible's own output as it comes instead. Every event's text goes to ``log`` either way.
    """

    def __init__(self, out: Renderer, log: IO[str], verbose: bool = False) -> None:
        self.out, self.log, self.verbose = out, log, verbose
        self.phase: PhaseState | None = None
        self.done: list[PhaseState] = []
        self.task = ""
        self.failed_task = ""
        self.stats: dict[str, Any] = {}
        self.started = time.monotonic()
        self._lock = threading.Lock()

    def event(self, event: dict[str, Any]) -> None:
        """Called from ansible-runner's thread for every event, in order."""
        with self._lock:
            text = event.get("stdout")
            if isinstance(text, str) and text:
                with contextlib.suppress(OSError, ValueError):
                    self.log.write(text.rstrip("\n") + "\n")
                    self.log.flush()
                if self.verbose and not self.out.json_mode:
                    self.out.print(text.rstrip("\n"))
            kind = event.get("event")
            data = event.get("event_data") or {}
            if not isinstance(data, dict):
                return
            if kind == "playbook_on_task_start":
                self._task(data)
            elif kind == "runner_on_ok" and self.phase is not None:
                res = data.get("res") or {}
                if isinstance(res, dict) and res.get("changed"):
                    self.phase.changed += 1
            elif kind in ("runner_on_failed", "runner_on_unreachable"):
                if not data.get("ignore_errors"):
                    self.failed_task = str(data.get("task") or self.task)
            elif kind == "playbook_on_stats":
                self.stats = data

    def _task(self, data: dict[str, Any]) -> None:
        name = str(data.get("task") or data.get("name") or "")
        role = str(data.get("role") or "")
        wanted = setup_phase(data)
        current = self.phase.name if self.phase else None
        if wanted and wanted != current:
            order = SETUP_PHASES.index
            if current is None or order(wanted) > order(current):
                self._finish()
                self.phase = PhaseState(wanted, time.monotonic())
        if self.phase is None:
            self.phase = PhaseState("checking", time.monotonic())
        if "validate_argument_spec" in str(data.get("task_action") or ""):
            return  # the role's own argument check: not a step worth showing
        self.phase.tasks += 1
        self.task = name
        if self.out.json_mode:
            self.out.emit(
                Update(
                    "task",
                    message=f"TASK [{role + ' : ' if role else ''}{name}]",
                    data={"phase": self.phase.name, "task": name, "role": role},
                )
            )
        elif not self.verbose:
            self.out.status(f"{self.phase.name}: ", self.phase.started, dim=name)

    def _finish(self, ok: bool = True) -> None:
        """The current phase is over: its permanent line."""
        phase = self.phase
        if phase is None:
            return
        self.phase = None
        seconds = time.monotonic() - phase.started
        self.done.append(phase)
        if self.out.json_mode:
            self.out.emit(
                Update(
                    "phase",
                    message=phase.name,
                    data={
                        "phase": phase.name,
                        "ok": ok,
                        "seconds": round(seconds, 1),
                        "tasks": phase.tasks,
                        "changed": phase.changed,
                    },
                )
            )
            return
        if self.verbose:
            return
        mark = ("✓" if ok else "✗") if self.out.live else ("ok" if ok else "FAILED")
        changed = f"  {phase.changed} changed" if phase.changed else ""
        self.out.print(f"{mark} {phase.name:<20} {seconds:6.1f} s{changed}")

    def close(self, ok: bool) -> None:
        """The run is over: the last phase's line, and no status line left behind."""
        with self._lock:
            self._finish(ok)
            self.out.clear_status()

    def counts(self, host: str) -> dict[str, int]:
        """ok/changed/failed/unreachable/skipped of one host, from the run's stats."""
        keys = {"ok": "ok", "changed": "changed", "failures": "failed", "dark": "unreachable"}
        found = {}
        for key, name in {**keys, "skipped": "skipped"}.items():
            per_host = self.stats.get(key) or {}
            found[name] = int(per_host.get(host, 0)) if isinstance(per_host, dict) else 0
        return found
