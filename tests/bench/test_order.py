"""The session stage's order of kinds (a Williams design): every kind takes every position
equally often and follows every other kind equally often, so neither drift nor the session
just before (whose job's end moves Slurm's scheduling tick) favours one kind."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from bench.scen_session import KINDS, PHASE_STRATA, SCHED_TICK_S, phase_delay, williams


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
def test_phase_delays_put_each_block_of_rounds_once_in_every_stratum_of_the_tick(
    rounds: int,
) -> None:
    delays = [phase_delay(i) for i in range(rounds)]
    assert all(0 < d < SCHED_TICK_S for d in delays)
    width = SCHED_TICK_S / PHASE_STRATA
    for block in range(rounds // PHASE_STRATA):
        block_delays = delays[block * PHASE_STRATA : (block + 1) * PHASE_STRATA]
        strata = [int(d // width) for d in block_delays]
        assert sorted(strata) == list(range(PHASE_STRATA)), strata
    # not the same order in every block (the Williams order repeats every 10 rounds)
    if rounds >= 2 * PHASE_STRATA:
        assert delays[:PHASE_STRATA] != delays[PHASE_STRATA : 2 * PHASE_STRATA]
