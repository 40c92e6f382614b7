"""Time to notebook, Ctrl-C and `nodebook stop` to job gone: the driver against two hand-written
baselines, interleaved round by round.

Each round runs five kinds, in an order from a Williams design (every kind takes every position
and follows every other kind equally often over 2 x 5 rounds), so that slow drift and the
session before (its job's end moves Slurm's scheduling pass) hit all alike:

- driver: t0 = spawn of `nodebook session` (the venv's console script, as a user types it);
  ready = arrival of its `ready` line (the driver emits it after its own first HTTP 200 through
  the tunnel; the probe checks one more 200). Then Ctrl-C: SIGINT to the driver's process
  group, as a terminal sends it.
- stop: the same session, ended by `nodebook stop JOB` (the venv's console script, as a user
  types it; spawned at t0 of the stop).
- sigint: the same session, ended by SIGINT to the driver's pid only (not its process group):
  a diagnostic beside Ctrl-C, which also reaches the driver's children.
- baseline A: nodebook's job script submitted by hand (bench/baseline.py).
- baseline B: `jupyter lab` with its defaults from a hand-written batch script, same venv.

"Gone", as the user sees it: `squeue -h -j JOB` polled from the laptop over the bench's ssh
master, back to back (bench.common.gone_after); the figure is the arrival of the first answer
without the job minus the time of the signal (or of the stop's spawn, or of the moment the
baselines' bare `scancel` is sent over their master). Every ssh the driver runs goes through a
logging wrapper first on its PATH (tests/harness/sshlog.py): each round reports the
connections it opened and its remote round trips, and when the cleanup's first remote command
started.

Every session of a round is spawned at the same phase of slurmctld's scheduling pass (predicted
from the allocations in its log, ``wait_for_phase``): its round's offset after a pass, from a
stratum drawn per run (``phase_strata``, seeded; the seed and each round's stratum are in the
results), not from the round's row of the Williams design. A session that
fails (it never reached `ready`, or its end could not be timed) is redone, up to ATTEMPTS in
all; every failed attempt is recorded and a kind that failed them all leaves its round out
(report.py counts both and fails the verdicts they touch).
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.baseline import MANUAL_JOB_NAME, BaselineSession, manual_script
from bench.common import gone_after, sandbox_cluster, squeue_lists
from bench.guard import Guard, log
from driver.errors import ExitCode
from tests.harness import sshlog
from tests.harness.alive import http_status, token_of
from tests.harness.driver import COMMAND, DriverProcess, RssSampler
from tests.harness.sandbox import INVENTORY, REPO, STATE

# No --allow-second: the rounds run one after another (each confirms its job left the queue),
# and the session measured is the default one (a socket endpoint, the early tunnel); with
# --allow-second Jupyter listens on the node's loopback instead (a session that may share a node).
SESSION_ARGS = ["session", "--cluster", "sandbox", "--no-browser"]
# slurmctld starts a submitted job on a scheduling pass, not at once: every session starts after
# an untimed pause, the same for every kind of a round, drawn from PHASE_STRATA equal parts of
# PHASE_SPAN_S, so that the kind that submits sooner does not catch the pass more often than
# chance (docs/benchmarks.md, "Time to notebook"). PHASE_SPAN_S is a setting, not a
# measurement.
PHASE_SPAN_S = 1.0
PHASE_STRATA = 10
KINDS = ("driver", "stop", "baseline_a", "baseline_b", "sigint")
ATTEMPTS = 3  # a failed session is redone up to this many attempts in all (each one counted)
MANUAL_SCRIPT = f"{MANUAL_JOB_NAME}.sbatch"  # in the user's home, for baseline B


def gone_seen(guard: Guard, job_id: str, act: Callable[[], None]) -> dict[str, Any]:
    """act() (it must not wait), timed to the job's leaving squeue as polled from the laptop
    over the bench's master (bench.common.gone_after)."""
    return gone_after(squeue_lists(guard.observer("alice"), job_id), act)


def check_200(port: int, token: str) -> None:
    status = http_status(port, token)
    if status != "200":
        raise RuntimeError(f"tunnel on {port}: HTTP {status}")


def warm_inventory(state_dir: Path, cluster: str = "sandbox") -> None:
    """Resolve the inventory once into the state dir's cache, as any earlier session has.

    Only the first session after an inventory edit pays for `ansible-inventory` (the profile
    stage runs with a cold cache and shows that cost).
    """
    code = (
        "import sys; from pathlib import Path; from driver.inventory import load_cluster; "
        "load_cluster(Path(sys.argv[1]), sys.argv[2])"
    )
    env = {**os.environ, "NODEBOOK_STATE_DIR": str(state_dir)}
    argv = [sys.executable, "-c", code, str(INVENTORY), cluster]
    subprocess.run(argv, cwd=REPO, env=env, check=True, timeout=120)


