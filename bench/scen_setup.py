"""Setup re-run on a user that is set up: `ansible-playbook playbooks/setup.yml` as alice, the
password given as an extra var in a 0600 file that is deleted afterwards (the test harness's
run_setup); an empty password keeps the stored hash, so the run must report changed=0.
Also times `ansible -m raw` over the same ssh, the floor of any Ansible run here."""

from __future__ import annotations

import subprocess
import time
from typing import Any

from bench.guard import log
from tests.harness.sandbox import INVENTORY, REPO, Sandbox
from tests.harness.setup import run_setup

BIN = REPO / ".venv" / "bin"


def setup_once(user: str, password: str = "") -> dict[str, Any]:
    t0 = time.perf_counter()
    run = run_setup(Sandbox(), user, password=password, timeout=900)
    elapsed = time.perf_counter() - t0
    recap = run.recap.get("sandbox", {})
    return {
        "seconds": elapsed,
        "rc": run.rc,
        "ok": recap.get("ok", -1),
        "changed": recap.get("changed", -1),
        "failed": recap.get("failed", -1) + recap.get("unreachable", 0) if recap else -1,
        "tail": "" if run.rc == 0 else run.proc.stdout[-1500:],
    }


def ping_once(user: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        [str(BIN / "ansible"), "-i", str(INVENTORY), "sandbox", "-m", "ansible.builtin.raw",
         "-a", "true", "-e", f"ansible_user={user}"],
        cwd=REPO, capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    return time.perf_counter() - t0


def run(reps: int) -> dict[str, Any]:
    runs = []
    pings = []
    for i in range(reps):
        runs.append(setup_once("alice"))
        pings.append(ping_once("alice"))
        log(
            f"setup re-run {i + 1}/{reps}: {runs[-1]['seconds']:.1f} s, "
            f"changed={runs[-1]['changed']}; ansible raw ping {pings[-1]:.2f} s"
        )
    return {"runs": runs, "raw_ping": pings}
