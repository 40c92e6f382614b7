"""`make bench`: every figure against its baseline, measured in the same run, on the sandbox.

    .venv/bin/python -m bench.run [--quick] [--rounds N] [--seed S] [--only session,submit,
                                  profile,sched,throughput,setup,concurrent]
                                  [--no-write | --output FILE]
    .venv/bin/python -m bench.run --refigure

(from the repository's root; `make bench BENCH_ARGS=--quick` runs it so). --refigure needs no
sandbox: it derives the figures, rows and page again from bench/last-run.json's raw values
with the current bench/report.py (after a change to the report, never to the measurements).

Prints a table and (unless --no-write) writes bench/last-run.json (every raw value, every
figure derived from them, the rows with their verdicts, the method's parameters, the commit and
whether the tree was dirty, how busy the machine was) and regenerates docs/benchmarks.md from
it (bench/docs.py, bench/benchmarks.template.md). --output FILE writes the same JSON to FILE
instead and leaves bench/last-run.json and the page alone (a trial of a subset of the stages).
Each scenario leaves nothing behind, also when interrupted; what is found left over is reported
as a failure of that scenario.
"""

from __future__ import annotations

import argparse
import datetime
import json
import secrets
import signal
import sys
from pathlib import Path
from typing import Any

from bench import docs, host, report, sched
from bench.common import PAGE, RUN_RESULTS
from tests.harness.sandbox import REPO

ALL = ("session", "submit", "profile", "sched", "throughput", "setup", "concurrent")  # = STAGES
ROUNDS = 20  # rounds of the session stage: two whole Williams designs of its five kinds
SUBMIT_PAIRS = 20  # pairs of the submit stage (the driver's early submit, the play's own)
PENDING_S = 60  # scheduler windows: PENDING behind a full cluster, then RUNNING
RUNNING_S = 120


ACTIVITY: list[dict[str, Any]] = []


def stage(name: str) -> None:
    ACTIVITY.append({"stage": name, **host.activity()})
    print(f"== {name} ({datetime.datetime.now(datetime.UTC):%H:%M:%S} UTC)", flush=True)


def guarded_stage(results: dict[str, Any], name: str, fn: Any) -> None:
    """Run one stage; a failure (e.g. a chaos loop cut the link) is recorded, not fatal: the
    report shows it as a MISSED row."""
    try:
        fn()
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        print(f"bench: stage {name} failed: {exc}", file=sys.stderr, flush=True)
        results.setdefault("errors", {})[name] = str(exc)[:600]


def st_session(results: dict[str, Any], quick: bool) -> None:
    reps = 2 if quick else results["method"]["rounds"]
    seed = str(results["method"]["phase_seed"])
    stage(f"time to notebook, Ctrl-C and stop: driver vs baselines A and B, {reps} rounds")
    # with its left_behind
    results["session"] = host.run_probe("session", "--reps", str(reps), "--seed", seed)


def st_submit(results: dict[str, Any], quick: bool) -> None:
    pairs = 6 if quick else results["method"]["submit_pairs"]
    seed = str(results["method"]["phase_seed"])
    stage(f"the driver's early submit vs session.yml's own submit task, {pairs} pairs")
    results["submit"] = host.run_probe("submit", "--reps", str(pairs), "--seed", seed)


def st_profile(results: dict[str, Any], quick: bool) -> None:
    stage("profile: one traced driver session (phases, ssh invocations, Ansible tasks)")
    results["profile"] = host.run_probe_module("bench.profile")


def st_sched(results: dict[str, Any], quick: bool) -> None:
    pend, run = (30, 60) if quick else (PENDING_S, RUNNING_S)
    stage(f"scheduler RPCs (sdiag): {pend} s PENDING behind a full cluster, {run} s RUNNING")
    results["sched"] = sched.run(pend, run)


def st_throughput(results: dict[str, Any], quick: bool) -> None:
    stage("tunnel throughput, 256 MiB through Jupyter's /files/")
    results["throughput"] = host.run_probe("throughput", "--reps", "1" if quick else "3")


def st_setup(results: dict[str, Any], quick: bool) -> None:
    stage("setup re-run (changed=0)")
    results["setup"] = host.run_probe("setup", "--reps", "1" if quick else "3")


def st_concurrent(results: dict[str, Any], quick: bool) -> None:
    n = 6 if quick else 20
    stage(f"{n} concurrent sessions")
    results["concurrent"] = host.run_probe("concurrent", "--n", str(n))  # with its left_behind


STAGES = {
    "session": st_session,
    "submit": st_submit,
    "profile": st_profile,
    "sched": st_sched,
    "throughput": st_throughput,
    "setup": st_setup,
    "concurrent": st_concurrent,
}


