"""Raw results -> figures -> rows with verdicts (a table on stdout, docs/benchmarks.md).

Every stage has a ``*_figures(raw) -> dict`` (the numbers the report shows, stored in
bench/last-run.json under "figures", so every number of the page is in that file) and a
``*_rows(figures) -> [Row]``. A row with a target says "met" only when the figure was measured
and meets it; anything else (missed, not measured, a check that failed) says MISSED. Rows
without a target say "-".
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from bench.common import median

TARGETS = {
    # driver / baseline A (nodebook's job script by hand), upper CI bound (issue 20, item 5)
    "ratio_a": 1.00,
    # driver / baseline B (`jupyter lab` with its defaults), upper CI bound (issue 20, item 5)
    "ratio_b": 0.90,
    "ctrl_c_gone_s": 0.3,  # median, Ctrl-C -> job gone from squeue (polled from the laptop)
    # Ctrl-C -> gone minus a bare scancel -> gone, both seen from the laptop: difference of the
    # medians, upper CI bound (issue 20, item 5)
    "ctrl_c_vs_scancel_s": 0.1,
    "stop_gone_s": 0.3,  # median, `nodebook stop` spawned -> job gone
    # `nodebook stop` -> gone minus a bare scancel -> gone, as Ctrl-C's (issue 20, item 5)
    "stop_vs_scancel_s": 0.1,
    "first_state_s": 2.0,  # submitted -> first pending (or running) event, behind a full cluster
    "pending_rpm": 12.0,  # the session's user's RPCs per minute while PENDING (sdiag)
    "running_rpm": 1.0,  # ... while RUNNING
    "throughput_ratio": 0.8,  # driver's tunnel / one ssh -L
    "setup_s": 15.0,  # setup re-run, median seconds (and changed=0 in every run)
}
BOOTSTRAP = {"resamples": 10000, "level": 0.95, "seed": 13}


@dataclass
class Row:
    figure: str
    value: str
    baseline: str
    target: str
    met: bool | None  # None: no target

    @property
    def verdict(self) -> str:
        return {True: "met", False: "MISSED", None: "-"}[self.met]


def _f(x: float | None, unit: str = "s", nd: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.{nd}f} {unit}".strip()


def _ok(x: float | None) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def _le(x: float | None, target: float) -> bool:
    """Measured and at most the target (not measured: False, i.e. MISSED)."""
    return _ok(x) and x <= target  # type: ignore[operator]


def stats(values: list[float]) -> dict[str, Any]:
    vals = [v for v in values if _ok(v)]
    if not vals:
        return {"n": 0, "median": None, "min": None, "max": None}
    return {"n": len(vals), "median": median(vals), "min": min(vals), "max": max(vals)}


def _spread(s: dict[str, Any], unit: str = "s", nd: int = 2) -> str:
    if not s["n"]:
        return "n/a"
    return f"{_f(s['median'], unit, nd)} ({s['min']:.{nd}f}-{s['max']:.{nd}f}, n={s['n']})"


# -- bootstrap ----------------------------------------------------------------------------------


def ratio_of_medians(a: list[float], b: list[float]) -> float:
    return median(a) / median(b)  # type: ignore[operator]


def diff_of_medians(a: list[float], b: list[float]) -> float:
    return median(a) - median(b)  # type: ignore[operator]


Stat = Callable[[list[float], list[float]], float]


def bootstrap(
    rounds: list[tuple[list[float], list[float]]],
    stat: Stat = ratio_of_medians,
    resamples: int = BOOTSTRAP["resamples"],
    level: float = BOOTSTRAP["level"],
    seed: int = BOOTSTRAP["seed"],
) -> dict[str, Any]:
    """``stat`` of the pooled values of the rounds (driver side, baseline side) and its
    percentile bootstrap interval, resampling whole rounds: a round's values on both sides are
    drawn together (they were interleaved). Deterministic for a given seed."""
    rounds = [(a, b) for a, b in rounds if a and b and all(map(_ok, a + b))]
    n = len(rounds)
    if n < 2:
        return {"n": n, "estimate": None, "lo": None, "hi": None, "level": level}

    def of(sample: list[tuple[list[float], list[float]]]) -> float:
        a: list[float] = []
        b: list[float] = []
        for x, y in sample:
            a += x
            b += y
        return stat(a, b)

    rng = random.Random(seed)
    boots = sorted(of(rng.choices(rounds, k=n)) for _ in range(resamples))
    lo_i = math.floor((1 - level) / 2 * resamples)
    hi_i = math.ceil((1 + level) / 2 * resamples) - 1
    return {"n": n, "estimate": of(rounds), "lo": boots[lo_i], "hi": boots[hi_i], "level": level}


# -- time to notebook, Ctrl-C, stop -------------------------------------------------------------

KINDS = ("driver", "stop", "baseline_a", "baseline_b", "sigint")
# The driver's three kinds start a session the same way and differ only in its end (Ctrl-C,
# `nodebook stop`, SIGINT to the pid): the time to notebook pools them per round.
STARTS = ("driver", "stop", "sigint")
# Which kinds each verdict of the stage rests on; a redone or a dropped session of one of them
# fails it, and so does any dropped round for a figure that pairs rounds.
USES = {
    "ratio_a": ((*STARTS, "baseline_a"), True),
    "ratio_b": ((*STARTS, "baseline_b"), True),
    "ctrl_c": (("driver",), False),
    "ctrl_c_vs_scancel": (("driver", "baseline_a"), True),
    "stop": (("stop",), False),
    "stop_vs_scancel": (("stop", "baseline_a"), True),
    "exit_codes": (STARTS, False),
}


def integrity(res: dict[str, Any]) -> dict[str, Any]:
    """The stage's failed attempts (each one redone, or the last of a kind's round) per kind,
    the rounds each kind is missing (dropped) and the rounds every kind completed."""
    done = {k: {int(r["round"]) for r in res.get(k, []) if "round" in r} for k in KINDS}
    n = res.get("rounds") or 1 + max((max(v, default=-1) for v in done.values()), default=-1)
    fails = res.get("failed_attempts", res.get("failed_rounds", []))  # (the old name: strings)

    def kind(f: Any) -> str:
        return str(f["kind"]) if isinstance(f, dict) else str(f).split(":", 1)[0]

    dropped = {k: [i for i in range(n) if i not in done[k]] for k in KINDS}
    return {
        "rounds": n,
        "redone": {k: sum(1 for f in fails if kind(f) == k) for k in KINDS},
        "dropped": {k: len(v) for k, v in dropped.items()},
        "dropped_rounds": len({i for v in dropped.values() for i in v}),
        "complete": [i for i in range(n) if all(i in done[k] for k in KINDS)],
    }


def verdict_integrity(integ: dict[str, Any], use: str) -> dict[str, Any]:
    """Redone and dropped sessions behind one verdict: any of them fails it."""
    kinds, paired = USES[use]
    redone = sum(integ["redone"][k] for k in kinds)
    dropped = integ["dropped_rounds"] if paired else sum(integ["dropped"][k] for k in kinds)
    return {"redone": redone, "dropped": dropped, "clean": redone == 0 and dropped == 0}


def _values(res: dict[str, Any], kind: str, key: str, rounds: list[int]) -> list[list[float]]:
    """Per round of ``rounds``, the value of ``key`` of that kind's session (a list of one)."""
    by_round = {int(r["round"]): r.get(key, math.nan) for r in res.get(kind, []) if "round" in r}
    return [[by_round[i]] for i in rounds]


