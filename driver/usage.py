"""What a running session uses, against what it was given, and how long it has left.

The remote helper reports Slurm's own words for one job (``usage`` lines, and the same fields on
``list``'s ``session`` lines): its run time and time limit as Slurm writes them, the CPUs and
memory allocated (scontrol's or squeue's TRES), and ``sstat`` of its batch step (``ID.batch``,
where Jupyter and its kernels run): the CPU time used so far, the memory resident now and at
its peak, and the GPU use where the node reports it (``gres/gpuutil``, ``gres/gpumem``). This
module turns them into numbers and words; it calls nothing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from driver.paths import rules

SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)([KMGTP]?)$", re.IGNORECASE)
UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}
# A session whose allocated CPUs were more than half idle over this long gets one line.
IDLE_WINDOW = 3600.0
IDLE_SHARE = 0.5
# The shortest time over which CPU use is measured between two looks (else: since the start).
MIN_WINDOW = 10.0


def seconds(value: object) -> int | None:
    """Seconds in a Slurm time as squeue/scontrol/sstat write it (``05:07``, ``1:02:03``,
    ``2-03:04:05``, ``00:00:00``); None for UNLIMITED, INVALID, empty or anything else."""
    text = str(value or "").strip().split(".")[0]  # sstat may add fractions: 01:02.345
    if not text or set(text) <= {"0", ":", "-"}:
        return 0 if text else None
    try:
        return int(rules().slurm_seconds(text))
    except ValueError:
        return None


def size(value: object) -> int | None:
    """Bytes in a Slurm size (``9660K``, ``512M``, ``1.5G``, plain bytes); None if not one."""
    match = SIZE_RE.match(str(value or "").strip())
    if not match:
        return None
    return int(float(match.group(1)) * UNITS[match.group(2).upper()])


def tres(value: object) -> dict[str, str]:
    """A TRES list (``cpu=2,mem=512M,node=1,gres/gpu=2``) as a dict."""
    pairs = (item.partition("=") for item in str(value or "").split(",") if "=" in item)
    return {k.strip(): v.strip() for k, _, v in pairs}


def clock(total: float) -> str:
    """1:02:03 or 4:05 (minutes:seconds under an hour)."""
    total = max(0, int(total))
    hours, rest = divmod(total, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def human_size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit in ("B", "KiB") else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return "?"


@dataclass
class Usage:
    """One report of one job's use (one helper line)."""

    job_id: str
    elapsed: int | None = None  # seconds it has run
    limit: int | None = None  # its time limit in seconds (None: unlimited or unknown)
    cpus: int | None = None  # CPUs allocated
    mem: int | None = None  # memory allocated, bytes
    cpu_time: int | None = None  # CPU seconds its batch step used so far (None: no sstat)
    rss: int | None = None  # resident memory now, bytes
    peak_rss: int | None = None
    gpus: str = ""  # GPUs allocated, as Slurm counts them
    gpu_util: str = ""  # what the node reports of GPU use ('' : nothing)
    gpu_mem: str = ""
    cpu_then: int | None = None  # CPU seconds at the helper's previous look at the job
    then_age: int | None = None  # seconds since that look
    cores: float | None = None  # CPUs busy over the last ``over`` seconds (``measure``)
    over: float | None = None

    @classmethod
    def from_line(cls, line: Mapping[str, Any]) -> Usage:
        alloc = tres(line.get("tres"))
        cpus = str(line.get("cpus") or alloc.get("cpu") or "")
        mem = line.get("mem") or alloc.get("mem")
        return cls(
            job_id=str(line.get("job_id") or ""),
            elapsed=seconds(line.get("elapsed")),
            limit=seconds(line.get("time_limit")),
            cpus=int(cpus) if cpus.isdigit() else None,
            mem=size(mem),
            cpu_time=seconds(line.get("cpu")) if line.get("cpu") else None,
            rss=size(line.get("rss")),
            peak_rss=size(line.get("peak_rss")),
            gpus=str(line.get("gpus") or ""),
            gpu_util=str(line.get("gpu_util") or ""),
            gpu_mem=str(line.get("gpu_mem") or ""),
            cpu_then=seconds(line.get("cpu_then")) if line.get("cpu_then") else None,
            then_age=int(str(line["then_age"]))
            if str(line.get("then_age", "")).isdigit()
            else None,
        )

    @property
    def left(self) -> int | None:
        """Seconds left of the time limit when this was reported."""
        if self.limit is None or self.elapsed is None:
            return None
        return max(0, self.limit - self.elapsed)

    def measure(self, since: tuple[float, int] | None = None) -> None:
        """Set ``cores``: CPUs busy since ``since`` ((seconds ago, CPU seconds then)), else since
        the helper's previous look at the job, if either is ``MIN_WINDOW`` or longer ago (sstat
        counts whole CPU seconds: a shorter window says little), else on average since the job
        started."""
        if self.cpu_time is None:
            return
        helper = None
        if self.then_age is not None and self.cpu_then is not None:
            helper = (float(self.then_age), self.cpu_then)
        for window in (since, helper):
            if window is not None and window[0] >= MIN_WINDOW and self.cpu_time >= window[1]:
                self.cores, self.over = (self.cpu_time - window[1]) / window[0], window[0]
                return
        if self.elapsed:
            self.cores, self.over = self.cpu_time / self.elapsed, None

    def text(self) -> str:
        """'CPU 0.98 of 2 · memory 120.3 MiB of 4.0 GiB (peak 130.0 MiB) · GPU use: ...'."""
        parts = []
        of = f" of {self.cpus}" if self.cpus else ""
        if self.cores is not None:
            when = f"last {clock(self.over)}" if self.over else "average since start"
            parts.append(f"CPU {self.cores:.2f}{of} ({when})")
        elif self.cpus:
            parts.append(f"CPU ?{of} (no sstat yet)")
        if self.rss is not None or self.mem is not None:
            mem = f"memory {human_size(self.rss)}"
            mem += f" of {human_size(self.mem)}" if self.mem else ""
            if self.peak_rss is not None and self.peak_rss != self.rss:
                mem += f" (peak {human_size(self.peak_rss)})"
            parts.append(mem)
        if self.gpus:
            parts.append(gpu_text(self.gpu_util, self.gpu_mem))
        return " · ".join(parts)

    def data(self) -> dict[str, Any]:
        """For --json: numbers, not words."""
        out: dict[str, Any] = {
            "cores": None if self.cores is None else round(self.cores, 2),
            "cores_over_s": None if self.over is None else round(self.over),  # None: since start
            "cpus": self.cpus,
            "mem_bytes": self.mem,
            "rss_bytes": self.rss,
            "peak_rss_bytes": self.peak_rss,
            "time_left_s": self.left,
        }
        if self.gpus:
            out.update(gpu_util=self.gpu_util or None, gpu_mem=self.gpu_mem or None)
        return out