def _event_times(drv: DriverProcess) -> dict[str, float]:
    """Arrival time of the first event of each kind."""
    out: dict[str, float] = {}
    for event, t in zip(drv.events, drv.arrivals, strict=False):
        out.setdefault(str(event.get("event")), t)
    return out


def driver_round(guard: Guard, state: Path, end: str) -> dict[str, Any]:
    """One driver session to ready, ended by Ctrl-C (end="ctrl_c": SIGINT to its process
    group, as a terminal sends it), SIGINT to the driver's pid only (end="sigint", a
    diagnostic) or `nodebook stop` (end="stop")."""
    with RssSampler() as sampler, tempfile.TemporaryDirectory(prefix="nbb-ssh-") as tmp:
        ssh = sshlog.SshLog(Path(tmp))
        env = ssh.env(os.environ["PATH"])
        # `nodebook session`, the venv's console script, as a user types it (`python -m driver`
        # would also load runpy: a few ms more at every start)
        drv = guard.driver(DriverProcess(SESSION_ARGS, state_dir=state, env=env, module=COMMAND))
        sampler.roots = [drv.pid]
        try:
            return _driver_round(guard, drv, sampler, ssh, state, end)
        except BaseException as exc:
            alive = drv.poll() is None
            drv.interrupt()  # it cancels its own job
            drv.reap()
            exc.add_note(json.dumps(attempt_trace(drv, ssh, alive)))  # kept with the redo
            raise


def attempt_trace(drv: DriverProcess, ssh: sshlog.SshLog, alive: bool) -> dict[str, Any]:
    """What a failed attempt's driver did, for the results: whether it still ran when the
    attempt failed, its exit code, its events and remote commands (seconds after its spawn)
    and the end of its stderr."""
    t0 = drv.started
    events = [f"{t - t0:.3f} {e.get('event')}: {str(e.get('message') or '')[:160]}"
              for e, t in zip(drv.events, drv.arrivals, strict=False)]  # fmt: skip
    calls = [f"{c.t - t0:.3f} {c.helper_command() or 'ssh'}" for c in ssh.read()]
    return {"alive_at_failure": alive, "rc": drv.rc, "events": events[-20:],
            "remote": calls[-20:], "stderr": drv.stderr[-1500:]}  # fmt: skip


def _first_helper(calls: list[sshlog.Invocation], after: float, names: tuple[str, ...]) -> float:
    """Time of the first remote helper command named one of `names` after `after` (or nan)."""
    for c in sorted(calls, key=lambda c: c.t):
        if c.t >= after and c.helper_command() in names:
            return c.t
    return float("nan")


def _driver_round(
    guard: Guard,
    drv: DriverProcess,
    sampler: RssSampler,
    ssh: sshlog.SshLog,
    state: Path,
    end: str,
) -> dict[str, Any]:
    sub = drv.wait_event("submitted", 120)
    guard.job(str(sub["job_id"]), "alice")
    t_ready, ready = drv.wait_timed("ready", 300)
    check_200(int(ready["data"]["local_port"]), token_of(ready))
    job_id = str(ready["job_id"])
    times = _event_times(drv)
    stop: DriverProcess | None = None
    stop_log = sshlog.SshLog(Path(tempfile.mkdtemp(prefix="nbb-ssh-stop-")))
    if end in ("ctrl_c", "sigint"):
        seen = gone_seen(guard, job_id, drv.ctrl_c if end == "ctrl_c" else drv.interrupt)
    else:
        holder: list[DriverProcess] = []

        def spawn_stop() -> None:
            env = stop_log.env(os.environ["PATH"])
            args = ["stop", job_id, "--cluster", "sandbox"]
            typed = DriverProcess(args, state_dir=state, env=env, module=COMMAND)  # `nodebook`
            holder.append(guard.driver(typed))

        seen = gone_seen(guard, job_id, spawn_stop)
        stop = holder[0]
    t_end = seen["t0"]
    if stop is not None:  # both exits are timed: poll both until both have ended
        deadline = time.monotonic() + 120
        while (stop.poll() is None or drv.poll() is None) and time.monotonic() < deadline:
            time.sleep(0.01)
        stop.reap()
    rc = drv.reap()
    calls = ssh.read()
    expected = ExitCode.OK if end == "stop" else ExitCode.INTERRUPTED
    result: dict[str, Any] = {
        # a wrong exit code keeps what the driver said and did (report.py counts it)
        **({"trace": attempt_trace(drv, ssh, False)} if rc != expected else {}),
        "job_id": job_id,
        "end": end,
        "ttn": t_ready - drv.started,
        "steps": {
            "submitted": times.get("submitted", float("nan")) - drv.started,
            "first_state": min(
                (times[k] for k in ("pending", "running") if k in times), default=float("nan")
            )
            - drv.started,
            "running": times.get("running", float("nan")) - drv.started,
            "ready": t_ready - drv.started,
        },
        "gone_seen": seen["gone"],
        "gone_polls": seen["polls"],
        "gone_poll_s": seen["poll_s"],
        "exit": (drv.ended or time.time()) - t_end,
        "rc": rc,
        "peak_tree_rss_kib": sampler.peak_kib,
        "peak_tree_procs": sampler.peak_procs,
        "maxrss_single_kib": drv.maxrss_kib,
        "cpu_s": drv.cpu_s,
        "events": [e.get("event") for e in drv.events],
    }
    # the signal, or the stop's spawn -> the cleanup's first remote command (the scancel)
    # started: by the driver either way (`nodebook stop` asks the session's driver)
    result["to_cancel_sent"] = _first_helper(calls, t_end, ("cancel",)) - t_end
    if end in ("ctrl_c", "sigint"):
        result["ssh"] = {
            **sshlog.counts(calls),
            "phases": sshlog.phases(
                calls, {"start": drv.started, "hold": t_ready, "cleanup": t_end}
            ),
            "helper_commands": sshlog.helper_commands(calls),
        }
    else:
        assert stop is not None
        result["stop_rc"] = stop.reap()
        if result["stop_rc"] != ExitCode.OK:
            result["stop_trace"] = {"events": stop.events[-10:], "stderr": stop.stderr[-1500:]}
        stop_calls = stop_log.read()
        result["stop_exit"] = (stop.ended or time.time()) - t_end
        result["stop_ssh"] = {
            **sshlog.counts(stop_calls),
            "helper_commands": sshlog.helper_commands(stop_calls),
        }
    shutil.rmtree(stop_log.dir, ignore_errors=True)
    return result


