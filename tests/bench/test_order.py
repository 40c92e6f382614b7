"""The session stage's order of kinds (a Williams design): every kind takes every position
equally often and follows every other kind equally often, so neither drift nor the session
just before (whose job's end moves Slurm's scheduling pass) favours one kind. The pauses'
strata are drawn per run, each block of rounds covering every stratum, and are not tied to the
rounds' rows of the design."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from bench import scen_session
from bench.scen_session import (
    KINDS,
    PHASE_SPAN_S,
    PHASE_STRATA,
    pass_times,
    pass_wait,
    phase_delay,
    phase_strata,
    williams,
)

ROWS = len(williams(len(KINDS)))  # the round's row of the design: round % ROWS


def old_stratum(i: int) -> int:
    """The formula the draw replaced: row r only ever met strata 3r..3r+3 over 40 rounds."""
    return (3 * i + i // PHASE_STRATA) % PHASE_STRATA


@pytest.mark.parametrize("n", [3, 4, len(KINDS), 6])
def test_williams_design_is_balanced(n: int) -> None:
    rows = williams(n)
    assert len(rows) == (2 * n if n % 2 else n)
    assert all(sorted(r) == list(range(n)) for r in rows)
    positions = Counter((pos, k) for r in rows for pos, k in enumerate(r))
    assert set(positions.values()) == {len(rows) // n}
    follows = Counter((a, b) for r in rows for a, b in itertools.pairwise(r))
    assert len(follows) == n * (n - 1) and len(set(follows.values())) == 1


def test_a_rotated_order_is_not_balanced() -> None:
    """What the design replaces: rotation keeps every kind's predecessor fixed."""
    n = len(KINDS)
    rotated = [[(x + i) % n for x in range(n)] for i in range(n)]
    follows = Counter((a, b) for r in rotated for a, b in itertools.pairwise(r))
    assert len(follows) < n * (n - 1)


