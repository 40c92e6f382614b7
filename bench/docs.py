"""docs/benchmarks.md, generated: bench/benchmarks.template.md filled from bench/last-run.json
(`make bench`) and bench/last-chaos.json (`make chaos`).

    python -m bench.docs          rewrite docs/benchmarks.md from the two files
    python -m bench.docs --check  exit 1 if docs/benchmarks.md is not what they give

The template holds the hand-written explanation and no figure of its own: every number comes
from a placeholder, ``{{ run.figures.session.ratio_a.hi : .2f }}`` (a dotted path into
``run`` = last-run.json or ``chaos`` = last-chaos.json, then a format spec), or from a table,
``{{ table: steps }}``. A value that is not in the file (a stage that did not run) shows as
"n/a". tests/bench/test_docs.py checks that the page is what the files give, that the
template's prose has no digit outside placeholders and code, and that every number of the page
occurs in the files.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import report
from bench.chaos import COUNTED
from bench.common import CHAOS_RESULTS, PAGE, RUN_RESULTS

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "bench" / "benchmarks.template.md"
PLACEHOLDER = re.compile(r"\{\{\s*([^}:]+?)\s*(?::\s*([^}]*?)\s*)?\}\}")
NA = "n/a"
MISSING = object()


def lookup(data: dict[str, Any], path: str) -> Any:
    cur: Any = data
    for part in path.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return MISSING
    return cur


def fmt(value: Any, spec: str | None) -> str:
    if value is MISSING or value is None or (isinstance(value, float) and math.isnan(value)):
        return NA
    if isinstance(value, bool):
        return "yes" if value else "no"
    if spec == "pct":  # 0.95 -> 95
        return f"{value * 100:.0f}"
    if spec == "list":
        return ", ".join(str(v) for v in value) if value else "none"
    if spec:
        try:
            return format(value, spec)
        except (TypeError, ValueError):
            return str(value)
    return str(value)


# -- tables -------------------------------------------------------------------------------------


def _med(s: dict[str, Any] | None, nd: int = 2) -> str:
    if not s or not s.get("n"):
        return NA
    return f"{s['median']:.{nd}f} ({s['min']:.{nd}f}-{s['max']:.{nd}f})"


def t_summary(run: dict[str, Any], chaos: dict[str, Any]) -> str:
    rows = run.get("rows", [])
    out = ["| figure | measured | baseline (same run) | target | |", "|---|---|---|---|---|"]
    out += [
        f"| {r['figure']} | {r['value']} | {r['baseline']} | {r['target']} | {r['verdict']} |"
        for r in rows
    ]
    return "\n".join(out) if rows else "_(no bench run recorded)_"


def t_steps(run: dict[str, Any], chaos: dict[str, Any]) -> str:
    st = lookup(run, "figures.session.steps")
    if st is MISSING:
        return "_(the session stage did not run)_"
    d, a, b = st.get("driver", {}), st.get("baseline_a", {}), st.get("baseline_b", {})
    ttn = lookup(run, "figures.session.ttn")
    lines = [
        "| step: median (min-max) of the rounds, s | driver | baseline A | baseline B |",
        "|---|---|---|---|",
        f"| start -> job submitted (`sbatch` answered) | {_med(d.get('submitted'))} | "
        f"{_med(a.get('submitted'))} | {_med(b.get('submitted'))} |",
        f"| of which: ssh master up (baselines) | {NA} | {_med(a.get('master'))} | "
        f"{_med(b.get('master'))} |",
        f"| submitted -> RUNNING seen | {_med(d.get('submitted_to_running'))} | "
        f"{_med(a.get('submitted_to_running'))} | {_med(b.get('submitted_to_running'))} |",
        f"| RUNNING seen -> first HTTP 200 through the tunnel | "
        f"{_med(d.get('running_to_ready'))} | {_med(a.get('running_to_ready'))} | "
        f"{_med(b.get('running_to_ready'))} |",
        f"| of which: RUNNING -> endpoint known (A: connection file; B: URL in the log) | "
        f"{NA} | {_med(a.get('running_to_endpoint'))} | {_med(b.get('running_to_endpoint'))} |",
        f"| of which: endpoint known -> HTTP 200 (tunnel, first request) | {NA} | "
        f"{_med(a.get('endpoint_to_ready'))} | {_med(b.get('endpoint_to_ready'))} |",
        f"| **time to notebook** | {_med(ttn.get('driver'))} | {_med(ttn.get('baseline_a'))} | "
        f"{_med(ttn.get('baseline_b'))} |",
    ]
    return "\n".join(lines)


def t_ends(run: dict[str, Any], chaos: dict[str, Any]) -> str:
    g = lookup(run, "figures.session.gone")
    e = lookup(run, "figures.session.end")
    if g is MISSING or e is MISSING:
        return "_(the session stage did not run)_"
    lines = [
        "| median (min-max) of the rounds, s | Ctrl-C (driver's process group) | SIGINT "
        "(driver's pid only) | `nodebook stop` | baseline A: `scancel` | baseline B: `scancel` |",
        "|---|---|---|---|---|---|",
        f"| -> ssh master up (stop: its own) | {NA} | {NA} | {_med(e.get('stop_to_master'))} | "
        f"{NA} | {NA} |",
        f"| -> the helper's `cancel` sent | {_med(e.get('ctrl_c_to_cancel_sent'))} | "
        f"{_med(e.get('sigint_to_cancel_sent'))} | {_med(e.get('stop_to_cancel_sent'))} | "
        f"{NA} | {NA} |",
        f"| -> job gone from squeue | {_med(g.get('driver'))} | {_med(g.get('sigint'))} | "
        f"{_med(g.get('stop'))} | {_med(g.get('baseline_a'))} | {_med(g.get('baseline_b'))} |",
        f"| -> command exited (the driver; the stop command) | "
        f"{_med(e.get('ctrl_c_to_exit'))} | {_med(e.get('sigint_to_exit'))} | "
        f"{_med(e.get('stop_to_exit'))} | {NA} | {NA} |",
    ]
    return "\n".join(lines)


def t_rpc(run: dict[str, Any], chaos: dict[str, Any]) -> str:
    sch = lookup(run, "figures.sched")
    if sch is MISSING:
        return "_(the scheduler stage did not run)_"
    lines = [
        "| window | seconds | alice's RPCs | per minute | RPC types (global difference) | "
        "every user's RPCs | Slurm commands of the session (strace) |",
        "|---|---|---|---|---|---|---|",
    ]
    for phase in ("pending", "running"):
        w = sch.get(phase)
        if not w:
            lines.append(f"| {phase.upper()} | {NA} | {NA} | {NA} | {NA} | {NA} | {NA} |")
            continue
        types = ", ".join(f"`{k}` {v}" for k, v in w["types"].items()) or (
            "none" if w["types_are_alices"] else "not attributable (other users' RPCs)"
        )
        users = ", ".join(f"{k} {v}" for k, v in w["by_user"].items()) or "none"
        cmds = ", ".join(f"`{k}` {v}" for k, v in w["commands"].items()) or "none"
        lines.append(
            f"| {phase.upper()} | {w['seconds']:.0f} | {w['rpcs']} | {w['per_minute']:.1f} | "
            f"{types} | {users} | {cmds} |"
        )
    return "\n".join(lines)


def t_chaos(run: dict[str, Any], chaos: dict[str, Any]) -> str:
    results = chaos.get("results", [])
    if not results:
        return "_(no chaos run recorded)_"
    head = (
        "| exit path | rounds | failed rounds | wrong exit | jobs left | processes left "
        "(cluster) | laptop processes | ports | files left (login, nodes) | local files, "
        "records | session broken | errors | starts redone | seconds (all rounds) | nothing left, "
        "right exit |"
    )
    lines = [head, "|" + "---|" * 15]
    for r in results:
        c = r.get("counts", {})
        lines.append(
            f"| {r['path']} | {r['rounds']} | {r['failed_rounds']} | {c.get('bad_exit', 0)} | "
            f"{c.get('jobs', 0)} | {c.get('processes', 0)} | {c.get('local_processes', 0)} | "
            f"{c.get('ports', 0)} | {c.get('files', 0)} | {c.get('local_files', 0)} | "
            f"{c.get('not_survived', 0)} | {c.get('errors', 0)} | {c.get('retried', 0)} | "
            f"{r['seconds']:.0f} | {'MISSED' if r['failed'] else 'met'} |"
        )
    return "\n".join(lines)


def t_machine(run: dict[str, Any], chaos: dict[str, Any]) -> str:
    m = run.get("machine", {})
    keys = [k for k in m if k not in ("commit", "dirty", "dirty_paths")]
    return "\n".join(f"- {k}: {m[k]}" for k in keys) or "_(none recorded)_"


def t_activity(run: dict[str, Any], chaos: dict[str, Any]) -> str:
    samples = run.get("activity", [])
    if not samples:
        return "_(none recorded)_"
    lines = [
        "| stage | load (1 min) | others' jobs in the queue | pytest processes | chaos loops |",
        "|---|---|---|---|---|",
    ]
    for a in samples:
        lines.append(
            f"| {a['stage']} | {a.get('load_1min', NA)} | {a['jobs_in_queue']} | "
            f"{a['pytest_runs']} | {a['chaos_runs']} |"
        )
    return "\n".join(lines)


def t_chaos_failures(run: dict[str, Any], chaos: dict[str, Any]) -> str:
    """What failed rounds left, a few items per path (none: says so)."""
    lines = []
    for r in chaos.get("results", []):
        for kind in COUNTED:
            for item in r.get(kind, [])[:3]:
                text = " ".join(str(item).split())[:240].replace("|", "/")
                lines.append(f"- {r['path']}, {kind}: `{text.replace('`', '')}`")
    return "\n".join(lines) or "Nothing was left and no round failed."


def t_chaos_activity(run: dict[str, Any], chaos: dict[str, Any]) -> str:
    """How busy the sandbox was during the chaos run (sampled at each round's start)."""
    samples = chaos.get("activity", [])
    if not samples:
        return "Other activity during the chaos run: not recorded."

    def top(key: str) -> Any:
        return max((a.get(key, 0) for a in samples), default=0)

    return (
        f"Other activity during the chaos run (sampled at the start of each of its "
        f"{chaos.get('rounds', NA)} rounds): load up to {top('load_1min')}, up to "
        f"{top('jobs_in_queue')} jobs in the queue, {top('pytest_runs')} pytest processes and "
        f"{top('chaos_runs')} chaos loops (this one included)."
    )


TABLES: dict[str, Callable[[dict[str, Any], dict[str, Any]], str]] = {
    "summary": t_summary,
    "steps": t_steps,
    "ends": t_ends,
    "rpc": t_rpc,
    "chaos": t_chaos,
    "chaos_failures": t_chaos_failures,
    "chaos_activity": t_chaos_activity,
    "machine": t_machine,
    "activity": t_activity,
}


def render(template: str, run: dict[str, Any], chaos: dict[str, Any]) -> str:
    data = {"run": run, "chaos": chaos, "targets": report.TARGETS}

    def sub(m: re.Match[str]) -> str:
        key, spec = m[1].strip(), (m[2] or "").strip() or None
        if key == "table":
            if spec not in TABLES:
                raise KeyError(f"unknown table {spec!r}")
            return TABLES[spec](run, chaos)
        if not key.startswith(("run.", "chaos.", "targets.")):
            raise KeyError(f"placeholder {key!r}: paths start with run., chaos. or targets.")
        return fmt(lookup(data, key), spec)

    return PLACEHOLDER.sub(sub, template)


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def generate() -> str:
    return render(TEMPLATE.read_text(), load(RUN_RESULTS), load(CHAOS_RESULTS))


def write() -> None:
    PAGE.write_text(generate())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.docs", description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="compare instead of writing")
    args = p.parse_args(argv)
    if args.check:
        same = PAGE.exists() and PAGE.read_text() == generate()
        print("docs/benchmarks.md is up to date" if same else "docs/benchmarks.md differs")
        return 0 if same else 1
    write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