def baseline_round(guard: Guard, kind: str, script: str) -> dict[str, Any]:
    base = BaselineSession("alice", kind=kind[-1], script=script)
    guard.undo.append(base.close)
    t0 = time.time()
    try:
        t_ok = base.start()
        assert base.job_id is not None
        guard.job(base.job_id, "alice")
        seen = gone_seen(guard, base.job_id, base.cancel)
    finally:
        base.close()
    steps = {k: v - t0 for k, v in base.steps.items()}
    return {"job_id": base.job_id, "ttn": t_ok - t0, "steps": steps, "gone_seen": seen["gone"],
            "gone_polls": seen["polls"], "gone_poll_s": seen["poll_s"]}  # fmt: skip


def prepare_manual(guard: Guard) -> str:
    """Write baseline B's batch script into alice's home; its path."""
    obs = guard.observer("alice")
    setup = json.loads(obs.run('cat "$HOME/.nodebook/setup.json"').stdout)
    home = obs.run('printf %s "$HOME"').stdout.strip()
    path = f"{home}/{MANUAL_SCRIPT}"
    text = manual_script(setup, home)
    done = obs.run(f"cat > {shlex.quote(path)}", input=text)
    if done.returncode != 0:
        raise RuntimeError(f"could not write {path}: {done.stderr}")
    # `jupyter lab` with its defaults keeps a cookie secret in the user's runtime dir: remove
    # that dir afterwards if the benchmark created it
    runtime = f"{home}/.local/share/jupyter/runtime"
    existed = obs.run(f"test -e {shlex.quote(runtime)}").returncode == 0
    undo = f"rm -f {shlex.quote(path)}" + ("" if existed else f"; rm -rf {shlex.quote(runtime)}")
    guard.undo.append(lambda: obs.run(undo) and None)
    return path


def run(guard: Guard, reps: int, state: Path, seed: int) -> dict[str, Any]:
    out: dict[str, Any] = {k: [] for k in KINDS}
    failed: list[dict[str, Any]] = []
    warm_inventory(state)  # a user's every session but the first after an inventory edit
    sandbox_cluster("alice")  # the baselines' and the observer's masters: read once, untimed
    script = prepare_manual(guard)
    orders = williams(len(KINDS))
    strata = phase_strata(reps, seed)
    for i in range(reps):
        # a balanced order: slow drift, the position in the round and the session just
        # before (its job's end moves Slurm's scheduling pass) hit every kind alike
        order = [KINDS[k] for k in orders[i % len(orders)]]
        pause = phase_delay(strata[i])
        for position, which in enumerate(order):
            for attempt in range(ATTEMPTS):
                try:
                    phase = wait_for_phase(pause)
                    res = one_round(guard, state, which, script)
                    after = order[position - 1] if position else None
                    res.update(round=i, position=position, stratum=strata[i], attempt=attempt,
                               phase_delay=pause, after=after, **phase)  # fmt: skip
                    out[which].append(res)
                    break
                except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as exc:
                    traces = [json.loads(n) for n in getattr(exc, "__notes__", [])]
                    failed.append({"round": i, "kind": which, "attempt": attempt,
                                   "error": str(exc)[:300], "trace": traces})  # fmt: skip
                    log(f"rep {i + 1}/{reps} {which} attempt {attempt + 1} failed: {exc}"[:300])
            log_round(i, reps, which, out[which])
    return {**out, "rounds": reps, "order": "williams", "phase_seed": seed,
            "phase_strata": strata, "failed_attempts": failed}  # fmt: skip


