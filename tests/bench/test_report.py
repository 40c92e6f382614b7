"""The benchmark report on synthetic results: every row with a target says "met" for good
values and MISSED for a failing one (one test per row and failure), the bootstrap interval of
the ratios is deterministic and decides the verdict. No timing of anything is asserted here."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from bench import report


def rnd(i: int, ttn: float, gone: float, **extra: Any) -> dict[str, Any]:
    steps = {"submitted": 0.2, "running": 1.0, "ready": ttn}
    return {"round": i, "ttn": ttn, "gone": gone, "steps": steps, **extra}


def good_results(n: int = 10) -> dict[str, Any]:
    """Results of every stage that meet every target."""
    drv = [
        rnd(i, 2.0 + 0.01 * i, 0.2, rc=130, exit=0.5, to_cancel_sent=0.01,
            peak_tree_rss_kib=100 * 1024, maxrss_single_kib=50 * 1024, cpu_s=1.0)
        for i in range(n)
    ]  # fmt: skip
    stop = [rnd(i, 2.0, 0.25, rc=6, stop_rc=0, stop_exit=1.0) for i in range(n)]
    base_a = [rnd(i, 2.0 + 0.01 * i, 0.2) for i in range(n)]
    base_b = [rnd(i, 2.5 + 0.01 * i, 0.05) for i in range(n)]
    sig = [rnd(i, 2.0, 0.2, rc=130, exit=0.5, to_cancel_sent=0.01) for i in range(n)]
    window = {
        "seconds": 60.0, "rpcs": 6, "per_minute": 6.0, "session_types": {"REQUEST_FED_INFO": 6},
        "types_are_alices": True, "by_user": {"alice": 6}, "valid": True, "problems": [],
        "contaminated": False,
    }  # fmt: skip
    running = {**window, "seconds": 120.0, "rpcs": 0, "per_minute": 0.0, "session_types": {}}
    sessions = [
        {"user": u, "job_id": str(10 + i), "node": "cn01", "port": 4000 + i,
         "socket": f"/tmp/s{i}", "http": 200}
        for i, u in enumerate(["alice", "bob"] * 2)
    ]  # fmt: skip
    code = {"commit": "abc1234", "dirty": False, "dirty_paths": []}
    return {
        "machine": code,
        "machine_end": dict(code),
        "session": {"driver": drv, "stop": stop, "baseline_a": base_a, "baseline_b": base_b,
                    "sigint": sig,
                    "failed_rounds": [], "left_behind": []},
        "sched": {"first_state": {"submitted_to_first_state_s": 0.5, "first_event": "pending",
                                  "reason": "Resources"},
                  "pending": window, "running": running},
        "throughput": {"size_mib": 256, "modes": {
            "jump": {"driver": [90.0], "baseline": [100.0], "endpoint": "socket"}}},
        "setup": {"runs": [{"seconds": 6.0, "rc": 0, "ok": 34, "changed": 0}] * 3,
                  "raw_ping": [0.4] * 3},
        "concurrent": {"n": 4, "ready": 4, "all_ready_s": 20.0, "sessions": sessions,
                       "cross_token_status": 403, "rcs": [130] * 4, "left_behind": [],
                       "peak_tree_rss_kib": 1024},
        "profile": {"ready_s": 3.0, "ctrl_c_gone_s": 0.2, "ssh_invocations_start": 5,
                    "ssh_invocations_cleanup": 2, "ansible_tasks": {"session.yml": 3}},
    }  # fmt: skip


def verdicts(results: dict[str, Any], errors: dict[str, str] | None = None) -> dict[str, str]:
    rows = report.rows(report.figures(results), errors)
    return {r.figure: r.verdict for r in rows}


def test_good_results_meet_every_target() -> None:
    v = verdicts(good_results())
    with_target = {k: x for k, x in v.items() if x != "-"}
    assert len(with_target) == 13, v
    assert set(with_target.values()) == {"met"}, v


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(res: dict[str, Any]) -> None:
        *keys, last = path.split(".")
        cur: Any = res
        for k in keys:
            cur = cur[int(k)] if isinstance(cur, list) else cur[k]
        cur[last] = value

    return mutate


def _each(stage: str, kind: str, key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(res: dict[str, Any]) -> None:
        for r in res[stage][kind]:
            r[key] = value

    return mutate


def _ttn(kind: str, values: list[float]) -> Callable[[dict[str, Any]], None]:
    def mutate(res: dict[str, Any]) -> None:
        for r, v in zip(res["session"][kind], values, strict=True):
            r["ttn"] = v

    return mutate


def _drop(stage: str) -> Callable[[dict[str, Any]], None]:
    def mutate(res: dict[str, Any]) -> None:
        res[stage].pop("pending", None) if stage == "sched" else res.pop(stage)

    return mutate


# (row's figure prefix, what breaks it): each must turn exactly that row to MISSED
FAILING: list[tuple[str, str, Callable[[dict[str, Any]], None]]] = [
    ("code-commit", "code measured", _set("machine_end.commit", "def5678")),
    ("code-tree", "code measured", _set("machine_end.dirty_paths", ["roles/x.yml"])),
    ("ratio-a-median", "time to notebook, ratio driver / baseline A",
     _ttn("driver", [2.6 + 0.01 * i for i in range(10)])),
    # the median ratio meets 1.10, but the spread puts the interval's top above it
    ("ratio-a-ci", "time to notebook, ratio driver / baseline A",
     _ttn("driver", [1.6, 2.9, 1.7, 2.8, 2.05, 2.1, 1.5, 3.0, 2.0, 2.2])),
    ("ratio-b", "time to notebook, ratio driver / baseline B",
     _ttn("driver", [2.6 + 0.01 * i for i in range(10)])),
    ("ratio-b-one-round", "time to notebook, ratio driver / baseline B",
     lambda r: r["session"].update(baseline_b=r["session"]["baseline_b"][:1])),
    ("ctrl-c", "Ctrl-C -> job gone", _each("session", "driver", "gone", 0.31)),
    ("ctrl-c-none", "Ctrl-C -> job gone", lambda r: r["session"].update(driver=[])),
    ("stop", "`nodebook stop` -> job gone", _each("session", "stop", "gone", 0.9)),
    ("exit-ctrl-c", "exit codes", _set("session.driver.3.rc", 0)),
    ("exit-stop", "exit codes", _set("session.stop.0.stop_rc", 1)),
    ("exit-sigint", "exit codes", _set("session.sigint.2.rc", 143)),
    ("session-left", "session rounds", _set("session.left_behind", ["jobs: 12"])),
    ("first-state-slow", "first state shown", _set("sched.first_state.submitted_to_first_state_s",
                                                     2.5)),
    ("first-state-none", "first state shown", _set("sched.first_state", {})),
    ("pending-rpm", "scheduler RPCs/min while PENDING", _set("sched.pending.per_minute", 33.0)),
    ("pending-invalid", "scheduler RPCs/min while PENDING", _set("sched.pending.valid", False)),
    ("pending-none", "scheduler RPCs/min while PENDING", _drop("sched")),
    ("running-rpm", "scheduler RPCs/min while RUNNING", _set("sched.running.per_minute", 1.5)),
    ("throughput", "throughput jump", _set("throughput.modes.jump.driver", [70.0])),
    ("throughput-error", "throughput jump", _set("throughput.modes.jump", {"error": "boom"})),
    ("setup-changed", "setup re-run", _set("setup.runs", [{"seconds": 6.0, "rc": 0, "ok": 34,
                                                           "changed": 1}])),
    ("setup-slow", "setup re-run", _set("setup.runs", [{"seconds": 16.0, "rc": 0, "ok": 34,
                                                        "changed": 0}])),
    ("setup-failed", "setup re-run", _set("setup.runs", [{"seconds": 6.0, "rc": 2, "ok": 3,
                                                          "changed": 0}])),
    ("setup-none", "setup re-run", _set("setup.runs", [])),
    ("concurrent-cross-token", "4 concurrent", _set("concurrent.cross_token_status", 200)),
    ("concurrent-cross-unmeasured", "4 concurrent", _set("concurrent.cross_token_status", None)),
    ("concurrent-job-ids", "4 concurrent", _set("concurrent.sessions.1.job_id", "10")),
    ("concurrent-exit", "4 concurrent", _set("concurrent.rcs", [130, 130, 0, 130])),
    ("concurrent-exit-missing", "4 concurrent", _set("concurrent.rcs", [130, 130])),
    ("concurrent-left", "4 concurrent", _set("concurrent.left_behind", ["jobs: 11"])),
    ("concurrent-ready", "4 concurrent", _set("concurrent.ready", 3)),
    ("concurrent-ports", "4 concurrent", _set("concurrent.sessions.1.port", 4000)),
    ("concurrent-200", "4 concurrent", _set("concurrent.sessions.2.http", 502)),
]  # fmt: skip


FAILING_BY_ID = [(f[0], f[1:]) for f in FAILING]


@pytest.mark.parametrize(
    ("prefix", "mutate"), [f[1:] for f in FAILING], ids=[f[0] for f in FAILING]
)
def test_a_failing_value_makes_its_row_missed(
    prefix: str, mutate: Callable[[dict[str, Any]], None]
) -> None:
    res = copy.deepcopy(good_results())
    mutate(res)
    v = verdicts(res)
    mine = {k: x for k, x in v.items() if k.startswith(prefix) and x != "-"}
    assert list(mine.values()) == ["MISSED"], v
    others = {k: x for k, x in v.items() if not k.startswith(prefix) and x == "MISSED"}
    # a broken session stage also breaks the figures derived from it, nothing else
    assert all(k.startswith(("time to notebook", "Ctrl-C", "exit codes")) for k in others), others


def test_every_row_with_a_target_has_a_failing_case() -> None:
    v = verdicts(good_results())
    targeted = {k for k, x in v.items() if x != "-"}
    covered = {k for k in targeted for _, prefix, _ in FAILING if k.startswith(prefix)}
    assert covered == targeted


def test_the_ci_case_meets_the_median_but_not_the_interval() -> None:
    res = good_results()
    dict(FAILING_BY_ID)["ratio-a-ci"][1](res)
    r = report.figures(res)["session"]["ratio_a"]
    assert r["ratio"] <= report.TARGETS["ratio_a"] < r["hi"], r


def test_a_stage_that_failed_is_a_missed_row() -> None:
    v = verdicts(good_results(), {"sched": "link down"})
    assert v["sched: stage failed"] == "MISSED"


def test_bootstrap_is_deterministic_and_brackets_the_ratio() -> None:
    num = [2.0, 2.4, 1.9, 3.1, 2.2, 2.05, 2.6, 1.8, 2.3, 2.1]
    den = [2.1, 2.2, 2.0, 2.5, 2.0, 2.3, 2.4, 1.9, 2.2, 2.0]
    one = report.bootstrap_ratio(num, den, resamples=2000, seed=7)
    assert one == report.bootstrap_ratio(num, den, resamples=2000, seed=7)
    assert one["lo"] <= one["ratio"] <= one["hi"] and one["lo"] < one["hi"]
    assert one["n"] == 10 and one["level"] == 0.95
    other = report.bootstrap_ratio(num, den, resamples=2000, seed=8)
    assert (other["lo"], other["hi"]) != (one["lo"], one["hi"])  # the seed is used


def test_bootstrap_without_spread_and_with_too_few_rounds() -> None:
    same = report.bootstrap_ratio([3.0] * 5, [2.0] * 5, resamples=200)
    assert same["ratio"] == same["lo"] == same["hi"] == 1.5
    assert report.bootstrap_ratio([3.0], [2.0])["hi"] is None
    # rounds are paired: a round missing on one side is left out on both
    res = good_results()
    res["session"]["baseline_a"] = res["session"]["baseline_a"][2:]
    assert report.figures(res)["session"]["ratio_a"]["n"] == 8


def test_table_and_markdown_have_every_row() -> None:
    rows = report.rows(report.figures(good_results()))
    text, md = report.table(rows), report.markdown_table(rows)
    for r in rows:
        assert r.figure in text and r.figure in md


def test_ssh_rows_count_connections_and_round_trips_per_phase() -> None:
    def ssh(conn: int, start: int, hold: int, cleanup: int) -> dict:
        phases = {"start": {"round_trips": start}, "hold": {"round_trips": hold},
                  "cleanup": {"round_trips": cleanup}}  # fmt: skip
        return {"connections": conn, "round_trips": start + hold + cleanup, "phases": phases}

    res = {"driver": [{"ssh": ssh(2, 5, 1, 2)}, {"ssh": ssh(2, 6, 1, 2)}, {"ssh": ssh(2, 5, 2, 2)}]}
    rows = report.ssh_rows(report.ssh_figures(res))
    assert [r.value for r in rows] == ["2", "9 (8-9): to ready 5 (5-6), held 1 (1-2), cleanup 2"]
    assert report.ssh_rows(report.ssh_figures({"driver": [{"ttn": 1.0}]})) == []


def test_raw_json_is_strict_json() -> None:
    text = report.raw_json({"a": float("nan"), "b": [1.0, float("nan")]})
    assert "NaN" not in text and '"a": null' in text
