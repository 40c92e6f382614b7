"""Shared bits of the benchmarks: paths, the sandbox's ssh, a small ControlMaster, statistics."""

from __future__ import annotations

import os
import shlex
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("NODEBOOK_SANDBOX_STATE", "/var/lib/nodebook-sandbox"))
SSH_CONFIG = STATE / "ssh" / "config"
VENV_PY = REPO / ".venv" / "bin" / "python"
# Job name of the hand-written baseline's jobs (not "nodebook": the driver's duplicate guard
# and other users of the sandbox must not mistake them for sessions).
BASELINE_JOB_NAME = "nb-bench-baseline"
FILL_JOB_NAME = "nb-bench-fill"


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def ssh_base(user: str) -> list[str]:
    """Plain OpenSSH with the sandbox's config (pinned host keys, per-user key)."""
    return ["ssh", "-F", str(SSH_CONFIG), "-l", user]


@dataclass
class BenchMaster:
    """An OpenSSH ControlMaster to login, as a hand-written session (or an observer) uses."""

    user: str
    persist: int = 300

    def __post_init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="nbb-"))
        self.path = self.dir / "m"

    def start(self, attempts: int = 12) -> None:
        """Connect; retried (5 s apart) while the laptop's link is down (chaos runs cut it)."""
        for i in range(attempts):
            try:
                self._start()
                return
            except subprocess.CalledProcessError:
                if i == attempts - 1:
                    self.close()  # leave no empty control dir behind
                    raise
                time.sleep(5)

    def _start(self) -> None:
        argv = [
            *ssh_base(self.user),
            "-o",
            "ControlMaster=yes",
            "-o",
            f"ControlPath={self.path}",
            "-o",
            f"ControlPersist={self.persist}",
            "-f",
            "-N",
            "login",
        ]
        subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, timeout=60)

    def argv(self, *opts: str) -> list[str]:
        return [*ssh_base(self.user), "-o", f"ControlPath={self.path}", *opts, "login"]

    def run(self, command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.argv("-T"), command],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )

    def popen(self, command: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*self.argv("-T"), command],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            text=True,
        )

    def proxy_command(self) -> str:
        """ProxyCommand reaching %h:%p through this master (what `-J login` does, reused)."""
        return " ".join(shlex.quote(w) for w in self.argv("-W", "%h:%p"))

    def close(self) -> None:
        if self.path.exists():
            subprocess.run(self.argv("-O", "exit"), capture_output=True, timeout=15, check=False)
        for child in self.dir.iterdir() if self.dir.exists() else []:
            child.unlink(missing_ok=True)
        if self.dir.exists():
            self.dir.rmdir()


def watch_gone_command(job_id: str) -> str:
    """Remote loop: 'present' once the job is seen, then 'gone <epoch>' when squeue drops it.

    Runs on login (same kernel clock as the laptop in the sandbox), polling every 50 ms.
    """
    return (
        f"id={shlex.quote(job_id)}; said=0; "
        "while :; do "
        'if [ -n "$(squeue -h -j "$id" -o %i 2>/dev/null)" ]; then '
        '[ "$said" = 0 ] && { echo present; said=1; }; '
        'else echo "gone $(date +%s.%N)"; break; fi; sleep 0.05; done'
    )


def now() -> float:
    return time.time()
