"""CI's short chaos run: every exit path once (`bench/chaos.py --rounds 1`), nothing left.

One finding is known and reported as an expected failure, not hidden: a SIGKILLed driver
cannot remove its temp dirs (its ssh control dir `nb-*`, ansible-runner's `nodebook-runner-*`)
and no later command removes them yet (driver work, issue #13's chaos table shows it). Any
other leftover, and that one on any other path, fails the test."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.sandbox import REPO, Sandbox

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(900)]
KNOWN_SIGKILL_TEMP = ("nb-", "nodebook-runner-")


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
        "tunnel-killed",
        "sigkill",
        "slurmctld-restart",
        "network-cut",
    }, report
    known: list[str] = []
    for r in results:
        assert r["rounds"] == 1, report
        assert r["errors"] == [] and r["bad_exit"] == [], report
        left = {k: v for k, v in r["counts"].items() if v and k != "retried"}
        if r["path"] == "sigkill" and set(left) == {"local_files"}:
            names = [Path(f).name for f in r["local_files"]]
            if all(n.startswith(KNOWN_SIGKILL_TEMP) for n in names):
                known += r["local_files"]
                continue
        assert left == {} and r["failed"] is False and r["failed_rounds"] == 0, report
    if known:
        assert proc.returncode == 1, report
        pytest.xfail(f"known: a SIGKILLed driver's temp dirs stay: {known}")
    assert proc.returncode == 0 and "nothing left behind" in proc.stdout, report
