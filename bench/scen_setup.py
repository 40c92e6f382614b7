"""Setup re-run on a user that is set up: `ansible-playbook playbooks/setup.yml` as alice, the
password given as an extra var in a 0600 file that is deleted afterwards (as the tests' fixture
does); an empty password keeps the stored hash, so the run must report changed=0.
Also times `ansible -m ping` over the same ssh, the floor of any Ansible run here."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import REPO
from bench.guard import log

RECAP = re.compile(
    r"^sandbox\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M
)
BIN = REPO / ".venv" / "bin"


def test_password(user: str) -> str:
    """The Jupyter password the test fixtures give each sandbox user (tests/fixtures/setup.py)."""
    return f"nb-{user}-Secret-7f3a"


def setup_once(user: str, password: str = "") -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="nbb-setup-") as tmp:
        vars_file = Path(tmp) / "vars.json"
        fd = os.open(vars_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"ansible_user": user, "nodebook_password_secret": password}, f)
        argv = [str(BIN / "ansible-playbook"), "playbooks/setup.yml", "-l", "sandbox"]
        t0 = time.perf_counter()
        proc = subprocess.run(
            [*argv, "-e", f"@{vars_file}"],
            cwd=REPO,
            capture_output=True,
            text=True,
            input="",
            timeout=900,
            check=False,
        )
        elapsed = time.perf_counter() - t0
    m = RECAP.search(proc.stdout)
    ok, changed, unreachable, failed = (int(x) for x in m.groups()) if m else (-1, -1, -1, -1)
    return {
        "seconds": elapsed,
        "rc": proc.returncode,
        "ok": ok,
        "changed": changed,
        "failed": failed + unreachable,
        "tail": "" if proc.returncode == 0 else proc.stdout[-1500:],
    }


def ping_once(user: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        [str(BIN / "ansible"), "sandbox", "-m", "ansible.builtin.raw", "-a", "true",
         "-e", f"ansible_user={user}"],
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
