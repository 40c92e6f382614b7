"""The benchmark report on synthetic results: every row with a target says "met" for good
values and MISSED for a failing one (one test per row and failure), the bootstrap interval of
the ratios is deterministic and decides the verdict, the time to notebook pools the driver's
three kinds of session per round, and a redone session or a dropped round fails every verdict
that rests on it. No timing of anything is asserted here."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from bench import report
from tests.bench.test_submit import submit_results


def rnd(i: int, ttn: float, gone: float, **extra: Any) -> dict[str, Any]:
    steps = {"submitted": 0.2, "running": 1.0, "ready": ttn}
    return {"round": i, "ttn": ttn, "gone_seen": gone, "gone_poll_s": 0.03, "steps": steps,
            **extra}  # fmt: skip


def good_results(n: int = 10) -> dict[str, Any]:
    """Results of every stage that meet every target."""
    drv = [
        rnd(i, 2.0 + 0.01 * i, 0.2, rc=130, exit=0.5, to_cancel_sent=0.01,
            peak_tree_rss_kib=100 * 1024, maxrss_single_kib=50 * 1024, cpu_s=1.0)
        for i in range(n)
    ]  # fmt: skip
    stop = [rnd(i, 2.0, 0.22, rc=6, stop_rc=0, stop_exit=1.0) for i in range(n)]
    base_a = [rnd(i, 2.0 + 0.01 * i, 0.15) for i in range(n)]
    base_b = [rnd(i, 2.5 + 0.01 * i, 0.05) for i in range(n)]
    sig = [rnd(i, 2.0, 0.2, rc=130, exit=0.5, to_cancel_sent=0.01) for i in range(n)]
    window = {
        "seconds": 60.0, "rpcs": 6, "per_minute": 6.0, "session_types": {"REQUEST_FED_INFO": 6},
        "types_are_alices": True, "by_user": {"alice": 6}, "valid": True, "problems": [],
        "contaminated": False,
    }  # fmt: skip
    running = {**window, "seconds": 120.0, "rpcs": 0, "per_minute": 0.0, "session_types": {}}
    sessions = [
        {"user": u, "job_id": str(10 + i), "node": "cn01", "port": 4000 + i, "http": 200,
         # the first session of each user on a socket, later ones on loopback TCP
         "endpoint": f"/tmp/s{i}" if i < 2 else f"127.0.0.1:{5000 + i}"}
        for i, u in enumerate(["alice", "bob"] * 2)
    ]  # fmt: skip
    code = {"commit": "abc1234", "dirty": False, "dirty_paths": []}
    return {
        "machine": code,
        "machine_end": dict(code),
        "session": {"driver": drv, "stop": stop, "baseline_a": base_a, "baseline_b": base_b,
                    "sigint": sig, "rounds": n,
                    "failed_attempts": [], "left_behind": []},
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
        "submit": submit_results(),
        "profile": {"ready_s": 3.0, "ctrl_c_gone_s": 0.2, "ssh_invocations_start": 5,
                    "ssh_invocations_cleanup": 2, "ansible_tasks": {"session.yml": 3}},
    }  # fmt: skip


def verdicts(results: dict[str, Any], errors: dict[str, str] | None = None) -> dict[str, str]:
    rows = report.rows(report.figures(results), errors)
    return {r.figure: r.verdict for r in rows}


def test_good_results_meet_every_target() -> None:
    v = verdicts(good_results())
    with_target = {k: x for k, x in v.items() if x != "-"}
    assert len(with_target) == 16, v
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


def _ttn(values: list[float], kinds: tuple[str, ...] = report.STARTS) -> Callable:
    """The time to notebook of these kinds (by default the driver's three: pooled)."""

    def mutate(res: dict[str, Any]) -> None:
        for kind in kinds:
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
    ("ratio-a-median", "time to notebook, ratio driver (pooled per round) / baseline A",
     _ttn([2.6 + 0.01 * i for i in range(10)])),
    # the median ratio meets 1.00, but the spread puts the interval's top above it
    ("ratio-a-ci", "time to notebook, ratio driver (pooled per round) / baseline A",
     _ttn([1.6, 2.9, 1.7, 2.8, 2.0, 2.05, 1.5, 3.0, 1.95, 2.2])),
    # the Ctrl-C kind alone would meet it: the other two kinds' starts count as much
    ("ratio-a-pooled", "time to notebook, ratio driver (pooled per round) / baseline A",
     _ttn([2.6 + 0.01 * i for i in range(10)], ("stop", "sigint"))),
    ("ratio-b", "time to notebook, ratio driver (pooled per round) / baseline B",
     _ttn([2.6 + 0.01 * i for i in range(10)])),
    ("ctrl-c", "Ctrl-C -> job gone", _each("session", "driver", "gone_seen", 0.31)),
    ("ctrl-c-not-from-laptop", "Ctrl-C -> job gone",
     lambda r: [d.pop("gone_seen") for d in r["session"]["driver"]]),
    # within 0.3 s, but 0.2 s slower than a bare scancel seen the same way
    ("ctrl-c-vs-scancel", "Ctrl-C -> gone minus a bare scancel",
     _each("session", "baseline_a", "gone_seen", 0.05)),
    ("ctrl-c-vs-scancel-unmeasured", "Ctrl-C -> gone minus a bare scancel",
     lambda r: [d.pop("gone_seen") for d in r["session"]["baseline_a"]]),
    ("stop", "`nodebook stop` -> job gone", _each("session", "stop", "gone_seen", 0.9)),
    # within 0.3 s, but 0.13 s slower than a bare scancel seen the same way
    ("stop-vs-scancel", "`nodebook stop` -> gone minus a bare scancel",
     _each("session", "stop", "gone_seen", 0.28)),
    ("exit-ctrl-c", "exit codes", _set("session.driver.3.rc", 0)),
    ("exit-stop", "exit codes", _set("session.stop.0.stop_rc", 1)),
    ("exit-sigint", "exit codes", _set("session.sigint.2.rc", 143)),
    ("session-left", "session stage", _set("session.left_behind", ["jobs: 12"])),
    ("submit-redone", "submit stage", _set("submit.failed_attempts",
                                           [{"round": 1, "kind": "play", "attempt": 0}])),
    ("submit-by-play", "submit stage", _set("submit.early.0.submit_calls", ["ansible"])),
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
    derived = ("time to notebook", "Ctrl-C", "exit codes", "`nodebook stop` -> gone minus")
    assert all(k.startswith(derived) for k in others), others


def test_every_row_with_a_target_has_a_failing_case() -> None:
    v = verdicts(good_results())
    targeted = {k for k, x in v.items() if x != "-"}
    covered = {k for k in targeted for _, prefix, _ in FAILING if k.startswith(prefix)}
    assert covered == targeted


def test_the_ci_case_meets_the_median_but_not_the_interval() -> None:
    res = good_results()
    dict(FAILING_BY_ID)["ratio-a-ci"][1](res)
    r = report.figures(res)["session"]["ratio_a"]
    assert r["estimate"] <= report.TARGETS["ratio_a"] < r["hi"], r


def test_the_ratio_pools_the_three_kinds_of_start_per_round() -> None:
    res = good_results()
    dict(FAILING_BY_ID)["ratio-a-pooled"][1](res)
    fig = report.figures(res)["session"]
    # the Ctrl-C kind alone meets the target; pooled with stop and SIGINT it does not
    assert fig["by_kind"]["driver"]["ratio_a"] <= report.TARGETS["ratio_a"]
    assert fig["by_kind"]["stop"]["ratio_a"] > report.TARGETS["ratio_a"]
    assert fig["ratio_a"]["estimate"] > report.TARGETS["ratio_a"]
    assert fig["ratio_a"]["n"] == 10  # rounds, each resampled whole
    assert fig["ttn"]["starts"]["n"] == 30


SESSION_VERDICTS = {
    "time to notebook, ratio driver (pooled per round) / baseline A",
    "time to notebook, ratio driver (pooled per round) / baseline B",
    "Ctrl-C -> job gone from squeue, seen from the laptop",
    "Ctrl-C -> gone minus a bare scancel",
    "`nodebook stop` -> job gone from squeue",
    "exit codes",
    "session stage",
}


def session_verdicts(res: dict[str, Any]) -> dict[str, tuple[str, str]]:
    rows = report.rows(report.figures(res))
    return {p: (r.verdict, r.value) for r in rows for p in SESSION_VERDICTS
            if r.figure.startswith(p)}  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "failing"),
    [
        ("driver", {"time to notebook, ratio driver (pooled per round) / baseline A",
                    "time to notebook, ratio driver (pooled per round) / baseline B",
                    "Ctrl-C -> job gone from squeue, seen from the laptop",
                    "Ctrl-C -> gone minus a bare scancel", "exit codes", "session stage"}),
        ("stop", {"time to notebook, ratio driver (pooled per round) / baseline A",
                  "time to notebook, ratio driver (pooled per round) / baseline B",
                  "`nodebook stop` -> job gone from squeue", "exit codes", "session stage"}),
        ("baseline_b", {"time to notebook, ratio driver (pooled per round) / baseline B",
                        "session stage"}),
    ],
)  # fmt: skip
def test_a_redone_session_fails_every_verdict_resting_on_its_kind(
    kind: str, failing: set[str]
) -> None:
    res = good_results()
    # the round's session reached ready at its second attempt: its figures look fine
    res["session"]["failed_attempts"] = [
        {"round": 4, "kind": kind, "attempt": 0, "error": "NoEvent: no 'ready' event"}
    ]
    v = session_verdicts(res)
    assert {p for p, (verdict, _) in v.items() if verdict == "MISSED"} == failing, v
    assert all("redone 1" in value or "1 / 0 / 0" in value for p, (_, value) in v.items()
               if p in failing), v  # fmt: skip
    assert report.figures(res)["session"]["redone"][kind] == 1


