"""The session stage's order of kinds (a Williams design): every kind takes every position
equally often and follows every other kind equally often, so neither drift nor the session
just before (whose job's end moves Slurm's scheduling tick) favours one kind."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest

from bench.scen_session import KINDS, williams


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
