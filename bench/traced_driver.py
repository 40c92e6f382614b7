"""`python -m driver` with timing probes, for bench/profile.py (the driver's code is unchanged).

Writes one JSON line per step to $NBB_TRACE: imports done, inventory read, master up, each
Ansible task start and result (from ansible-runner's events), playbook end, tunnel up, first
HTTP 200, cleanup steps. Usage: python -m bench.traced_driver session ... (as `python -m driver`).
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

T0 = float(os.environ.get("NBB_T0") or time.time())
_OUT = open(os.environ["NBB_TRACE"], "a", buffering=1)  # noqa: SIM115 (lives with the process)


def mark(what: str, **extra: Any) -> None:
    _OUT.write(json.dumps({"t": time.time() - T0, "what": what, **extra}) + "\n")


def timed(owner: Any, name: str, label: str) -> None:
    fn: Callable[..., Any] = getattr(owner, name)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kw: Any) -> Any:
        mark(f"{label} start")
        try:
            return fn(*args, **kw)
        finally:
            mark(f"{label} end")

    setattr(owner, name, wrapper)


def main() -> int:
    mark("python started")
    from driver import cli, gate, inventory, remote, runner, session, ssh, tunnel

    mark("driver imported")
    timed(inventory, "load_cluster", "inventory")
    cli.load_cluster = inventory.load_cluster
    timed(ssh.Master, "start", "master")  # attach, reconnect
    timed(ssh.Connecting, "wait", "master login")  # session: while Ansible starts
    timed(gate.Gate, "let_through", "gate (the play waits for the master)")
    timed(ssh.Master, "close", "master close")
    timed(runner.PlaybookRun, "run", "playbook")
    timed(tunnel.Tunnel, "start", "tunnel")
    timed(tunnel.Tunnel, "close", "tunnel close")
    timed(session, "wait_http", "first 200")
    timed(remote.Remote, "connection", "read connection.json (token)")
    timed(session.Session, "cleanup", "cleanup")
    original = runner.PlaybookRun._event

    def event(self: runner.PlaybookRun, ev: dict[str, Any]) -> bool:
        kind = ev.get("event", "")
        data = ev.get("event_data") or {}
        if kind in ("playbook_on_task_start", "runner_on_ok", "runner_retry", "runner_on_failed",
                    "playbook_on_start", "playbook_on_stats"):  # fmt: skip
            mark(f"ansible {kind}", task=data.get("task", ""), playbook=self.playbook)
        return original(self, ev)

    runner.PlaybookRun._event = event  # type: ignore[method-assign]
    return cli.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