def gpu_text(util: str, mem: str) -> str:
    if not util and not mem:
        return "GPU use: not reported by the node"
    words = [f"utilisation {util}" if util else "", f"memory {mem}" if mem else ""]
    return "GPU " + ", ".join(w for w in words if w)


def left_text(left: float | None, limit: int | None) -> str:
    """'52:10 left of 1:00:00' ('' when the job has no limit)."""
    if left is None:
        return ""
    return f"{clock(left)} left" + (f" of {clock(limit)}" if limit else "")


@dataclass
class IdleWatch:
    """Samples of a session's CPU time; one suggestion once its CPUs sat more than half idle
    over an hour (``IDLE_WINDOW``) and fewer would have done."""

    cpus: int
    window: float = IDLE_WINDOW
    samples: list[tuple[float, int]] = field(default_factory=list)  # (wall time, CPU seconds)
    said: bool = False

    def add(self, when: float, cpu_time: int) -> str | None:
        """Record a sample; the suggestion (once), else None."""
        if self.samples and cpu_time < self.samples[-1][1]:
            self.samples.clear()  # a restarted step: start over
        self.samples.append((when, cpu_time))
        while len(self.samples) > 2 and when - self.samples[1][0] >= self.window:
            self.samples.pop(0)  # keep the oldest sample that still spans the window
        first_t, first_c = self.samples[0]
        span = when - first_t
        if self.said or self.cpus <= 1 or span < self.window:
            return None
        used = (cpu_time - first_c) / span
        if used >= self.cpus * IDLE_SHARE:
            return None
        rates = [(c2 - c1) / (t2 - t1) for (t1, c1), (t2, c2) in pairwise(self.samples) if t2 > t1]
        peak = max(rates, default=used)
        enough = max(1, math.ceil(peak))
        if enough >= self.cpus:
            return None
        self.said = True
        return (
            f"over the last {clock(span)} this session used {used:.2f} of its {self.cpus} CPUs "
            f"on average ({peak:.2f} at most): `--cpus {enough}` would do next time, and may "
            "start sooner"
        )