def _pooled(res: dict[str, Any], kinds: tuple[str, ...], key: str, rounds: list[int]) -> list:
    per_kind = [_values(res, k, key, rounds) for k in kinds]
    return [[v for vals in round_vals for v in vals] for round_vals in zip(*per_kind, strict=True)]


def _step(rounds: list[dict[str, Any]], end: str, start: str | None) -> dict[str, Any]:
    vals = []
    for r in rounds:
        s = r.get("steps", {})
        a, b = s.get(end), s.get(start) if start else 0.0
        if _ok(a) and _ok(b):  # (a step not seen: NaN, or null once stored)
            vals.append(a - b)
    return stats(vals)


def session_figures(res: dict[str, Any]) -> dict[str, Any]:
    integ = integrity(res)
    complete = integ["complete"]
    ttn = {k: stats([r["ttn"] for r in res.get(k, [])]) for k in KINDS}
    ttn["starts"] = stats([r["ttn"] for k in STARTS for r in res.get(k, [])])
    gone = {k: stats([r.get("gone_seen", math.nan) for r in res.get(k, [])]) for k in KINDS}
    starts = _pooled(res, STARTS, "ttn", complete)
    base = {k: _values(res, k, "ttn", complete) for k in ("baseline_a", "baseline_b")}
    by_kind = {}
    for k in STARTS:  # each end's sessions alone, beside the pooled verdict (no interval)
        mine = [v for (v,) in _values(res, k, "ttn", complete)]
        by_kind[k] = {
            f"ratio_{b[-1]}": ratio_of_medians(mine, [v for (v,) in base[b]]) if mine else None
            for b in base
        }
    ctrl_c, stop_gone, scancel = (
        _values(res, k, "gone_seen", complete) for k in ("driver", "stop", "baseline_a")
    )
    steps = {}
    for k in ("driver", "baseline_a", "baseline_b"):  # the driver: its three kinds pooled
        rounds = [r for j in STARTS for r in res.get(j, [])] if k == "driver" else res.get(k, [])
        steps[k] = {
            "submitted": _step(rounds, "submitted", None),
            "submitted_to_running": _step(rounds, "running", "submitted"),
            "running_to_ready": _step(rounds, "ready", "running"),
            "running_to_endpoint": _step(rounds, "endpoint", "running"),
            "endpoint_to_ready": _step(rounds, "ready", "endpoint"),
            "master": _step(rounds, "master", None),
            "ready": _step(rounds, "ready", None),
        }
    drv, stop, sig = res.get("driver", []), res.get("stop", []), res.get("sigint", [])
    end = {
        "ctrl_c_to_cancel_sent": stats([r.get("to_cancel_sent", math.nan) for r in drv]),
        "ctrl_c_to_exit": stats([r.get("exit", math.nan) for r in drv]),
        "sigint_to_cancel_sent": stats([r.get("to_cancel_sent", math.nan) for r in sig]),
        "sigint_to_exit": stats([r.get("exit", math.nan) for r in sig]),
        "stop_to_cancel_sent": stats([r.get("to_cancel_sent", math.nan) for r in stop]),
        "stop_to_exit": stats([r.get("stop_exit", math.nan) for r in stop]),
        "ctrl_c_rc_wrong": sum(1 for r in drv + sig if r.get("rc") != 130),
        "stop_rc_wrong": sum(1 for r in stop if r.get("stop_rc") != 0),
        "stop_session_rcs": sorted({r.get("rc") for r in stop if r.get("rc") is not None}),
    }
    return {
        "rounds": integ["rounds"],
        "complete_rounds": len(complete),
        "redone": integ["redone"],
        "dropped": integ["dropped"],
        "dropped_rounds": integ["dropped_rounds"],
        "verdicts": {use: verdict_integrity(integ, use) for use in USES},
        "ttn": ttn,
        "gone": gone,
        "poll_s": stats([r.get("gone_poll_s", math.nan) for k in KINDS for r in res.get(k, [])]),
        "ratio_a": bootstrap([(a, b) for a, b in zip(starts, base["baseline_a"], strict=True)]),
        "ratio_b": bootstrap([(a, b) for a, b in zip(starts, base["baseline_b"], strict=True)]),
        "by_kind": by_kind,
        "ctrl_c_vs_scancel": bootstrap(list(zip(ctrl_c, scancel, strict=True)), diff_of_medians),
        "stop_vs_scancel": bootstrap(list(zip(stop_gone, scancel, strict=True)), diff_of_medians),
        "steps": steps,
        "end": end,
        "left_behind": len(res.get("left_behind", [])),
        "sessions": sum(len(res.get(k, [])) for k in KINDS),
        "phase_locked": sum(1 for k in KINDS for r in res.get(k, []) if r.get("phase_locked")),
    }


