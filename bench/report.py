"""Figures -> a table on stdout and docs/benchmarks.md (with machine details and raw values)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from bench.common import median


@dataclass
class Row:
    figure: str
    value: str
    baseline: str
    target: str
    met: bool | None  # None: no target, or not measured

    @property
    def verdict(self) -> str:
        return {True: "met", False: "MISSED", None: "-"}[self.met]


def _f(x: float | None, unit: str = "s", nd: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{nd}f} {unit}".strip()


def session_rows(res: dict[str, Any]) -> list[Row]:
    d = [r["ttn"] for r in res["driver"]]
    b = [r["ttn"] for r in res["baseline"]]
    md, mb = median(d), median(b)
    ratio = md / mb if md and mb else None
    over = md - mb if md is not None and mb is not None else None
    cd = median([r["ctrl_c_gone"] for r in res["driver"]])
    cb = median([r["ctrl_c_gone"] for r in res["baseline"]])
    ce = median([r["ctrl_c_exit"] for r in res["driver"]])
    n = len(d)
    return [
        Row(f"time to notebook, driver (median of {n})", _f(md), _f(mb), "-", None),
        Row("time to notebook, ratio driver/baseline", _f(ratio, "", 2), "1.00", "<= 1.3",
            None if ratio is None else ratio <= 1.3),
        Row("time to notebook, driver overhead", _f(over), "-", "<= 1.5 s",
            None if over is None else over <= 1.5),
        Row(f"Ctrl-C -> job gone from squeue (median of {n})", _f(cd), _f(cb) + " (scancel)",
            "<= 1 s", None if cd is None else cd <= 1.0),
        Row("Ctrl-C -> driver exited", _f(ce), "-", "-", None),
    ]  # fmt: skip


def _spread(values: list[float]) -> str:
    lo, mid, hi = min(values), median(values), max(values)
    return f"{mid:.0f}" if lo == hi else f"{mid:.0f} ({lo:.0f}-{hi:.0f})"


def ssh_rows(res: dict[str, Any]) -> list[Row]:
    """Per driver session: ssh connections it opened, remote round trips it made (the ssh
    wrapper's log), in all and per phase (to ready, held until Ctrl-C, cleanup)."""
    rounds = [r["ssh"] for r in res["driver"] if "ssh" in r]
    if not rounds:
        return []
    n = len(rounds)
    phase = {
        name: _spread([r["phases"].get(name, {}).get("round_trips", 0) for r in rounds])
        for name in ("start", "hold", "cleanup")
    }
    return [
        Row(f"ssh connections opened per session (median of {n})",
            _spread([r["connections"] for r in rounds]), "-", "-", None),
        Row(f"remote round trips per session (median of {n})",
            f"{_spread([r['round_trips'] for r in rounds])}: to ready {phase['start']}, "
            f"held {phase['hold']}, cleanup {phase['cleanup']}", "-", "-", None),
    ]  # fmt: skip


def memory_rows(res: dict[str, Any], conc: dict[str, Any] | None) -> list[Row]:
    tree = max((r["peak_tree_rss_kib"] for r in res["driver"]), default=0) / 1024
    single = max((r["maxrss_single_kib"] for r in res["driver"]), default=0) / 1024
    rows = [
        Row("driver peak RSS, process tree (sum, sampled 10/s)", _f(tree, "MiB", 0), "-", "-",
            None),
        Row("driver peak RSS, largest single process", _f(single, "MiB", 0), "-", "-", None),
    ]  # fmt: skip
    cpu = median([r["cpu_s"] for r in res["driver"] if "cpu_s" in r])
    if cpu is not None:
        rows.append(Row("driver CPU time per session (user+sys, whole tree)", _f(cpu), "-", "-",
                        None))  # fmt: skip
    if conc:
        n = conc["n"]
        rows.append(
            Row(f"{n} drivers at once, peak RSS (sum of trees)",
                _f(conc["peak_tree_rss_kib"] / 1024, "MiB", 0), "-", "-", None)
        )  # fmt: skip
    return rows


def sched_rows(res: dict[str, Any]) -> list[Row]:
    rows = []
    for phase, target in (("pending", 12), ("running", 1)):
        w = res.get(phase)
        if not w:
            rows.append(Row(f"scheduler queries/min while {phase.upper()}", "n/a", "-",
                            f"<= {target}", None))  # fmt: skip
            continue
        note = "" if w["valid"] else f" (INVALID: states {w['states_seen']})"
        sd = f"; sdiag alice {w['sdiag_alice_per_minute']:.1f}/min"
        note += sd + (" (other alice jobs)" if w["contaminated"] else "")
        rows.append(
            Row(f"scheduler queries/min while {phase.upper()}",
                f"{w['per_minute']:.1f}{note}", "-", f"<= {target}",
                w["per_minute"] <= target if w["valid"] else None)
        )  # fmt: skip
    return rows


def throughput_rows(res: dict[str, Any]) -> list[Row]:
    rows = []
    for mode, r in res["modes"].items():
        if "error" in r:
            rows.append(Row(f"throughput {mode}", "error", "-", ">= 0.8", None))
            continue
        d, b = median(r["driver"]), median(r["baseline"])
        ratio = d / b if d and b else None
        rows.append(
            Row(f"throughput {mode} ({res['size_mib']} MiB, {r['endpoint']}), ratio",
                f"{d:.0f} MiB/s ({ratio:.2f})", f"{b:.0f} MiB/s (one ssh -L)", ">= 0.8",
                None if ratio is None else ratio >= 0.8)
        )  # fmt: skip
    return rows


def setup_rows(res: dict[str, Any]) -> list[Row]:
    secs = [r["seconds"] for r in res["runs"] if r["rc"] == 0]
    bad = len(res["runs"]) - len(secs)
    changed = sorted({r["changed"] for r in res["runs"]})
    tasks = res["runs"][0]["ok"] if res["runs"] else 0
    return [
        Row(f"setup re-run (changed={','.join(map(str, changed))}, {tasks} tasks ok)",
            _f(median(secs)) + (f" ({bad} run(s) FAILED)" if bad else ""),
            _f(median(res["raw_ping"])) + " (ansible raw ping)", "changed=0",
            None if not secs else changed == [0] or None)
    ]  # fmt: skip


def concurrent_rows(res: dict[str, Any], problems: list[str]) -> list[Row]:
    s = res["sessions"]
    ports = len({x["port"] for x in s}) == len(s)
    socks = len({(x["node"], x["socket"]) for x in s}) == len(s)
    ok200 = all(x["http"] == 200 for x in s)
    good = res["ready"] == res["n"] and ports and socks and ok200 and not problems
    value = (
        f"{res['ready']}/{res['n']} ready in {res['all_ready_s']:.0f} s, "
        f"ports {'unique' if ports else 'COLLIDE'}, sockets {'unique' if socks else 'COLLIDE'}, "
        f"200s {'all' if ok200 else 'NOT all'}, left behind: {len(problems)}"
    )
    return [Row(f"{res['n']} concurrent sessions (alice+bob)", value, "-",
                "all ready, no collision, none left", good)]  # fmt: skip


def table(rows: list[Row]) -> str:
    head = ("figure", "measured", "baseline (same run)", "target", "")
    cells = [head] + [(r.figure, r.value, r.baseline, r.target, r.verdict) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(5)]
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(5)).rstrip() for c in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(rows: list[Row]) -> str:
    out = ["| figure | measured | baseline (same run) | target | |", "|---|---|---|---|---|"]
    out += [f"| {r.figure} | {r.value} | {r.baseline} | {r.target} | {r.verdict} |" for r in rows]
    return "\n".join(out)


def raw_json(results: dict[str, Any]) -> str:
    return json.dumps(results, indent=1, sort_keys=True)


def profile_rows(res: dict[str, Any]) -> list[Row]:
    tasks = ", ".join(f"{k} {v}" for k, v in res["ansible_tasks"].items())
    return [
        Row("profile: one traced session, inventory cache cold, to ready / Ctrl-C -> gone",
            f"{res['ready_s']:.2f} s / {res['ctrl_c_gone_s']:.2f} s", "-", "-", None),
        Row("profile: ssh invocations (start / cleanup), Ansible tasks",
            f"{res['ssh_invocations_start']} / {res['ssh_invocations_cleanup']}; {tasks}",
            "-", "-", None),
    ]  # fmt: skip