def phase_strata(rounds: int, seed: int) -> list[int]:
    """The pause's stratum for each round, drawn from ``seed``: a Latin square over the position
    in a block of PHASE_STRATA rounds (which is the round's row of the Williams design, 10 rows
    for 5 kinds) and the blocks, with its rows, columns and symbols shuffled. Each block takes
    every stratum once; each row meets a different stratum in each block; which row meets which
    stratum is the draw's, not the design's."""
    rng = random.Random(seed)
    n, out = PHASE_STRATA, []
    while len(out) < rounds:
        pos, blocks, symbol = (rng.sample(range(n), n) for _ in range(3))
        for b in blocks:
            out += [symbol[(pos[r] + b) % n] for r in range(n)]
    return out[:rounds]


def phase_delay(stratum: int) -> float:
    """The offset of each session of a round in this stratum after slurmctld's pass: its middle
    (and the pause before it when no pass is known, ``pass_wait``)."""
    return PHASE_SPAN_S * (stratum + 0.5) / PHASE_STRATA


SLURMCTLD_LOG = STATE / "log" / "slurmctld.log"
PASS_S = 1.0  # slurmctld's background loop: a pass about once a second (it drifts ~3 ms/s)
PASS_FRESH_S = 60.0  # a pass older than this predicts the next one too poorly (the drift)
_LOG_LINE = re.compile(
    r"^\[(\S+)\] (?:_slurm_rpc_submit_batch_job: JobId=(\d+) |sched: Allocate JobId=(\d+) )"
)


def pass_times(text: str) -> list[float]:
    """slurmctld's scheduling passes seen in its log: the times of its allocations, except those
    made at submission (within 20 ms of the job's submit line), oldest first."""
    submitted: dict[str, float] = {}
    passes = []
    for line in text.splitlines():
        m = _LOG_LINE.match(line)
        if not m:
            continue
        try:
            t = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f").timestamp()
        except ValueError:
            continue
        if m.group(2):
            submitted[m.group(2)] = t
        elif t - submitted.get(str(m.group(3)), -1e9) >= 0.02:
            passes.append(t)
    return passes


def pass_wait(passes: list[float], now: float, offset: float) -> tuple[float, bool]:
    """Seconds to wait so that a spawn lands ``offset`` s after one of slurmctld's passes,
    predicted from the latest one seen (one every PASS_S); True when it was predicted. Without a
    recent pass, ``offset`` itself (as a pause) and False."""
    if not passes or now - passes[-1] > PASS_FRESH_S:
        return offset, False
    k = math.ceil((now - offset - passes[-1]) / PASS_S)
    return max(0.0, passes[-1] + k * PASS_S + offset - now), True


def wait_for_phase(offset: float) -> dict[str, Any]:
    """Wait until ``offset`` s after slurmctld's next pass; what was waited and whether the
    pass was known (for the results)."""
    try:
        with open(SLURMCTLD_LOG, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 65536))
            text = f.read().decode(errors="replace")
    except OSError:
        text = ""
    wait, locked = pass_wait(pass_times(text), time.time(), offset)
    time.sleep(wait)
    return {"phase_wait": wait, "phase_locked": locked}


def williams(n: int) -> list[list[int]]:
    """A Williams design for n kinds: orders in which every kind takes every position equally
    often and follows every other kind equally often (n orders for even n, 2n for odd n)."""
    first, lo, hi = [0], 1, n - 1
    while len(first) < n:
        first.append(lo)
        lo += 1
        if len(first) < n:
            first.append(hi)
            hi -= 1
    rows = [[(x + i) % n for x in first] for i in range(n)]
    return rows + [row[::-1] for row in rows] if n % 2 else rows


def one_round(guard: Guard, state: Path, which: str, script: str) -> dict[str, Any]:
    if which == "driver":
        return driver_round(guard, state, "ctrl_c")
    if which in ("stop", "sigint"):
        return driver_round(guard, state, which)
    return baseline_round(guard, which, script)


def log_round(i: int, reps: int, which: str, done: list[dict[str, Any]]) -> None:
    if done and done[-1].get("round") == i:
        r = done[-1]
        log(
            f"rep {i + 1}/{reps} {which}: {r['ttn']:.2f} s to notebook, "
            f"end -> gone (seen from the laptop) {r['gone_seen']:.2f} s"
        )
