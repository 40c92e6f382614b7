"""The tables of tests/conftest.py (PROFILE_SESSION: what `make test-profile` runs on the
sandbox's other profiles; BOB_LANE and SOLO: where `make test` runs a sandbox test, and what runs
alone) name tests that exist: a renamed test would leave them quietly. Each marks exactly its
tests, and the lanes' tables name sandbox tests only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import BOB_LANE, PROFILE_SESSION, SOLO, listed

REPO = Path(__file__).resolve().parents[2]
ARGV = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]


def collected(*marks: str) -> list[str]:
    argv = [*ARGV, *(["-m", " and ".join(marks)] if marks else [])]
    out = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120)
    ids = [line for line in out.stdout.splitlines() if "::" in line]
    assert ids or marks, out.stdout[-2000:] + out.stderr[-2000:]
    return ids


@pytest.fixture(scope="module")
def every() -> list[str]:
    ids = collected()
    assert len(ids) > 100
    return ids


@pytest.mark.parametrize(
    ("table", "mark"),
    [(PROFILE_SESSION, "profile_session"), (BOB_LANE, "bob_lane"), (SOLO, "solo")],
)
def test_every_entry_names_collected_tests_and_only_they_are_marked(every, table, mark):
    for entry in table:
        assert any(listed(i, table) and i.startswith(entry) for i in every), entry
    assert collected(mark) == [i for i in every if listed(i, table)] != []


def test_the_lanes_name_sandbox_tests_only():
    assert collected("bob_lane", "not sandbox") == []
    assert collected("solo", "not sandbox") == []
