"""Driver processes under measurement: JSON event lines with arrival times, and their memory."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import REPO

PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry.name))
    return kids


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


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


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


def warm_inventory(state_dir: Path, cluster: str = "sandbox") -> None:
    """Resolve the inventory once into the state dir's cache, as any earlier session has.

    Only the first session after an inventory edit pays for `ansible-inventory` (the profile
    stage runs with a cold cache and shows that cost).
    """
    code = (
        "from pathlib import Path; from driver.inventory import load_cluster; "
        f"load_cluster(Path('inventory/sandbox/hosts.yml'), {cluster!r})"
    )
    env = {**os.environ, "NODEBOOK_STATE_DIR": str(state_dir)}
    subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True, timeout=120)


class DriverProc:
    """`python -m driver ARGS --json` started now; events are (arrival time, dict)."""

    def __init__(
        self,
        args: list[str],
        state_dir: Path,
        module: str = "driver",
        env: dict[str, str] | None = None,
    ) -> None:
        env = {**os.environ, "NODEBOOK_STATE_DIR": str(state_dir), **(env or {})}
        self.started = time.time()
        env.setdefault("NBB_T0", repr(self.started))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args, "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            cwd=REPO,
            env=env,
            preexec_fn=_default_sigint,  # Ctrl-C must reach the driver as a user's would
        )
        self.events: list[tuple[float, dict[str, Any]]] = []
        self._q: queue.Queue[tuple[float, dict[str, Any]] | None] = queue.Queue()
        self.stderr = ""
        self.maxrss_kib = 0
        self.cpu_s = 0.0  # user+system CPU of the driver and its reaped descendants
        self.rc: int | None = None
        self.ended: float | None = None
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "text", "message": line.rstrip()}
            self._q.put((time.time(), event))
        self._q.put(None)

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        self.stderr = self.proc.stderr.read()[-4000:]

    def wait_event(self, kind: str, timeout: float) -> tuple[float, dict[str, Any]]:
        """Arrival time and body of the next `kind` event; raises if the driver ends first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                item = self._q.get(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is None:
                self._q.put(None)
                break
            self.events.append(item)
            if item[1].get("event") == kind:
                return item
        events = [e for _, e in self.events]
        raise RuntimeError(f"driver: no {kind!r} event; events {events}; stderr {self.stderr}")

    def interrupt(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGINT)

    def reap(self, timeout: float = 120) -> int:
        """Wait for the exit (os.wait4, for the tree's max RSS); SIGKILL after `timeout`."""
        if self.rc is not None:
            return self.rc
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
            if pid:
                self.ended = time.time()
                self.rc = os.waitstatus_to_exitcode(status)
                self.proc.returncode = self.rc
                self.maxrss_kib = int(usage.ru_maxrss)
                self.cpu_s = usage.ru_utime + usage.ru_stime
                return self.rc
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.proc.pid, signal.SIGKILL)
                deadline = time.monotonic() + 30
            time.sleep(0.02)

    def drain(self) -> None:
        while True:
            try:
                item = self._q.get(timeout=1)
            except queue.Empty:
                return
            if item is None:
                return
            self.events.append(item)
