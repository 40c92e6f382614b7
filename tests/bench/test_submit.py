"""The submit stage (bench/scen_submit.py): the driver's early submit against session.yml's own
submit task. Its figures on synthetic results (the gain is play minus early, paired by pair,
with a bootstrap interval; a redone session, a dropped pair, a submit run by the wrong side or
twice, a wrong exit code or a leftover fails the stage's row), its plan of orders and pauses,
who ran a submit as the ssh log shows it, and the bench-only driver that switches the early
submit off. No timing of anything is asserted here."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from bench import play_submit_driver, report, run, scen_submit
from driver.inventory import Cluster
from driver.remote import Remote
from driver.ssh import Master
from tests.harness import sshlog

STAGE_ROW = "submit stage:"


def session(i: int, submitted: float, ready: float, by: str, **extra: Any) -> dict[str, Any]:
    return {"round": i, "submitted": submitted, "ready": ready, "submit_sent": submitted - 0.1,
            "submit_calls": [by], "rc": 130, "gone_seen": 0.2, **extra}  # fmt: skip


def submit_results(n: int = 6) -> dict[str, Any]:
    """n clean pairs: the play submits 0.40 s later and is ready 0.30 s later, give or take."""
    early = [session(i, 0.50 + 0.01 * i, 2.00 + 0.02 * i, "driver") for i in range(n)]
    play = [session(i, 0.90 + 0.01 * i, 2.30 + 0.02 * i, "ansible") for i in range(n)]
    return {"early": early, "play": play, "pairs": n, "seed": 7, "failed_attempts": [],
            "left_behind": []}  # fmt: skip


def rows(res: dict[str, Any]) -> dict[str, report.Row]:
    return {r.figure.split(":")[0]: r for r in report.submit_rows(report.submit_figures(res))}


def test_the_gain_is_play_minus_early_over_the_pairs() -> None:
    fig = report.submit_figures(submit_results())
    assert fig["submitted_gain"]["estimate"] == pytest.approx(0.40)
    assert fig["ready_gain"]["estimate"] == pytest.approx(0.30)
    for key in ("submitted_gain", "ready_gain"):
        g = fig[key]
        assert g["n"] == 6 and g["lo"] <= g["estimate"] <= g["hi"]
    assert fig["submitted"]["early"]["n"] == fig["submitted"]["play"]["n"] == 6
    assert fig["complete_pairs"] == 6 and fig["seed"] == 7


def test_the_rows_show_the_gain_with_its_interval_and_a_clean_stage() -> None:
    r = rows(submit_results())
    gain = r["early submit's gain, spawn -> `submitted`"]
    assert gain.value.startswith("0.40 s (95% CI ") and "n=6; redone 0, dropped 0" in gain.value
    assert gain.baseline == "0.53 s (early), 0.93 s (play)"
    assert gain.met is None  # a measurement, not a target
    assert r["early submit's gain, spawn -> `ready`"].value.startswith("0.30 s (95% CI ")
    assert r["submit stage"].value == "0 / 0 / 0 / 0 / 0" and r["submit stage"].verdict == "met"


def test_a_gain_that_is_a_loss_reads_as_a_negative_interval() -> None:
    res = submit_results()
    for s in res["play"]:
        s["submitted"] -= 1.0  # the play's submission came sooner
    value = rows(res)["early submit's gain, spawn -> `submitted`"].value
    assert value.startswith("-0.60 s (95% CI -0.") and " to -0." in value


def test_a_dropped_pair_is_left_out_on_both_sides() -> None:
    res = submit_results()
    res["play"] = [s for s in res["play"] if s["round"] != 2]
    res["play"][0]["submitted"] = 100.0  # pair 0 still counts; pair 2 does not
    res["failed_attempts"] = [{"round": 2, "kind": "play", "attempt": a, "error": "x"}
                              for a in range(3)]  # fmt: skip
    fig = report.submit_figures(res)
    assert fig["complete_pairs"] == 5 and fig["dropped_pairs"] == 1
    assert fig["submitted_gain"]["n"] == 5
    assert fig["redone"] == {"early": 0, "play": 3}
    r = rows(res)
    assert "n=5; redone 3, dropped 1" in r["early submit's gain, spawn -> `ready`"].value
    assert r["submit stage"].value == "3 / 1 / 0 / 0 / 0" and r["submit stage"].verdict == "MISSED"


def _redone(res: dict[str, Any]) -> None:
    res["failed_attempts"] = [{"round": 4, "kind": "early", "attempt": 0, "error": "NoEvent"}]


def _set(kind: str, i: int, **values: Any):
    def mutate(res: dict[str, Any]) -> None:
        res[kind][i].update(values)

    return mutate


@pytest.mark.parametrize(
    ("mutate", "value"),
    [
        (_redone, "1 / 0 / 0 / 0 / 0"),
        # the early kind's submission went through the play: it measured nothing
        (_set("early", 1, submit_calls=["ansible"]), "0 / 0 / 1 / 0 / 0"),
        (_set("play", 3, submit_calls=["driver"]), "0 / 0 / 1 / 0 / 0"),
        (_set("play", 0, submit_calls=["ansible", "ansible"]), "0 / 0 / 1 / 0 / 0"),
        (_set("play", 5, submit_calls=[]), "0 / 0 / 1 / 0 / 0"),
        (_set("early", 2, rc=0), "0 / 0 / 0 / 1 / 0"),
        (lambda res: res.update(left_behind=["jobs: 12"]), "0 / 0 / 0 / 0 / 1"),
        (lambda res: res.update(pairs=0, early=[], play=[]), "0 / 0 / 0 / 0 / 0"),
    ],
    ids=["redone", "early-by-ansible", "play-by-driver", "twice", "none", "exit", "left",
         "nothing-measured"],
)  # fmt: skip
def test_anything_untrustworthy_fails_the_stage_row(mutate, value: str) -> None:
    res = copy.deepcopy(submit_results())
    mutate(res)
    row = rows(res)["submit stage"]
    assert (row.value, row.verdict) == (value, "MISSED")


def test_too_few_pairs_give_no_interval() -> None:
    res = submit_results(1)
    fig = report.submit_figures(res)
    assert fig["submitted_gain"]["estimate"] is None
    assert rows(res)["early submit's gain, spawn -> `submitted`"].value.startswith("n/a (n=1;")


def test_the_stage_is_in_the_report_only_when_it_ran() -> None:
    assert "submit" not in report.figures({})
    fig = report.figures({"submit": submit_results()})
    names = [r.figure for r in report.rows(fig)]
    assert sum(1 for n in names if n.startswith("early submit's gain")) == 2
    assert any(n.startswith(STAGE_ROW) for n in names)


# -- the plan ----------------------------------------------------------------------------------


@pytest.mark.parametrize("pairs", [1, 6, 7, 20])
def test_the_plan_puts_each_kind_first_in_half_the_pairs(pairs: int) -> None:
    plan = scen_submit.plan(pairs, seed=3)
    assert len(plan) == pairs
    assert all(sorted(p["order"]) == sorted(scen_submit.KINDS) for p in plan)
    firsts = [p["order"][0] for p in plan]
    assert abs(firsts.count("early") - firsts.count("play")) <= 1
    assert all(0 <= p["pause"] < scen_submit.PHASE_SPAN_S for p in plan)


def test_the_plan_is_the_seed_s() -> None:
    assert scen_submit.plan(20, seed=5) == scen_submit.plan(20, seed=5)
    draws = {tuple(p["order"][0] for p in scen_submit.plan(20, seed=s)) for s in range(10)}
    assert len(draws) > 1  # the order is drawn, not fixed


# -- who submitted -----------------------------------------------------------------------------

CLUSTER = Cluster(name="c", inventory=Path("inv.yml"), host="login", user="alice",
                  ssh_args=("-F", "/cfg"))  # fmt: skip


def test_the_submitter_is_told_from_the_ssh_log(tmp_path: Path) -> None:
    master = Master(CLUSTER, tmp_path)
    remote = Remote(master, CLUSTER)
    driver = sshlog.parse_argv(0.0, [*master.client_argv("-T"), remote.command("submit")][1:])
    assert driver.helper_command() == "submit" and scen_submit.submitter(driver) == "driver"
    raw = "\"$HOME\"/'.nodebook/bin/nodebook-remote' --protocol 2 submit --tag x"
    opts = ["-C", "-o", "ControlMaster=auto", "-o", "ControlPersist=60s", "-o", "User=alice"]
    ansible = sshlog.parse_argv(0.0, [*opts, "-o", f"ControlPath={master.control_path}",
                                      "login", raw])  # fmt: skip
    assert ansible.helper_command() == "submit" and scen_submit.submitter(ansible) == "ansible"


# -- the bench-only driver, the stage in run.py -------------------------------------------------


def test_the_play_submit_driver_switches_off_only_the_early_submit(monkeypatch) -> None:
    from driver import cli, session

    seen: list[Any] = []
    monkeypatch.setattr(session.Session, "_submit_args", session.Session._submit_args)
    monkeypatch.setattr(cli, "main", lambda argv: seen.append(argv) or 0)
    monkeypatch.setattr("sys.argv", ["x", "session", "--cluster", "sandbox"])
    assert play_submit_driver.main() == 0
    assert seen == [["session", "--cluster", "sandbox"]]  # the driver's own command line
    assert session.Session._submit_args(object()) is None  # type: ignore[arg-type]


def test_run_has_the_stage_and_writes_a_trial_elsewhere(tmp_path: Path, monkeypatch) -> None:
    assert "submit" in run.ALL and list(run.STAGES) == list(run.ALL)
    assert run.method()["submit_pairs"] == run.SUBMIT_PAIRS
    wrote: list[str] = []
    monkeypatch.setattr(run.docs, "write", lambda: wrote.append("page"))
    out = tmp_path / "trial.json"
    run.write({"x": float("nan")}, out)
    assert out.read_text() == '{\n "x": null\n}\n' and wrote == []


def test_output_and_no_write_exclude_each_other(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        run.main(["--no-write", "--output", "x.json"])
    assert exc.value.code == 2 and "not allowed with" in capsys.readouterr().err
