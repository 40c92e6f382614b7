"""ansible-runner events -> progress updates -> live lines (human) or JSON lines (--json).

The playbooks report through structured data only: the raw tasks' one-line JSON
(``{"nodebook": "submitted" | "status" | "connection", ...}``: job id; state, reason, estimated
start; node and endpoint) and ``set_stats`` results (job id, node, endpoint). Nothing here
scrapes Ansible's display output.
"""

import contextlib
import json
import sys
from dataclasses import asdict, dataclass, field
from typing import IO, Any

from driver.errors import ExitCode

# A failing task's message may start with one of these tags; it picks the exit code.
FAIL_TAGS = {
    "[not-set-up]": ExitCode.NOT_SET_UP,
    "[usage]": ExitCode.USAGE,
    "[scheduler]": ExitCode.SCHEDULER,
    "[duplicate]": ExitCode.DUPLICATE,
    "[job-ended]": ExitCode.JOB_ENDED,
}


@dataclass
class Update:
    """One step of a session's progress."""

    kind: str  # submitted | pending | running | ready | ended | error | info
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


def _status_line(res: dict[str, Any]) -> dict[str, Any] | None:
    stdout = res.get("stdout")
    if not isinstance(stdout, str):
        return None
    for line in reversed(stdout.splitlines()):
        if line.startswith('{"nodebook":'):
            try:
                parsed = json.loads(line)
            except ValueError:
                return None
            return parsed if isinstance(parsed, dict) else None
    return None


def parse_event(event: dict[str, Any]) -> list[Update]:
    """The progress updates one ansible-runner event carries (often none)."""
    kind = event.get("event")
    data = event.get("event_data") or {}
    res = data.get("res") if isinstance(data, dict) else None
    if not isinstance(res, dict):
        return []
    updates: list[Update] = []
    if kind in ("runner_on_ok", "runner_retry"):
        stats = res.get("ansible_stats", {}).get("data", {}) if kind == "runner_on_ok" else {}
        if "nodebook_job_id" in stats and "nodebook_node" not in stats:
            updates.append(Update("submitted", job_id=str(stats["nodebook_job_id"])))
        if "nodebook_node" in stats and "nodebook_endpoint" in stats:
            updates.append(
                Update(
                    "ready",
                    job_id=str(stats.get("nodebook_job_id")),
                    node=str(stats["nodebook_node"]),
                    data={k.removeprefix("nodebook_"): v for k, v in stats.items()},
                )
            )
        status = _status_line(res)
        if status and status.get("nodebook") == "submitted" and status.get("job_id"):
            updates.append(Update("submitted", job_id=str(status["job_id"])))
        if status and status.get("nodebook") == "connection" and "node" in status:
            # The wait task's own result: the driver connects before the play's last tasks.
            data = {k: v for k, v in status.items() if k != "nodebook"}
            updates.append(
                Update("ready", job_id=str(data.get("job_id")), node=str(data["node"]), data=data)
            )
        if status and status.get("nodebook") == "status":
            state = str(status.get("state") or "")
            updates.append(
                Update(
                    "pending"
                    if state in ("PENDING", "CONFIGURING", "REQUEUED")
                    else "running"
                    if state == "RUNNING"
                    else "info",
                    job_id=str(status.get("job_id") or "") or None,
                    state=state,
                    reason=status.get("reason") or None,
                    start=status.get("start") or None,
                    node=status.get("node") or None,
                )
            )
    elif kind in ("runner_on_failed", "runner_on_unreachable") and not data.get("ignore_errors"):
        msg = str(res.get("msg") or res.get("stderr") or "task failed").strip()
        code = ExitCode.SSH if kind == "runner_on_unreachable" else ExitCode.ERROR
        for tag, tag_code in FAIL_TAGS.items():
            if msg.startswith(tag):
                msg, code = msg[len(tag) :].strip(), tag_code
        updates.append(
            Update(
                "error",
                message=msg.splitlines()[0] if msg else msg,
                code=code,
                data={"detail": msg},
            )
        )
    return updates


def pending_line(update: Update) -> str:
    """'PENDING (Resources), estimated start 2026-01-01T12:00:00'."""
    text = f"{update.state or 'PENDING'}"
    if update.reason and update.reason != "None":
        text += f" ({update.reason})"
    if update.start and update.start not in ("N/A", "Unknown", "None"):
        text += f", estimated start {update.start}"
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
            return f"Jupyter is ready: {update.url or update.data.get('url', '')}".rstrip()
        if update.kind in ("error", "ended", "info"):
            return update.message
        return None
