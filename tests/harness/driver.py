"""One driver process under test or measurement: `python -m driver ARGS --json` on the laptop.

The process runs in the laptop's namespaces (``sandbox/cluster.py exec laptop --``, or directly
when the caller is already there), in a session and process group of its own, with SIGINT at
its default even when the caller ignores it (a process started with ``&`` from a
non-interactive shell inherits SIGINT ignored), so ``ctrl_c()`` reaches it as a terminal's
Ctrl-C would. It gets a private TMPDIR (its ssh control sockets, ansible-runner's dirs) and
state dir, and the sandbox's inventory through NODEBOOK_INVENTORY. Its JSON lines are read as
they come, each with its arrival time; its exit is reaped with wait4, which gives the largest
RSS and the CPU time of the driver and the children it reaped.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.harness.sandbox import INVENTORY, PY, REPO, laptop_argv

PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


class NoEvent(AssertionError, RuntimeError):
    """The driver ended, or the time ran out, before the awaited event came."""


class Hung(subprocess.TimeoutExpired):
    """The driver did not exit in time; the message says where it was stuck (its process tree,
    each process's kernel wait, and every Python thread's stack, dumped by faulthandler)."""

    def __init__(self, cmd: list[str], timeout: float, diagnosis: str) -> None:
        super().__init__(cmd, timeout)
        self.diagnosis = diagnosis

    def __str__(self) -> str:
        return f"{super().__str__()}\n{self.diagnosis}"


def new_workdir(prefix: str = "nbh-") -> Path:
    """A private (0700), short directory: the driver's TMPDIR and state dir live in it."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def _sigint_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _starter(cgroup: Path | None):
    """The child's set-up before exec: SIGINT at its default; with ``cgroup`` (a cgroup v2
    directory) it moves itself there first, so that every process it starts is in it too."""
    if cgroup is None:
        return _sigint_default

    def start() -> None:
        (cgroup / "cgroup.procs").write_text("0\n")
        _sigint_default()

    return start


