"""While a session runs (issue 21, items 3 and 4), on the sandbox: the desktop notifications at
ready and before the time limit, through a recording `notify-send` first on PATH; the time left;
and what the job uses (sstat of its batch step) in `nodebook list`."""

from __future__ import annotations

import os
import re
import signal
import stat
import time
from pathlib import Path

import pytest

from driver.errors import ExitCode
from tests.e2e.conftest import token_of
from tests.e2e.test_real_work import cell

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(300)]

# One CPU kept busy by a kernel that stays idle for Jupyter (a thread spins).
SPIN = """\
import threading
def spin():
    while True:
        pass
threading.Thread(target=spin, daemon=True).start()
"""


def recording_notify_send(tmp: Path) -> tuple[dict[str, str], Path]:
    """A notify-send that writes its arguments, one call a line; the env that puts it first."""
    bin_dir, log = tmp / "bin", tmp / "notify-send.log"
    bin_dir.mkdir()
    script = bin_dir / "notify-send"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {log}\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}, log


def test_notified_when_a_queued_job_is_ready_and_before_its_time_limit(
    sandbox, drive, nothing_left, tmp_path
):
    env, log = recording_notify_send(tmp_path)
    filler = sandbox.fill_nodes()
    try:
        # a one-minute job, warned 0.9 min (54 s) ahead: due as soon as Jupyter is up
        d = drive(
            ["session", "--cluster", "sandbox", "--allow-second", "--time", "1",
             "--warn-before", "0.9", "--usage-interval", "2"],
            env=env,
        )  # fmt: skip
        submitted = d.wait_event("submitted")
        pending = d.wait_event("pending", timeout=60)
        assert pending["reason"] == "Resources", pending  # held in the queue, for a reason
    finally:
        sandbox.host("login", ["scancel", filler], check=False)
    job = submitted["job_id"]
    ready = d.wait_event("ready", timeout=120)
    port = ready["data"]["local_port"]
    first, second = d.wait_event("notice", timeout=60), d.wait_event("notice", timeout=60)
    assert re.fullmatch(rf"job {job} is ready on {ready['node']} after \d+:\d\d in the queue",
                        first["message"]), first  # fmt: skip
    assert re.fullmatch(
        rf"job {job} has 0:[0-5]\d left of its time limit \(1:00\): save your work; the next "
        "session can ask for more with --time",
        second["message"],
    ), second
    assert first["data"]["notified"] == second["data"]["notified"] == "notify-send"
    # what notify-send was given: the same words, the URL without its token
    calls = log.read_text().splitlines()
    assert len(calls) == 2, calls
    assert calls[0].startswith(f"--app-name nodebook nodebook {first['message']}: "
                               f"http://127.0.0.1:{port}/"), calls  # fmt: skip
    assert calls[1] == f"--app-name nodebook nodebook {second['message']}"
    assert token_of(ready) not in log.read_text()
    # the live line's numbers (--json): the time left by the job's own limit
    usage = d.wait_event("usage", timeout=30)
    assert 0 < usage["data"]["time_left_s"] <= 60 and usage["data"]["cpus"] >= 1
    d.signal(signal.SIGINT)
    assert d.wait() == ExitCode.INTERRUPTED
    nothing_left(job, port)


def test_no_notification_with_no_notify(sandbox, drive, nothing_left, tmp_path):
    env, log = recording_notify_send(tmp_path)
    d = drive(
        ["session", "--cluster", "sandbox", "--allow-second", "--time", "1",
         "--warn-before", "0.9", "--no-notify", "--usage-interval", "2"],
        env=env,
    )  # fmt: skip
    ready = d.wait_event("ready", timeout=90)
    warning = d.wait_event("notice", timeout=60)  # the line is still printed
    assert "left of its time limit" in warning["message"] and warning["data"]["notified"] is None
    assert not log.exists()
    d.signal(signal.SIGINT)
    assert d.wait() == ExitCode.INTERRUPTED
    nothing_left(ready["job_id"], ready["data"]["local_port"])


def test_list_shows_one_busy_cpu_and_memory_against_the_allocation(sandbox, drive, nothing_left):
    d = drive(
        ["session", "--cluster", "sandbox", "--allow-second", "--partition", "gpu", "--gpus", "1",
         "--cpus", "2", "--mem", "1G"]
    )  # fmt: skip
    ready = d.wait_event("ready", timeout=90)
    job, port = ready["job_id"], ready["data"]["local_port"]
    # The session's first look at the job's use, at ready, is the helper's previous look (kept
    # for a minute); then a CPU is kept busy. `list` measures CPU use since that look once it is
    # 10 s or more ago: ask until it measured over 30 s, most of them busy.
    cell(sandbox, ready, SPIN, keep=True)
    deadline = time.monotonic() + 120
    while True:
        listed = drive(["list", "--cluster", "sandbox"])
        assert listed.wait(timeout=60) == 0
        (session,) = [e for e in listed.events if e["event"] == "session" and e["job_id"] == job]
        data = session["data"]
        if (data.get("cores_over_s") or 0) >= 30:
            break
        assert time.monotonic() < deadline, f"no 30 s window measured: {data}"
    assert 0.8 <= data["cores"] <= 1.2, data
    assert data["cpus"] == 2 and data["mem_bytes"] == 1 << 30
    assert 0 < data["rss_bytes"] <= data["peak_rss_bytes"] < data["mem_bytes"]
    assert 0 < data["time_left_s"] <= 24 * 3600
    # the words: a second line under the session, and the fake GPUs report nothing
    human = drive(["list", "--cluster", "sandbox"], json_mode=False)
    assert human.wait(timeout=60) == 0
    lines = [e["message"] for e in human.events if e.get("event") == "text"]
    at = next(i for i, line in enumerate(lines) if f" {job} " in line)
    use = lines[at + 1]
    # (since the kept look, or since the start when the loop above had it replaced just now)
    when = r"\((last \d+:\d\d|average since start)\)"
    # (the time limit is setup's: the sandbox's inventory or the role's default)
    assert re.search(rf"left of [\d:]+ · CPU \d\.\d\d of 2 {when} · memory ", use), use
    assert "of 1.0 GiB" in use and use.endswith("GPU use: not reported by the node"), use
    d.signal(signal.SIGINT)
    assert d.wait() == ExitCode.INTERRUPTED
    nothing_left(job, port)
