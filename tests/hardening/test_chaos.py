"""CI's short chaos run: every exit path once (`bench/chaos.py --rounds 1`), nothing left:
no job, process, master, port, file on login or the nodes, temp file or session record, no
wrong exit code, and the session survives a slurmctld restart."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.sandbox import REPO, Sandbox

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(900)]


def test_every_exit_path_once_leaves_nothing(
    sandbox: Sandbox, nodebook_setup: object, tmp_path: Path
) -> None:
    nodebook_setup("alice")  # type: ignore[operator]
    out = tmp_path / "chaos.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.chaos", "--rounds", "1", "--no-write", "--json", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=840,
        check=False,
    )
    report = proc.stdout + proc.stderr[-4000:]
    results = json.loads(out.read_text())
    paths = {r["path"] for r in results}
    assert paths == {
        "sigint",
        "sigterm",
        "sighup",
        "stop",
        "tunnel-killed",
        "sigkill",
        "slurmctld-restart",
        "network-cut",
    }, report
    for r in results:
        assert r["rounds"] == 1, report
        assert r["errors"] == [] and r["bad_exit"] == [], report
        left = {k: v for k, v in r["counts"].items() if v and k != "retried"}
        assert left == {} and r["failed"] is False and r["failed_rounds"] == 0, report
    assert proc.returncode == 0 and "nothing left behind" in proc.stdout, report
