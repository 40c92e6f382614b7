"""The remote helper's unit tests' cluster (tests/unit/test_remote_helper_*.py), no sandbox.

Each test gets a home with the helper installed as setup installs it (<base>/bin/nodebook-remote,
its parts in <base>/lib/nodebook-remote/: links to roles/nodebook_remote/files), a setup.json as
the role writes it and a fake Slurm on PATH (tests/unit/fake_slurm.py: sbatch, squeue, scontrol,
scancel, sacct, sinfo over one JSON state file that also records every call). Every line the
helper prints must be JSON. The `cluster` fixture (tests/unit/conftest.py) makes one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from driver.paths import HELPER, HELPER_PARTS, LAUNCHER

FAKE = Path(__file__).with_name("fake_slurm.py")


@dataclass
class Result:
    rc: int
    lines: list[dict[str, Any]]
    stderr: str

    def kind(self, kind: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["nodebook"] == kind]

    def one(self, kind: str) -> dict[str, Any]:
        found = self.kind(kind)
        assert len(found) == 1, (kind, self.lines, self.stderr)
        return found[0]


@dataclass
class Cluster:
    """A home, a setup.json and a fake Slurm; `run` calls the helper as the driver would."""

    tmp: Path
    home: Path = field(init=False)
    base: Path = field(init=False)
    bin: Path = field(init=False)
    state_file: Path = field(init=False)

    def __post_init__(self) -> None:
        self.home = self.tmp / "home"
        self.base = self.home / ".nodebook"
        self.bin = self.tmp / "bin"
        for d in (self.base / "jobs", self.base / "bin", self.base / "lib", self.bin):
            d.mkdir(parents=True)
        fakes = ("sbatch", "squeue", "scontrol", "scancel", "sacct", "sinfo", "sacctmgr", "sstat")
        for name in fakes:
            (self.bin / name).symlink_to(FAKE)
        (self.base / "bin" / "nodebook-remote").symlink_to(HELPER)
        (self.base / "bin" / "nodebook-jupyter").symlink_to(LAUNCHER)
        (self.base / "lib" / "nodebook-remote").symlink_to(HELPER_PARTS)
        self.state_file = self.tmp / "slurm.json"
        self.write_setup()
        self.slurm = {"jobs": {}, "next_id": 100}
        self.save()

    def write_setup(self, **changes: Any) -> None:
        setup = {
            "format": 2,
            "app": "lab",
            "python": sys.executable,
            "bin_dir": str(self.tmp / "venv-bin"),
            "config_dir": str(self.base / "jupyter"),
            "job_script": str(self.base / "job.sbatch"),
            "jobs_dir": str(self.base / "jobs"),
            "runtime_base": str(self.tmp / "node-tmp"),
            "job_name": "nodebook",
            "endpoint": "socket",
            "heartbeat_timeout": 600,
            "start_timeout": 20,
            "poll_interval": 1,
            "modules": ["conda-python/3.11"],
            "packages": {"jupyterlab": "4.6.6", "python": "3.11"},
        }
        setup.update(changes)
        # As the role writes it: to_nice_json(indent=2) is json.dumps(indent=2, sort_keys=True).
        text = json.dumps(
            {k: v for k, v in setup.items() if v is not None}, indent=2, sort_keys=True
        )
        (self.base / "setup.json").write_text(text + "\n")

    def save(self) -> None:
        self.state_file.write_text(json.dumps(self.slurm))

    def load(self) -> dict[str, Any]:
        self.slurm = json.loads(self.state_file.read_text())
        return self.slurm

    def job(self, job_id: str, **fields: Any) -> None:
        self.load()
        job = {"id": job_id, "name": "nodebook", "state": "PENDING", "reason": "Priority"}
        job.update(user=os.environ.get("USER", "tester"), comment="", node="", start="N/A")
        job.update(fields)
        self.slurm["jobs"][job_id] = job
        self.save()

    def calls(self, cmd: str | None = None) -> list[dict[str, Any]]:
        return [c for c in self.load().get("calls", []) if cmd is None or c["cmd"] == cmd]

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "HOME": str(self.home),
            "USER": "tester",
            "PATH": f"{self.bin}:/usr/bin:/bin",
            "FAKE_SLURM_STATE": str(self.state_file),
            "SSH_CONNECTION": "10.0.0.1 1 10.0.0.2 22",
            "SLURM_CONF": "/etc/slurm/slurm.conf",
            **extra,
        }

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 30) -> Result:
        argv = [str(self.base / "bin" / "nodebook-remote"), *args]
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            env=env or self.env(),
            cwd=self.home,
            timeout=timeout,
            check=False,
        )
        lines = []
        for line in proc.stdout.splitlines():
            parsed = json.loads(line)  # every line is JSON
            assert isinstance(parsed, dict) and "nodebook" in parsed, line
            lines.append(parsed)
        return Result(proc.returncode, lines, proc.stderr)