def _integrity_note(v: dict[str, Any]) -> str:
    return f"redone {v['redone']}, dropped {v['dropped']}"


def _ci_row(figure: str, r: dict[str, Any], v: dict[str, Any], base: str, target: str,
            bound: float, unit: str = "") -> Row:  # fmt: skip
    """A figure with its interval: met when the whole interval is at most ``bound`` and no
    session behind it was redone or dropped."""
    value = _ci_text(r, _integrity_note(v), unit)
    return Row(figure, value, base, f"{target}; none redone or dropped",
               _le(r["hi"], bound) and v["clean"])  # fmt: skip


def _ci_text(r: dict[str, Any], note: str, unit: str = "") -> str:
    """``bootstrap``'s estimate and interval, then ``note``: '0.42 s (95% CI 0.30 to 0.51,
    n=20; note)'."""
    if r["estimate"] is None:
        return f"n/a (n={r['n']}; {note})"
    pct = round(r["level"] * 100)
    sep = " to " if unit else "-"  # a difference may be negative
    return (
        f"{r['estimate']:.2f}{unit} ({pct}% CI {r['lo']:.2f}{sep}{r['hi']:.2f}, n={r['n']}; {note})"
    )


def _gone_row(figure: str, s: dict[str, Any], v: dict[str, Any], base: str, bound: float) -> Row:
    value = f"{_spread(s)[:-1]}; {_integrity_note(v)})" if s["n"] else f"n/a ({_integrity_note(v)})"
    return Row(figure, value, base,
               f"<= {bound:.1f} s median; none redone or dropped",
               _le(s["median"], bound) and v["clean"])  # fmt: skip