def test_a_dropped_round_is_counted_and_fails_the_paired_verdicts() -> None:
    res = good_results()
    # SIGINT failed all its attempts in round 5: the round is left out of the pairing
    res["session"]["sigint"] = [r for r in res["session"]["sigint"] if r["round"] != 5]
    res["session"]["failed_attempts"] = [
        {"round": 5, "kind": "sigint", "attempt": a, "error": "x"} for a in range(3)
    ]
    fig = report.figures(res)["session"]
    assert fig["dropped"]["sigint"] == 1 and fig["dropped_rounds"] == 1
    assert fig["complete_rounds"] == 9 and fig["ratio_a"]["n"] == 9
    v = session_verdicts(res)
    missed = {p for p, (verdict, _) in v.items() if verdict == "MISSED"}
    assert missed == {
        "time to notebook, ratio driver (pooled per round) / baseline A",
        "time to notebook, ratio driver (pooled per round) / baseline B",
        "Ctrl-C -> gone minus a bare scancel",  # paired with baseline A by round
        "exit codes",  # the SIGINT session's exit code was never seen
        "session stage",
    }, v
    assert "dropped 1" in v["Ctrl-C -> gone minus a bare scancel"][1]
    assert v["session stage"][1] == "3 / 1 / 0"


def test_a_round_missing_without_a_word_is_dropped_too() -> None:
    """A kind's round that is simply not there (no failure recorded) still counts as dropped."""
    res = good_results()
    res["session"]["baseline_b"] = res["session"]["baseline_b"][:1]
    fig = report.figures(res)["session"]
    assert fig["dropped"]["baseline_b"] == 9 and fig["dropped_rounds"] == 9
    assert session_verdicts(res)["session stage"][0] == "MISSED"