def method(rounds: int = ROUNDS, seed: int = 0) -> dict[str, Any]:
    """The parameters of the measurement (the docs quote them from here, never by hand)."""
    from bench import baseline, profile, scen_session

    return {
        "rounds": rounds,
        "pending_window_s": PENDING_S,
        "running_window_s": RUNNING_S,
        "squeue_poll_s": baseline.SQUEUE_POLL_S,
        "file_poll_s": baseline.FILE_POLL_S,
        "http_poll_s": baseline.HTTP_POLL_S,
        "profile_hold_s": profile.HOLD_S,
        "phase_span_s": scen_session.PHASE_SPAN_S,
        "pass_s": scen_session.PASS_S,
        "pass_fresh_s": scen_session.PASS_FRESH_S,
        "phase_strata": scen_session.PHASE_STRATA,
        "phase_seed": seed,
        "attempts": scen_session.ATTEMPTS,
        "submit_pairs": SUBMIT_PAIRS,
        "bootstrap": report.BOOTSTRAP,
        "targets": report.TARGETS,
    }


def measure(only: list[str], quick: bool, rounds: int, seed: int) -> dict[str, Any]:
    results: dict[str, Any] = {
        "quick": quick,
        "mode": "quick mode (fewer repetitions)" if quick else "full run",
        "machine": {**host.machine(), **host.code_state()},
        "method": method(rounds, seed),
    }
    for name, fn in STAGES.items():
        if name in only:
            guarded_stage(results, name, lambda fn=fn: fn(results, quick))
    results["activity"] = ACTIVITY
    return results


def summarize(results: dict[str, Any]) -> list[report.Row]:
    """Figures and rows into the results (so the page's every number is in last-run.json)."""
    results["figures"] = report.figures(results)
    rows = report.rows(results["figures"], results.get("errors"))
    results["rows"] = report.row_dicts(rows)
    results["activity_max"] = activity_max(results.get("activity", []))
    return rows


def activity_max(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """The busiest sample of each kind: other engineers' jobs, tests, chaos loops, load."""
    keys = ("load_1min", "jobs_in_queue", "pytest_runs", "chaos_runs")
    return {k: max((a.get(k, 0) for a in samples), default=0) for k in keys}


def write(results: dict[str, Any], output: Path | None = None) -> None:
    """bench/last-run.json and the page; with ``output``, that file only."""
    (output or RUN_RESULTS).write_text(report.raw_json(results) + "\n")
    if output is None:
        docs.write()


def refigure() -> int:
    """Figures, rows and page again from bench/last-run.json's raw values (no sandbox)."""
    results = json.loads(RUN_RESULTS.read_text())
    print(report.table(summarize(results)))
    write(results)
    print(f"\nwrote {RUN_RESULTS.relative_to(REPO)} and {PAGE.relative_to(REPO)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer repetitions, 6 sessions at once")
    p.add_argument("--only", default=",".join(ALL), help=f"comma list of {', '.join(ALL)}")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--no-write", action="store_true", help="print only; leave the docs alone")
    out.add_argument(
        "--output",
        type=Path,
        help="write the results to this file instead (bench/last-run.json and the page stay)",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=ROUNDS,
        help=f"rounds of the session stage, a multiple of 10 (whole Williams designs; {ROUNDS})",
    )
    p.add_argument("--seed", type=int, help="seed of the pauses' strata (default: drawn anew)")
    p.add_argument("--refigure", action="store_true", help="figures again from last-run.json")
    args = p.parse_args(argv)
    if args.refigure:
        return refigure()
    if args.rounds < 10 or args.rounds % 10:
        p.error(f"--rounds {args.rounds}: give a multiple of 10 (10, 20, 30, ...)")
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with nohup/&
    only = [x for x in args.only.split(",") if x]
    unknown = set(only) - set(ALL)
    if unknown:
        p.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    started = f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M}"
    host.ensure_sandbox()
    host.ensure_setup()
    host.compile_driver()
    seed = secrets.randbits(32) if args.seed is None else args.seed
    try:
        results = measure(only, args.quick, args.rounds, seed)
    except KeyboardInterrupt:
        print("bench: interrupted; cleaned up", file=sys.stderr)
        return 130
    finally:
        host.cancel_fill()
    results["started"] = started
    results["machine_end"] = host.code_state()  # others work in the same tree
    rows = summarize(results)
    print()
    print(report.table(rows))
    left = {k: v.get("left_behind") for k, v in results.items() if isinstance(v, dict)}
    for name, problems in left.items():
        if problems:
            print(f"\n{name}: left behind: " + "; ".join(problems))
    if args.output is not None:
        write(results, args.output)
        print(f"\nwrote {args.output}")
    elif not args.no_write:
        write(results)
        print(f"\nwrote {PAGE.relative_to(REPO)} and {RUN_RESULTS.relative_to(REPO)}")
    docs.check_commit()  # prints whether the stored results measured HEAD's code
    return 0


if __name__ == "__main__":
    sys.exit(main())
