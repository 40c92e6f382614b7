"""Is a running session still usable? HTTP through its tunnel, and its state as `list` reports it.

Used after a disturbance the session must survive (slurmctld restarted mid-session: the chaos
loop and tests/hardening/test_bad_inputs.py): the driver still runs, Jupyter still answers 200
through the driver's own tunnel with the session's token, and ``python -m driver list --json``
(the driver's own state dir, so its record is the one read) still reports the job RUNNING.
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from typing import Any

from tests.harness import leftovers
from tests.harness.driver import DriverProcess, run_driver
from tests.harness.sandbox import in_laptop, laptop_argv, run

STATUS = (
    "import sys, urllib.request, urllib.error\n"
    "req = urllib.request.Request(sys.argv[1], headers={'Authorization': 'token ' + sys.argv[2]})\n"
    "try:\n"
    "    print(urllib.request.urlopen(req, timeout=10).status)\n"
    "except urllib.error.HTTPError as e:\n"
    "    print(e.code)\n"
    "except Exception as e:\n"
    "    print(type(e).__name__)\n"
)


def ready_of(d: DriverProcess) -> dict[str, Any]:
    """The driver's (first) ready event; AssertionError when it has none."""
    for e in d.events:
        if e.get("event") == "ready":
            return e
    raise AssertionError(f"no ready event: {d.events}")


def token_of(ready: dict[str, Any]) -> str:
    return str(ready["data"]["url"]).split("token=", 1)[1].split("&", 1)[0]


def http_status(port: int, token: str) -> str:
    """GET /api/status on the laptop's 127.0.0.1:port with the token: the status code as text
    (or the exception's name), run in the laptop's namespace."""
    url = f"http://127.0.0.1:{port}/api/status"
    if in_laptop():
        req = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return str(resp.status)
        except urllib.error.HTTPError as exc:
            return str(exc.code)
        except OSError as exc:
            return type(exc).__name__
    out = run(laptop_argv(["python3", "-c", STATUS, url, token]), check=False, timeout=60)
    return out.stdout.strip() or f"rc={out.returncode}"


def listed_state(d: DriverProcess, job_id: str, user: str | None = None) -> str:
    """The job's state in ``python -m driver list --json`` run with the driver's state dir
    ("" when not listed)."""
    args = ["list", "--cluster", "sandbox"] + (["--user", user] if user else [])
    ls = run_driver(args, state_dir=d.state, timeout=120)
    try:
        for e in ls.events:
            if e.get("event") == "session" and str(e.get("job_id")) == job_id:
                return str(e.get("state") or "")
        return ""
    finally:
        ls.remove_work()


def survived(
    d: DriverProcess, user: str | None = None, timeout: float = 60, interval: float = 2
) -> list[str]:
    """What is wrong with a session that should still be running ([] = it survived).

    Retried (every ``interval`` s, up to ``timeout``) while slurmctld comes back: the driver
    must still run, Jupyter answer 200 through the tunnel and `list` say RUNNING.
    """
    ready = ready_of(d)
    job_id = str(ready["job_id"])
    port, token = int(ready["data"]["local_port"]), token_of(ready)
    deadline = time.monotonic() + timeout
    while True:
        problems = []
        if d.poll() is not None:
            return [f"driver exited {d.rc}: {d.output[-600:]}"]
        status = http_status(port, token)
        if status != "200":
            problems.append(f"HTTP {status} through the tunnel on port {port}")
        state = listed_state(d, job_id, user)
        if state != "RUNNING":
            problems.append(f"`list` reports job {job_id} as {state or 'not listed'}")
        if not problems or time.monotonic() > deadline:
            return problems
        time.sleep(interval)


def beats(sandbox: Any, job: str, count: int, bound: float, user: str = "alice") -> None:
    """Wait until the session's heartbeat has reached the job ``count`` more times (the job's
    heartbeat file's modification time moves at each), for at most ``bound`` seconds."""
    hb = leftovers.job_paths(sandbox, user, job)["heartbeat"]
    seen = {os.stat(hb).st_mtime_ns}
    deadline = time.monotonic() + bound
    while len(seen) <= count and time.monotonic() < deadline:
        time.sleep(0.1)
        seen.add(os.stat(hb).st_mtime_ns)
    assert len(seen) > count, f"{len(seen) - 1} heartbeats in {bound} s"