@pytest.mark.parametrize("rounds", [10, 20, 40])
def test_each_block_of_rounds_takes_every_stratum_once_in_an_order_of_its_own(
    rounds: int,
) -> None:
    strata = phase_strata(rounds, seed=2024)
    delays = [phase_delay(s) for s in strata]
    assert all(0 < d < PHASE_SPAN_S for d in delays)
    width = PHASE_SPAN_S / PHASE_STRATA
    assert [int(d // width) for d in delays] == strata
    for block in range(rounds // PHASE_STRATA):
        mine = strata[block * PHASE_STRATA : (block + 1) * PHASE_STRATA]
        assert sorted(mine) == list(range(PHASE_STRATA)), mine
    if rounds >= 2 * PHASE_STRATA:
        assert strata[:PHASE_STRATA] != strata[PHASE_STRATA : 2 * PHASE_STRATA]


def test_over_ten_blocks_each_row_meets_every_stratum_once() -> None:
    strata = phase_strata(10 * PHASE_STRATA, seed=3)
    for r in range(PHASE_STRATA):
        assert sorted(strata[r::PHASE_STRATA]) == list(range(PHASE_STRATA))


def test_the_seed_decides_the_draw() -> None:
    assert phase_strata(40, 7) == phase_strata(40, 7)
    assert phase_strata(40, 7) != phase_strata(40, 8)
    assert phase_strata(2, 7) == phase_strata(40, 7)[:2]  # --quick: the first rounds


def test_the_old_formula_tied_each_row_to_four_strata() -> None:
    """What the draw replaces: over 40 rounds row r met strata 3r..3r+3 only."""
    met = {r: {old_stratum(i) for i in range(40) if i % ROWS == r} for r in range(ROWS)}
    assert all(met[r] == {(3 * r + b) % PHASE_STRATA for b in range(4)} for r in range(ROWS))


def rows_meeting_new_strata(seed: int) -> int:
    """Rows of a 40-round run that meet a stratum the old formula never gave them."""
    strata = phase_strata(40, seed)
    new = 0
    for r in range(ROWS):
        mine = {strata[i] for i in range(40) if i % ROWS == r}
        assert len(mine) == 4, (r, mine)  # a different stratum in each block
        new += bool(mine - {old_stratum(i) for i in range(40) if i % ROWS == r})
    return new


def test_a_run_s_rows_meet_strata_the_old_formula_never_gave_them() -> None:
    # a row may by chance draw only its old strata ((4/10)^4 = 2.6 %), nearly every row does not
    assert rows_meeting_new_strata(seed=1) >= ROWS - 2
    assert sum(rows_meeting_new_strata(seed) for seed in range(100)) > 0.9 * 100 * ROWS


def test_row_and_stratum_are_not_confounded_over_many_runs() -> None:
    """Over many seeds every row meets every stratum about as often (1 in PHASE_STRATA): the
    stratum tells nothing about the row. The old formula fails the same count."""
    seeds, rounds = 500, 40
    count = Counter(
        (i % ROWS, s) for seed in range(seeds) for i, s in enumerate(phase_strata(rounds, seed))
    )
    expected = seeds * rounds / ROWS / PHASE_STRATA  # 200 per (row, stratum)
    assert set(count) == {(r, s) for r in range(ROWS) for s in range(PHASE_STRATA)}
    assert all(abs(n - expected) < 0.3 * expected for n in count.values()), count
    old = Counter((i % ROWS, old_stratum(i)) for i in range(rounds))
    assert len(old) == ROWS * 4 < ROWS * PHASE_STRATA


# -- each session spawned at its stratum's phase of slurmctld's pass ----------------------------

LOG = """\
[2026-12-07T03:03:38.999] _slurm_rpc_submit_batch_job: JobId=7 InitPrio=4294901753 usec=301
[2026-12-07T03:03:39.075] sched: Allocate JobId=7 NodeList=cn01 #CPUs=1 Partition=debug
[2026-12-07T03:03:41.079] _slurm_rpc_submit_batch_job: JobId=8 InitPrio=4294901752 usec=554
[2026-12-07T03:03:41.085] sched: Allocate JobId=8 NodeList=cn01 #CPUs=1 Partition=debug
[2026-12-07T03:03:42.085] _slurm_rpc_kill_job: REQUEST_KILL_JOB JobId=8 uid 1001
[2026-12-07T03:03:43.309] _slurm_rpc_submit_batch_job: JobId=9 InitPrio=4294901751 usec=627
[2026-12-07T03:03:44.092] sched: Allocate JobId=9 NodeList=cn01 #CPUs=1 Partition=debug
"""


def test_the_passes_are_the_allocations_not_made_at_submission() -> None:
    passes = pass_times(LOG)
    assert len(passes) == 2  # job 8's allocation came 6 ms after its submission: left out
    assert passes[1] - passes[0] == pytest.approx(5.017, abs=1e-6)


@pytest.mark.parametrize("stratum", range(PHASE_STRATA))
@pytest.mark.parametrize("since", [0.01, 0.6, 2.3, 17.9])
def test_a_spawn_lands_its_offset_after_a_predicted_pass(stratum: int, since: float) -> None:
    last = pass_times(LOG)[-1]
    offset = phase_delay(stratum)
    wait, locked = pass_wait([last], last + since, offset)
    assert locked and 0 <= wait < scen_session.PASS_S
    spawn = last + since + wait
    assert (spawn - last - offset) / scen_session.PASS_S == pytest.approx(
        round((spawn - last - offset) / scen_session.PASS_S), abs=1e-5
    )


def test_without_a_recent_pass_the_offset_is_a_pause() -> None:
    assert pass_wait([], 100.0, 0.35) == (0.35, False)
    stale = scen_session.PASS_FRESH_S + 1
    assert pass_wait([100.0], 100.0 + stale, 0.35) == (0.35, False)