def session_rows(fig: dict[str, Any]) -> list[Row]:
    t, g, e, v = fig["ttn"], fig["gone"], fig["end"], fig["verdicts"]
    scancels = (f"{_f(g['baseline_a']['median'])} (A: scancel), "
                f"{_f(g['baseline_b']['median'])} (B: scancel)")  # fmt: skip
    redone, dropped = sum(fig["redone"].values()), fig["dropped_rounds"]
    rows = [
        Row("time to notebook, driver: its three kinds of session pooled (median, min-max)",
            _spread(t["starts"]), "-", "-", None),
        Row("time to notebook, baseline A: nodebook's job.sbatch by hand",
            _spread(t["baseline_a"]), "-", "-", None),
        Row("time to notebook, baseline B: jupyter lab with its defaults",
            _spread(t["baseline_b"]), "-", "-", None),
        _ci_row("time to notebook, ratio driver (pooled per round) / baseline A", fig["ratio_a"],
                v["ratio_a"], _f(t["baseline_a"]["median"]),
                f"<= {TARGETS['ratio_a']:.2f} (whole CI)", TARGETS["ratio_a"]),
        _ci_row("time to notebook, ratio driver (pooled per round) / baseline B", fig["ratio_b"],
                v["ratio_b"], _f(t["baseline_b"]["median"]),
                f"<= {TARGETS['ratio_b']:.2f} (whole CI)", TARGETS["ratio_b"]),
        _gone_row("Ctrl-C -> job gone from squeue, seen from the laptop (median, min-max)",
                  g["driver"], v["ctrl_c"], scancels, TARGETS["ctrl_c_gone_s"]),
        _ci_row("Ctrl-C -> gone minus a bare scancel -> gone, both seen from the laptop "
                "(difference of medians)", fig["ctrl_c_vs_scancel"], v["ctrl_c_vs_scancel"],
                f"{_f(g['baseline_a']['median'])} (A: scancel)",
                f"<= {TARGETS['ctrl_c_vs_scancel_s']:.1f} s (whole CI)",
                TARGETS["ctrl_c_vs_scancel_s"], " s"),
        _gone_row("`nodebook stop` -> job gone from squeue, seen from the laptop (median, "
                  "min-max)", g["stop"], v["stop"], f"{_f(g['baseline_a']['median'])} (A: "
                  "scancel)", TARGETS["stop_gone_s"]),
        _ci_row("`nodebook stop` -> gone minus a bare scancel -> gone, both seen from the laptop "
                "(difference of medians)", fig["stop_vs_scancel"], v["stop_vs_scancel"],
                f"{_f(g['baseline_a']['median'])} (A: scancel)",
                f"<= {TARGETS['stop_vs_scancel_s']:.1f} s (whole CI)",
                TARGETS["stop_vs_scancel_s"], " s"),
        Row("SIGINT to the driver's pid only -> job gone (diagnostic)", _spread(g["sigint"]),
            "-", "-", None),
        Row("Ctrl-C -> driver exited (median)", _f(e["ctrl_c_to_exit"]["median"]), "-", "-",
            None),
        Row("exit codes: Ctrl-C 130, stop 0 (wrong ones)",
            f"{e['ctrl_c_rc_wrong']} + {e['stop_rc_wrong']} ({_integrity_note(v['exit_codes'])})",
            "-", "0; none redone or dropped", e["ctrl_c_rc_wrong"] + e["stop_rc_wrong"] == 0
            and fig["rounds"] > 0 and v["exit_codes"]["clean"]),
        Row("session stage: sessions redone / rounds dropped / left behind",
            f"{redone} / {dropped} / {fig['left_behind']}", "-", "none of any",
            redone == 0 and dropped == 0 and fig["left_behind"] == 0),
    ]  # fmt: skip
    return rows


# -- the driver's early submit against the play's own -----------------------------------------

SUBMIT_KINDS = ("early", "play")  # bench/scen_submit.py: the driver as it is; the play submits
SUBMITTER = {"early": "driver", "play": "ansible"}  # who must run the helper's submit, once


