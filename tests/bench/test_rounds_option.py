"""`make bench BENCH_ARGS="--rounds N"`: whole Williams designs only, refused before it runs."""

from __future__ import annotations

import pytest

from bench import host, run


@pytest.mark.parametrize("rounds", ["0", "5", "15", "-10"])
def test_rounds_that_are_not_whole_designs_are_refused_before_the_sandbox(
    rounds: str, monkeypatch, capsys
) -> None:
    touched: list[str] = []
    monkeypatch.setattr(host, "ensure_sandbox", lambda: touched.append("sandbox"))
    with pytest.raises(SystemExit) as exc:
        run.main(["--rounds", rounds])
    assert exc.value.code == 2
    assert f"--rounds {rounds}: give a multiple of 10" in capsys.readouterr().err
    assert touched == []


def test_the_method_records_the_rounds_asked_for() -> None:
    assert run.method(30)["rounds"] == 30
    assert run.method()["rounds"] == run.ROUNDS