def driver_env(
    tmp: Path, state: Path, inventory: Path = INVENTORY, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """What a driver under test gets in its environment (on top of this process's)."""
    return {
        "NODEBOOK_STATE_DIR": str(state),
        "NODEBOOK_INVENTORY": str(inventory),
        "TMPDIR": str(tmp),
        "HOME": "/root",
        # A driver that hangs is aborted by the harness (Hung): SIGABRT then dumps every
        # thread's Python stack to its stderr.
        "PYTHONFAULTHANDLER": "1",
        **(extra or {}),
    }


# module=COMMAND: the installed command itself (the venv's console script), as a user types it.
COMMAND = "nodebook"


def driver_argv(args: Sequence[str], module: str = "driver", json_mode: bool = True) -> list[str]:
    """argv of `python -m MODULE ARGS [--json]` (or of `nodebook ARGS [--json]`, module=COMMAND)
    in the laptop's namespaces."""
    head = [str(Path(PY).parent / COMMAND)] if module == COMMAND else [PY, "-m", module]
    return laptop_argv([*head, *args] + (["--json"] if json_mode else []))


class DriverProcess:
    """`python -m MODULE ARGS [--json]` started now, in the laptop's namespaces."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        work: Path | None = None,
        tmp_dir: Path | None = None,
        state_dir: Path | None = None,
        env: dict[str, str] | None = None,
        module: str = "driver",
        json_mode: bool = True,
        inventory: Path = INVENTORY,
        cgroup: Path | None = None,
    ) -> None:
        self.args = list(args)
        self.work = work or new_workdir()
        self.tmp = tmp_dir or self.work / "tmp"
        self.tmp.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.state = state_dir or self.work / "state"
        self.env = driver_env(self.tmp, self.state, inventory, env)
        self.started = time.time()
        self.proc = subprocess.Popen(
            driver_argv(self.args, module, json_mode),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env={**os.environ, **self.env},
            start_new_session=True,
            preexec_fn=_starter(cgroup),
        )
        self.events: list[dict[str, Any]] = []
        self.arrivals: list[float] = []
        self.stderr = ""
        self.rc: int | None = None
        self.ended: float | None = None
        self.maxrss_kib = 0
        self.cpu_s = 0.0
        self._returned: set[int] = set()
        self._eof = False  # the driver closed its stdout
        self._q: queue.Queue[tuple[float, dict[str, Any]] | None] = queue.Queue()
        self._err_done = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    @property
    def pid(self) -> int:
        """The driver's own pid (cluster.py exec and nsenter end in exec: no wrapper process)."""
        return self.proc.pid

    # -- output -----------------------------------------------------------------------------
    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                event = None
            if not isinstance(event, dict):
                event = {"event": "text", "message": line.rstrip()}
            self._q.put((time.time(), event))
        self._q.put(None)

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()
        self._err_done.set()

    def drain(self, timeout: float = 0.0) -> dict[str, Any] | None:
        """Take the next line off the pipe (waiting up to ``timeout``); None if none came."""
        if self._eof:
            return None
        try:
            item = self._q.get(timeout=timeout) if timeout > 0 else self._q.get_nowait()
        except queue.Empty:
            return None
        if item is None:
            self._eof = True
            return None
        arrived, event = item
        self.events.append(event)
        self.arrivals.append(arrived)
        return event

    def wait_timed(self, kind: str, timeout: float = 120) -> tuple[float, dict[str, Any]]:
        """Arrival time and body of the first event of this kind not returned before."""
        deadline = time.monotonic() + timeout
        while True:
            for i, event in enumerate(self.events):
                if event.get("event") == kind and i not in self._returned:
                    self._returned.add(i)
                    return self.arrivals[i], event
            left = deadline - time.monotonic()
            if left <= 0 or self._eof:
                break
            self.drain(min(0.5, left))
        if self._eof:
            self._err_done.wait(2)
        raise NoEvent(
            f"no {kind!r} event; rc={self.poll()} events={self.events} stderr={self.stderr[-2000:]}"
        )

    def wait_event(self, kind: str, timeout: float = 120) -> dict[str, Any]:
        """The first event of this kind not returned before; NoEvent with all seen so far."""
        return self.wait_timed(kind, timeout)[1]

    # -- signals and exit -------------------------------------------------------------------
    def signal(self, sig: int) -> None:
        """Signal the driver process itself."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)

    def interrupt(self) -> None:
        self.signal(signal.SIGINT)

    def ctrl_c(self) -> None:
        """SIGINT to the driver's process group, as a terminal sends it on Ctrl-C."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGINT)

    def poll(self) -> int | None:
        """The exit code once the driver has exited (reaped with wait4), else None."""
        if self.rc is None:
            try:
                pid, status, usage = os.wait4(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere (Popen): no accounting
                if self.proc.returncode is not None:
                    self._exited(self.proc.returncode, None)
                return self.rc
            if pid:
                self._exited(os.waitstatus_to_exitcode(status), usage)
        return self.rc

    def _exited(self, rc: int, usage: Any) -> None:
        self.rc = rc
        self.proc.returncode = rc
        self.ended = time.time()
        if usage is not None:
            self.maxrss_kib = int(usage.ru_maxrss)
            self.cpu_s = usage.ru_utime + usage.ru_stime

    def wait(self, timeout: float = 180) -> int:
        """Wait for the exit and the rest of its output; TimeoutExpired after ``timeout``."""
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                raise Hung(self.args, timeout, self.diagnose())
            time.sleep(0.02)
        while self.drain(1.0) is not None:
            pass
        self._err_done.wait(5)
        assert self.rc is not None
        return self.rc

    def diagnose(self) -> str:
        """Where a driver that should have exited is stuck: its process tree (state, kernel
        wait, argv), then SIGABRT, whose faulthandler dump of every Python thread ends its
        stderr, and its last lines. The driver is dead afterwards."""
        kids = _children_map()
        lines = ["process tree (pid state wchan argv):"]
        stack = [(self.pid, 0)]
        while stack:
            pid, depth = stack.pop()
            lines.append("  " * (depth + 1) + _describe(pid))
            stack.extend((k, depth + 1) for k in sorted(kids.get(pid, []), reverse=True))
        self.signal(signal.SIGABRT)
        end = time.monotonic() + 10
        while self.poll() is None and time.monotonic() < end:
            time.sleep(0.05)
        self._err_done.wait(5)
        while self.drain(0.2) is not None:
            pass
        tail = "\n".join(json.dumps(e) for e in self.events[-15:])
        return "\n".join([*lines, "last events:", tail, "stderr:", self.stderr[-6000:]])

    def reap(self, timeout: float = 120) -> int:
        """Wait for the exit; SIGKILL after ``timeout`` (then wait up to 30 s more)."""
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            return self.wait(30)

    def kill(self) -> None:
        """SIGKILL the driver and its process group, if it still runs; reap it."""
        if self.poll() is None:
            self.signal(signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.wait(10)

    # -- what the run said ------------------------------------------------------------------
    @property
    def job_ids(self) -> set[str]:
        """Every job id this run mentioned (submitted, pending, running, ready, errors)."""
        ids = {str(e["job_id"]) for e in self.events if e.get("job_id")}
        for e in self.events:
            ids.update(re.findall(r"\bjob (s?\d+)\b", str(e.get("message", ""))))
        return {i for i in ids if i and i != "None"}

    @property
    def errors(self) -> list[str]:
        return [str(e.get("message", "")) for e in self.events if e.get("event") == "error"]

    @property
    def ready_port(self) -> int | None:
        """The local port of the (first) ready line, if there was one."""
        for e in self.events:
            if e.get("event") == "ready":
                return int(e["local_port"])
        return None

    @property
    def output(self) -> str:
        return "\n".join(json.dumps(e) for e in self.events) + "\n" + self.stderr

    def remove_work(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)


def run_driver(args: Sequence[str], timeout: float = 240, **kw: Any) -> DriverProcess:
    """Run the driver to its end; the returned process has its exit code in ``rc``."""
    d = DriverProcess(args, **kw)
    try:
        d.wait(timeout)
    except subprocess.TimeoutExpired:
        d.kill()
        raise
    return d


# -- memory of process trees (the benchmark's figures) -------------------------------------------


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the command name (state, ppid, ...); [] if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return []


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields:
            kids.setdefault(int(fields[1]), []).append(int(entry.name))
    return kids


def _describe(pid: int) -> str:
    """One line about a process: pid, state, kernel wait channel, argv (shortened)."""
    fields = _stat_fields(pid)
    try:
        state = fields[0]
        wchan = Path(f"/proc/{pid}/wchan").read_text(errors="replace") or "-"
        argv = (
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        )
    except (OSError, IndexError):
        return f"{pid} (gone)"
    return f"{pid} {state} {wchan} {argv[:300]}"


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * PAGE_KIB
    except (OSError, ValueError, IndexError):
        return 0


def tree_rss_kib(roots: list[int]) -> tuple[int, int]:
    """(sum of RSS of the process trees under roots, number of processes) right now."""
    kids = _children_map()
    seen: set[int] = set()
    stack = list(roots)
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        stack.extend(kids.get(pid, []))
    return sum(_rss_kib(p) for p in seen), len(seen)


class RssSampler:
    """Samples the summed RSS of some process trees every `interval` s; keeps the peak."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.roots: list[int] = []
        self.peak_kib = 0
        self.peak_procs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            roots = [p for p in self.roots if p]
            if not roots:
                continue
            kib, n = tree_rss_kib(roots)
            if kib > self.peak_kib:
                self.peak_kib, self.peak_procs = kib, n