def submit_figures(res: dict[str, Any]) -> dict[str, Any]:
    """Per kind, spawn -> `submitted` and -> `ready` (and -> the submit call sent); per pair,
    play minus early (difference of medians over the pairs both kinds completed, with its
    bootstrap interval over the pairs); what makes the pairs untrustworthy: sessions redone,
    pairs dropped, a submit run by the wrong one or not exactly once, a wrong exit code, what
    was left behind."""
    by_kind = {k: {int(r["round"]): r for r in res.get(k, [])} for k in SUBMIT_KINDS}
    n = int(res.get("pairs", 0))
    complete = [i for i in range(n) if all(i in by_kind[k] for k in SUBMIT_KINDS)]
    fails = res.get("failed_attempts", [])
    out: dict[str, Any] = {
        "pairs": n,
        "complete_pairs": len(complete),
        "seed": res.get("seed"),
        "redone": {k: sum(1 for f in fails if f["kind"] == k) for k in SUBMIT_KINDS},
        "dropped_pairs": n - len(complete),
        "wrong_submitter": sum(
            1 for k in SUBMIT_KINDS for r in res.get(k, [])
            if r.get("submit_calls") != [SUBMITTER[k]]
        ),
        "wrong_exit": sum(1 for k in SUBMIT_KINDS for r in res.get(k, []) if r.get("rc") != 130),
        "left_behind": len(res.get("left_behind", [])),
    }  # fmt: skip
    for key in ("submitted", "ready", "submit_sent"):
        out[key] = {k: stats([r.get(key, math.nan) for r in res.get(k, [])]) for k in SUBMIT_KINDS}
    for key in ("submitted", "ready"):
        play, early = by_kind["play"], by_kind["early"]
        paired = [([play[i].get(key, math.nan)], [early[i].get(key, math.nan)]) for i in complete]
        out[f"{key}_gain"] = bootstrap(paired, diff_of_medians)
    return out


def submit_rows(fig: dict[str, Any]) -> list[Row]:
    redone = sum(fig["redone"].values())
    note = f"redone {redone}, dropped {fig['dropped_pairs']}"
    rows = []
    for key, what in (("submitted", "`submitted`"), ("ready", "`ready`")):
        s = fig[key]
        rows.append(
            Row(f"early submit's gain, spawn -> {what}: session.yml's submit task minus the "
                "driver's early submit (difference of medians over the pairs)",
                _ci_text(fig[f"{key}_gain"], note, " s"),
                f"{_f(s['early']['median'])} (early), {_f(s['play']['median'])} (play)",
                "-", None)
        )  # fmt: skip
    counts = (redone, fig["dropped_pairs"], fig["wrong_submitter"], fig["wrong_exit"],
              fig["left_behind"])  # fmt: skip
    rows.append(
        Row("submit stage: sessions redone / pairs dropped / submit not run once by the "
            "expected side / exit code not 130 / left behind", " / ".join(map(str, counts)),
            "-", "none of any", fig["pairs"] > 0 and not any(counts))
    )  # fmt: skip
    return rows


def _spread_int(values: list[float]) -> str:
    lo, mid, hi = min(values), median(values), max(values)
    return f"{mid:.0f}" if lo == hi else f"{mid:.0f} ({lo:.0f}-{hi:.0f})"


def ssh_figures(res: dict[str, Any]) -> dict[str, Any]:
    rounds = [r["ssh"] for r in res.get("driver", []) if "ssh" in r]
    if not rounds:
        return {}
    return {
        "n": len(rounds),
        "connections": _spread_int([r["connections"] for r in rounds]),
        "round_trips": _spread_int([r["round_trips"] for r in rounds]),
        "phases": {
            name: _spread_int([r["phases"].get(name, {}).get("round_trips", 0) for r in rounds])
            for name in ("start", "hold", "cleanup")
        },
    }


def ssh_rows(fig: dict[str, Any]) -> list[Row]:
    """Per driver session: ssh connections it opened, remote round trips it made (the ssh
    wrapper's log), in all and per phase (to ready, held until Ctrl-C, cleanup)."""
    if not fig:
        return []
    n, phase = fig["n"], fig["phases"]
    return [
        Row(f"ssh connections opened per session (median of {n})", fig["connections"], "-",
            "-", None),
        Row(f"remote round trips per session (median of {n})",
            f"{fig['round_trips']}: to ready {phase['start']}, held {phase['hold']}, "
            f"cleanup {phase['cleanup']}", "-", "-", None),
    ]  # fmt: skip


# -- memory -------------------------------------------------------------------------------------


