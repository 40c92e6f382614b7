"""ansible-runner events -> progress updates -> live lines (human) or JSON lines (--json).

The playbooks' remote steps are calls of the remote helper, whose JSON lines come back in the
tasks' results (``{"nodebook": "submitted" | "status" | "connection" | "stopped" | "error", ...}``):
job id; state, reason, estimated start; node and endpoint. A retry of the wait is an event of its
own, so each change of state is shown as it happens. Nothing here scrapes Ansible's display.
"""

import contextlib
import json
import sys
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


class Renderer:
    """Prints updates once each: human lines, or one JSON object per line with --json."""

    def __init__(self, json_mode: bool, out: IO[str] | None = None) -> None:
        self.json_mode = json_mode
        self.out = out or sys.stdout
        self.err = sys.stderr if out is None else out
        self._last: str | None = None

    def emit(self, update: Update) -> None:
        if self.json_mode:
            obj = {k: v for k, v in asdict(update).items() if v not in (None, {}, "")}
            obj["event"] = obj.pop("kind")
            line = json.dumps(obj, sort_keys=True)
        else:
            line = self.human(update)
        if line is None or line == self._last:
            return
        self._last = line
        # A closed terminal (SIGHUP) must not stop the cleanup: drop the line.
        with contextlib.suppress(OSError):
            print(
                line,
                file=self.err if update.kind == "error" and not self.json_mode else self.out,
                flush=True,
            )

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
