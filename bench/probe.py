"""Runs inside the sandbox's laptop namespace (where the driver runs): one scenario, JSON out.

    python -m bench.probe SCENARIO [--reps N] ...

bench/run.py starts it with `sandbox/cluster.py exec laptop --`; the last stdout line is the
result, with what the scenario left behind (`left_behind`: its jobs, processes, files, ports;
tests/harness/leftovers.py), looked for once its drivers have ended and before everything it
started is undone (bench/guard.py).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.guard import guarded


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.probe")
    scenarios = ("session", "submit", "throughput", "concurrent", "hold", "setup")
    p.add_argument("scenario", choices=scenarios)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--seed", type=int, default=0, help="session, submit: seed of the pauses")
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--size-mib", type=int, default=256)
    p.add_argument("--modes", default="jump,hops,via-login")
    args = p.parse_args(argv)
    # Started in the background (nohup, `&` without job control) SIGINT is inherited as
    # ignored, and so would be the drivers' Ctrl-C: handle it, so children get the default.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    result: dict[str, Any]
    with tempfile.TemporaryDirectory(prefix="nbb-state-") as tmp, guarded() as guard:
        state = Path(tmp)
        if args.scenario == "session":
            from bench import scen_session

            result = scen_session.run(guard, args.reps, state, args.seed)
        elif args.scenario == "submit":
            from bench import scen_submit

            result = scen_submit.run(guard, args.reps, state, args.seed)
        elif args.scenario == "throughput":
            from bench import scen_throughput

            result = scen_throughput.run(guard, args.reps, args.size_mib, args.modes, state)
        elif args.scenario == "concurrent":
            from bench import scen_concurrent

            result = scen_concurrent.run(guard, args.n, state)
        elif args.scenario == "hold":
            from bench import scen_hold

            result = scen_hold.run(guard, state)
        else:
            from bench import scen_setup

            result = scen_setup.run(args.reps)
        if guard.drivers or guard.jobs:
            result["left_behind"] = guard.left_behind()
            result["removed_after_check"] = guard.remove_runtime_dirs()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