def memory_figures(res: dict[str, Any], conc: dict[str, Any] | None) -> dict[str, Any]:
    drv = res.get("driver", [])
    out = {
        "tree_mib": max((r["peak_tree_rss_kib"] for r in drv), default=0) / 1024,
        "single_mib": max((r["maxrss_single_kib"] for r in drv), default=0) / 1024,
        "cpu_s": median([r["cpu_s"] for r in drv if "cpu_s" in r]),
    }
    if conc and "peak_tree_rss_kib" in conc:
        out["concurrent_n"] = conc["n"]
        out["concurrent_mib"] = conc["peak_tree_rss_kib"] / 1024
    return out


def memory_rows(fig: dict[str, Any]) -> list[Row]:
    rows = [
        Row("driver peak RSS, process tree (sum, sampled 10/s)", _f(fig["tree_mib"], "MiB", 0),
            "-", "-", None),
        Row("driver peak RSS, largest single process", _f(fig["single_mib"], "MiB", 0), "-", "-",
            None),
        Row("driver CPU time per session (user+sys, whole tree)", _f(fig["cpu_s"]), "-", "-",
            None),
    ]  # fmt: skip
    if "concurrent_n" in fig:
        rows.append(
            Row(f"{fig['concurrent_n']} drivers at once, peak RSS (sum of trees)",
                _f(fig["concurrent_mib"], "MiB", 0), "-", "-", None)
        )  # fmt: skip
    return rows


# -- scheduler ----------------------------------------------------------------------------------


def sched_figures(res: dict[str, Any]) -> dict[str, Any]:
    first = res.get("first_state") or {}
    out: dict[str, Any] = {
        "first_state_s": first.get("submitted_to_first_state_s"),
        "first_event": first.get("first_event"),
        "first_reason": first.get("reason"),
    }
    for phase in ("pending", "running"):
        w = res.get(phase)
        out[phase] = (
            None
            if not w
            else {
                "seconds": w["seconds"],
                "rpcs": w["rpcs"],
                "per_minute": w["per_minute"],
                "types": w.get("session_types", {}),
                "types_are_alices": w.get("types_are_alices", False),
                "by_user": w.get("by_user", {}),
                "commands": w.get("session_slurm_commands", {}),
                "valid": w["valid"],
                "problems": w.get("problems", []),
                "contaminated": w["contaminated"],
            }
        )
    return out


def sched_rows(fig: dict[str, Any]) -> list[Row]:
    t = TARGETS["first_state_s"]
    first = fig.get("first_state_s")
    rows = [
        Row("first state shown after submit, behind a full cluster",
            f"{_f(first)} ({fig.get('first_event') or 'none'}"
            + (f", {fig['first_reason']})" if fig.get("first_reason") else ")"),
            "-", f"<= {t:.0f} s", _le(first, t))
    ]  # fmt: skip
    for phase, key in (("pending", "pending_rpm"), ("running", "running_rpm")):
        target = TARGETS[key]
        w = fig.get(phase)
        if not w:
            rows.append(Row(f"scheduler RPCs/min while {phase.upper()} (sdiag, alice)", "n/a",
                            "-", f"<= {target:.0f}", False))  # fmt: skip
            continue
        note = "" if w["valid"] else f" (INVALID: {'; '.join(w['problems'])})"
        if w["contaminated"]:
            note += " (other alice jobs: an upper bound)"
        types = ", ".join(f"{k} {v}" for k, v in w["types"].items()) or "none"
        rows.append(
            Row(f"scheduler RPCs/min while {phase.upper()} (sdiag, alice)",
                f"{w['per_minute']:.1f} ({w['rpcs']} in {w['seconds']:.0f} s: {types}){note}",
                "-", f"<= {target:.0f}", w["valid"] and _le(w["per_minute"], target))
        )  # fmt: skip
    return rows


# -- throughput, setup, concurrent, profile ------------------------------------------------------


def throughput_figures(res: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"size_mib": res.get("size_mib")}
    # by name: the stored JSON's keys are sorted, so a run and its --refigure give one order
    for mode, r in sorted(res.get("modes", {}).items()):
        if "error" in r:
            out[mode] = {"error": str(r["error"])[:200]}
            continue
        d, b = median(r["driver"]), median(r["baseline"])
        out[mode] = {
            "driver_mib_s": d,
            "baseline_mib_s": b,
            "ratio": d / b if d and b else None,
            "endpoint": r["endpoint"],
        }
    return out


