"""Which scheduler commands one session runs: strace the session's sshd on login.

The driver runs everything over one ssh ControlMaster, so every remote command of the session
(Ansible's tasks, the wait loops, the heartbeat) descends from one `sshd: alice@notty` process
on login. `strace -f -e trace=execve` on it (and its current descendants) counts the Slurm
client commands this session runs, whatever else alice does on the cluster at the same time.
(slurmctld's per-user counts from sdiag cannot tell two sessions of one user apart.)
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

SLURM_CMDS = ("squeue", "sbatch", "scancel", "scontrol", "sacct", "sinfo", "sstat", "srun")
_EXEC = re.compile(r'execve\("([^"]+)".*\)\s*=\s*0')


def _procs() -> dict[int, tuple[int, str, str]]:
    """pid -> (ppid, comm, cmdline) for every process."""
    out: dict[int, tuple[int, str, str]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text(errors="replace")
            cmd = Path(f"/proc/{entry.name}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        out[int(entry.name)] = (ppid, comm, cmd.decode(errors="replace"))
    return out


def session_sshd(marker: str, timeout: float = 60) -> int:
    """The sshd of the process whose command line contains `marker` (e.g. 'nodebook-wait 42')."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        procs = _procs()
        for pid, (_, _, cmd) in procs.items():
            if marker in cmd and "bash" in cmd:
                cur = pid
                while cur in procs and cur > 1:
                    ppid, comm, cmdline = procs[cur]
                    if comm == "sshd" and "@" in cmdline:
                        return cur
                    cur = ppid
        time.sleep(0.2)
    raise RuntimeError(f"no sshd found for a process with {marker!r}")


def descendants(root: int) -> list[int]:
    procs = _procs()
    kids: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in procs.items():
        kids.setdefault(ppid, []).append(pid)
    out, stack = [], [root]
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack.extend(kids.get(pid, []))
    return out


class ExecTrace:
    """strace -f -e execve on a process tree for the duration of a `with` block."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.commands: list[str] = []

    def __enter__(self) -> ExecTrace:
        self._out = tempfile.NamedTemporaryFile(prefix="nbb-strace-", suffix=".txt")
        pids = [a for p in descendants(self.root) for a in ("-p", str(p))]
        self._proc = subprocess.Popen(
            ["strace", "-f", "-qq", "-e", "trace=execve", "-e", "signal=none",
             "-o", self._out.name, *pids],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(0.5)  # attached
        return self

    def __exit__(self, *_exc: object) -> None:
        self._proc.terminate()
        self._proc.wait(30)
        text = Path(self._out.name).read_text(errors="replace")
        self._out.close()
        self.commands = [os.path.basename(m[1]) for m in _EXEC.finditer(text)]

    def slurm_commands(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for c in self.commands:
            if c in SLURM_CMDS:
                counts[c] = counts.get(c, 0) + 1
        return counts