def test_a_stage_that_failed_is_a_missed_row() -> None:
    v = verdicts(good_results(), {"sched": "link down"})
    assert v["sched: stage failed"] == "MISSED"


def pairs(num: list[float], den: list[float]) -> list[tuple[list[float], list[float]]]:
    return [([a], [b]) for a, b in zip(num, den, strict=True)]


def test_bootstrap_is_deterministic_and_brackets_the_ratio() -> None:
    num = [2.0, 2.4, 1.9, 3.1, 2.2, 2.05, 2.6, 1.8, 2.3, 2.1]
    den = [2.1, 2.2, 2.0, 2.5, 2.0, 2.3, 2.4, 1.9, 2.2, 2.0]
    one = report.bootstrap(pairs(num, den), resamples=2000, seed=7)
    assert one == report.bootstrap(pairs(num, den), resamples=2000, seed=7)
    assert one["lo"] <= one["estimate"] <= one["hi"] and one["lo"] < one["hi"]
    assert one["n"] == 10 and one["level"] == 0.95
    other = report.bootstrap(pairs(num, den), resamples=2000, seed=8)
    assert (other["lo"], other["hi"]) != (one["lo"], one["hi"])  # the seed is used


def test_bootstrap_without_spread_and_with_too_few_rounds() -> None:
    same = report.bootstrap(pairs([3.0] * 5, [2.0] * 5), resamples=200)
    assert same["estimate"] == same["lo"] == same["hi"] == 1.5
    diff = report.bootstrap(pairs([3.0] * 5, [2.0] * 5), report.diff_of_medians, resamples=200)
    assert diff["estimate"] == diff["lo"] == diff["hi"] == 1.0
    assert report.bootstrap(pairs([3.0], [2.0]))["hi"] is None
    # rounds are paired: a round missing on one side is left out on both
    res = good_results()
    res["session"]["baseline_a"] = res["session"]["baseline_a"][2:]
    assert report.figures(res)["session"]["ratio_a"]["n"] == 8


def test_bootstrap_resamples_whole_rounds() -> None:
    """Pooled rounds: the values of a round stay together in every resample."""
    rounds = [([1.0, 1.0, 1.0], [1.0]), ([3.0, 3.0, 3.0], [1.0])]
    r = report.bootstrap(rounds, resamples=500, seed=1)
    # a resample is both rounds, or one of them twice: the ratio is 1, 2 or 3, never between
    assert r["estimate"] == 2.0 and {r["lo"], r["hi"]} <= {1.0, 2.0, 3.0}


def test_table_and_markdown_have_every_row() -> None:
    rows = report.rows(report.figures(good_results()))
    text, md = report.table(rows), report.markdown_table(report.row_dicts(rows))
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


def test_throughput_rows_do_not_follow_the_order_the_modes_ran_in() -> None:
    """A run's rows come from its results in memory (modes in the order they ran), --refigure's
    from the stored JSON (keys sorted): both must give the same rows."""
    mode = {"driver": [200.0], "baseline": [170.0], "endpoint": "socket"}
    ran = {"size_mib": 256, "modes": {"jump": mode, "hops": mode, "via-login": mode}}
    stored = json.loads(json.dumps(ran, sort_keys=True))
    assert list(stored["modes"]) != list(ran["modes"])
    assert report.throughput_rows(report.throughput_figures(ran)) == report.throughput_rows(
        report.throughput_figures(stored)
    )