def throughput_rows(fig: dict[str, Any]) -> list[Row]:
    target = TARGETS["throughput_ratio"]
    rows = []
    for mode, r in sorted(fig.items()):
        if mode == "size_mib":
            continue
        if "error" in r:
            rows.append(Row(f"throughput {mode}", f"error: {r['error'][:60]}", "-",
                            f">= {target}", False))  # fmt: skip
            continue
        ratio = r["ratio"]
        rows.append(
            Row(f"throughput {mode} ({fig['size_mib']} MiB, {r['endpoint']}), ratio",
                f"{_f(r['driver_mib_s'], 'MiB/s', 0)} ({_f(ratio, '', 2)})",
                f"{_f(r['baseline_mib_s'], 'MiB/s', 0)} (one ssh -L)", f">= {target}",
                _ok(ratio) and ratio >= target)
        )  # fmt: skip
    return rows


def setup_figures(res: dict[str, Any]) -> dict[str, Any]:
    runs = res.get("runs", [])
    secs = [r["seconds"] for r in runs if r["rc"] == 0]
    return {
        "runs": len(runs),
        "failed_runs": len(runs) - len(secs),
        "changed": sorted({r["changed"] for r in runs}),
        "tasks_ok": runs[0]["ok"] if runs else 0,
        "median_s": median(secs),
        "raw_ping_s": median(res.get("raw_ping", [])),
    }


def setup_rows(fig: dict[str, Any]) -> list[Row]:
    bound = TARGETS["setup_s"]
    good = (
        fig["runs"] > 0
        and fig["failed_runs"] == 0
        and fig["changed"] == [0]
        and _le(fig["median_s"], bound)
    )
    failed = f" ({fig['failed_runs']} run(s) FAILED)" if fig["failed_runs"] else ""
    return [
        Row(f"setup re-run (changed={','.join(map(str, fig['changed'])) or 'n/a'}, "
            f"{fig['tasks_ok']} tasks ok, {fig['runs']} runs)", _f(fig["median_s"]) + failed,
            _f(fig["raw_ping_s"]) + " (ansible raw ping)",
            f"changed=0, <= {bound:.0f} s", good)
    ]  # fmt: skip


def concurrent_figures(res: dict[str, Any]) -> dict[str, Any]:
    s = res.get("sessions", [])
    n = res.get("n", 0)
    rcs = res.get("rcs", [])
    return {
        "n": n,
        "ready": res.get("ready", 0),
        "all_ready_s": res.get("all_ready_s"),
        "ports_unique": len({x["port"] for x in s}) == len(s),
        "jobs_unique": len({x["job_id"] for x in s}) == len(s),
        "endpoints_unique": len({(x["node"], x.get("endpoint")) for x in s}) == len(s)
        and all(x.get("endpoint") for x in s),
        "all_200": bool(s) and all(x.get("http") == 200 for x in s),
        "cross_token_status": res.get("cross_token_status"),
        "rcs_wrong": sum(1 for rc in rcs if rc != 130) + max(0, n - len(rcs)),
        "left_behind": len(res.get("left_behind", [])),
        "first_state": stats([x["first_state_s"] for x in s if x.get("first_state_s") is not None]),
        "ttn": stats([x["ttn"] for x in s if "ttn" in x]),
    }


def concurrent_rows(fig: dict[str, Any]) -> list[Row]:
    checks = {
        "all ready": fig["ready"] == fig["n"] and fig["n"] > 0,
        "ports unique": fig["ports_unique"],
        "job ids unique": fig["jobs_unique"],
        "endpoints unique": fig["endpoints_unique"],
        "200 with own token": fig["all_200"],
        "other user's token 403": fig["cross_token_status"] == 403,
        "exit codes 130": fig["rcs_wrong"] == 0,
        "none left": fig["left_behind"] == 0,
    }
    failed = [k for k, ok in checks.items() if not ok]
    value = (
        f"{fig['ready']}/{fig['n']} ready in {_f(fig['all_ready_s'], 's', 0)}; cross-token "
        f"{fig['cross_token_status']}; wrong exit codes {fig['rcs_wrong']}; left behind "
        f"{fig['left_behind']}; "
        + ("every check passed" if not failed else "FAILED: ")
        + ", ".join(failed)
    )
    return [
        Row(f"{fig['n']} concurrent sessions (alice+bob)", value, "-", ", ".join(checks),
            not failed),
        Row(f"{fig['n']} concurrent sessions: submitted -> first state shown (median, min-max)",
            _spread(fig["first_state"]), "-", "-", None),
        Row(f"{fig['n']} concurrent sessions: time to notebook (median, min-max)",
            _spread(fig["ttn"]), "-", "-", None),
    ]  # fmt: skip


def profile_figures(res: dict[str, Any]) -> dict[str, Any]:
    return {
        "ready_s": res["ready_s"],
        "ctrl_c_gone_s": res["ctrl_c_gone_s"],
        "ssh_start": res["ssh_invocations_start"],
        "ssh_cleanup": res["ssh_invocations_cleanup"],
        "ansible_tasks": res["ansible_tasks"],
    }


def profile_rows(fig: dict[str, Any]) -> list[Row]:
    tasks = ", ".join(f"{k} {v}" for k, v in fig["ansible_tasks"].items()) or "none"
    return [
        Row("profile: one traced session, inventory cache cold, to ready / Ctrl-C -> gone",
            f"{fig['ready_s']:.2f} s / {fig['ctrl_c_gone_s']:.2f} s", "-", "-", None),
        Row("profile: ssh invocations (start / cleanup), Ansible tasks",
            f"{fig['ssh_start']} / {fig['ssh_cleanup']}; {tasks}", "-", "-", None),
    ]  # fmt: skip


def code_figures(start: dict[str, Any], end: dict[str, Any]) -> dict[str, Any]:
    """The commit and the tree's changed paths at the start and at the end of the run."""
    same = start.get("commit") == end.get("commit") and start.get("dirty_paths") == end.get(
        "dirty_paths"
    )
    return {
        "commit": start.get("commit"),
        "commit_end": end.get("commit"),
        "dirty": start.get("dirty"),
        "unchanged": same,
    }


def code_rows(fig: dict[str, Any]) -> list[Row]:
    """Others work in the same tree: a run whose code changed under it measured two versions."""
    short = str(fig["commit"])[:7]
    end = "the same at the end" if fig["unchanged"] else f"at the end {str(fig['commit_end'])[:7]}"
    tree = "dirty" if fig["dirty"] else "clean"
    return [
        Row("code measured: commit and work tree, start and end of the run",
            f"{short} ({tree}), {end}" + ("" if fig["unchanged"] else " or other changed files"),
            "-", "unchanged during the run", bool(fig["unchanged"]))
    ]  # fmt: skip


# -- all of it ----------------------------------------------------------------------------------


def figures(results: dict[str, Any]) -> dict[str, Any]:
    """Every figure of the report, from the raw results of the stages that ran."""
    out: dict[str, Any] = {}
    if "machine" in results and "machine_end" in results:
        out["code"] = code_figures(results["machine"], results["machine_end"])
    if "session" in results:
        out["session"] = session_figures(results["session"])
        out["ssh"] = ssh_figures(results["session"])
        out["memory"] = memory_figures(results["session"], results.get("concurrent"))
    if "submit" in results:
        out["submit"] = submit_figures(results["submit"])
    for name, fn in (
        ("profile", profile_figures),
        ("sched", sched_figures),
        ("throughput", throughput_figures),
        ("setup", setup_figures),
        ("concurrent", concurrent_figures),
    ):
        if name in results:
            out[name] = fn(results[name])
    return out


def rows(fig: dict[str, Any], errors: dict[str, str] | None = None) -> list[Row]:
    out: list[Row] = []
    for name, fn in (
        ("code", code_rows),
        ("session", session_rows),
        ("ssh", ssh_rows),
        ("submit", submit_rows),
        ("profile", profile_rows),
        ("sched", sched_rows),
        ("throughput", throughput_rows),
        ("setup", setup_rows),
        ("concurrent", concurrent_rows),
        ("memory", memory_rows),
    ):
        if name in fig:
            out += fn(fig[name])
    for name, err in (errors or {}).items():
        out.append(Row(f"{name}: stage failed", err[:80], "-", "runs", False))
    return out


def row_dicts(rs: list[Row]) -> list[dict[str, Any]]:
    return [asdict(r) | {"verdict": r.verdict} for r in rs]


def table(rs: list[Row]) -> str:
    head = ("figure", "measured", "baseline (same run)", "target", "")
    cells = [head] + [(r.figure, r.value, r.baseline, r.target, r.verdict) for r in rs]
    widths = [max(len(c[i]) for c in cells) for i in range(5)]
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(5)).rstrip() for c in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(rs: list[dict[str, Any]]) -> str:
    """The rows as stored in last-run.json (``row_dicts``), as the page's table."""
    out = ["| figure | measured | baseline (same run) | target | |", "|---|---|---|---|---|"]
    out += [
        f"| {r['figure']} | {r['value']} | {r['baseline']} | {r['target']} | {r['verdict']} |"
        for r in rs
    ]
    return "\n".join(out)


def clean(obj: Any) -> Any:
    """NaN (a step not seen) -> None, so the file is strict JSON."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [clean(v) for v in obj]
    return obj


def raw_json(results: dict[str, Any]) -> str:
    return json.dumps(clean(results), indent=1, sort_keys=True, allow_nan=False)
